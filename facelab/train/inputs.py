"""What a model sees: aligned 112x112 crops resized to the model's input and normalised.

The prepared datasets give ``float32[3, 112, 112]`` RGB in [0, 1] (:mod:`facelab.data.datasets`);
SqueezeFacePoseNet takes 113x113 and the ResNets 224x224 (paper 001, Table 1), so the crop is
resized bilinearly (``F.interpolate``, ``align_corners=False``, antialiased when shrinking) and
mapped to [-1, 1] with :data:`MEAN` / :data:`STD`.

Two paths give the same tensors:

* per sample: :class:`ModelInput` over :class:`facelab.data.datasets.AlignedFaces` (one image at a
  time: uint8 -> float, flip/shift with OpenCV, resize), collated by the DataLoader;
* per batch: :class:`PackedFaces` gathers a batch of crops from the packed ``uint8[N, 112, 112, 3]``
  array, flips and shifts it with one gather (:func:`facelab.data.augment.flip_shift_batch`, the
  same per-sample draws from ``default_rng([seed, epoch, index])``), converts and resizes the
  whole batch at once. Its ``__getitems__`` returns a :class:`Batch`, which the DataLoader passes
  through :func:`collate_batches` untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, default_collate

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


class Batch(NamedTuple):
    """A finished batch: ``images`` ``float32[B, 3, S, S]`` (model input), ``labels`` ``int64[B]``."""

    images: torch.Tensor
    labels: torch.Tensor


def collate_batches(batch):
    """DataLoader ``collate_fn``: a :class:`Batch` (from a dataset's ``__getitems__``) as it is,
    a list of samples through torch's ``default_collate``."""
    return batch if isinstance(batch, Batch) else default_collate(batch)


class PackedFaces(Dataset):
    """Batched model input from packed aligned crops: the fast twin of ``ModelInput(AlignedFaces(...))``.

    Args:
        images: ``uint8[M, H, W, 3]`` RGB crops (e.g. ``prepared.aligned``, a memory map).
        rows: positions in ``images`` of the N samples.
        labels: what the objective compares each sample with: ``int64[N]`` class labels,
            ``float[N, K]`` regression targets, or ``float[N, 2, K]`` targets per view (``[:, 0]``
            the crop's, ``[:, 1]`` its mirror's: teacher embeddings for distillation; a flipped
            sample gets its mirror's target).
        size: side of the model input (bilinear resize of the batch, as :func:`to_model_input`).
        augment: :class:`facelab.data.augment.FlipJitter` or None.
        seed: augmentation seed; sample ``i`` in epoch ``e`` draws from ``default_rng([seed, e, i])``.
        normalize: map [0, 1] to [-1, 1] (:data:`MEAN`, :data:`STD`); False gives [0, 1] pixels (the
            spatial transformer of paper 002 samples them with zeros outside the crop).

    ``dataset[i]`` is ``(float32[3, S, S], int label)`` like :class:`ModelInput`; ``dataset.__getitems__
    (indices)`` (what a DataLoader calls) is the :class:`Batch` of those samples, equal to stacking
    the items. The batch is gathered in sorted row order (sequential reads of a memory map) and
    put back in the requested order.
    """

    def __init__(self, images: np.ndarray, rows: Sequence[int], labels: Sequence[int], *, size: int,
                 augment=None, seed: int = 0, normalize: bool = True):
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        labels = np.asarray(labels)
        if labels.ndim == 1 and (not np.issubdtype(labels.dtype, np.floating) or np.all(labels == np.round(labels))):
            self.labels = labels.astype(np.int64)  # class labels (whole numbers, whatever their dtype)
        elif labels.ndim == 2 or (labels.ndim == 3 and labels.shape[1] == 2):
            self.labels = labels.astype(np.float32)
        else:
            raise ValueError(f"labels must be int[N], float[N, K] or float[N, 2, K] (crop, mirror), got "
                             f"{labels.dtype}{list(labels.shape)}")
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8[M, H, W, 3] (got {images.dtype}{list(images.shape)})")
        if len(self.rows) != len(self.labels):
            raise ValueError(f"{len(self.rows)} rows but {len(self.labels)} labels")
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(images)):
            raise ValueError(f"rows must lie in [0, {len(images)}) (got {self.rows.min()}..{self.rows.max()})")
        self.size, self.augment, self.seed, self._epoch = int(size), augment, int(seed), 0
        self.normalize = bool(normalize)
        self._faces = None

    @classmethod
    def from_faces(cls, faces, size: int) -> PackedFaces:
        """The batched path over the same crops, labels, augmentation and seed as an ``AlignedFaces``.

        The epoch is shared with ``faces``: ``faces.set_epoch(e)`` (e.g. in an ``on_epoch``
        callback written for the per-sample path) and ``set_epoch(e)`` here do the same.
        """
        out = cls(faces.prepared.aligned, faces.rows, faces.labels, size=size, augment=faces.augment,
                  seed=faces.seed)
        out.classes = faces.classes
        out._faces = faces
        return out

    @property
    def epoch(self) -> int:
        return self._faces.epoch if self._faces is not None else self._epoch

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if self._faces is not None:
            self._faces.set_epoch(epoch)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")
        crops = np.empty((len(idx), *self.images.shape[1:]), dtype=np.uint8)
        crops[order] = self.images[rows[order]]
        flip = np.zeros(len(idx), dtype=bool)
        if self.augment is not None:
            from facelab.data.augment import flip_shift_batch

            flip, dx, dy = self.augment.draw_batch(self.seed, self.epoch, idx)
            crops = flip_shift_batch(crops, flip, dx, dy)
        # NCHW as uint8 (numpy's transpose copy of bytes is ~10x cheaper than torch's strided float copy).
        x = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2))).float().div_(255.0)
        labels = self.labels[idx, flip.astype(np.int64)] if self.labels.ndim == 3 else self.labels[idx]
        x = to_model_input(x, self.size)
        return Batch(x if self.normalize else x * STD + MEAN, torch.from_numpy(np.ascontiguousarray(labels)))

    def __getitem__(self, i: int):
        images, labels = self.__getitems__([i])
        return images[0], (int(labels[0]) if self.labels.ndim == 1 else labels[0])
