"""Composite detection scenes: real face crops pasted at varied scales onto real backgrounds.

The WIDER FACE *training* set is not available, and the 19 validation images are the
detection test set, so detectors are trained on composites (evaluation stays on real WIDER FACE
images). A scene is built as follows, every draw from the caller's generator:

1. **background**: a real photograph, scaled to cover the scene and cut at a random place, then
   cut into ``tile`` x ``tile`` tiles that are shuffled and randomly mirrored. Shuffling keeps
   the photo's colours and textures but breaks up any face it contains (a face left whole in the
   background would be an unlabelled positive);
2. **faces**: ``n`` loose face crops (LFW/CFP, :mod:`facelab.data.prepare`) with a face side drawn
   log-uniformly in ``face_size`` pixels, placed where their (1.3x enlarged) boxes do not overlap
   (IoU by ``torchvision.ops.box_iou``) and lie inside the scene; each is blended in through a
   feathered rounded rectangle around its box;
3. **labels**: the paste is a scale-and-shift ``M``, so each face's box (MTCNN's box on the source
   image) and 5 landmarks in the scene are ``M`` applied to them: exact by construction
   (coordinates: pixel i centred at i, as OpenCV's warps).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceSource:
    """A face to paste: ``image`` ``uint8[h, w, 3]`` (a loose crop), its ``box`` ``float[4]`` xyxy and
    ``landmarks`` ``float[5, 2]`` in that image's pixels."""

    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class Scene:
    """A composite image with exact labels.

    Attributes:
        image: ``uint8[H, W, 3]`` RGB.
        boxes: ``float32[N, 4]`` xyxy pixels.
        landmarks: ``float32[N, 5, 2]``.
        sources: index of each face in the list of sources.
        background: index of the background source.
    """

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    sources: tuple[int, ...]
    background: int


