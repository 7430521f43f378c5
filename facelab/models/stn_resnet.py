"""The recognition network of Tang et al., "An End-to-End Face Recognition Method with Alignment
Learning" (Optik 2020), Section 3.1 and Table 1.

A residual network whose first 7x7 convolution is replaced by a 3x3 one. Table 1, literally:
four stages of 64 / 128 / 256 / 512 filters; each starts with one 3x3 convolution of stride 2
(the first of them is the 3x3 stem) followed by 2 / 4 / 8 / 2 residual units of two 3x3
convolutions; then dropout, a fully connected layer and batch-norm give the 512-d embedding
(trained with the ArcFace loss, :mod:`facelab.losses.margin`). That is 36 conv layers -- the
layout of SphereFace-36 (Liu et al. 2017, Table 2).

Choices the paper leaves open (each a keyword argument where it matters):

- Input size: not stated. We use 112 x 112 (ArcFace's crop; SphereFace used 112 x 96), which
  four stride-2 convolutions reduce to 7 x 7; a square crop keeps the similarity transform's
  single scale isotropic. ``input_size`` may be any multiple of 16.
- Normalisation and activation: not stated; ResNet's batch-norm after every conv and ReLU
  (residual unit: conv-BN-ReLU-conv-BN, add, ReLU; stage conv: conv-BN-ReLU).
- Dropout rate: not stated; 0.4, the value of insightface's dropout-FC-BN embedding head.
- Initialisation: torchvision's ResNet (Kaiming-normal convs, BN weight 1 and bias 0).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from facelab.layers import ConvNormAct

INPUT_SIZE = 112
EMBEDDING_DIM = 512
DROPOUT = 0.4
#: Total stride of the network: four stride-2 convolutions.
STRIDE = 16

# Table 1.   name     filters  residual units   ([3x3, filters] x1, S2 then [3x3; 3x3] x units)
STAGES: tuple[tuple[str, int, int], ...] = (
    ("conv1", 64, 2),
    ("conv2", 128, 4),
    ("conv3", 256, 8),
    ("conv4", 512, 2),
)


class ResidualUnit(nn.Module):
    """``x + BN(conv3x3(ReLU(BN(conv3x3(x)))))`` then ReLU; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, *, activation_layer: Callable[..., nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv_a = ConvNormAct(channels, channels, kernel_size=3, activation_layer=activation_layer)
        self.conv_b = ConvNormAct(channels, channels, kernel_size=3, activation_layer=None)
        self.act = activation_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv_b(self.conv_a(x)))


class RecognitionResNet(nn.Module):
    """Paper 002's Table 1 network: ``(B, 3, S, S)`` face -> ``(B, 512)`` embedding.

    ``forward_features`` is the embedding (the output of the final batch-norm), ``forward_head``
    a plain linear classifier over ``num_classes`` (identity when 0). For ArcFace training use
    ``num_classes=0`` and :class:`facelab.losses.ArcFaceHead`, which holds the class weights.

    Named children: ``conv1`` ... ``conv4`` (each ``down`` = the stride-2 conv, then ``unit1``,
    ``unit2``, ...), ``dropout``, ``fc1``, ``bn``, and ``classifier`` when ``num_classes > 0``.
    """

    def __init__(
        self,
        *,
        input_size: int = INPUT_SIZE,
        embedding_dim: int = EMBEDDING_DIM,
        dropout: float = DROPOUT,
        num_classes: int = 0,
        activation_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if input_size <= 0 or input_size % STRIDE:
            raise ValueError(f"input_size must be a positive multiple of {STRIDE}, got {input_size}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.input_size = (3, input_size, input_size)
        self.num_features = embedding_dim
        self.num_classes = num_classes
        channels = 3
        for name, filters, units in STAGES:
            stage: OrderedDict[str, nn.Module] = OrderedDict(
                down=ConvNormAct(channels, filters, kernel_size=3, stride=2, activation_layer=activation_layer)
            )
            for i in range(units):
                stage[f"unit{i + 1}"] = ResidualUnit(filters, activation_layer=activation_layer)
            self.add_module(name, nn.Sequential(stage))
            channels = filters
        final = input_size // STRIDE
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(channels * final * final, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, embedding_dim)`` embedding."""
        if x.shape[-2:] != self.input_size[1:]:
            raise ValueError(f"RecognitionResNet expects {self.input_size[1:]} inputs, got {tuple(x.shape[-2:])}")
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.bn(self.fc1(self.dropout(x.flatten(1))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim) -> (B, num_classes)`` logits (identity when ``num_classes=0``)."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
