"""LEFV's recognizer with multi-scale feature fusion (paper 000, Section 3.3, Fig. 3).

The paper: "our backbone network consists of only four blocks with 32, 64, 128, and 256 convolution
filters respectively. Each block has the same structure [...]. We extract feature mappings from the four
convolution blocks [...]. Then, all feature mappings are sampled through the max-pool. We integrated
feature maps of different scales with another convolution layer consisting of 960 convolution filters
(Block 5) [...]. Then we applied a Dropout layer and softmax layer with cross entropy loss".

What the paper leaves out, and what fills it (Fig. 2/3 did not survive the text copy):

* **Block structure**: two 3×3 convolutions (BatchNorm + Leaky ReLU, slope 0.1, as the detector) and a
  2×2 max-pool, :data:`BLOCKS`; the 112×112 aligned crop becomes 56, 28, 14, 7.
* **MSFF**: each block's output is max-pooled to Block 4's 7×7 (:class:`torch.nn.AdaptiveMaxPool2d`)
  and the four are concatenated: 32 + 64 + 128 + 256 = 480 channels. Without MSFF (``msff=False``,
  the ablation the paper promises and never reports) Block 5 sees Block 4's 256 channels only.
* **Block 5**: 960 filters; the kernel is not given: 1×1 (a fusion of the stacked scales; a 3×3 would add
  4M parameters to a network the paper calls shallow "with few parameters").
* **Head**: global average pooling of Block 5, dropout (p = 0.5, unspecified), then a linear 960 -> 128
  embedding with BatchNorm (the face descriptor compared by cosine; the paper does not say which
  layer it compares) and, for softmax training, a linear classifier (``num_classes``).

Input ``float[B, 3, 112, 112]`` in [-1, 1]; ``forward_features`` -> ``[B, 128]``.
"""

from __future__ import annotations

import torch
from torch import nn

from facelab.models.lefv_detector import ConvBNAct
from facelab.registry import register_model

INPUT_SIZE = 112
EMBEDDING_DIM = 128
#: ``(name, filters, convs)``: each block is ``convs`` 3×3 conv-BN-LeakyReLU layers then a 2×2 max-pool.
BLOCKS: tuple[tuple[str, int, int], ...] = (
    # name    filters convs    output (112 input)
    ("block1", 32, 2),       # 32 x 56 x 56
    ("block2", 64, 2),       # 64 x 28 x 28
    ("block3", 128, 2),      # 128 x 14 x 14
    ("block4", 256, 2),      # 256 x 7 x 7
)
BLOCK5_FILTERS = 960
DROPOUT = 0.5


class LEFVRecognizer(nn.Module):
    """``(B, 3, 112, 112) -> (B, num_classes)`` logits (``forward``) or ``(B, 128)`` embeddings
    (``forward_features``); ``msff``: fuse all four blocks (True) or Block 4 alone (False)."""

    def __init__(self, *, msff: bool = True, num_classes: int = 0, embedding_dim: int = EMBEDDING_DIM,
                 dropout: float = DROPOUT) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.msff = msff
        blocks, c_in = {}, 3
        for name, filters, convs in BLOCKS:
            layers = [ConvBNAct(c_in if i == 0 else filters, filters) for i in range(convs)]
            blocks[name] = nn.Sequential(*layers, nn.MaxPool2d(2))
            c_in = filters
        self.blocks = nn.ModuleDict(blocks)
        self.fused_channels = sum(f for _, f, _ in BLOCKS) if msff else BLOCKS[-1][1]
        side = INPUT_SIZE // 2 ** len(BLOCKS)
        self.scale_pool = nn.AdaptiveMaxPool2d(side)  # every block's map to Block 4's size
        self.block5 = ConvBNAct(self.fused_channels, BLOCK5_FILTERS, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(BLOCK5_FILTERS, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.num_features, self.num_classes = embedding_dim, num_classes
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)  # Section 4: Xavier initialisation
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def block_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four blocks' outputs, ``[B, 32, 56, 56] ... [B, 256, 7, 7]`` for a 112 input."""
        maps = []
        for block in self.blocks.values():
            x = block(x)
            maps.append(x)
        return maps

    def fused(self, x: torch.Tensor) -> torch.Tensor:
        """Block 5's input: ``[B, 480, 7, 7]`` with MSFF, ``[B, 256, 7, 7]`` without."""
        maps = self.block_maps(x)
        if not self.msff:
            return maps[-1]
        return torch.cat([self.scale_pool(m) for m in maps], dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112) -> (B, embedding_dim)``."""
        return self.bn(self.fc(self.dropout(self.pool(self.block5(self.fused(x))).flatten(1))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim) -> (B, num_classes)`` logits (identity when ``num_classes=0``)."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def lefv_recognizer(*, num_classes: int = 0, embedding_dim: int = EMBEDDING_DIM) -> LEFVRecognizer:
    """LEFV's recognizer with MSFF (Section 3.3)."""
    return LEFVRecognizer(msff=True, num_classes=num_classes, embedding_dim=embedding_dim)


@register_model
def lefv_recognizer_no_msff(*, num_classes: int = 0, embedding_dim: int = EMBEDDING_DIM) -> LEFVRecognizer:
    """LEFV's recognizer without MSFF: Block 5 on Block 4 alone (the paper's promised ablation)."""
    return LEFVRecognizer(msff=False, num_classes=num_classes, embedding_dim=embedding_dim)