def shuffled_background(source: np.ndarray, size: tuple[int, int], tile: int, rng: np.random.Generator) -> np.ndarray:
    """A ``uint8[H, W, 3]`` background from a real photo (step 1 of the module docstring)."""
    h, w = size
    sh, sw = source.shape[:2]
    scale = max(h / sh, w / sw) * rng.uniform(1.0, 1.5)
    big = cv2.resize(source, (max(w, round(sw * scale)), max(h, round(sh * scale))),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0 = int(rng.integers(0, big.shape[0] - h + 1))
    x0 = int(rng.integers(0, big.shape[1] - w + 1))
    crop = big[y0:y0 + h, x0:x0 + w]
    ny, nx = -(-h // tile), -(-w // tile)
    padded = cv2.copyMakeBorder(crop, 0, ny * tile - h, 0, nx * tile - w, cv2.BORDER_REFLECT)
    tiles = padded.reshape(ny, tile, nx, tile, 3).transpose(0, 2, 1, 3, 4).reshape(ny * nx, tile, tile, 3)
    tiles = tiles[rng.permutation(len(tiles))]
    flips = rng.integers(0, 4, size=len(tiles))
    tiles = np.stack([t[:, ::-1] if f & 1 else t for t, f in zip(tiles, flips)])
    tiles = np.stack([t[::-1] if f & 2 else t for t, f in zip(tiles, flips)])
    out = tiles.reshape(ny, nx, tile, tile, 3).transpose(0, 2, 1, 3, 4).reshape(ny * tile, nx * tile, 3)
    return np.ascontiguousarray(out[:h, :w])


def _alpha(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    """Feathered rounded rectangle around ``box`` (1.25x), ``float32[h, w]`` in [0, 1]."""
    h, w = shape
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) * 0.625, (y2 - y1) * 0.625
    a = np.zeros((h, w), np.float32)
    r = int(round(side * 0.2))
    p1 = (int(round(cx - hw)), int(round(cy - hh)))
    p2 = (int(round(cx + hw)), int(round(cy + hh)))
    cv2.rectangle(a, (p1[0] + r, p1[1]), (p2[0] - r, p2[1]), 1.0, -1)
    cv2.rectangle(a, (p1[0], p1[1] + r), (p2[0], p2[1] - r), 1.0, -1)
    for cxy in ((p1[0] + r, p1[1] + r), (p2[0] - r, p1[1] + r), (p1[0] + r, p2[1] - r), (p2[0] - r, p2[1] - r)):
        cv2.circle(a, cxy, r, 1.0, -1)
    return cv2.GaussianBlur(a, (0, 0), max(side * 0.05, 0.5))


def compose_scene(faces: list[FaceSource], backgrounds: list[np.ndarray], rng: np.random.Generator, *,
                  size: tuple[int, int] = (480, 640), n_faces: tuple[int, int] = (1, 6),
                  face_size: tuple[float, float] = (16.0, 160.0), tile: int = 32, max_tries: int = 30) -> Scene:
    """Build one composite scene (see the module docstring).

    Args:
        faces: face sources to draw from.
        backgrounds: ``uint8[h, w, 3]`` photos to draw the background from.
        size: (H, W) of the scene.
        n_faces: inclusive range of faces per scene (fewer if they cannot be placed).
        face_size: range of the pasted face box's longer side, pixels.
    """
    import torch
    from torchvision.ops import box_iou

    from facelab.data.align import warp_points

    if not faces or not backgrounds:
        raise ValueError("compose_scene needs at least one face source and one background")
    h, w = size
    bg_index = int(rng.integers(len(backgrounds)))
    canvas = shuffled_background(backgrounds[bg_index], size, tile, rng).astype(np.float32)
    boxes, lms, used = [], [], []
    for _ in range(int(rng.integers(n_faces[0], n_faces[1] + 1))):
        k = int(rng.integers(len(faces)))
        src = faces[k]
        bw, bh = src.box[2] - src.box[0], src.box[3] - src.box[1]
        target = float(np.exp(rng.uniform(np.log(face_size[0]), np.log(face_size[1]))))
        s = target / max(bw, bh)
        placed = None
        for _try in range(max_tries):
            # Top-left corner of the face box in the scene, box fully inside.
            bx = rng.uniform(0, max(w - bw * s - 1, 0))
            by = rng.uniform(0, max(h - bh * s - 1, 0))
            m = np.array([[s, 0, bx - src.box[0] * s], [0, s, by - src.box[1] * s]])
            box = warp_points(src.box.reshape(2, 2), m).reshape(4)
            if box[2] > w - 1 or box[3] > h - 1:
                continue
            grown = np.array([box[0] - 0.15 * bw * s, box[1] - 0.15 * bh * s, box[2] + 0.15 * bw * s,
                              box[3] + 0.15 * bh * s])
            if boxes:
                old = np.array([[b[0] - 0.15 * (b[2] - b[0]), b[1] - 0.15 * (b[3] - b[1]),
                                 b[2] + 0.15 * (b[2] - b[0]), b[3] + 0.15 * (b[3] - b[1])] for b in boxes])
                if box_iou(torch.as_tensor(grown[None]), torch.as_tensor(old)).max() > 0:
                    continue
            placed = m, box
            break
        if placed is None:
            continue
        m, box = placed
        img = src.image
        if s < 1:
            # Anti-alias before shrinking: warpAffine samples, it does not average.
            img = cv2.GaussianBlur(img, (0, 0), 0.45 / s)
        # Blend only the region the feathered alpha can reach (the 1.25x box plus its blur).
        side = max(box[2] - box[0], box[3] - box[1])
        rx0, ry0 = int(max(0, np.floor(box[0] - 0.5 * side))), int(max(0, np.floor(box[1] - 0.5 * side)))
        rx1, ry1 = int(min(w, np.ceil(box[2] + 0.5 * side))), int(min(h, np.ceil(box[3] + 0.5 * side)))
        m_roi = m - np.array([[0, 0, rx0], [0, 0, ry0]])
        layer = cv2.warpAffine(img, m_roi, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpAffine(_alpha(src.image.shape[:2], src.box), m_roi, (rx1 - rx0, ry1 - ry0),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        roi = canvas[ry0:ry1, rx0:rx1]
        canvas[ry0:ry1, rx0:rx1] = roi * (1 - alpha) + layer.astype(np.float32) * alpha
        boxes.append(box)
        lms.append(warp_points(src.landmarks, m))
        used.append(k)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return Scene(image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(lms, np.float32).reshape(-1, 5, 2),
                 tuple(used), bg_index)
