"""Combining descriptors: templates and flip-augmented embeddings.

* A **template** is one vector standing for several images of a person: the mean of their
  descriptors (paper 001, Section 4: "A template is represented by a single vector, which is
  computed by averaging the descriptors given by the CNN of the faces in the template set";
  templates of 1 or 5 images). Optionally each descriptor is L2-normalised before averaging,
  which gives every image the same weight when descriptors are compared by cosine; paper 001
  averages raw descriptors (its χ² distance needs their non-negative scale), so the default
  is ``normalize_each=False``.
* A **flip-augmented embedding** combines the embedding of an image with that of its
  horizontal mirror. Paper 002, Section 4: "We use the sum of corresponding positions between
  each tested image and its mirror image feature as the final feature representation"
  (``mode="sum"``); ``mode="concat"`` stacks them instead ([N, 2D]), as other codebases do.
  For cosine scores, the sum of two vectors of similar norm and the concatenation give
  different numbers, so a result records which one it used.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

FLIP_MODES = ("sum", "concat")


def make_template(descriptors: Any, *, normalize_each: bool = False) -> np.ndarray:
    """Mean of ``descriptors`` [K, D] (K >= 1) -> [D]."""
    d = np.asarray(descriptors, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] == 0:
        raise ValueError(f"a template needs descriptors of shape [K, D] with K >= 1 (got {d.shape})")
    if normalize_each:
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return d.mean(axis=0)


def group_templates(descriptors: Any, groups: Sequence[Hashable], *,
                    normalize_each: bool = False) -> tuple[list[Hashable], np.ndarray]:
    """One template per group: descriptors [N, D] and a group key per row ->
    (keys in first-appearance order, templates [G, D])."""
    d = np.asarray(descriptors, dtype=np.float64)
    if d.ndim != 2 or len(groups) != d.shape[0]:
        raise ValueError(f"need descriptors [N, D] and N group keys (got {d.shape} and {len(groups)} keys)")
    keys: list[Hashable] = list(dict.fromkeys(groups))
    index = {k: i for i, k in enumerate(keys)}
    rows: list[list[int]] = [[] for _ in keys]
    for r, g in enumerate(groups):
        rows[index[g]].append(r)
    return keys, np.stack([make_template(d[r], normalize_each=normalize_each) for r in rows])


def fuse_flip(embedding: Any, flipped: Any, *, mode: str = "sum") -> Any:
    """Combine embeddings of images [N, D] and of their mirrors [N, D].

    ``"sum"`` -> [N, D] (paper 002), ``"concat"`` -> [N, 2D]. Works on numpy arrays and
    torch tensors (returns the same kind).
    """
    if mode not in FLIP_MODES:
        raise ValueError(f"unknown flip fusion {mode!r}; use one of {', '.join(FLIP_MODES)}")
    if tuple(embedding.shape) != tuple(flipped.shape):
        raise ValueError(f"embedding and flipped embedding shapes differ: {tuple(embedding.shape)} "
                         f"vs {tuple(flipped.shape)}")
    if mode == "sum":
        return embedding + flipped
    if isinstance(embedding, np.ndarray):
        return np.concatenate([embedding, flipped], axis=-1)
    import torch

    return torch.cat([embedding, flipped], dim=-1)


def embed_with_flip(model: Callable[[Any], Any], images: Any, *, mode: str = "sum") -> Any:
    """``fuse_flip(model(images), model(mirrored images))`` for a batch [N, C, H, W] (torch).

    The mirror flips the width axis. Runs under ``torch.no_grad()``; the caller puts
    ``model`` in eval mode and on the device of ``images``.
    """
    import torch

    if images.ndim != 4:
        raise ValueError(f"images must be a batch [N, C, H, W] (got shape {tuple(images.shape)})")
    with torch.no_grad():
        return fuse_flip(model(images), model(torch.flip(images, dims=[3])), mode=mode)
