"""Reading images with OpenCV, with every failure turned into a named, countable reason.

``read_rgb`` returns ``np.ndarray[H, W, 3]`` uint8 RGB whatever the file holds (greyscale,
CMYK JPEG, PNG with alpha, 16-bit PNG); it raises :class:`ImageReadError` whose ``reason``
is one of :data:`READ_FAILURES` so that pipelines can count rejects instead of crashing.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

#: Reasons an image is rejected on reading.
READ_FAILURES = ("missing", "unreadable", "truncated", "too_small", "too_large")

#: Smallest side accepted (MTCNN's smallest face is 12 px; nothing useful is below this).
MIN_SIDE = 24

#: Largest image accepted, in pixels (checked from the file header, before decoding): 50 MP
#: is 150 MB decoded, far above any face dataset image; larger files are refused, not decoded.
MAX_PIXELS = 50_000_000


class ImageReadError(ValueError):
    """An image could not be used; ``reason`` is one of :data:`READ_FAILURES`."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        assert reason in READ_FAILURES, reason
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def _looks_truncated(data: bytes) -> bool:
    # A complete JPEG ends with the EOI marker FFD9; cameras and tools may pad after it.
    if data[:2] != b"\xff\xd8":
        return False
    return b"\xff\xd9" not in data[-1024:]


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None if not found."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + length
    return None


def decode_rgb(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to ``uint8[H, W, 3]`` RGB (see :func:`read_rgb`)."""
    if _looks_truncated(data):
        raise ImageReadError(path, "truncated", "JPEG without end-of-image marker")
    size = header_size(data)
    if size and size[0] * size[1] > MAX_PIXELS:
        raise ImageReadError(path, "too_large", f"{size[0]}x{size[1]} px is above {MAX_PIXELS:,} pixels")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise ImageReadError(path, "unreadable", "OpenCV could not decode it")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(path, "unreadable", f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise ImageReadError(path, "unreadable", f"{img.shape[2]} channels")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageReadError(path, "too_small", f"{img.shape[1]}x{img.shape[0]} px")
    return np.ascontiguousarray(img)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as ``uint8[H, W, 3]`` RGB.

    Raises:
        ImageReadError: missing, unreadable, truncated, too small or too large (``.reason`` says which).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "missing") from None
    except OSError as err:
        raise ImageReadError(path, "unreadable", str(err)) from None
    return decode_rgb(data, path)


def write_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> Path:
    """Write ``uint8[H, W, 3]`` RGB atomically (JPEG or PNG by suffix; ``quality`` is JPEG's)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = (path.suffix or ".png").lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, enc = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {path.suffix} for {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(enc.tobytes())
    os.replace(tmp, path)
    return path
