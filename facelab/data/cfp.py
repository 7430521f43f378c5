"""CFP, Celebrities in Frontal-Profile (Sengupta et al., WACV 2016): images, names and protocols.

Layout (the official ``cfp-dataset/`` folder)::

    Data/Images/<id>/{frontal,profile}/<nn>.jpg   500 identities x (10 frontal + 4 profile)
    Data/list_name.txt                            the 500 names, line i = identity i (001..500)
    Protocol/Pair_list_F.txt, Pair_list_P.txt     "k ../Data/Images/<id>/<pose>/<nn>.jpg"
    Protocol/Split/{FF,FP}/<01..10>/{same,diff}.txt   "a,b" per line, 350 + 350 per fold

In ``FF`` both numbers index ``Pair_list_F``; in ``FP`` the first indexes ``Pair_list_F``
and the second ``Pair_list_P``. The ten folds are identity-disjoint (the dataset's Readme).
Image paths here are relative to ``cfp-dataset/`` (e.g. ``Data/Images/001/frontal/01.jpg``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from facelab.errors import DataError, MissingDataError, UnknownNameError
from facelab.paths import dataset_dir

DATASET_FOLDER = "cfp-dataset"
PROTOCOLS = ("FF", "FP")
N_FOLDS = 10
POSES = ("frontal", "profile")

_IMAGE_RE = re.compile(r"Data/Images/(\d+)/(frontal|profile)/(\d+)\.jpg$")


@dataclass(frozen=True)
class CFPPair:
    """One protocol pair; ``fold`` is 0-based; image paths are relative to ``cfp-dataset/``."""

    protocol: str
    fold: int
    image1: str
    image2: str
    same: bool

    def images(self) -> tuple[str, str]:
        return self.image1, self.image2


def root_dir(data_root: str | os.PathLike | None = None) -> Path:
    """The ``cfp-dataset/`` folder under the data root."""
    return dataset_dir("cfp", data_root) / DATASET_FOLDER


def parse_image_path(rel: str) -> tuple[str, str, int]:
    """``Data/Images/001/profile/03.jpg`` -> ``("001", "profile", 3)``."""
    m = _IMAGE_RE.search(rel.replace("\\", "/"))
    if not m:
        raise DataError(f"not a CFP image path: {rel!r}")
    return m.group(1), m.group(2), int(m.group(3))


def image_relpath(identity: str, pose: str, number: int) -> str:
    return f"Data/Images/{identity}/{pose}/{number:02d}.jpg"


def list_images(data_root: str | os.PathLike | None = None, *, cfp_root: Path | None = None) -> list[str]:
    """Every image below ``Data/Images`` (sorted relative paths).

    ``cfp_root``: an explicit ``cfp-dataset/`` folder instead of the one under the data root.
    """
    root = cfp_root or root_dir(data_root)
    return sorted(p.relative_to(root).as_posix() for p in (root / "Data" / "Images").glob("*/*/*.jpg"))


def parse_names(text: str) -> dict[str, str]:
    """``list_name.txt`` -> ``{"001": "50 Cent", ...}`` (line i is identity i)."""
    names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return {f"{i + 1:03d}": name for i, name in enumerate(names)}


def read_names(data_root: str | os.PathLike | None = None, *, cfp_root: Path | None = None) -> dict[str, str]:
    path = (cfp_root or root_dir(data_root)) / "Data" / "list_name.txt"
    if not path.exists():
        raise MissingDataError(f"{path} is missing: the CFP folder is incomplete; unpack the whole cfp-dataset/")
    return parse_names(path.read_text(encoding="utf-8", errors="replace"))


def parse_pair_list(text: str, source: str = "<pair list>") -> dict[int, str]:
    """``Pair_list_F.txt`` -> ``{1: "Data/Images/001/frontal/01.jpg", ...}``."""
    out: dict[int, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{source}: line {i} is not 'number path': {line!r}")
        rel = parts[1].replace("\\", "/")
        while rel.startswith("../"):
            rel = rel[3:]
        out[int(parts[0])] = rel
    return out


def parse_split_file(text: str, source: str = "<split>") -> list[tuple[int, int]]:
    """``same.txt``/``diff.txt`` -> ``[(a, b), ...]``."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            a, b = (int(v) for v in line.strip().split(","))
        except ValueError:
            raise DataError(f"{source}: line {i} is not 'a,b': {line!r}") from None
        out.append((a, b))
    return out


def read_pairs(protocol: str = "FP", data_root: str | os.PathLike | None = None, *,
               cfp_root: Path | None = None) -> list[CFPPair]:
    """The 10 folds x (350 same + 350 different) pairs of protocol ``FF`` or ``FP``."""
    if protocol not in PROTOCOLS:
        raise UnknownNameError(f"unknown CFP protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    proto = (cfp_root or root_dir(data_root)) / "Protocol"
    lists = {}
    for pose in ("F", "P"):
        path = proto / f"Pair_list_{pose}.txt"
        if not path.exists():
            raise MissingDataError(f"{path} is missing: the CFP Protocol/ folder is incomplete")
        lists[pose] = parse_pair_list(path.read_text(), str(path))
    second = lists["F"] if protocol == "FF" else lists["P"]
    pairs: list[CFPPair] = []
    for fold in range(N_FOLDS):
        for kind in ("same", "diff"):
            path = proto / "Split" / protocol / f"{fold + 1:02d}" / f"{kind}.txt"
            if not path.exists():
                raise MissingDataError(f"{path} is missing: the CFP Protocol/Split folder is incomplete")
            for a, b in parse_split_file(path.read_text(), str(path)):
                try:
                    pairs.append(CFPPair(protocol, fold, lists["F"][a], second[b], kind == "same"))
                except KeyError as err:
                    raise DataError(f"{path}: index {err.args[0]} is not in the pair list") from None
    return pairs


def subsample_pairs(pairs: list[CFPPair], per_fold: int) -> list[CFPPair]:
    """The first ``per_fold // 2`` same and different pairs of every fold (deterministic)."""
    half = per_fold // 2
    out: list[CFPPair] = []
    for fold in sorted({p.fold for p in pairs}):
        in_fold = [p for p in pairs if p.fold == fold]
        out += [p for p in in_fold if p.same][:half] + [p for p in in_fold if not p.same][:half]
    return out


def identity_folds(pairs: list[CFPPair]) -> dict[str, int]:
    """Identity -> the (0-based) fold its pairs are in.

    Raises:
        ValueError: an identity appears in two folds (the folds would not be identity-disjoint).
    """
    out: dict[str, int] = {}
    for p in pairs:
        for rel in p.images():
            ident = parse_image_path(rel)[0]
            if out.setdefault(ident, p.fold) != p.fold:
                raise DataError(f"CFP identity {ident} is in folds {out[ident] + 1} and {p.fold + 1}")
    return out
