"""PyTorch datasets over prepared data: aligned crops, loose crops, detection scenes.

Every dataset returns ``float32`` images ``[3, H, W]`` in [0, 1] (RGB; normalisation is the
model's business) and takes an explicit ``seed``; augmentation of sample ``i`` in epoch ``e``
uses ``numpy.random.default_rng([seed, e, i])`` (see :mod:`facelab.data.augment`), so two runs,
or two DataLoaders with different worker counts, see the same samples. Call ``set_epoch`` at
the start of each epoch (with DataLoader workers, before the iterator is created).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from facelab.data.augment import FlipJitter, hflip, sample_rng
from facelab.data.imageio import ImageReadError, read_rgb
from facelab.data.manifest import PreparedSet, landmarks_of
from facelab.errors import MissingDataError


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``uint8[H, W, 3]`` -> ``float32[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def _read_crop(path: Path, problem: str) -> np.ndarray:
    """``uint8[H, W, 3]`` RGB of a crop written by prepare; a missing or damaged one names the fix."""
    try:
        return read_rgb(path)
    except ImageReadError:
        raise MissingDataError(f"{path} {problem}: rerun `python -m facelab data prepare`") from None


def identity_labels(identities: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Contiguous labels 0..C-1 for identity strings (sorted order); ``(int64[N], classes)``."""
    classes = sorted(set(identities))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[i] for i in identities], dtype=np.int64), classes


class _Epoch:
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return sample_rng(self.seed, self.epoch, index)


