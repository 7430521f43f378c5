"""SqueezeNet's fire module (Iandola et al. 2016, Fig. 2; torchvision ``squeezenet.Fire``)."""

from __future__ import annotations

import torch
from torch import nn

from facelab.layers.conv import DepthwiseSeparableConv


class Fire(nn.Module):
    """Squeeze ``1x1`` + ReLU, then expand ``1x1`` and ``3x3`` (+ ReLU each), concatenated.

    ``(B, in_channels, H, W) -> (B, expand1x1 + expand3x3, H, W)``. With
    ``depthwise_separable=True`` the expand ``3x3`` convolution is a
    :class:`DepthwiseSeparableConv` (depthwise 3x3 over the squeeze channels, pointwise to
    ``expand3x3``) -- SqueezeFacePoseNet's "+DWC" variant. Every conv has a bias, as in SqueezeNet.
    """

    def __init__(
        self,
        in_channels: int,
        squeeze: int,
        expand1x1: int,
        expand3x3: int,
        *,
        depthwise_separable: bool = False,
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze, 1)
        self.squeeze_act = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_act = nn.ReLU(inplace=True)
        if depthwise_separable:
            self.expand3x3: nn.Module = DepthwiseSeparableConv(squeeze, expand3x3, kernel_size=3, padding=1)
        else:
            self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_act = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_act(self.squeeze(x))
        return torch.cat([self.expand1x1_act(self.expand1x1(x)), self.expand3x3_act(self.expand3x3(x))], 1)
