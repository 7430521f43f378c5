"""Face alignment by a similarity transform onto the standard 5-point template.

Landmark order everywhere in facelab: left eye, right eye, nose tip, left mouth corner,
right mouth corner, as ``float[5, 2]`` (x, y) pixel coordinates in the image (the person's
left eye is on the image's left for a frontal face, as MTCNN reports it).
"""

from __future__ import annotations

import cv2
import numpy as np

#: The 5-point template of ArcFace/InsightFace for 112x112 crops (x, y), pixels.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],  # left eye
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float32,
)


def template(size: int = 112) -> np.ndarray:
    """The 5-point template scaled to a ``size`` x ``size`` crop, ``float32[5, 2]``."""
    return ARCFACE_TEMPLATE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``src`` to ``dst``.

    Args:
        src: ``float[N, 2]`` points, N >= 2.
        dst: ``float[N, 2]`` points.

    Returns:
        ``float64[2, 3]`` matrix M with ``dst ~ M @ [x, y, 1]``.
    """
    src = np.asarray(src, dtype=np.float32).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float32).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    # A threshold larger than any residual keeps every point an inlier, so the final
    # Levenberg-Marquardt refinement is a least-squares fit over all of them.
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e6,
                                       maxIters=1, refineIters=100)
    if m is None:
        raise ValueError("degenerate landmarks: no similarity transform fits them")
    return m.astype(np.float64)


def warp_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a ``[2, 3]`` affine matrix to ``float[N, 2]`` points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so that its 5 landmarks land on the template.

    Args:
        image: ``uint8[H, W, 3]``.
        landmarks: ``float[5, 2]`` in image pixels (order in the module docstring).
        size: output side in pixels.

    Returns:
        (``uint8[size, size, 3]`` aligned crop, ``float64[2, 3]`` image->crop matrix)
    """
    m = similarity_transform(landmarks, template(size))
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def loose_crop_box(box: np.ndarray, image_shape: tuple[int, ...], scale: float = 1.3) -> np.ndarray:
    """A square box ``scale`` times the larger side of ``box`` (xyxy), same centre, clipped.

    Returns ``float[4]`` xyxy in image pixels (may be smaller than asked at the borders).
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale
    h, w = image_shape[:2]
    return np.array([max(0.0, cx - side / 2), max(0.0, cy - side / 2),
                     min(float(w), cx + side / 2), min(float(h), cy + side / 2)])


def square_box(box: np.ndarray, scale: float = 1.4) -> np.ndarray:
    """A square xyxy box ``scale`` times the larger side of ``box``, same centre, NOT clipped."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * scale / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def box_to_crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """``float64[2, 3]`` scale-and-shift matrix mapping xyxy ``box`` onto a ``size`` x ``size`` crop."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    return np.array([[sx, 0.0, -x1 * sx], [0.0, sy, -y1 * sy]])


def loose_crop(image: np.ndarray, box: np.ndarray, scale: float = 1.4, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """An unaligned square crop around a detected face (for alignment learning and detection).

    The crop is :func:`square_box` of ``box``, rounded to whole pixels, resized to ``size`` x
    ``size`` (area interpolation when shrinking, so large images do not alias); parts outside
    the image are black, so the crop is a pure scale and shift of the image.

    Args:
        image: ``uint8[H, W, 3]``.
        box: ``float[4]`` xyxy face box in image pixels.

    Returns:
        (``uint8[size, size, 3]`` crop, ``float64[2, 3]`` image->crop matrix; use :func:`warp_points`
        to move landmarks into the crop).
    """
    x1, y1, x2, y2 = np.round(square_box(box, scale)).astype(int)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    h, w = image.shape[:2]
    pad = [max(0, -y1), max(0, y2 - h), max(0, -x1), max(0, x2 - w)]
    region = image[max(0, y1):min(h, y2), max(0, x1):min(w, x2)]
    if region.size == 0:
        region = np.zeros((y2 - y1, x2 - x1, image.shape[2]), image.dtype)
    elif any(pad):
        region = cv2.copyMakeBorder(region, *pad, borderType=cv2.BORDER_CONSTANT, value=0)
    interp = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_LINEAR
    crop = cv2.resize(region, (size, size), interpolation=interp)
    # cv2.resize aligns pixel *edges* (x_dst + 0.5 = (x_src + 0.5) * s), hence the half-pixel terms.
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    m = np.array([[sx, 0.0, (0.5 - x1) * sx - 0.5], [0.0, sy, (0.5 - y1) * sy - 0.5]])
    return crop, m
