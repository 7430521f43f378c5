"""ResNet-50 and SE-ResNet-50: the large baselines of SqueezeFacePoseNet's Table 1 (ResNet50ft and
SENet50ft of VGGFace2, Cao et al. 2018; the backbones of He et al. 2016 and Hu et al. 2018).

Both take ``224 x 224 x 3`` faces and end in global average pooling, whose 2048-d output is the
face descriptor; a fully connected layer over the training classes follows for training.

Built from torchvision's :class:`~torchvision.models.ResNet` (Bottleneck blocks, layers 3-4-6-3).
SE-ResNet-50 adds a squeeze-and-excitation gate (reduction 16) to every bottleneck, on the
residual branch after its last batch-norm and before the addition (SENet, Fig. 3): here by
replacing ``block.bn3`` with ``Sequential(bn3, SqueezeExcite)``, which keeps torchvision's forward.

Deviations:

- torchvision's bottleneck strides in the 3x3 conv ("ResNet v1.5"); the Caffe/MatConvNet models
  of VGGFace2 stride in the first 1x1 conv. Parameter counts are identical; FLOPs differ slightly.
- Weights are random (torchvision initialisation); the paper uses the VGGFace2 authors' trained
  models, which are not available offline.

Parameter counts: the paper's 25.6M and 28.1M are the ImageNet architectures, i.e. with a
1000-class FC layer (``num_classes=1000``: 25,557,032 and 28,088,024 here). The VGGFace2 models
it evaluates have an 8631-class FC (41.2M and 43.8M parameters).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from facelab.layers import SqueezeExcite
from facelab.registry import register_model

INPUT_SIZE = 224
DESCRIPTOR_DIM = 2048
#: Bottleneck blocks per stage of the 50-layer ResNet (He et al. 2016, Table 1).
RESNET50_LAYERS = (3, 4, 6, 3)
SE_REDUCTION = 16


class ResNetBaseline(ResNet):
    """torchvision ResNet-50 (optionally with SE gates) with the facelab model interface.

    ``forward_features``: ``(B, 3, 224, 224) -> (B, 2048)`` GAP descriptor; ``forward_head``:
    ``(B, 2048) -> (B, num_classes)`` (identity when ``num_classes=0``). Any input size from
    32x32 up works (global pooling); 224x224 is the paper's.
    """

    def __init__(self, *, num_classes: int = 0, squeeze_excite: bool = False) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        super().__init__(Bottleneck, list(RESNET50_LAYERS), num_classes=max(num_classes, 1))
        self.num_classes = num_classes
        self.num_features = DESCRIPTOR_DIM
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)
        self.squeeze_excite = squeeze_excite
        if num_classes == 0:
            self.fc = nn.Identity()
        if squeeze_excite:
            for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
                for block in stage:
                    block.bn3 = nn.Sequential(block.bn3, SqueezeExcite(block.bn3.num_features, reduction=SE_REDUCTION))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, 2048)``: the output of global average pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2048) -> (B, num_classes)`` logits, or the descriptor when ``num_classes=0``."""
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def resnet50(*, num_classes: int = 0) -> ResNetBaseline:
    """ResNet-50 (ResNet50ft of SqueezeFacePoseNet's Table 1)."""
    return ResNetBaseline(num_classes=num_classes)


@register_model
def se_resnet50(*, num_classes: int = 0) -> ResNetBaseline:
    """SE-ResNet-50 (SENet50ft of SqueezeFacePoseNet's Table 1)."""
    return ResNetBaseline(num_classes=num_classes, squeeze_excite=True)
