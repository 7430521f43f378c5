"""Protocol pairs resolved against a prepared dataset, with every dropped pair counted.

A verification protocol (LFW View 2, CFP FF/FP, ...) names images; a prepared dataset holds the
aligned crops of the images that could be used. :func:`resolve_pairs` maps each pair to two rows
of the packed array, and counts pairs it has to drop by the reason of the first unusable image:
``rejected:<reason>`` (the file was missing, unreadable, had no face, ... when prepared) or
``not_prepared`` (the profile did not select it: prepare a larger profile).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from facelab.data.manifest import PreparedSet
from facelab.paths import DATASETS

#: Where each dataset's protocol paths are rooted, relative to the data root.
PROTOCOL_ROOTS = {"lfw": "lfw-deepfunneled", "cfp": "cfp-dataset"}


@dataclass
class ResolvedPairs:
    """Pairs usable with a prepared dataset.

    Attributes:
        index1, index2: ``int64[M]`` rows of ``prepared.manifest`` / ``prepared.aligned``.
        same: ``bool[M]``; fold: ``int64[M]`` (0-based); pair_index: ``int64[M]`` position in the protocol.
        dropped: reason -> number of protocol pairs left out.
    """

    index1: np.ndarray
    index2: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    pair_index: np.ndarray
    n_protocol: int
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.index1)


def protocol_path(dataset: str, rel: str) -> str:
    """A protocol image path (``Name/Name_0001.jpg``) as a manifest ``path`` (relative to the data root)."""
    return f"{DATASETS[dataset].folder}/{PROTOCOL_ROOTS[dataset]}/{rel}"


def resolve_pairs(prepared: PreparedSet, pairs) -> ResolvedPairs:
    """Map protocol pairs (objects with ``images()``, ``same``, ``fold``) onto ``prepared`` rows."""
    ok = {p: i for i, p in enumerate(prepared.manifest["path"])}
    rejected = dict(zip(prepared.rejected["path"], prepared.rejected["reason"]))
    cols: dict[str, list] = {"i1": [], "i2": [], "same": [], "fold": [], "k": []}
    dropped: Counter = Counter()
    for k, p in enumerate(pairs):
        paths = [protocol_path(prepared.dataset, r) for r in p.images()]
        bad = next((q for q in paths if q not in ok), None)
        if bad is not None:
            dropped[f"rejected:{rejected[bad]}" if bad in rejected else "not_prepared"] += 1
            continue
        cols["i1"].append(ok[paths[0]])
        cols["i2"].append(ok[paths[1]])
        cols["same"].append(bool(p.same))
        cols["fold"].append(int(p.fold))
        cols["k"].append(k)
    return ResolvedPairs(np.asarray(cols["i1"], np.int64), np.asarray(cols["i2"], np.int64),
                         np.asarray(cols["same"], bool), np.asarray(cols["fold"], np.int64),
                         np.asarray(cols["k"], np.int64), len(pairs), dropped)
