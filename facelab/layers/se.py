"""Squeeze-and-excitation block (Hu et al., CVPR 2018, Fig. 3)."""

from __future__ import annotations

from torchvision.ops import SqueezeExcitation


class SqueezeExcite(SqueezeExcitation):
    """Channel gate ``x * sigmoid(fc2(relu(fc1(GAP(x)))))``; ``(B, C, H, W) -> (B, C, H, W)``.

    torchvision's :class:`~torchvision.ops.SqueezeExcitation` (the two FC layers are 1x1 convs
    with bias) with the bottleneck width given as SENet's reduction ratio ``r``:
    ``C -> C // r -> C``. SENet uses ``r = 16``.
    """

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        if channels % reduction:
            raise ValueError(f"SqueezeExcite: channels={channels} is not divisible by reduction={reduction}")
        super().__init__(channels, channels // reduction)
