"""Chapter 1 (LEFV, paper 000): the detector family of Table 2, the MSFF recognizer, Table 1's cost formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from facelab import create_model, list_models
from facelab.bench.conv_cost import evaluate_formula, measure_conv, pointwise_share
from facelab.models import lefv_detector as D
from facelab.models.lefv_recognizer import LEFVRecognizer
from facelab.tables import cells

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DETECTORS = list_models(kind="detector")


def test_the_table2_networks_are_registered_as_detectors():
    assert set(D.VARIANTS) == set(DETECTORS)
    assert not set(DETECTORS) & set(list_models())  # recognizers only by default
    assert {"lefv_recognizer", "lefv_recognizer_no_msff"} <= set(list_models())


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("hw", [(64, 96), (73, 101)])  # odd sizes: the anchor grid must follow the real maps
def test_detector_outputs_one_row_per_anchor(name, hw):
    torch.manual_seed(0)
    m = create_model(name).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, *hw))
        maps = m.feature_maps(torch.randn(1, 3, *hw))
    a = m.anchors(*hw)
    assert [tuple(f.shape[-2:]) for f in maps] == m.map_sizes(*hw)
    assert out["logits"].shape == (2, len(a), 2) and out["boxes"].shape == (2, len(a), 4)
    assert out["landmarks"].shape == (2, len(a), 10)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_detector_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = create_model("lefv_detector").train()
    out = m(torch.randn(2, 3, 64, 64))
    (out["logits"].sum() + out["boxes"].sum() + out["landmarks"].sum()).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_box_and_landmark_encodings_invert():
    g = torch.Generator().manual_seed(0)
    anchors = torch.cat([torch.rand(20, 2, generator=g) * 300, 8 + torch.rand(20, 2, generator=g) * 100], 1)
    xy = torch.rand(20, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + 5 + torch.rand(20, 2, generator=g) * 80], 1)
    torch.testing.assert_close(D.decode_boxes(D.encode_boxes(boxes, anchors), anchors), boxes, atol=1e-3, rtol=0)
    points = torch.rand(20, 5, 2, generator=g) * 300
    torch.testing.assert_close(D.decode_landmarks(D.encode_landmarks(points, anchors), anchors), points,
                               atol=1e-3, rtol=0)
    # zero offsets decode to the anchor itself
    a = torch.tensor([[50.0, 40.0, 20.0, 20.0]])
    assert D.decode_boxes(torch.zeros(1, 4), a).tolist() == [[40.0, 30.0, 60.0, 50.0]]


def test_detect_keeps_confident_anchors_and_suppresses_duplicates():
    m = create_model("lefv_detector").eval()
    h, w = 64, 64
    anchors = m.anchors(h, w)
    # make the heads output constant logits: every anchor is a face with the same score
    for head in m.heads.values():
        nn.init.zeros_(head.weight)
        bias = torch.zeros(head.out_channels)
        bias.view(-1, 16)[:, 1] = 5.0
        head.bias.data.copy_(bias)
    dets = m.detect(torch.zeros(1, 3, h, w), score_threshold=0.5, iou_threshold=0.3)[0]
    assert 0 < len(dets.boxes) < len(anchors)  # NMS removed overlapping anchors
    assert torch.all(dets.scores > 0.99) and dets.landmarks.shape == (len(dets.boxes), 5, 2)
    none = m.detect(torch.zeros(1, 3, h, w), score_threshold=0.999999)[0]
    assert len(none.boxes) == 0


def _convs(m: nn.Module) -> list[nn.Conv2d]:
    return [c for name, c in m.named_modules() if isinstance(c, nn.Conv2d) and not name.startswith("heads")]


def test_cf_factorises_every_3x3_but_the_stem():
    for name, (separable, *_rest) in D.VARIANTS.items():
        convs3 = [c for c in _convs(create_model(name)) if c.kernel_size == (3, 3)]
        stem, rest = convs3[0], convs3[1:]
        assert stem.in_channels == 3 and stem.groups == 1
        assert all((c.groups == c.in_channels) == separable for c in rest), name


def test_sdc_gives_four_successive_stride2_layers_at_the_start():
    def spatial_strides(name):
        return [c.stride[0] for c in _convs(create_model(name)) if c.kernel_size == (3, 3)]

    assert spatial_strides("lefv_detector_cf_sdc")[:5] == [2, 2, 2, 2, 2]  # four subsamplings + stage 5's
    assert spatial_strides("lefv_detector_cf")[:4] == [2, 1, 2, 1]


def test_context_module_splits_channels_and_keeps_the_shape():
    cm = D.ContextModule(64, separable=True, activation="leaky_relu")
    assert sum(cm.widths) == 64 and cm.widths == (32, 16, 16)
    dilations = [b[0].conv.dilation[0] for b in cm.branches]
    assert dilations == [1, 2, 3]
    assert cm(torch.randn(1, 64, 9, 7)).shape == (1, 64, 9, 7)


def test_relu_variant_has_no_leaky_relu():
    kinds = {type(m) for m in create_model("lefv_detector_relu").modules()}
    assert nn.ReLU in kinds and nn.LeakyReLU not in kinds
    assert nn.LeakyReLU in {type(m) for m in create_model("lefv_detector").modules()}


def test_detector_size_is_near_the_papers_095_mib():
    params = sum(p.numel() for p in create_model("lefv_detector").parameters())
    mib = params * 4 / 2**20
    assert abs(mib - 0.95) / 0.95 < 0.1, mib


def test_recognizer_msff_fuses_480_channels_at_7x7():
    torch.manual_seed(0)
    m = LEFVRecognizer(msff=True).eval()
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        shapes = [tuple(t.shape[1:]) for t in m.block_maps(x)]
        fused = m.fused(x)
    assert shapes == [(32, 56, 56), (64, 28, 28), (128, 14, 14), (256, 7, 7)]
    assert fused.shape == (1, 480, 7, 7) and m.block5.conv.out_channels == 960
    # the first 32 fused channels are Block 1's map max-pooled 8x8
    b1 = m.block_maps(x)[0]
    torch.testing.assert_close(fused[:, :32], nn.functional.max_pool2d(b1, 8))
    plain = LEFVRecognizer(msff=False)
    assert plain.fused(x).shape == (1, 256, 7, 7)


def test_msff_lets_block1_reach_the_embedding_directly():
    # with MSFF, Block 1's output feeds Block 5 directly: a gradient reaches it even when Block 2 is cut
    torch.manual_seed(0)
    m = LEFVRecognizer(msff=True).train()
    x = torch.randn(2, 3, 112, 112)
    maps = m.block_maps(x)
    b1 = maps[0]
    b1.retain_grad()
    fused = torch.cat([m.scale_pool(b1)] + [m.scale_pool(t.detach()) for t in maps[1:]], dim=1)
    m.bn(m.fc(m.pool(m.block5(fused)).flatten(1))).sum().backward()
    assert b1.grad is not None and b1.grad.abs().sum() > 0


@pytest.mark.parametrize("separable", [False, True])
def test_table1_formulas_equal_real_layers(separable):
    table = cells("000")
    row = "depthwise_separable" if separable else "standard"
    p_formula = table[f"table1.{row}.parameters"]["formula"]
    c_formula = table[f"table1.{row}.computation"]["formula"]
    for n, c_in, c_out, h, w in [(3, 16, 32, 10, 12), (5, 8, 24, 7, 9), (1, 4, 4, 3, 3), (3, 64, 128, 14, 14)]:
        got = measure_conv(n, c_in, c_out, h, w, separable=separable)
        symbols = {"n": n, "N_in": c_in, "N_out": c_out, "H": h, "W": w}
        assert got["parameters"] == evaluate_formula(p_formula, symbols)
        assert got["macs"] == evaluate_formula(c_formula, symbols)


def test_formula_evaluation_refuses_anything_but_arithmetic():
    assert evaluate_formula("H*W*(n+1)", {"H": 2, "W": 3, "n": 1}) == 12
    for bad in ["__import__('os')", "n**2", "x"]:
        with pytest.raises(ValueError):
            evaluate_formula(bad, {"n": 1})


def test_pointwise_share_of_a_separable_pair_is_the_closed_form():
    # depthwise 3x3 on C channels + pointwise C -> C: share of 1x1 = C / (9 + C)
    c = 32
    m = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, c, 1, bias=False))
    r = pointwise_share(m, (c, 8, 8))
    assert r["share_1x1"] == pytest.approx(c / (9 + c))
    assert r["macs_rest"] == 0


def test_cost_helpers_name_bad_input():
    with pytest.raises(ValueError, match="odd"):
        measure_conv(2, 4, 4, 5, 5, separable=False)
    with pytest.raises(ValueError, match="arithmetic"):
        evaluate_formula("n *", {"n": 1})
    assert evaluate_formula("-n + 3", {"n": 1}) == 2


def test_a_box_no_anchor_touches_stays_unmatched():
    from facelab.losses.detection import match_anchors

    anchors = torch.tensor([[5.0, 5, 10, 10]])
    far = torch.tensor([[50.0, 50, 51, 51]])
    assert match_anchors(anchors, far).gt.tolist() == [-1]
