"""MobileNet (V1) for ImageNet (Howard et al., "MobileNets", arXiv 1704.04861, Table 1), for counting only.

LEFV (paper 000, Section 2.2) argues from two MobileNet facts: VGG-16 has "32 times" MobileNet's
parameters, and 1×1 convolutions are "94.86%" of MobileNet's computation (MobileNets' Table 2 prints
95% of the multiply-adds and 75% of the parameters). torchvision has no MobileNet V1, so this is its
Table 1, literally: a 3×3 stem at stride 2 and 13 depthwise-separable pairs (BatchNorm + ReLU after
each convolution), global average pooling and a 1000-way classifier, at width multiplier 1 and
224×224. It is not registered (not a face model, never trained here); the chapter's Table 1
experiment builds it to measure those two claims. SFace's network (:mod:`facelab.models.sface`) is
the same body at stride 1 for 112×112 faces.
"""

from __future__ import annotations

from torch import nn

#: MobileNets Table 1 after the stem: (output channels, stride of the depthwise conv) per separable pair.
SEPARABLE_PAIRS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
STEM_CHANNELS = 32
INPUT_SIZE = 224


def _cbr(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    """``(B, 3, 224, 224) -> (B, num_classes)``: MobileNets' Table 1 at width 1."""

    def __init__(self, *, num_classes: int = 1000) -> None:
        super().__init__()
        layers, c = [_cbr(3, STEM_CHANNELS, 3, 2)], STEM_CHANNELS
        for c_out, stride in SEPARABLE_PAIRS:
            layers += [_cbr(c, c, 3, stride, groups=c), _cbr(c, c_out, 1, 1)]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))
