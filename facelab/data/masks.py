"""Synthetic face masks drawn from 5 facial landmarks (a 2D stand-in for paper 003's method).

Paper 003 (Du et al., "Towards NIR-VIS Masked Face Recognition", Section III-B, Fig. 3) puts
masks on faces through 3D reconstruction: PR-Net gives a UV texture and position map, a mask
template segmented from real masked photos replaces the lower face in UV space, and the face is
rendered back. We have neither PR-Net nor its mask templates, so this module draws the mask in
2D from the 5 landmarks instead, as the "2D-landmark-based" methods the paper compares with:

* a face frame from the landmarks: ``e`` the eye centre, ``d`` = mouth centre - ``e`` (length
  L, "down"), ``r`` the unit vector from the left to the right eye (scaled by the inter-ocular
  distance W);
* a polygon in that frame per style (:data:`MASK_STYLES`): from the nose bridge (0.15-0.3 L
  below the eyes) to under the chin (about 1.75 L), about 2 W wide;
* a colour (:data:`MASK_COLOURS`), a vertical shading and, for surgical masks, pleats; edges
  anti-aliased.

It follows in-plane rotation and scale, not out-of-plane pose: on profile faces the mask is a
rough fit (3D reconstruction is what fixes that). The real masked photos in
``rwmfd_samples`` are for a qualitative comparison. Deterministic: style, colour and the small
shape jitter come from the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facelab.errors import UnknownNameError

#: Mask colours (RGB).
MASK_COLOURS: dict[str, tuple[int, int, int]] = {
    "light_blue": (150, 200, 225),
    "white": (235, 235, 232),
    "black": (35, 35, 40),
    "grey": (140, 140, 145),
    "pink": (235, 170, 190),
    "navy": (40, 50, 90),
}

#: Mask shapes: polygon vertices in the face frame, (across in units of W, down in units of L).
MASK_STYLES: dict[str, tuple[tuple[float, float], ...]] = {
    # A pleated rectangle over nose and mouth, tucked under the chin.
    "surgical": ((-1.05, 0.3), (-0.4, 0.22), (0.4, 0.22), (1.05, 0.3), (1.1, 1.2), (0.75, 1.6),
                 (0.0, 1.72), (-0.75, 1.6), (-1.1, 1.2)),
    # A cup (N95/KN95): a pointed top over the nose bridge and a round bottom.
    "n95": ((-0.95, 0.5), (-0.45, 0.25), (0.0, 0.15), (0.45, 0.25), (0.95, 0.5), (1.0, 1.2), (0.7, 1.62),
            (0.0, 1.78), (-0.7, 1.62), (-1.0, 1.2)),
    # A cloth mask: lower on the nose, rounded all round.
    "cloth": ((-1.0, 0.42), (-0.5, 0.32), (0.0, 0.3), (0.5, 0.32), (1.0, 0.42), (1.1, 1.0), (0.95, 1.48),
              (0.5, 1.72), (0.0, 1.78), (-0.5, 1.72), (-0.95, 1.48), (-1.1, 1.0)),
}


@dataclass(frozen=True)
class MaskedFace:
    """A masked image and what was drawn.

    Attributes:
        image: ``uint8[H, W, 3]`` RGB with the mask.
        alpha: ``float32[H, W]`` mask coverage in [0, 1].
        style, colour: the keys of :data:`MASK_STYLES` and :data:`MASK_COLOURS` used.
        polygon: ``float32[K, 2]`` the mask outline in image pixels.
    """

    image: np.ndarray
    alpha: np.ndarray
    style: str
    colour: str
    polygon: np.ndarray


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin = eye centre, across = right-eye - left-eye, down = mouth centre - eye centre), ``float64[2]`` each."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    return eyes, lm[1] - lm[0], mouth - eyes


def mask_polygon(landmarks: np.ndarray, style: str, jitter: np.ndarray | None = None) -> np.ndarray:
    """The outline of mask ``style`` on a face, ``float32[K, 2]`` image pixels.

    ``jitter``: optional ``float[K, 2]`` offsets in face-frame units (shape variety).
    """
    if style not in MASK_STYLES:
        raise UnknownNameError(f"unknown mask style {style!r}: choose one of {', '.join(MASK_STYLES)}")
    origin, across, down = face_frame(landmarks)
    pts = np.array(MASK_STYLES[style], dtype=np.float64)
    if jitter is not None:
        pts = pts + jitter
    # "across" units are the inter-ocular distance; the mask's centre line runs along "down".
    return (origin + pts[:, :1] * across + pts[:, 1:] * down).astype(np.float32)


def add_mask(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, style: str | None = None,
             colour: str | None = None) -> MaskedFace:
    """Draw a mask on ``image`` (``uint8[H, W, 3]`` RGB) from its 5 ``landmarks`` (``float[5, 2]``).

    ``style``/``colour``: None draws one from ``rng`` (uniformly over the tables above).
    """
    style = style or str(rng.choice(sorted(MASK_STYLES)))
    colour = colour or str(rng.choice(sorted(MASK_COLOURS)))
    if style not in MASK_STYLES:
        raise UnknownNameError(f"unknown mask style {style!r}: choose one of {', '.join(MASK_STYLES)}")
    if colour not in MASK_COLOURS:
        raise UnknownNameError(f"unknown mask colour {colour!r}: choose one of {', '.join(MASK_COLOURS)}")
    n = len(MASK_STYLES[style])
    poly = mask_polygon(landmarks, style, rng.normal(0.0, 0.03, size=(n, 2)))
    h, w = image.shape[:2]
    # Draw at 4x and shrink: anti-aliased edges without a blur that would leak past the outline.
    ss = 4
    big = np.zeros((h * ss, w * ss), np.uint8)
    cv2.fillPoly(big, [np.round((poly + 0.5) * ss - 0.5).astype(np.int32)], 255, lineType=cv2.LINE_8)
    alpha = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

    base = np.array(MASK_COLOURS[colour], np.float32)
    origin, across, down = face_frame(landmarks)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Position along the face's "down" axis, 0 at the eyes and 1 at the mouth.
    t = ((xx - origin[0]) * down[0] + (yy - origin[1]) * down[1]) / max(float(down @ down), 1e-6)
    shade = 1.0 - 0.12 * np.clip(t - 0.3, 0, 1.5)  # the lower part turns away from the light
    if style == "surgical":
        # Three horizontal pleats: darker bands at fixed heights of the face frame.
        for centre in (0.75, 1.05, 1.35):
            shade *= 1.0 - 0.18 * np.exp(-(((t - centre) * max(np.linalg.norm(down), 1.0)) ** 2) / 2.0)
    texture = rng.normal(0.0, 3.0, size=(h, w, 1)).astype(np.float32)
    mask_rgb = np.clip(base[None, None, :] * shade[..., None] + texture, 0, 255)
    out = image.astype(np.float32) * (1 - alpha[..., None]) + mask_rgb * alpha[..., None]
    return MaskedFace(np.clip(np.round(out), 0, 255).astype(np.uint8), alpha, style, colour, poly)
