"""What a model sees: aligned 112x112 crops resized to the model's input and normalised.

The prepared datasets give ``float32[3, 112, 112]`` RGB in [0, 1] (:mod:`facelab.data.datasets`);
SqueezeFacePoseNet takes 113x113 and the ResNets 224x224 (paper 001, Table 1), so the crop is
resized bilinearly (``F.interpolate``, ``align_corners=False``, antialiased when shrinking) and
mapped to [-1, 1] with :data:`MEAN` / :data:`STD`.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

#: Per-channel normalisation: (x - 0.5) / 0.5 maps [0, 1] to [-1, 1] (no ImageNet statistics:
#: every model here is trained from scratch).
MEAN = 0.5
STD = 0.5


def to_model_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """``float[B, 3, H, W]`` in [0, 1] -> ``float[B, 3, size, size]`` normalised."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=size < images.shape[-1])
    return (images - MEAN) / STD


class ModelInput(Dataset):
    """Wraps a dataset of ``(float[3, H, W] in [0, 1], label, ...)`` items; item 0 becomes the model input."""

    def __init__(self, dataset: Dataset, size: int):
        self.dataset, self.size = dataset, int(size)

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        return (to_model_input(item[0][None], self.size)[0], *item[1:])
