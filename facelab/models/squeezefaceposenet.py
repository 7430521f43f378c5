"""SqueezeFacePoseNet (Alonso-Fernandez et al., "SqueezeFacePoseNet: Lightweight Face Verification
Across Different Poses for Mobile Platforms"), Section 3 and Table 2, with the variants of Table 1.

SqueezeNet 1.0 (Iandola et al. 2016) adapted to ``113 x 113 x 3`` faces: conv1 has 64 filters of
3x3 at stride 1 (SqueezeNet: 96 filters of 7x7 at stride 2), followed by fire2-fire9, dropout 50%,
conv10 with 1000 1x1 filters and global average pooling, which gives the 1000-d face descriptor.
For identification training a head of batch-norm, dropout 50% and a fully connected layer over the
``C`` training classes follows (the softmax is in the loss). ReLU follows every conv; all
max-pools are 3x3 / 2.

Variants (Table 1):

- ``+GDC``: global depthwise convolution (a 13x13 depthwise conv, MobileFaceNets) instead of GAP.
- ``+DWC``: every 3x3 convolution (conv1 and the expand-3x3 of each fire) is a depthwise
  separable convolution as the paper's Section 2 defines it (depthwise 3x3, then pointwise 1x1).
- ``+DWC+GDC``: both.

Interface (as in timm): ``forward_features(x)`` -> ``(B, 1000)`` descriptor, ``forward_head(d)``
-> ``(B, C)`` logits (the descriptor itself when ``num_classes=0``), ``forward(x)`` = both.

Deviations and choices the paper leaves open:

- Max-pools use floor rounding (PyTorch's default); that is what gives Table 2's 56/27/13 sizes
  (SqueezeNet's Caffe ceil rounding would give 28 and 14 after the second and third pool).
- conv1 uses padding 1 so that its output stays 113 x 113 as in Table 2.
- GDC is a depthwise 13x13 conv with a bias and no batch-norm of its own (batchnorm10 of the
  training head follows it); that is 170,000 parameters, which matches Table 1's 1.24M -> 1.40M.
- In the DWC variant the depthwise conv has no bias and nothing between it and the pointwise
  conv (SqueezeNet has no batch-norm); the ReLU follows the pointwise conv as it followed the 3x3.
  This has 0.746M parameters, not the paper's 0.69M; the 0.69M is reproduced by a depthwise-only
  expand (a grouped 3x3 conv with ``expand3x3 / squeeze`` filters per squeeze channel and no
  pointwise conv), which is not what Section 2 calls depthwise separable
  (see ``tests/test_squeezefaceposenet.py``).
- Initialisation follows torchvision's SqueezeNet (Kaiming-uniform convs, conv10 ~ N(0, 0.01));
  GDC starts equal to GAP (all weights 1/169). The paper starts from ImageNet weights, which
  are not available offline.

Parameter counts (Table 1 "Parameters") are of the trunk up to and including conv10 (and GDC):
the training head (batch-norm + FC over the classes) is not counted, as its size depends on the
training set.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from facelab.layers import DepthwiseSeparableConv, Fire, GlobalDepthwiseConv
from facelab.registry import register_model

INPUT_SIZE = 113
DESCRIPTOR_DIM = 1000
#: Spatial size of conv10's output for a 113x113 input: GDC's kernel.
FINAL_MAP_SIZE = 13

# Table 2, rows in order. Fire rows: (name, squeeze 1x1, expand 1x1, expand 3x3).
# Other rows: (name, kind); conv1 has 64 3x3 filters, conv10 1000 1x1 filters.
#   layer        #1x1 squeeze  #1x1 expand  #3x3 expand    output (Table 2)
TRUNK_TABLE: tuple[tuple, ...] = (
    ("conv1", "conv3x3"),                                  # 113^2 x 64
    ("maxpool1", "maxpool"),                               # 56^2 x 64
    ("fire2", 16, 64, 64),                                 # 56^2 x 128
    ("fire3", 16, 64, 64),                                 # 56^2 x 128
    ("fire4", 32, 128, 128),                               # 56^2 x 256
    ("maxpool4", "maxpool"),                               # 27^2 x 256
    ("fire5", 32, 128, 128),                               # 27^2 x 256
    ("fire6", 48, 192, 192),                               # 27^2 x 384
    ("fire7", 48, 192, 192),                               # 27^2 x 384
    ("fire8", 64, 256, 256),                               # 27^2 x 512
    ("maxpool8", "maxpool"),                               # 13^2 x 512
    ("fire9", 64, 256, 256),                               # 13^2 x 512
    ("dropout9", "dropout"),                               # 13^2 x 512
    ("conv10", "conv1x1"),                                 # 13^2 x 1000
)
CONV1_FILTERS = 64
DROPOUT = 0.5


class SqueezeFacePoseNet(nn.Module):
    """SqueezeFacePoseNet and its +GDC / +DWC variants.

    Input ``(B, 3, 113, 113)`` float images; ``forward_features`` gives the ``(B, 1000)``
    descriptor (non-negative with GAP, since conv10 is followed by ReLU). The GDC variants
    need exactly 113x113 (their 13x13 kernel must cover conv10's map); the GAP ones accept any
    size from 17x17 up.

    Named children mirror Table 2: ``features`` (conv1 ... conv10), then ``averagepool10`` or
    ``gdc10``, then ``batchnorm10``, ``dropout10``, ``fc`` (the last three only when
    ``num_classes > 0``).
    """

    def __init__(
        self,
        *,
        num_classes: int = 0,
        gdc: bool = False,
        depthwise_separable: bool = False,
        dropout: float = DROPOUT,
        head_dropout: float = DROPOUT,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        self.num_features = DESCRIPTOR_DIM
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)
        self.gdc = gdc
        self.depthwise_separable = depthwise_separable

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for row in TRUNK_TABLE:
            name = row[0]
            if row[1] == "conv3x3":
                conv = (
                    DepthwiseSeparableConv(channels, CONV1_FILTERS, kernel_size=3, padding=1)
                    if depthwise_separable
                    else nn.Conv2d(channels, CONV1_FILTERS, 3, padding=1)
                )
                layers[name] = nn.Sequential(OrderedDict(conv=conv, act=nn.ReLU(inplace=True)))
                channels = CONV1_FILTERS
            elif row[1] == "maxpool":
                layers[name] = nn.MaxPool2d(3, stride=2)
            elif row[1] == "dropout":
                layers[name] = nn.Dropout(dropout)
            elif row[1] == "conv1x1":
                layers[name] = nn.Sequential(
                    OrderedDict(conv=nn.Conv2d(channels, DESCRIPTOR_DIM, 1), act=nn.ReLU(inplace=True))
                )
                channels = DESCRIPTOR_DIM
            else:
                _, squeeze, expand1x1, expand3x3 = row
                fire = Fire(channels, squeeze, expand1x1, expand3x3, depthwise_separable=depthwise_separable)
                layers[name] = fire
                channels = fire.out_channels
        self.features = nn.Sequential(layers)

        if gdc:
            self.gdc10: nn.Module = GlobalDepthwiseConv(DESCRIPTOR_DIM, FINAL_MAP_SIZE, bias=True)
        else:
            self.averagepool10 = nn.AdaptiveAvgPool2d(1)
        if num_classes > 0:
            self.batchnorm10 = nn.BatchNorm1d(DESCRIPTOR_DIM)
            self.dropout10 = nn.Dropout(head_dropout)
            self.fc = nn.Linear(DESCRIPTOR_DIM, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # As torchvision's SqueezeNet: the final conv starts small so that early logits are tame.
        nn.init.normal_(self.features.conv10.conv.weight, mean=0.0, std=0.01)
        if self.gdc:
            # GDC starts as GAP (equal weights 1/k^2) and learns from there where to look.
            nn.init.constant_(self.gdc10.conv.weight, 1.0 / FINAL_MAP_SIZE**2)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1000, 13, 13) -> (B, 1000, 1, 1)`` by GAP or GDC."""
        return self.gdc10(x) if self.gdc else self.averagepool10(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 113, 113)`` images -> ``(B, 1000)`` descriptors (the paper's GAP output)."""
        return self.pool(self.features(x)).flatten(1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1000)`` descriptors -> ``(B, num_classes)`` logits (identity when ``num_classes=0``)."""
        if self.num_classes == 0:
            return x
        return self.fc(self.dropout10(self.batchnorm10(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def count_parameters(self) -> int:
        """Parameters as Table 1 counts them: the trunk and pooling, without the training head."""
        head = {id(p) for name in ("batchnorm10", "fc") if hasattr(self, name) for p in getattr(self, name).parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in head)


@register_model
def squeezefaceposenet(*, num_classes: int = 0) -> SqueezeFacePoseNet:
    """SqueezeFacePoseNet of Table 2 (GAP, standard 3x3 convs)."""
    return SqueezeFacePoseNet(num_classes=num_classes)


@register_model
def squeezefaceposenet_gdc(*, num_classes: int = 0) -> SqueezeFacePoseNet:
    """SqueezeFacePoseNet+GDC: global depthwise convolution instead of GAP."""
    return SqueezeFacePoseNet(num_classes=num_classes, gdc=True)


@register_model
def squeezefaceposenet_dwc(*, num_classes: int = 0) -> SqueezeFacePoseNet:
    """SqueezeFacePoseNet+DWC: depthwise separable convolution in every 3x3 filter."""
    return SqueezeFacePoseNet(num_classes=num_classes, depthwise_separable=True)


@register_model
def squeezefaceposenet_dwc_gdc(*, num_classes: int = 0) -> SqueezeFacePoseNet:
    """SqueezeFacePoseNet+DWC+GDC."""
    return SqueezeFacePoseNet(num_classes=num_classes, gdc=True, depthwise_separable=True)
