"""Random in-plane perturbations of loose face crops: the "perturbed LFW" test of chapter 3.

Paper 002 tests its alignment-learning models on YouTube Faces as well as LFW; YTF is not
available here. The chapter instead re-crops every LFW test image with its detector box randomly
shifted, scaled and rotated, a harder test of the same claim: a network that learned to align
should lose less accuracy than one that only centre-crops.

A :class:`Perturbation` acts on crop pixel coordinates: the content at crop pixel ``p`` moves to
``P p``, where ``P`` rotates by ``angle`` degrees (counter-clockwise on screen, OpenCV's
convention) and scales by ``scale`` about the crop centre ``((S - 1) / 2, (S - 1) / 2)``,
then shifts by ``(dx * S, dy * S)`` pixels. Perturbations are drawn from
``numpy.random.default_rng([seed, crc32(key)])``, so the same image (``key``, e.g. its path)
gets the same perturbation in every run, whatever else is evaluated.

:func:`perturbed_crop` warps the *original* image once (crop matrix composed with ``P``), so a
zoom-out or shift shows real surroundings, and black only beyond the image border, as
:func:`facelab.data.align.loose_crop` does.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PerturbationRange:
    """Uniform ranges: shift up to ``max_shift`` of the crop side in x and y, scale in
    ``[1 / (1 + max_scale), 1 + max_scale]`` (uniform in log scale), rotation up to
    ``max_rotation`` degrees either way."""

    max_shift: float = 0.1
    max_scale: float = 0.15
    max_rotation: float = 20.0

    def __post_init__(self) -> None:
        if self.max_shift < 0 or self.max_scale < 0 or self.max_rotation < 0:
            raise ValueError(f"perturbation ranges must be >= 0, got {self}")


@dataclass(frozen=True)
class Perturbation:
    """Shift ``(dx, dy)`` as fractions of the crop side, ``scale`` (>1 zooms in), ``angle`` degrees."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0

    def matrix(self, size: int) -> np.ndarray:
        """``float64[2, 3]``: crop pixel -> perturbed crop pixel, for a ``size`` x ``size`` crop."""
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        c = (size - 1) / 2.0
        m = cv2.getRotationMatrix2D((c, c), self.angle, self.scale).astype(np.float64)
        m[:, 2] += (self.dx * size, self.dy * size)
        return m


def perturbation_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one image's perturbation: depends only on ``seed`` and ``key``."""
    return np.random.default_rng([int(seed), zlib.crc32(key.encode("utf-8"))])


def sample_perturbation(rng: np.random.Generator, spread: PerturbationRange = PerturbationRange()) -> Perturbation:
    """One perturbation drawn uniformly from ``spread`` (four draws, in the order dx, dy, scale, angle)."""
    dx, dy = rng.uniform(-spread.max_shift, spread.max_shift, size=2)
    log_s = math.log1p(spread.max_scale)
    scale = math.exp(rng.uniform(-log_s, log_s))
    angle = rng.uniform(-spread.max_rotation, spread.max_rotation)
    return Perturbation(float(dx), float(dy), float(scale), float(angle))


def perturbation_for(key: str, seed: int, spread: PerturbationRange = PerturbationRange()) -> Perturbation:
    """The perturbation of the image named ``key`` at ``seed``."""
    return sample_perturbation(perturbation_rng(seed, key), spread)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``[2, 3]`` affine matrices: ``outer`` after ``inner``."""
    a = np.vstack([np.asarray(outer, np.float64), [0.0, 0.0, 1.0]])
    b = np.vstack([np.asarray(inner, np.float64), [0.0, 0.0, 1.0]])
    return (a @ b)[:2]


def crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """``float64[2, 3]`` image -> crop matrix of a loose crop of xyxy ``box`` resized to ``size``.

    Pixel-edge convention of ``cv2.resize`` (as :func:`facelab.data.align.loose_crop`), so for
    an integer ``box`` it reproduces the prepared loose crop's geometry.
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty crop box {box}")
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    return np.array([[sx, 0.0, (0.5 - x1) * sx - 0.5], [0.0, sy, (0.5 - y1) * sy - 0.5]])


def perturbed_crop(image: np.ndarray, box: np.ndarray, perturbation: Perturbation, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Loose crop of xyxy ``box`` from ``uint8[H, W, 3]`` ``image``, perturbed.

    Returns ``(uint8[size, size, 3]`` crop, ``float64[2, 3]`` image -> crop matrix``)``; bilinear
    sampling (area-averaged first when the crop shrinks the image more than 2x), black outside
    the image.
    """
    m = compose(perturbation.matrix(size), crop_matrix(box, size))
    shrink = min(size / (box[2] - box[0]), size / (box[3] - box[1])) * perturbation.scale
    if shrink < 0.5:
        # Pre-shrink so bilinear sampling does not alias; the matrix is corrected for it.
        f = 2.0 * shrink
        small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
        down = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
        inv = cv2.invertAffineTransform(down)
        crop = cv2.warpAffine(small, compose(m, inv), (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return crop, m
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, m
