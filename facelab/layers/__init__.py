"""Building blocks shared by the paper models, one definition each.

- :class:`ConvNormAct` -- Conv2d -> BatchNorm2d -> activation (torchvision's block).
- :class:`ConvBNPReLU` -- Conv2d -> BatchNorm2d -> channel-wise PReLU (MobileFaceNets, SFace).
- :class:`DepthwiseSeparableConv` -- depthwise kxk conv followed by a pointwise 1x1 conv.
- :class:`Fire` -- SqueezeNet's fire module (squeeze 1x1, expand 1x1 + 3x3, concatenated).
- :class:`GlobalDepthwiseConv` / :class:`GDCHead` -- MobileFaceNets' global depthwise convolution.
- :class:`SqueezeExcite` -- squeeze-and-excitation channel gate (torchvision's block).
"""

from facelab.layers.conv import ConvBNPReLU, ConvNormAct, DepthwiseSeparableConv
from facelab.layers.fire import Fire
from facelab.layers.gdc import GDCHead, GlobalDepthwiseConv
from facelab.layers.se import SqueezeExcite

__all__ = ["ConvBNPReLU", "ConvNormAct", "DepthwiseSeparableConv", "Fire", "GDCHead", "GlobalDepthwiseConv", "SqueezeExcite"]
