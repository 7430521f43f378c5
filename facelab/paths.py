"""Where facelab finds data, keeps its cache and writes results.

This is the only module that builds a filesystem path from configuration. Everything
else asks it for a root (``data_root()``, ``cache_root()``, ``results_root()``) or for a
dataset folder (``dataset_dir("lfw")``).

Resolution order for the data root, first match wins:

1. an explicit ``data_root`` argument (a notebook parameter or ``--data-root``);
2. the ``FACELAB_DATA`` environment variable;
3. the user cache, ``$FACELAB_CACHE/data`` (default ``~/.cache/facelab/data``), which is
   where ``python -m facelab data fetch NAME`` (or ``python data_scripts/<dataset>.py fetch``)
   puts what it downloads. Nothing is downloaded implicitly: fetching is its own step
   (:mod:`facelab.data.fetch`).

When a dataset is found nowhere, :class:`DataNotFoundError` names the dataset, where to
get it and which command prepares it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facelab.errors import MissingDataError, UnknownNameError

ENV_DATA = "FACELAB_DATA"
ENV_CACHE = "FACELAB_CACHE"
ENV_RESULTS = "FACELAB_RESULTS"


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset lives below a data root and how a user obtains it.

    ``folder`` is relative to the data root; ``marker`` is relative to ``folder`` and must
    exist for the dataset to count as present (it is what the official archive extracts).
    """

    name: str
    title: str
    folder: str
    marker: str
    homepage: str
    how_to_get: str
    gated: bool

    @property
    def fetch_command(self) -> str:
        return f"python data_scripts/{self.name}.py fetch --from DIR   (or without --from to download)"


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="lfw",
            title="Labeled Faces in the Wild (deep-funneled)",
            folder="lfw",
            marker="lfw-deepfunneled",
            homepage="http://vis-www.cs.umass.edu/lfw/",
            how_to_get="public download: lfw-deepfunneled.tgz and the protocol files pairs.txt, "
            "pairsDevTrain.txt, pairsDevTest.txt from the LFW homepage",
            gated=False,
        ),
        DatasetInfo(
            name="cfp",
            title="Celebrities in Frontal-Profile (CFP)",
            folder="cfp",
            marker="cfp-dataset",
            homepage="http://www.cfpw.io/",
            how_to_get="request access from the CFP authors (cfpw.io); unpack cfp-dataset/ under DATA_ROOT/cfp/",
            gated=True,
        ),
        DatasetInfo(
            name="widerface",
            title="WIDER FACE (validation subset)",
            folder="widerface",
            marker="WIDER_val",
            homepage="http://shuoyang1213.me/WIDERFACE/",
            how_to_get="download WIDER_val.zip and wider_face_split.zip from the WIDER FACE homepage "
            "(Google Drive / Tencent mirrors; accept the terms of use); unpack under DATA_ROOT/widerface/",
            gated=True,
        ),
        DatasetInfo(
            name="aflw2000",
            title="AFLW2000-3D (samples)",
            folder="aflw2000_samples",
            marker=".",
            homepage="http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm",
            how_to_get="download AFLW2000-3D.zip from the 3DDFA project page; copy its images and .mat "
            "files under DATA_ROOT/aflw2000_samples/",
            gated=False,
        ),
        DatasetInfo(
            name="rwmfd",
            title="Real-World Masked Face Dataset (samples)",
            folder="rwmfd_samples",
            marker=".",
            homepage="https://github.com/X-zhangyang/Real-World-Masked-Face-Dataset",
            how_to_get="download RWMFD part 1 from the dataset's GitHub page; copy its folders under "
            "DATA_ROOT/rwmfd_samples/",
            gated=False,
        ),
    )
}


class DataNotFoundError(MissingDataError):
    """A dataset is not under any data root; the message says how to get it."""

    def __init__(self, name: str, searched: list[Path]):
        info = DATASETS[name]
        where = ", ".join(str(p) for p in searched) or "(no data root configured)"
        super().__init__(
            f"{info.title} ('{name}') was not found. Looked for {info.folder}/{info.marker} under: {where}.\n"
            f"  Get it: {info.how_to_get} ({info.homepage}).\n"
            f"  Then point facelab at it: export {ENV_DATA}=/path/to/data (or pass data_root=...),\n"
            f"  or copy it into the cache with: {info.fetch_command}"
        )
        self.dataset = name


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """The user cache: prepared crops, manifests, packed arrays, exported models."""
    return _env_path(ENV_CACHE) or Path.home() / ".cache" / "facelab"


def data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Candidate data roots in resolution order (explicit, environment, user cache)."""
    roots: list[Path] = []
    for candidate in (
        Path(data_root).expanduser() if data_root else None,
        _env_path(ENV_DATA),
        cache_root() / "data",
    ):
        if candidate is not None and candidate not in roots:
            roots.append(candidate)
    return roots


def dataset_dir(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``name`` (e.g. ``<root>/lfw``).

    Raises:
        UnknownNameError: ``name`` is not a known dataset (a KeyError).
        DataNotFoundError: the dataset is under no data root; its message names the fetch command.
    """
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    info = DATASETS[name]
    roots = data_roots(data_root)
    for root in roots:
        folder = root / info.folder
        if (folder / info.marker).exists():
            return folder
    raise DataNotFoundError(name, roots)


def prepared_dir(name: str) -> Path:
    """Where prepared artefacts of dataset ``name`` live (manifests, aligned crops)."""
    return cache_root() / "prepared" / name


def repo_root() -> Path | None:
    """The source checkout facelab runs from, or None for an installed wheel."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() else None


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """Where experiment results (JSON) are read and written.

    Explicit argument, then ``FACELAB_RESULTS``, then ``results/`` of the source checkout,
    then ``$FACELAB_CACHE/results``.
    """
    if results_dir:
        return Path(results_dir).expanduser()
    env = _env_path(ENV_RESULTS)
    if env:
        return env
    repo = repo_root()
    return repo / "results" if repo else cache_root() / "results"
