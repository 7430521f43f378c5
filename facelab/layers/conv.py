"""Convolution blocks: conv-norm-activation and depthwise separable convolution."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision.ops import Conv2dNormActivation


class ConvNormAct(Conv2dNormActivation):
    """``Conv2d -> BatchNorm2d -> activation``; ``(B, in, H, W) -> (B, out, H', W')``.

    A keyword-only front to :class:`torchvision.ops.Conv2dNormActivation` (an ``nn.Sequential``
    whose children are ``0`` conv, ``1`` norm, ``2`` activation). ``padding=None`` keeps the size
    at stride 1 (``(kernel_size - 1) // 2``); the conv has a bias only when there is no norm layer.
    Pass ``norm_layer=None`` / ``activation_layer=None`` to drop either.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            norm_layer=norm_layer,
            activation_layer=activation_layer,
            bias=bias,
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise ``k x k`` conv (one filter per input channel) then a pointwise ``1 x 1`` conv.

    ``(B, in, H, W) -> (B, out, H', W')`` with ``H' = (H + 2 * padding - k) // stride + 1``.
    This is the factorisation of MobileNets (Howard et al. 2017) as SqueezeFacePoseNet's Section 2
    defines it: "a single convolutional filter per input channel, followed by a 1x1 point-wise
    convolution that carries out linear combinations of the input channels".

    Children: ``depthwise`` (no bias: any bias would be a constant the pointwise conv can absorb),
    optionally ``norm`` + ``act`` between the two (MobileNets puts BN + ReLU there; networks
    without batch-norm, like SqueezeNet, leave the pair linear), then ``pointwise``. The caller
    adds any normalisation/activation after the block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
        inner_norm_act: bool = False,
        activation_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2
        layers: dict[str, nn.Module] = {
            "depthwise": nn.Conv2d(
                in_channels, in_channels, kernel_size, stride=stride, padding=padding, groups=in_channels, bias=False
            )
        }
        if inner_norm_act:
            layers["norm"] = nn.BatchNorm2d(in_channels)
            layers["act"] = activation_layer()
        layers["pointwise"] = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)


class ConvBNPReLU(nn.Sequential):
    """``Conv2d (no bias) -> BatchNorm2d -> PReLU`` with one slope per channel (``prelu=False``: no activation).

    ``(B, in, H, W) -> (B, out, H', W')``; ``groups=in_channels=out_channels`` makes the conv depthwise.
    The face networks built from MobileNets (MobileFaceNets, SFace's network) use this block: PReLU
    instead of ReLU, channel-wise. Children: ``conv``, ``bn``, ``prelu`` (named, so pretrained weights
    map onto them by name). ``bn_eps`` is BatchNorm's epsilon (PyTorch 1e-5; MXNet-trained models
    use 1e-3 or 2e-5 and need theirs to reproduce their outputs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        prelu: bool = True,
        bn_eps: float = 1e-5,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        if prelu:
            self.prelu = nn.PReLU(out_channels)
