"""Global depthwise convolution (GDC), MobileFaceNets (Chen et al. 2018, Section 3.2).

GDC replaces global average pooling by a depthwise convolution whose kernel covers the whole
final feature map, so every spatial position gets its own learned weight per channel (GAP
weighs all positions equally, but the centre of a face matters more than its corners).
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalDepthwiseConv(nn.Module):
    """Depthwise ``k x k`` conv with ``k`` = the feature-map size: ``(B, C, k, k) -> (B, C, 1, 1)``.

    ``norm=True`` adds a ``BatchNorm2d`` after it (MobileFaceNets' "linear GDConv" + BN; a bias
    is then pointless, so ``bias`` defaults to ``not norm``). The input must be exactly
    ``kernel_size x kernel_size``: a larger map would silently give a spatial output.
    """

    def __init__(self, channels: int, kernel_size: int, *, norm: bool = False, bias: bool | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv2d(channels, channels, kernel_size, groups=channels, bias=(not norm) if bias is None else bias)
        self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.kernel_size, self.kernel_size):
            raise ValueError(
                f"GlobalDepthwiseConv expects a {self.kernel_size}x{self.kernel_size} feature map, got "
                f"{tuple(x.shape[-2:])}: feed the model its declared input size"
            )
        return self.norm(self.conv(x))


class GDCHead(nn.Module):
    """MobileFaceNets' embedding head: GDC + BN -> linear 1x1 conv -> BN -> flatten.

    ``(B, C, k, k) -> (B, embedding_dim)``.
    """

    def __init__(self, in_channels: int, kernel_size: int, *, embedding_dim: int) -> None:
        super().__init__()
        self.gdc = GlobalDepthwiseConv(in_channels, kernel_size, norm=True)
        self.linear = nn.Conv2d(in_channels, embedding_dim, 1, bias=False)
        self.norm = nn.BatchNorm2d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(self.gdc(x))).flatten(1)
