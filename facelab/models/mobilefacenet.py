"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification
on Mobile Devices", CCBR 2018, arXiv:1804.07573), Table 1 and Section 3.

MobileNetV2's inverted-residual bottlenecks (Sandler et al. 2018) made for faces:

- fast downsampling: a 3x3 conv at stride 2 (64 channels) and a 3x3 depthwise conv on the
  112x112 input, then bottlenecks with small expansion factors ``t`` (2 and 4, MobileNetV2: 6);
- PReLU instead of ReLU after every non-linear conv (channel-wise slopes here; the paper does not
  say shared or per channel), batch-norm after every conv; the last 1x1 conv of each bottleneck is
  linear (no activation), with a shortcut when its stride is 1 and its input and output widths
  match (MobileNetV2's rule);
- the embedding head: a 1x1 conv to 512 channels, a *linear global depthwise convolution* 7x7
  (GDC, :class:`facelab.layers.GDCHead`: one learned weight per position and channel instead of
  global average pooling) and a linear 1x1 conv to the 128-d embedding, each followed by
  batch-norm.

Table 1 gives 0.99M parameters and 221M MAdds at 112x112; ``tests/test_mobilefacenet.py`` checks
both against the instantiated model: 221.0M MAdds (FlopCounterMode FLOPs / 2, convolutions and the
classifier only), and 1,003,136 parameters, 1.3% above 0.99M: 976,000 convolution weights, 19,584
batch-norm scales and shifts and 7,552 PReLU slopes (the paper does not say what it counts;
convolutions + batch-norm, 995,584, is the count that reads "0.99M"). Weights are random: no pretrained
MobileFaceNet ships offline (the book pretrains one by distillation from SFace).

Interface (as the book's other models): ``forward_features(x)`` -> ``(B, 128)`` embedding,
``forward_head(e)`` -> ``(B, num_classes)`` logits of a linear classifier (the embedding itself when
``num_classes=0``). Input ``(B, 3, 112, 112)`` RGB normalised to [-1, 1]
(:func:`facelab.train.inputs.to_model_input`); 112x112 exactly, as the GDC kernel covers the 7x7 map.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from facelab.layers import ConvBNPReLU, GDCHead
from facelab.registry import register_model

INPUT_SIZE = 112
EMBEDDING_DIM = 128
STEM_CHANNELS = 64
#: Width of the 1x1 conv before the GDC head (Table 1, "conv1x1, 512").
HEAD_CHANNELS = 512
#: Spatial side of the last feature map for a 112x112 input (GDC's kernel).
FINAL_MAP_SIZE = 7

# Table 1, the bottleneck rows: expansion factor t, output channels c, repeats n, stride s of the
# first repeat (the others have stride 1).
#   t, c,   n, s        input -> output
BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),    # 56^2 x 64  -> 28^2 x 64
    (4, 128, 1, 2),   # 28^2 x 64  -> 14^2 x 128
    (2, 128, 6, 1),   # 14^2 x 128 -> 14^2 x 128
    (4, 128, 1, 2),   # 14^2 x 128 -> 7^2 x 128
    (2, 128, 2, 1),   # 7^2 x 128  -> 7^2 x 128
)


class Bottleneck(nn.Module):
    """MobileNetV2's inverted residual with PReLU: ``(B, in, H, W) -> (B, out, H / stride, W / stride)``.

    1x1 expansion to ``in * t`` channels (BN, PReLU) -> 3x3 depthwise at ``stride`` (BN, PReLU) ->
    linear 1x1 projection to ``out`` (BN, no activation); plus the input when ``stride == 1`` and
    ``in == out``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.expand = ConvBNPReLU(in_channels, hidden, kernel_size=1)
        self.depthwise = ConvBNPReLU(hidden, hidden, kernel_size=3, stride=stride, groups=hidden)
        self.project = ConvBNPReLU(hidden, out_channels, kernel_size=1, prelu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_shortcut else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet of Table 1: ``(B, 3, 112, 112)`` -> ``(B, 128)`` embedding.

    Named children in Table 1's order: ``features`` (``conv1``, ``dwconv1``, ``bottleneck1`` ...
    ``bottleneck5``, each a Sequential of its ``n`` repeats, ``conv2``), ``head`` (GDC 7x7 + BN,
    linear 1x1 + BN), ``classifier`` (only when ``num_classes > 0``).
    """

    def __init__(self, *, num_classes: int = 0, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        self.num_features = embedding_dim
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv1"] = ConvBNPReLU(3, STEM_CHANNELS, kernel_size=3, stride=2)
        layers["dwconv1"] = ConvBNPReLU(STEM_CHANNELS, STEM_CHANNELS, kernel_size=3, groups=STEM_CHANNELS)
        channels = STEM_CHANNELS
        for i, (t, c, n, s) in enumerate(BOTTLENECKS, start=1):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(channels, c, stride=s if j == 0 else 1, expansion=t))
                channels = c
            layers[f"bottleneck{i}"] = nn.Sequential(*blocks)
        layers["conv2"] = ConvBNPReLU(channels, HEAD_CHANNELS, kernel_size=1)
        self.features = nn.Sequential(layers)
        self.head = GDCHead(HEAD_CHANNELS, FINAL_MAP_SIZE, embedding_dim=embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` -> ``(B, 128)`` embedding (not normalised)."""
        return self.head(self.features(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 128)`` embeddings -> ``(B, num_classes)`` logits (identity when ``num_classes=0``)."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def mobilefacenet(*, num_classes: int = 0) -> MobileFaceNet:
    """MobileFaceNet of Chen et al. 2018, Table 1 (128-d embedding, random weights)."""
    return MobileFaceNet(num_classes=num_classes)