class AlignedFaces(_Epoch, Dataset):
    """Aligned 112x112 crops from the packed array of a prepared dataset.

    Args:
        prepared: :func:`facelab.data.manifest.load_prepared` output.
        rows: positions in ``prepared.manifest`` to use (None: all accepted images).
        augment: e.g. :class:`FlipJitter` (None: no augmentation).
        seed: augmentation seed.

    Item: ``(float32[3, 112, 112], int64 label)``; labels are contiguous over the used rows
    (``self.classes[label]`` is the identity).
    """

    def __init__(self, prepared: PreparedSet, rows: Sequence[int] | None = None, *, augment: FlipJitter | None = None,
                 seed: int = 0):
        self.prepared = prepared
        self.rows = np.arange(len(prepared.manifest)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.labels, self.classes = identity_labels(prepared.manifest["identity"].to_numpy()[self.rows].tolist())
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image = np.asarray(self.prepared.aligned[self.rows[i]])
        if self.augment is not None:
            image = self.augment(image, self.rng(i))
        return to_tensor(image), int(self.labels[i])


class LooseFaces(_Epoch, Dataset):
    """Loose (unaligned) square crops with their 5 landmarks, for alignment learning.

    Item: ``(float32[3, S, S], int64 label, float32[5, 2] landmarks in crop pixels)``.
    """

    def __init__(self, prepared: PreparedSet, rows: Sequence[int] | None = None, *, augment: FlipJitter | None = None,
                 seed: int = 0):
        self.prepared = prepared
        self.rows = np.arange(len(prepared.manifest)) if rows is None else np.asarray(rows, dtype=np.int64)
        df = prepared.manifest.iloc[self.rows]
        self.paths = [prepared.folder / p for p in df["loose"]]
        self.landmarks = landmarks_of(df, "loose")
        self.labels, self.classes = identity_labels(df["identity"].tolist())
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image, lms = _read_crop(self.paths[i], "is missing or damaged"), self.landmarks[i]
        if self.augment is not None:
            image, lms = self.augment(image, self.rng(i), lms)
        return to_tensor(image), int(self.labels[i]), torch.from_numpy(np.asarray(lms, np.float32))


def detection_collate(batch):
    """Stack images (same size) and keep per-image targets as a list."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


class DetectionDataset(_Epoch, Dataset):
    """Base of the detection datasets: ``(image float32[3, H, W], target)`` with target keys
    ``boxes`` ``float32[N, 4]`` xyxy, ``landmarks`` ``float32[N, 5, 2]`` (NaN where unknown) and
    ``image_id``. ``flip_p``: probability of a horizontal flip (boxes and landmarks follow)."""

    flip_p: float = 0.0

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        raise NotImplementedError

    def __getitem__(self, i: int):
        image, boxes, lms, extra = self._sample(i)
        if self.flip_p and self.rng(i).random() < self.flip_p:
            image, lms, boxes = hflip(image, lms, boxes)
        target = {"boxes": torch.from_numpy(np.asarray(boxes, np.float32).reshape(-1, 4)),
                  "landmarks": torch.from_numpy(np.asarray(lms, np.float32).reshape(-1, 5, 2)), "image_id": i}
        target.update({k: torch.as_tensor(v) for k, v in extra.items()})
        return to_tensor(image), target


class WiderFaceScenes(DetectionDataset):
    """The real WIDER FACE validation images with their ground truth (no landmarks: NaN).

    Extra target keys: ``blur`` (0 clear, 1 normal, 2 heavy), ``invalid``. Images keep their size
    (use a batch size of 1 or resize in the model's transform).
    """

    def __init__(self, data_root: str | os.PathLike | None = None, *, flip_p: float = 0.0, seed: int = 0):
        from facelab.data import widerface

        self.gt = widerface.read_gt(data_root)
        self.root = widerface.images_dir(data_root)
        self.flip_p, self.seed = flip_p, seed

    def __len__(self) -> int:
        return len(self.gt)

    def path(self, i: int) -> Path:
        return self.root / self.gt[i].path

    def _sample(self, i: int):
        g = self.gt[i]
        lms = np.full((len(g), 5, 2), np.nan, np.float32)
        return read_rgb(self.path(i)), g.boxes, lms, {"blur": g.blur.astype(np.int64), "invalid": g.invalid}


def face_sources(prepared: PreparedSet, rows: Sequence[int] | None = None):
    """:class:`facelab.data.scenes.FaceSource` s from the loose crops of a prepared dataset."""
    from facelab.data.align import warp_points
    from facelab.data.manifest import BOX_COLUMNS, LOOSE_BOX_COLUMNS
    from facelab.data.scenes import FaceSource

    df = prepared.manifest if rows is None else prepared.manifest.iloc[list(rows)]
    lms = landmarks_of(df, "loose")
    out = []
    for k, (_, r) in enumerate(df.iterrows()):
        rgb = _read_crop(prepared.folder / r["loose"], "is missing")
        size = rgb.shape[1]
        lx1, ly1, lx2, ly2 = (float(r[c]) for c in LOOSE_BOX_COLUMNS)
        # The loose crop's image->crop map (see facelab.data.align.loose_crop).
        sx, sy = size / (lx2 - lx1), size / (ly2 - ly1)
        m = np.array([[sx, 0.0, (0.5 - lx1) * sx - 0.5], [0.0, sy, (0.5 - ly1) * sy - 0.5]])
        box = warp_points(np.array([float(r[c]) for c in BOX_COLUMNS]).reshape(2, 2), m).reshape(4)
        out.append(FaceSource(rgb, box.astype(np.float32), lms[k]))
    return out


class CompositeScenes(DetectionDataset):
    """Synthetic detection scenes (:func:`facelab.data.scenes.compose_scene`), scene ``i`` drawn from
    ``default_rng([seed, i])`` (the same every epoch; flips, if any, vary by epoch)."""

    def __init__(self, faces: list, backgrounds: list[np.ndarray], n_scenes: int, *, seed: int = 0,
                 flip_p: float = 0.0, **scene_kwargs):
        self.faces, self.backgrounds, self.n = faces, backgrounds, int(n_scenes)
        self.seed, self.flip_p, self.kwargs = seed, flip_p, scene_kwargs

    def __len__(self) -> int:
        return self.n

    def scene(self, i: int):
        from facelab.data.scenes import compose_scene

        return compose_scene(self.faces, self.backgrounds, np.random.default_rng([int(self.seed), int(i)]),
                             **self.kwargs)

    def _sample(self, i: int):
        s = self.scene(i)
        return s.image, s.boxes, s.landmarks, {}


@dataclass
class PoolCrops:
    """Aligned crops of a training pool drawn from several prepared sets, in one array.

    Attributes:
        images: ``uint8[N, 112, 112, 3]`` RGB crops (copied out of the prepared memory maps).
        dataset: ``str[N]`` the prepared set each crop comes from; ``row``: ``int64[N]`` its row there;
        identity: ``str[N]`` ``"<dataset>:<identity>"`` (unique across datasets).
    """

    images: np.ndarray
    dataset: np.ndarray
    row: np.ndarray
    identity: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def rows_of(self, dataset: str) -> np.ndarray:
        """Rows (in that prepared set) of the crops taken from ``dataset``, in pool order."""
        return self.row[self.dataset == dataset]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{dataset: {"images": n, "identities": k}}``."""
        return {d: {"images": int((self.dataset == d).sum()),
                    "identities": len(set(self.identity[self.dataset == d]))} for d in dict.fromkeys(self.dataset)}


def pool_crops(prepared: dict[str, PreparedSet], identities: dict[str, Sequence[str]],
               max_images: int | None = None, seed: int = 0) -> PoolCrops:
    """The accepted crops of ``identities[name]`` in each prepared set ``prepared[name]`` (manifest order);
    with ``max_images``, a seeded random subset of that many (kept in pool order)."""
    datasets, rows, idents = [], [], []
    for name, ids in identities.items():
        m = prepared[name].manifest
        keep = np.flatnonzero(m["identity"].astype(str).isin(set(map(str, ids))).to_numpy())
        datasets += [name] * len(keep)
        rows.append(keep)
        idents += [f"{name}:{i}" for i in m["identity"].astype(str).to_numpy()[keep]]
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    dataset, identity = np.asarray(datasets), np.asarray(idents)
    if max_images is not None and len(row) > max_images:
        pick = np.sort(np.random.default_rng(seed).permutation(len(row))[:max_images])
        row, dataset, identity = row[pick], dataset[pick], identity[pick]
    images = np.empty((len(row), *next(iter(prepared.values())).aligned.shape[1:]), np.uint8)
    for name in dict.fromkeys(dataset):
        sel = np.flatnonzero(dataset == name)
        order = np.argsort(row[sel], kind="stable")  # sequential reads of the memory map
        images[sel[order]] = prepared[name].aligned[row[sel][order]]
    return PoolCrops(images, dataset, row.astype(np.int64), identity)


def pack_loose_crops(prepared: PreparedSet, rows: Sequence[int], size: int, progress: bool = False) -> np.ndarray:
    """``uint8[N, size, size, 3]`` RGB loose crops of manifest ``rows``, read once into memory (area-
    resized from the prepared side when smaller, bilinear when larger): the packed input of models that
    learn their own alignment from loose crops (paper 002)."""
    import cv2
    from tqdm.auto import tqdm

    df = prepared.manifest.iloc[np.asarray(rows, dtype=np.int64)]
    out = np.empty((len(df), size, size, 3), np.uint8)
    problem = f"is missing or damaged (profile {prepared.profile}, dataset {prepared.dataset})"
    for k, rel in enumerate(tqdm(df["loose"].tolist(), desc="read loose crops", disable=not progress, leave=False)):
        image = _read_crop(prepared.folder / rel, problem)
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size
                               else cv2.INTER_LINEAR)
        out[k] = image
    return out
