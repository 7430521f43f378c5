"""LEFV's normalizer (Section 3.2): the frozen expert, decoder and critic shapes, and the training loop's
contract (the expert never moves, the decoder and critics do, resume = uninterrupted)."""

import base64

import cv2
import numpy as np
import pytest
import torch

from facelab.models.lefv_normalizer import DECODER, REGIONS, FaceCritics, LEFVNormalizer, crop_region
from facelab.models.sface import SFaceNet
from facelab.registry import create_model, list_models
from facelab.train.normalizer import NormalizerTrainConfig, draw_batch, normalize_faces, train_normalizer


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 112, 112, 3), dtype=np.uint8), rng.integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)


def _normalizer(seed=0):
    torch.manual_seed(seed)
    return LEFVNormalizer(SFaceNet()), FaceCritics()


def test_registered_as_a_normalizer():
    assert list_models(kind="normalizer") == ["lefv_normalizer"]
    assert "lefv_normalizer" not in list_models()  # not a recognizer: the descriptor tests skip it
    assert isinstance(create_model("lefv_normalizer"), LEFVNormalizer)


def test_shapes_and_the_decoder_table():
    g, c = _normalizer()
    x = torch.randn(2, 3, 112, 112)
    assert g.encode(x).shape == (2, 1024, 7, 7)
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0  # tanh: the book's [-1, 1] input range
    sides = [m.shape[-1] for m in _stage_outputs(g, x)]
    assert sides == [side for _, _, side in DECODER]
    scores = c(y)
    assert list(scores) == list(REGIONS) and all(s.shape == (2,) for s in scores.values())


def test_decoder_width_follows_the_expert():
    from facelab.models.mobilefacenet import HEAD_CHANNELS, MobileFaceNet

    torch.manual_seed(0)
    g = LEFVNormalizer(MobileFaceNet())  # the paper's expert: a [B, 512, 7, 7] map
    x = torch.randn(2, 3, 112, 112)
    assert g.expert_channels == HEAD_CHANNELS == g.decoder.body.reduce[0].in_channels
    assert g.encode(x).shape == (2, HEAD_CHANNELS, 7, 7)
    with torch.no_grad():
        assert g(x).shape == x.shape
    assert _normalizer()[0].expert_channels == 1024  # SFace's map


def test_expert_with_the_wrong_map_size_is_refused():
    class Shallow(torch.nn.Module):  # a 14x14 map: the decoder's four 2x stages would give 224 px
        def __init__(self):
            super().__init__()
            self.features = torch.nn.Conv2d(3, 8, 3, stride=8, padding=1)

    with pytest.raises(ValueError, match="must be 7x7"):
        LEFVNormalizer(Shallow())


def _stage_outputs(g, x):
    out, h = [], g.encode(x)
    for stage in g.decoder.body:
        h = stage(h)
        out.append(h)
    return out


def test_region_crops_are_the_fixed_boxes():
    img = torch.arange(112 * 112, dtype=torch.float32).reshape(1, 1, 112, 112).expand(1, 3, 112, 112)
    for name, (x1, y1, x2, y2) in REGIONS.items():
        crop = crop_region(img, name)
        assert crop.shape[-2:] == (y2 - y1, x2 - x1)
        assert float(crop[0, 0, 0, 0]) == y1 * 112 + x1


def test_expert_is_frozen_but_passes_gradients():
    g, _ = _normalizer()
    g.train()
    assert not g.expert.training and g.decoder.training
    assert not any(p.requires_grad for p in g.expert.parameters())
    x = torch.randn(2, 3, 112, 112, requires_grad=True)
    g.encode(x).sum().backward()  # eq. 6 on a generated face needs d expert / d input
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_unknown_region_is_refused():
    with pytest.raises(ValueError, match="unknown critic regions"):
        FaceCritics(regions=("ears",))


def test_draw_batch_is_reproducible_and_flips(faces):
    x, _ = faces
    a = draw_batch(x, 4, np.random.default_rng(3), 0.5)
    b = draw_batch(x, 4, np.random.default_rng(3), 0.5)
    assert torch.equal(a, b) and a.shape == (4, 3, 112, 112)
    flipped = draw_batch(x[:1], 1, np.random.default_rng(0), 1.0)
    plain = draw_batch(x[:1], 1, np.random.default_rng(0), 0.0)
    assert torch.allclose(flipped, torch.flip(plain, dims=[-1]))


@pytest.mark.filterwarnings("error")  # the logged loss terms are detached before they become floats
def test_training_moves_decoder_and_critics_only(faces):
    x, y = faces
    g, c = _normalizer()
    expert0 = {k: v.clone() for k, v in g.expert.state_dict().items()}
    dec0 = [p.clone() for p in g.decoder.parameters()]
    crit0 = [p.clone() for p in c.parameters()]
    h = train_normalizer(g, c, x, y, NormalizerTrainConfig(steps=2, batch_size=2, log_every=1), progress=False)
    assert h.step == [1, 2] and all(np.isfinite(h.identity)) and all(np.isfinite(h.penalty))
    assert all(torch.equal(v, g.expert.state_dict()[k]) for k, v in expert0.items())  # BN statistics too
    assert any(not torch.equal(a, b) for a, b in zip(dec0, g.decoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(crit0, c.parameters()))
    assert all(p.requires_grad for p in c.parameters())  # restored after the decoder's step


def test_resume_equals_an_uninterrupted_run(faces, tmp_path):
    x, y = faces
    cfg = NormalizerTrainConfig(steps=3, batch_size=2, log_every=1, checkpoint_every=1)
    g1, c1 = _normalizer()
    h1 = train_normalizer(g1, c1, x, y, cfg, progress=False)
    g2, c2 = _normalizer()
    ckpt = tmp_path / "n.pt"
    train_normalizer(g2, c2, x, y, NormalizerTrainConfig(steps=1, batch_size=2, log_every=1, checkpoint_every=1),
                     checkpoint=ckpt, progress=False)
    g3, c3 = _normalizer()
    h3 = train_normalizer(g3, c3, x, y, cfg, checkpoint=ckpt, progress=False)
    assert h3.step == h1.step
    np.testing.assert_allclose(h3.identity, h1.identity, rtol=1e-5)
    for a, b in zip(g1.decoder.state_dict().values(), g3.decoder.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_configs_are_refused(faces):
    x, y = faces
    g, c = _normalizer()
    with pytest.raises(ValueError, match="steps and batch_size"):
        train_normalizer(g, c, x, y, NormalizerTrainConfig(steps=0), progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        train_normalizer(g, c, x[:0], y, NormalizerTrainConfig(steps=1), progress=False)


def test_normalize_faces_round_trips_pixels(faces):
    x, _ = faces
    g, _ = _normalizer()
    out = normalize_faces(g, x[:3], batch_size=2)
    assert out.shape == (3, 112, 112, 3) and out.dtype == np.uint8


def test_example_grid_decodes_to_the_stacked_faces(faces):
    from facelab.experiments.lefv_normalization import example_grid

    x, y = faces
    jpeg = base64.b64decode(example_grid([x[:3], y[:3]]))
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (224, 336, 3)
