"""SqueezeFacePoseNet against the paper's Table 2 (shapes, widths) and Table 1 (parameters);
the ResNet baselines against Table 1."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from facelab import create_model
from facelab.models.squeezefaceposenet import SqueezeFacePoseNet

VARIANTS = ["squeezefaceposenet", "squeezefaceposenet_gdc", "squeezefaceposenet_dwc", "squeezefaceposenet_dwc_gdc"]

# Paper 001, Table 2, typed in from the paper: layer -> (side, channels) of its output.
# "C" (the number of training classes) is NUM_CLASSES here; GDC replaces averagepool10.
NUM_CLASSES = 7
TABLE2_OUTPUT = {
    "conv1": (113, 64), "maxpool1": (56, 64),
    "fire2": (56, 128), "fire3": (56, 128), "fire4": (56, 256), "maxpool4": (27, 256),
    "fire5": (27, 256), "fire6": (27, 384), "fire7": (27, 384), "fire8": (27, 512), "maxpool8": (13, 512),
    "fire9": (13, 512), "dropout9": (13, 512), "conv10": (13, 1000),
    "averagepool10": (1, 1000), "batchnorm10": (1, 1000), "dropout10": (1, 1000), "fc": (1, NUM_CLASSES),
}
# Table 2: fire -> (#1x1 squeeze, #1x1 expand, #3x3 expand).
TABLE2_FIRE = {
    "fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
    "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256),
}
# Table 1 "Parameters".
PAPER_PARAMS = {
    "squeezefaceposenet": 1.24e6, "squeezefaceposenet_gdc": 1.40e6,
    "squeezefaceposenet_dwc": 0.69e6, "squeezefaceposenet_dwc_gdc": 0.86e6,
    "resnet50": 25.6e6, "se_resnet50": 28.1e6,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _layer_outputs(model: SqueezeFacePoseNet, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (without the batch axis) of every Table 2 layer, by forward hooks."""
    shapes: dict[str, tuple[int, ...]] = {}
    layers = dict(model.features.named_children())
    layers["averagepool10"] = model.gdc10 if model.gdc else model.averagepool10
    for name in ("batchnorm10", "dropout10", "fc"):
        layers[name] = getattr(model, name)
    handles = [
        module.register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for name, module in layers.items()
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


@pytest.mark.parametrize("name", VARIANTS)
def test_layer_outputs_match_table2(name):
    model = create_model(name, num_classes=NUM_CLASSES).eval()
    with torch.no_grad():
        shapes = _layer_outputs(model, torch.randn(2, 3, 113, 113))
    assert list(shapes) == list(TABLE2_OUTPUT), "layers run in Table 2's order"
    flat = {"batchnorm10", "dropout10", "fc"}  # after the flatten: 1^2 x N is a vector of N
    for layer, (side, channels) in TABLE2_OUTPUT.items():
        expected = (channels,) if layer in flat else (channels, side, side)
        assert shapes[layer] == expected, f"{name}.{layer}: {shapes[layer]} != Table 2 {expected}"


@pytest.mark.parametrize("name", VARIANTS)
def test_fire_widths_match_table2(name):
    model = create_model(name)
    for fire, (squeeze, e1, e3) in TABLE2_FIRE.items():
        module = getattr(model.features, fire)
        conv3 = module.expand3x3.pointwise if model.depthwise_separable else module.expand3x3
        assert (module.squeeze.out_channels, module.expand1x1.out_channels, conv3.out_channels) == (squeeze, e1, e3)
        assert conv3.kernel_size == ((1, 1) if model.depthwise_separable else (3, 3))
    assert model.features.conv1.conv.__class__.__name__ == ("DepthwiseSeparableConv" if model.depthwise_separable else "Conv2d")


def test_table2_head_is_batchnorm_dropout50_fc():
    model = create_model("squeezefaceposenet", num_classes=NUM_CLASSES)
    assert isinstance(model.batchnorm10, nn.BatchNorm1d)
    assert model.dropout10.p == 0.5 and model.features.dropout9.p == 0.5
    assert (model.fc.in_features, model.fc.out_features) == (1000, NUM_CLASSES)


def test_parameter_count_excludes_the_training_head():
    # Table 1 counts the network up to its 1000-d descriptor: batchnorm10 + fc depend on the
    # training classes (35K MS1M / 8.6K VGGFace2) and would dominate, so they are left out.
    bare = create_model("squeezefaceposenet")
    trained = create_model("squeezefaceposenet", num_classes=8631)
    assert trained.count_parameters() == bare.count_parameters() == sum(p.numel() for p in bare.parameters())
    head = 2 * 1000 + (1000 * 8631 + 8631)  # BN weight + bias, FC weight + bias
    assert sum(p.numel() for p in trained.parameters()) == bare.count_parameters() + head


@pytest.mark.parametrize("name", ["squeezefaceposenet", "squeezefaceposenet_gdc"])
def test_parameters_within_1pct_of_table1(name):
    ours = create_model(name).count_parameters()
    assert abs(ours - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01, ours


def test_base_count_is_squeezenet_minus_the_conv1_change():
    # Independent check: torchvision's SqueezeNet 1.0 (96 7x7 conv1 filters, 1000 classes) less
    # the conv1 difference and fire2's squeeze seeing 64 instead of 96 channels.
    from torchvision.models import squeezenet1_0

    squeezenet = sum(p.numel() for p in squeezenet1_0().parameters())
    conv1_change = (64 * 3 * 3 * 3 + 64) - (96 * 3 * 7 * 7 + 96)
    fire2_change = (64 - 96) * 16
    assert create_model("squeezefaceposenet").count_parameters() == squeezenet + conv1_change + fire2_change


def _dwc_expected(gdc: bool) -> int:
    """Our +DWC count from the layer widths: each 3x3 conv (k*k*in*out + out) becomes a bias-free
    depthwise 3x3 (9*in) + pointwise (in*out + out)."""
    base = create_model("squeezefaceposenet_gdc" if gdc else "squeezefaceposenet").count_parameters()
    convs3x3 = [(3, 64)] + [(s, e3) for s, _, e3 in TABLE2_FIRE.values()]
    return base + sum((9 * cin + cin * cout + cout) - (9 * cin * cout + cout) for cin, cout in convs3x3)


@pytest.mark.parametrize("name", ["squeezefaceposenet_dwc", "squeezefaceposenet_dwc_gdc"])
def test_dwc_parameter_count_is_ours_not_table1(name):
    # Ours: 745,347 (+DWC) and 915,347 (+DWC+GDC), 8% and 6% above Table 1's 0.69M / 0.86M.
    # With depthwise separable conv as the paper's Section 2 defines it (depthwise, then a 1x1
    # pointwise conv) the pointwise convs alone hold ~64K parameters, so 0.69M cannot be met.
    # Table 1 is matched instead by a depthwise-only expand3x3 (see the next test), so we assert
    # our own count and the chapter explains the gap.
    ours = create_model(name).count_parameters()
    assert ours == _dwc_expected(gdc=name.endswith("gdc"))
    assert ours == {"squeezefaceposenet_dwc": 745_347, "squeezefaceposenet_dwc_gdc": 915_347}[name]
    assert abs(ours - PAPER_PARAMS[name]) / PAPER_PARAMS[name] > 0.05


@pytest.mark.parametrize("gdc", [False, True])
def test_table1_dwc_count_is_a_depthwise_only_expand(gdc):
    # The hypothesis behind Table 1's 0.69M / 0.86M: each fire's expand3x3 becomes a grouped 3x3
    # conv with one group per squeeze channel (e3 / s filters each, with bias) and no pointwise
    # conv; conv1 unchanged. Built for real here, it runs and lands within 1% of both numbers.
    model = create_model("squeezefaceposenet_gdc" if gdc else "squeezefaceposenet")
    hypothesis = copy.deepcopy(model)
    for fire, (s, _, e3) in TABLE2_FIRE.items():
        getattr(hypothesis.features, fire).expand3x3 = nn.Conv2d(s, e3, 3, padding=1, groups=s)
    with torch.no_grad():
        assert hypothesis(torch.randn(1, 3, 113, 113)).shape == (1, 1000)
    paper = PAPER_PARAMS["squeezefaceposenet_dwc_gdc" if gdc else "squeezefaceposenet_dwc"]
    count = hypothesis.count_parameters()
    assert count == (864_056 if gdc else 694_056)
    assert abs(count - paper) / paper < 0.01


@pytest.mark.parametrize("name", ["resnet50", "se_resnet50"])
def test_resnet_parameters_within_1pct_of_table1(name):
    # Table 1's 25.6M / 28.1M are the ImageNet architectures: with their 1000-class FC layer.
    model = create_model(name, num_classes=1000)
    ours = sum(p.numel() for p in model.parameters())
    assert abs(ours - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01, ours
    assert ours == {"resnet50": 25_557_032, "se_resnet50": 28_088_024}[name]


def test_resnet_descriptor_is_2048_at_224():
    model = create_model("resnet50").eval()
    assert model.input_size == (3, 224, 224) and model.num_features == 2048
    se = create_model("se_resnet50")
    gates = [m for m in se.modules() if m.__class__.__name__ == "SqueezeExcite"]
    assert len(gates) == 16  # one per bottleneck (3 + 4 + 6 + 3)
    assert {g.fc1.out_channels * 16 == g.fc1.in_channels for g in gates} == {True}


def test_se_gate_scales_the_residual_branch():
    # The gate sits after bn3, before the addition: zeroing its excitation bias to -inf-like
    # values must switch the residual branch off and leave relu(identity).
    se = create_model("se_resnet50").eval()
    block = se.layer1[1]  # an identity-shortcut block
    with torch.no_grad():
        block.bn3[1].fc2.bias.fill_(-1e4)
        x = torch.rand(1, 256, 8, 8)
        assert torch.allclose(block(x), torch.relu(x), atol=1e-6)


def test_gdc_needs_its_input_size():
    model = create_model("squeezefaceposenet_gdc")
    with pytest.raises(ValueError, match="13x13"):
        model(torch.randn(1, 3, 129, 129))
