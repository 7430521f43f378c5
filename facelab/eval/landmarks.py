"""Landmark localisation error: normalised mean error (NME).

For one face with K landmarks, predictions ``pred`` [K, 2] and ground truth ``gt`` [K, 2]
(pixel x, y)::

    NME = mean_k ||pred_k - gt_k||_2 / d

where the normaliser ``d`` is computed from the ground truth, in one of three conventions
that published numbers mix (so a result records which one it used):

* ``"outer_eye_corners"`` (*inter-ocular*, 300-W's convention): distance between the outer
  corners of the two eyes; needs 68-point landmarks (iBUG indices 36 and 45, 0-based);
* ``"eye_centres"`` (*inter-pupil*): distance between the eye centres; for 68 points the
  centres are the means of points 36-41 and 42-47, for 5 points (MTCNN / RetinaFace order:
  left eye, right eye, nose, left and right mouth corner) the first two points;
* ``"box"``: sqrt(width x height) of the ground-truth face box (AFLW2000-3D's usual choice,
  where profile faces make the eye distance collapse).

The outer-corner distance is about 1.4 times the eye-centre distance (1.33-1.40 on the 16
AFLW2000-3D sample annotations), so the same prediction has a ~1.4x smaller NME under
``"outer_eye_corners"`` than under ``"eye_centres"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NORMALISERS = ("outer_eye_corners", "eye_centres", "box")

#: 0-based iBUG 68-point indices.
IBUG68_OUTER_EYE_CORNERS = (36, 45)
IBUG68_LEFT_EYE = tuple(range(36, 42))   # the subject's right eye, on the image's left
IBUG68_RIGHT_EYE = tuple(range(42, 48))
IBUG68_NOSE_TIP = 30
IBUG68_MOUTH_CORNERS = (48, 54)


def landmarks68_to_5(points: Any) -> np.ndarray:
    """68-point (iBUG) landmarks [..., 68, 2+] -> 5 points [..., 5, 2] in MTCNN order:
    eye centres (image left, image right), nose tip, mouth corners (image left, image right)."""
    p = np.asarray(points, dtype=float)[..., :2]
    if p.shape[-2] != 68:
        raise ValueError(f"expected 68 landmarks, got shape {p.shape}")
    return np.stack([
        p[..., IBUG68_LEFT_EYE, :].mean(axis=-2), p[..., IBUG68_RIGHT_EYE, :].mean(axis=-2),
        p[..., IBUG68_NOSE_TIP, :], p[..., IBUG68_MOUTH_CORNERS[0], :], p[..., IBUG68_MOUTH_CORNERS[1], :],
    ], axis=-2)


def normaliser(gt: Any, convention: str, boxes: Any = None) -> np.ndarray:
    """Per-face normalising distance [N] from ground truth [N, K, 2] (K = 68 or 5)."""
    g = np.asarray(gt, dtype=float)[..., :2]
    if g.ndim != 3:
        raise ValueError(f"landmarks must have shape [N, K, 2] (got {g.shape})")
    k = g.shape[1]
    if convention == "outer_eye_corners":
        if k != 68:
            raise ValueError(f"outer eye corners need 68-point landmarks (got {k} points); "
                             "use convention='eye_centres' for 5-point landmarks")
        a, b = g[:, IBUG68_OUTER_EYE_CORNERS[0]], g[:, IBUG68_OUTER_EYE_CORNERS[1]]
    elif convention == "eye_centres":
        if k == 68:
            a, b = g[:, IBUG68_LEFT_EYE].mean(axis=1), g[:, IBUG68_RIGHT_EYE].mean(axis=1)
        elif k == 5:
            a, b = g[:, 0], g[:, 1]
        else:
            raise ValueError(f"eye centres are defined for 68- or 5-point landmarks (got {k})")
    elif convention == "box":
        if boxes is None:
            raise ValueError("convention='box' needs the ground-truth boxes [N, 4] xyxy")
        bx = np.asarray(boxes, dtype=float)
        if bx.shape != (g.shape[0], 4):
            raise ValueError(f"boxes must have shape [{g.shape[0]}, 4] (got {bx.shape})")
        return np.sqrt((bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1]))
    else:
        raise ValueError(f"unknown normaliser {convention!r}; use one of {', '.join(NORMALISERS)}")
    return np.linalg.norm(a - b, axis=1)


def nme(pred: Any, gt: Any, *, convention: str = "outer_eye_corners", boxes: Any = None) -> np.ndarray:
    """NME of each face: predictions and ground truth [N, K, 2] -> [N] (fractions, not %)."""
    p = np.asarray(pred, dtype=float)[..., :2]
    g = np.asarray(gt, dtype=float)[..., :2]
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth shapes differ: {p.shape} vs {g.shape}")
    d = normaliser(g, convention, boxes)
    if np.any(d <= 0):
        raise ValueError(f"{int((d <= 0).sum())} face(s) have a zero normalising distance; check the ground truth")
    return np.linalg.norm(p - g, axis=-1).mean(axis=1) / d


def failure_rate(errors: Any, threshold: float = 0.1) -> float:
    """Fraction of faces with NME above ``threshold`` (commonly 0.08 or 0.10)."""
    e = np.asarray(errors, dtype=float)
    return float((e > threshold).mean())


def ced_curve(errors: Any, max_error: float = 0.1, steps: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: (error levels [steps], fraction of faces with NME <= level)."""
    e = np.asarray(errors, dtype=float)
    levels = np.linspace(0.0, max_error, steps)
    return levels, np.array([(e <= x).mean() for x in levels])
