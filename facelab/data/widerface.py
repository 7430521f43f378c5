"""WIDER FACE validation ground truth (Yang et al., CVPR 2016) for detection evaluation.

Reads the official ``wider_face_val_bbx_gt.txt`` format (here the 19-image subset
``annotations/wider_val_subset_bbx.txt``): per image a line ``event/file.jpg``, a line with the
face count, then one line per face ``x y w h blur [expression illumination invalid occlusion
pose]``. The official file writes one ``0 0 0 0 0 ...`` line for an image with no face; such a
line is not a face. Boxes are returned as xyxy pixels (``x2 = x + w``), blur as 0 (clear),
1 (normal) or 2 (heavy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.errors import DataError, MissingDataError
from facelab.paths import dataset_dir

IMAGES_FOLDER = "WIDER_val/images"
SUBSET_GT = "annotations/wider_val_subset_bbx.txt"
BLUR_LEVELS = {0: "clear", 1: "normal", 2: "heavy"}


@dataclass(frozen=True)
class WiderImage:
    """Ground truth of one image.

    Attributes:
        path: ``event/file.jpg`` relative to ``WIDER_val/images``.
        boxes: ``float32[N, 4]`` xyxy pixels.
        blur: ``int8[N]`` 0 clear, 1 normal, 2 heavy blur.
        invalid: ``bool[N]`` the official "invalid" flag (False when the file has no such column).
    """

    path: str
    boxes: np.ndarray
    blur: np.ndarray
    invalid: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def parse_gt(text: str, source: str = "<wider gt>") -> list[WiderImage]:
    """Parse the official ground-truth format (see module docstring)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    out: list[WiderImage] = []
    i = 0
    while i < len(lines):
        path = lines[i]
        if not path.lower().endswith((".jpg", ".jpeg", ".png")):
            raise DataError(f"{source}: expected an image path at entry {len(out) + 1}, got {path!r}")
        try:
            n = int(lines[i + 1])
        except (IndexError, ValueError):
            raise DataError(f"{source}: {path}: the line after the path must be the face count") from None
        rows = lines[i + 2:i + 2 + max(n, 1)]
        boxes, blur, invalid = [], [], []
        for row in rows[:n] if n else []:
            v = row.split()
            if len(v) < 5:
                raise DataError(f"{source}: {path}: face line {row!r} has fewer than 5 values (x y w h blur)")
            x, y, w, h = (float(t) for t in v[:4])
            boxes.append((x, y, x + w, y + h))
            blur.append(int(float(v[4])))
            invalid.append(len(v) >= 8 and int(float(v[7])) == 1)
        out.append(WiderImage(path, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(blur, np.int8),
                              np.asarray(invalid, bool)))
        # An image with 0 faces is followed by one placeholder line in the official file.
        i += 2 + (n if n else (1 if i + 2 < len(lines) and not lines[i + 2].lower().endswith(".jpg") else 0))
    return out


def read_gt(data_root: str | os.PathLike | None = None) -> list[WiderImage]:
    """Ground truth of the WIDER FACE validation images present under the data root."""
    path = dataset_dir("widerface", data_root) / SUBSET_GT
    if not path.exists():
        raise MissingDataError(f"{path} is missing: put the WIDER FACE ground truth (wider_face_val_bbx_gt.txt "
                                f"format) there")
    return parse_gt(path.read_text(), str(path))


def images_dir(data_root: str | os.PathLike | None = None) -> Path:
    return dataset_dir("widerface", data_root) / IMAGES_FOLDER
