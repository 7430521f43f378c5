"""Manifests of prepared datasets: one CSV row per image, and how to load them.

``prepare`` (see :mod:`facelab.data.prepare`) writes, under ``facelab.paths.prepared_dir(name)``:

* ``manifest-<profile>.csv``: every image the profile selects, accepted or rejected
  (columns in :data:`COLUMNS`, documented in :data:`COLUMN_DOC`);
* ``aligned-<profile>.npy``: ``uint8[N, 112, 112, 3]`` RGB aligned crops of the accepted rows,
  row ``packed_index`` (a memory map, so a training epoch reads no JPEG);
* ``aligned/<dataset path>.png`` and ``loose/<dataset path>.jpg``: the same aligned crop, and the
  unaligned loose crop, per image;
* ``summary-<profile>.json``: counts, rejection reasons, time, configuration.

Landmark order: left eye, right eye, nose tip, left mouth corner, right mouth corner.
Boxes are xyxy pixels of the original image.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.errors import DataError, MissingDataError
from facelab.paths import dataset_dir, prepared_dir
from facelab.fileio import atomic_write_text

LANDMARK_KEYS = ("le", "re", "nose", "ml", "mr")
LANDMARK_COLUMNS = tuple(f"{k}_{a}" for k in LANDMARK_KEYS for a in "xy")
LOOSE_LANDMARK_COLUMNS = tuple(f"loose_{c}" for c in LANDMARK_COLUMNS)
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
LOOSE_BOX_COLUMNS = ("loose_x1", "loose_y1", "loose_x2", "loose_y2")

COLUMNS: tuple[str, ...] = (
    "path", "dataset", "identity", "name", "pose", "split", "status", "reason",
    "width", "height", "n_faces", "detect_pass", "detect_padded", "score", *BOX_COLUMNS, *LANDMARK_COLUMNS,
    "align_rms", "aligned", "loose", *LOOSE_BOX_COLUMNS, *LOOSE_LANDMARK_COLUMNS, "packed_index",
)

COLUMN_DOC: dict[str, str] = {
    "path": "image path relative to the data root (e.g. lfw/lfw-deepfunneled/Name/Name_0001.jpg)",
    "dataset": "dataset name (lfw, cfp)",
    "identity": "identity label within the dataset (LFW folder name, CFP three-digit id)",
    "name": "the person's name (LFW folder name with spaces, CFP Data/list_name.txt)",
    "pose": "frontal or profile where the dataset says so (CFP), else empty",
    "split": "protocol fold of the identity (fold01..fold10: LFW View 2, CFP Split), or 'none'",
    "status": "ok or rejected",
    "reason": "why rejected: missing, unreadable, truncated, too_small, too_large, no_face, bad_landmarks, "
              "error (an unexpected failure, printed as a warning and retried on the next run)",
    "width": "original image width in pixels",
    "height": "original image height in pixels",
    "n_faces": "faces MTCNN found (the chosen one is the largest and most central)",
    "detect_pass": "1: default MTCNN thresholds; 2: found only with the relaxed retry",
    "detect_padded": "1: a tight face crop, detected again on the image padded with zeros (prepare.PrepareConfig)",
    "score": "MTCNN confidence of the chosen face",
    "x1": "chosen face box, xyxy pixels of the original image (x1, y1, x2, y2)",
    "le_x": "5 landmarks (le, re, nose, ml, mr) x/y in original image pixels",
    "align_rms": "RMS distance (pixels of the 112 crop) between warped landmarks and the template",
    "aligned": "aligned 112x112 crop, relative to the prepared folder",
    "loose": "loose (unaligned) square crop, relative to the prepared folder",
    "loose_x1": "the loose crop's square box in original image pixels (may extend past the image)",
    "loose_le_x": "the 5 landmarks in loose-crop pixels",
    "packed_index": "row in aligned-<profile>.npy, -1 for rejected images",
}

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"


def resolve_image(dataset: str, path: str, data_root: str | os.PathLike | None = None) -> Path:
    """The file of a manifest ``path`` (``<dataset folder>/...``, relative to the data root)."""
    parts = path.split("/", 1)
    return dataset_dir(dataset, data_root) / (parts[1] if len(parts) == 2 else path)


def manifest_path(dataset: str, profile: str) -> Path:
    return prepared_dir(dataset) / f"manifest-{profile}.csv"


def packed_path(dataset: str, profile: str) -> Path:
    return prepared_dir(dataset) / f"aligned-{profile}.npy"


def summary_path(dataset: str, profile: str) -> Path:
    return prepared_dir(dataset) / f"summary-{profile}.json"


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write rows (dicts with :data:`COLUMNS` keys; missing keys are empty) atomically as CSV."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _fmt(row.get(c)) for c in COLUMNS})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    return path


def read_manifest(path: str | os.PathLike):
    """A manifest as a pandas DataFrame (text columns as str, numbers as float/int)."""
    import pandas as pd

    text_cols = {c: str for c in ("path", "dataset", "identity", "name", "pose", "split", "status", "reason",
                                  "aligned", "loose")}
    df = pd.read_csv(path, dtype=text_cols, keep_default_na=False, na_values={c: [""] for c in COLUMNS
                                                                             if c not in text_cols})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: not a facelab manifest (missing columns {missing}); "
                         "rerun `python -m facelab data prepare`")
    return df


def landmarks_of(df, space: str = "image") -> np.ndarray:
    """``float32[N, 5, 2]`` landmarks of manifest rows, in ``image`` or ``loose`` crop pixels."""
    cols = {"image": LANDMARK_COLUMNS, "loose": LOOSE_LANDMARK_COLUMNS}[space]
    return df[list(cols)].to_numpy(np.float32).reshape(-1, 5, 2)


def boxes_of(df) -> np.ndarray:
    """``float32[N, 4]`` xyxy face boxes of manifest rows (original image pixels)."""
    return df[list(BOX_COLUMNS)].to_numpy(np.float32)


class NotPreparedError(MissingDataError):
    """A dataset has not been prepared for a profile; the message gives the command."""

    def __init__(self, dataset: str, profile: str, what: Path):
        super().__init__(f"{dataset} is not prepared for profile {profile!r} ({what} is missing): run "
                         f"`python -m facelab data prepare --profile {profile} --datasets {dataset}`")


@dataclass
class PreparedSet:
    """A prepared dataset at one profile.

    Attributes:
        manifest: DataFrame of the *accepted* rows, ordered by ``packed_index``.
        rejected: DataFrame of the rejected rows.
        aligned: ``uint8[N, 112, 112, 3]`` memory map, row i = ``manifest.iloc[i]``.
        folder: the prepared folder (``aligned`` and ``loose`` paths are relative to it).
        summary: the summary written by prepare.
    """

    dataset: str
    profile: str
    manifest: object
    rejected: object
    aligned: np.ndarray
    folder: Path
    summary: dict

    def __len__(self) -> int:
        return len(self.manifest)


def load_prepared(dataset: str, profile: str) -> PreparedSet:
    """Load what ``prepare`` wrote for ``dataset`` at ``profile``.

    Raises:
        NotPreparedError: nothing (or only part) was prepared; the message says which command to run.
    """
    mpath, ppath, spath = manifest_path(dataset, profile), packed_path(dataset, profile), summary_path(dataset, profile)
    for p in (mpath, ppath, spath):
        if not p.exists():
            raise NotPreparedError(dataset, profile, p)
    df = read_manifest(mpath)
    ok = df[df["status"] == STATUS_OK].sort_values("packed_index").reset_index(drop=True)
    aligned = np.load(ppath, mmap_mode="r")
    if len(aligned) != len(ok) or (len(ok) and not np.array_equal(ok["packed_index"].to_numpy(), np.arange(len(ok)))):
        raise NotPreparedError(dataset, profile, ppath)
    return PreparedSet(dataset, profile, ok, df[df["status"] != STATUS_OK].reset_index(drop=True), aligned,
                       prepared_dir(dataset), json.loads(spath.read_text()))
