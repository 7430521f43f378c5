"""Deterministic augmentation of face crops: horizontal flip and crop jitter.

Every random draw comes from ``numpy.random.default_rng([seed, epoch, index])``: the same
(seed, epoch, sample) always gets the same augmentation, whatever the number of DataLoader
workers or the order in which they ask. Nothing here seeds a global generator.

:func:`flip_shift_batch` applies the same flips and shifts to a whole ``uint8[B, H, W, 3]`` batch
with one gather (no per-image Python work), drawing sample ``i``'s augmentation exactly as
:class:`FlipJitter` does (:meth:`FlipJitter.draw`), so both paths give identical pixels.

Images are ``uint8[H, W, 3]``; landmarks ``float[5, 2]`` (x, y) pixels in the order of
:mod:`facelab.data.align`; boxes xyxy pixels. A horizontal flip maps x to ``W - 1 - x``
for landmarks and box corners alike (coordinates are continuous with pixel i centred at i, as
in OpenCV's warps) and swaps left/right landmarks (eyes, mouth corners), so a flipped face
still has its "left eye" first.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Landmark order after a horizontal flip: left eye <-> right eye, left <-> right mouth corner.
FLIP_LANDMARK_ORDER = (1, 0, 2, 4, 3)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample in one epoch (independent of worker scheduling)."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def hflip(image: np.ndarray, landmarks: np.ndarray | None = None, boxes: np.ndarray | None = None):
    """Mirror an image (and its landmarks ``float[..., 5, 2]`` and boxes ``float[N, 4]`` xyxy)."""
    w = image.shape[1]
    out = [np.ascontiguousarray(image[:, ::-1])]
    if landmarks is not None:
        lm = np.array(landmarks, dtype=np.float32, copy=True)
        lm[..., 0] = (w - 1) - lm[..., 0]
        out.append(lm[..., FLIP_LANDMARK_ORDER, :])
    if boxes is not None:
        b = np.array(boxes, dtype=np.float32, copy=True).reshape(-1, 4)
        out.append(np.stack([(w - 1) - b[:, 2], b[:, 1], (w - 1) - b[:, 0], b[:, 3]], axis=1))
    return out[0] if len(out) == 1 else tuple(out)


def shift(image: np.ndarray, dx: int, dy: int, landmarks: np.ndarray | None = None):
    """Translate by whole pixels (``dx`` right, ``dy`` down), replicating the border; same size."""
    h, w = image.shape[:2]
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    if landmarks is None:
        return out
    lm = np.array(landmarks, dtype=np.float32, copy=True)
    lm[..., 0] += dx
    lm[..., 1] += dy
    return out, lm


@dataclass(frozen=True)
class FlipJitter:
    """Random horizontal flip (probability ``flip_p``) and a shift of up to ``max_shift`` pixels.

    Call with ``(image, rng)`` or ``(image, rng, landmarks)``; returns the same kinds.
    """

    flip_p: float = 0.5
    max_shift: int = 4

    def draw(self, rng: np.random.Generator) -> tuple[bool, int, int]:
        """One sample's ``(flip, dx, dy)``: the draws :meth:`__call__` makes, in its order."""
        flip = bool(rng.random() < self.flip_p)
        dx, dy = (int(v) for v in rng.integers(-self.max_shift, self.max_shift + 1, size=2))
        return flip, dx, dy

    def draw_batch(self, seed: int, epoch: int, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(flip bool[B], dx int[B], dy int[B])`` of samples ``indices`` in ``epoch``, each from its
        own :func:`sample_rng`, so a sample's augmentation does not depend on its batch."""
        draws = [self.draw(sample_rng(seed, epoch, i)) for i in indices]
        flip, dx, dy = (np.array(v).reshape(-1) for v in zip(*draws)) if draws else (np.zeros(0),) * 3
        return flip.astype(bool), dx.astype(np.int64), dy.astype(np.int64)

    def __call__(self, image: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray | None = None):
        flip, dx, dy = self.draw(rng)
        if flip:
            image, landmarks = (hflip(image, landmarks) if landmarks is not None else (hflip(image), None))
        if dx or dy:
            image, landmarks = shift(image, dx, dy, landmarks) if landmarks is not None else (shift(image, dx, dy), None)
        return image if landmarks is None else (image, landmarks)


def flip_shift_batch(images: np.ndarray, flip: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Flip (first) then shift each image of ``uint8[B, H, W, C]`` by whole pixels, replicating the border.

    ``flip`` is ``bool[B]``, ``dx``/``dy`` ``int[B]`` (right/down). Pixel for pixel the same as
    :func:`hflip` then :func:`shift` per image (a shift with replicated border reads source pixel
    ``clip(y - dy)``, ``clip(x - dx)``; a flip reads column ``W - 1 - x``), done as one gather.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images [B, H, W, C], got shape {images.shape}")
    b, h, w = images.shape[:3]
    flip, dx, dy = (np.asarray(v).reshape(-1) for v in (flip, dx, dy))
    if not (len(flip) == len(dx) == len(dy) == b):
        raise ValueError(f"need one flip/dx/dy per image ({b}), got {len(flip)}, {len(dx)}, {len(dy)}")
    rows = np.clip(np.arange(h)[None, :] - dy[:, None], 0, h - 1)  # [B, H]
    cols = np.clip(np.arange(w)[None, :] - dx[:, None], 0, w - 1)  # [B, W] in the flipped image
    cols = np.where(flip[:, None], w - 1 - cols, cols)
    return images[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
