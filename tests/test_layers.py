"""Shared blocks against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facelab import create_model
from facelab.layers import ConvNormAct, DepthwiseSeparableConv, Fire, GDCHead, GlobalDepthwiseConv, SqueezeExcite


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def test_conv_norm_act_is_conv_bn_relu():
    block = ConvNormAct(3, 8, kernel_size=3, stride=2).eval()
    x = torch.randn(2, 3, 9, 9)
    conv, bn = block[0], block[1]
    assert conv.bias is None  # the norm layer's shift makes it redundant
    expected = F.relu(F.batch_norm(F.conv2d(x, conv.weight, stride=2, padding=1), bn.running_mean, bn.running_var,
                                   bn.weight, bn.bias, eps=bn.eps))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_depthwise_separable_is_per_channel_filter_then_pointwise():
    block = DepthwiseSeparableConv(4, 6, kernel_size=3, stride=1)
    x = torch.randn(2, 4, 7, 7)
    dw, pw = block.depthwise.weight, block.pointwise.weight
    # each input channel filtered by its own 3x3 kernel, then linear combinations across channels
    per_channel = torch.cat([F.conv2d(x[:, c : c + 1], dw[c : c + 1], padding=1) for c in range(4)], 1)
    expected = torch.einsum("oc,bchw->bohw", pw[:, :, 0, 0], per_channel) + block.pointwise.bias[None, :, None, None]
    assert torch.allclose(block(x), expected, atol=1e-5)
    assert sum(p.numel() for p in block.parameters()) == 9 * 4 + 4 * 6 + 6


def test_fire_concatenates_the_two_expands():
    fire = Fire(8, 2, 5, 7)
    x = torch.randn(2, 8, 6, 6)
    out = fire(x)
    assert out.shape == (2, 12, 6, 6) and fire.out_channels == 12
    s = F.relu(fire.squeeze(x))
    assert torch.allclose(out[:, :5], F.relu(fire.expand1x1(s)))
    assert torch.allclose(out[:, 5:], F.relu(fire.expand3x3(s)))


def test_global_depthwise_conv_is_a_per_channel_weighted_sum():
    gdc = GlobalDepthwiseConv(3, 4, bias=True)
    x = torch.randn(2, 3, 4, 4)
    expected = (x * gdc.conv.weight[:, 0]).sum((-2, -1)) + gdc.conv.bias
    assert torch.allclose(gdc(x).flatten(1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="4x4"):
        gdc(torch.randn(1, 3, 5, 5))


def test_gdc_head_shape():
    head = GDCHead(16, 7, embedding_dim=8).eval()
    assert head(torch.randn(2, 16, 7, 7)).shape == (2, 8)


def test_squeezefaceposenet_gdc_starts_as_gap():
    gap = create_model("squeezefaceposenet").eval()
    gdc = create_model("squeezefaceposenet_gdc").eval()
    gdc.features.load_state_dict(gap.features.state_dict())
    x = torch.randn(1, 3, 113, 113)
    with torch.no_grad():
        assert torch.allclose(gdc.forward_features(x), gap.forward_features(x), atol=1e-6)


def test_squeeze_excite_matches_senet():
    se = SqueezeExcite(32, reduction=16)
    x = torch.randn(2, 32, 5, 5)
    z = x.mean((-2, -1))
    s = torch.sigmoid(F.linear(F.relu(F.linear(z, se.fc1.weight[:, :, 0, 0], se.fc1.bias)), se.fc2.weight[:, :, 0, 0], se.fc2.bias))
    assert se.fc1.out_channels == 2
    assert torch.allclose(se(x), x * s[:, :, None, None], atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        SqueezeExcite(30, reduction=16)
