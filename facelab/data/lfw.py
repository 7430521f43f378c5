"""LFW protocol files: View 2 ``pairs.txt`` (10 folds) and the View 1 development sets.

Huang et al., "Labeled Faces in the Wild", UMass TR 07-49 (2007). View 2 has 10
identity-disjoint folds of 300 matched + 300 mismatched pairs; View 1 has
``pairsDevTrain.txt`` (1100 + 1100) and ``pairsDevTest.txt`` (500 + 500).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facelab.errors import DataError, MissingDataError, UnknownNameError
from facelab.paths import dataset_dir

IMAGES_FOLDER = "lfw-deepfunneled"
PROTOCOL_FILES = {"view2": "pairs.txt", "dev_train": "pairsDevTrain.txt", "dev_test": "pairsDevTest.txt"}


@dataclass(frozen=True)
class LFWPair:
    """One protocol pair; ``fold`` is 0-based (View 1 files have a single fold 0)."""

    fold: int
    name1: str
    idx1: int
    name2: str
    idx2: int

    @property
    def same(self) -> bool:
        return self.name1 == self.name2

    def images(self) -> tuple[str, str]:
        """Relative image paths below ``lfw-deepfunneled/``."""
        return image_relpath(self.name1, self.idx1), image_relpath(self.name2, self.idx2)


def image_relpath(name: str, idx: int) -> str:
    return f"{name}/{name}_{idx:04d}.jpg"


def parse_pairs(text: str, source: str = "<pairs>") -> list[LFWPair]:
    """Parse an LFW pairs file: a header (``folds n`` or ``n``), then per fold n matched
    lines ``name i j`` followed by n mismatched lines ``name1 i name2 j``."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{source}: empty pairs file")
    header = [int(v) for v in lines[0]]
    folds, n = (header[0], header[1]) if len(header) == 2 else (1, header[0])
    body = lines[1:]
    if len(body) != folds * 2 * n:
        raise DataError(f"{source}: header says {folds} folds x 2 x {n} pairs, file has {len(body)} lines")
    pairs: list[LFWPair] = []
    for i, parts in enumerate(body):
        fold, matched = divmod(i, 2 * n)[0], (i % (2 * n)) < n
        try:
            if matched and len(parts) == 3:
                pairs.append(LFWPair(fold, parts[0], int(parts[1]), parts[0], int(parts[2])))
            elif not matched and len(parts) == 4:
                pairs.append(LFWPair(fold, parts[0], int(parts[1]), parts[2], int(parts[3])))
            else:
                raise ValueError
        except ValueError:
            raise DataError(f"{source}: line {i + 2} is not a {'matched' if matched else 'mismatched'} "
                             f"pair: {' '.join(parts)!r}") from None
    return pairs


def read_pairs(view: str = "view2", data_root: str | os.PathLike | None = None) -> list[LFWPair]:
    """Read one of the protocol files (``view2``, ``dev_train``, ``dev_test``)."""
    if view not in PROTOCOL_FILES:
        raise UnknownNameError(f"unknown LFW view {view!r}: choose one of {', '.join(PROTOCOL_FILES)}")
    path = dataset_dir("lfw", data_root) / "protocol" / PROTOCOL_FILES[view]
    if not path.exists():
        raise MissingDataError(f"{path} is missing: copy the LFW protocol files (pairs.txt, pairsDevTrain.txt, "
                                "pairsDevTest.txt) into DATA_ROOT/lfw/protocol/")
    return parse_pairs(path.read_text(), str(path))


def images_dir(data_root: str | os.PathLike | None = None) -> Path:
    return dataset_dir("lfw", data_root) / IMAGES_FOLDER


def subsample_pairs(pairs: list[LFWPair], per_fold: int) -> list[LFWPair]:
    """The first ``per_fold // 2`` matched and mismatched pairs of every fold (deterministic)."""
    half = per_fold // 2
    out: list[LFWPair] = []
    for fold in sorted({p.fold for p in pairs}):
        in_fold = [p for p in pairs if p.fold == fold]
        out += [p for p in in_fold if p.same][:half] + [p for p in in_fold if not p.same][:half]
    return out
