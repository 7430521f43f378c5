"""Reading images with OpenCV, with every failure turned into a named, countable reason.

Every image facelab reads (dataset images, prepared crops, the ``data detect|align`` commands)
goes through :func:`read_rgb` (or :func:`decode_rgb` for bytes in memory). It returns
``np.ndarray[H, W, 3]`` uint8 RGB whatever the file holds, or raises :class:`ImageReadError`
whose ``reason`` is one of :data:`READ_FAILURES`, so that pipelines count rejects instead of
crashing. What it does with each kind of file (the contents decide, not the file name):

=========================  ===================================================================
file                       outcome
=========================  ===================================================================
8-bit RGB JPEG / PNG       read as is
greyscale, 1-bit, palette  accepted, expanded to 3 equal channels / to RGB
CMYK JPEG                  accepted, converted to RGB by OpenCV's JPEG decoder
PNG with alpha (RGBA, LA)  accepted, the alpha channel is **dropped** (not composited onto a
                           colour: the face pixels are in the colour channels, and a made-up
                           background would change them where the alpha is partial)
16-bit PNG (grey/RGB/A)    accepted, **scaled to 8 bits** (``v // 257``: 0 -> 0, 65535 -> 255)
32-bit int / float (TIFF)  ``unreadable`` (no agreed way to map it to 8 bits)
no file                    ``missing``
empty file, not an image   ``unreadable`` (e.g. a text file named ``.jpg``)
JPEG without end marker    ``truncated`` (also a PNG without its ``IEND`` chunk)
side under ``MIN_SIDE``    ``too_small`` (e.g. a 1x1 image)
over ``MAX_SIDE`` or       ``too_large``, refused from the header before decoding where the
``MAX_PIXELS``             format has one (JPEG, PNG), so a huge file costs no memory
=========================  ===================================================================
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from facelab.errors import DataError

#: Reasons an image is rejected on reading.
READ_FAILURES = ("missing", "unreadable", "truncated", "too_small", "too_large")

#: Smallest side accepted (MTCNN's smallest face is 12 px; nothing useful is below this).
MIN_SIDE = 24

#: Largest image accepted, in pixels (checked from the file header, before decoding): 50 MP
#: is 150 MB decoded, far above any face dataset image; larger files are refused, not decoded.
MAX_PIXELS = 50_000_000

#: Longest side accepted, in pixels. The largest dataset image is 2,381 px (CFP) and detection
#: runs on a copy shrunk to a few hundred pixels, so a 20,000 px panorama would shrink its short
#: side to a few pixels: it is refused as ``too_large`` instead of silently finding no face.
MAX_SIDE = 10_000


class ImageReadError(DataError):
    """An image could not be used; ``reason`` is one of :data:`READ_FAILURES` (a ValueError)."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str = ""):
        assert reason in READ_FAILURES, reason
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # picklable across worker processes despite the extra arguments
        return type(self), (self.path, self.reason, self.detail)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _looks_truncated(data: bytes) -> bool:
    # A complete JPEG ends with the EOI marker FFD9; cameras and tools may pad after it.
    # A complete PNG ends with its IEND chunk (12 bytes: length, "IEND", CRC).
    if data[:8] == _PNG_SIGNATURE:
        return b"IEND" not in data[-64:]
    if data[:2] != b"\xff\xd8":
        return False
    return b"\xff\xd9" not in data[-1024:]


def _check_size(path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageReadError(path, "too_large", f"{width}x{height} px is above {MAX_PIXELS:,} pixels")
    if max(width, height) > MAX_SIDE:
        raise ImageReadError(path, "too_large", f"{width}x{height} px: a side is above {MAX_SIDE:,} px")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None if not found."""
    if data[:8] == _PNG_SIGNATURE and len(data) >= 24:
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
    """Decode encoded image bytes to ``uint8[H, W, 3]`` RGB (see the module docstring and :func:`read_rgb`)."""
    if not data:
        raise ImageReadError(path, "unreadable", "empty file")
    if _looks_truncated(data):
        kind = "PNG without IEND chunk" if data[:8] == _PNG_SIGNATURE else "JPEG without end-of-image marker"
        raise ImageReadError(path, "truncated", kind)
    size = header_size(data)
    if size:
        _check_size(path, *size)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(path, "unreadable", "not an image OpenCV can decode")
    _check_size(path, img.shape[1], img.shape[0])  # formats whose header is not parsed above
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(path, "unreadable", f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)  # drops the alpha channel (module docstring)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise ImageReadError(path, "unreadable", f"{img.shape[2]} channels")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageReadError(path, "too_small", f"{img.shape[1]}x{img.shape[0]} px, under {MIN_SIDE} px")
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
