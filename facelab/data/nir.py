"""Simulated near-infrared (NIR) face images: a documented VIS -> NIR-like transform.

No NIR-VIS dataset (CASIA NIR-VIS 2.0, Oulu-CASIA, BUAA-VisNir) is available here, so the
NIR side of a pair is *simulated* from a visible image. This is a stand-in for the modality
gap, not a model of real NIR sensors; the chapter that uses it says so.

What an 850 nm active-illumination camera changes, and how each is imitated (in this order):

1. **one channel**: silicon sensors behind an NIR filter record one band whose response on skin
   is closest to the red channel, so grey = ``w_r R + w_g G + w_b B`` with weights drawn around
   :data:`CHANNEL_WEIGHTS` (red-heavy, unlike the luminance weights 0.299/0.587/0.114);
2. **smoother, brighter skin**: NIR penetrates skin more and hides texture and pigmentation: a
   Gaussian blur (sigma ``blur_sigma``) and a gamma below one (``gamma``);
3. **contrast**: scaled about the mean by ``contrast``;
4. **active illumination**: an LED ring lights the centre more than the borders: the image is
   multiplied by ``1 - vignette * r^2`` (``r`` the distance from the centre, 1 at the corners);
5. **sensor noise**: additive Gaussian noise of standard deviation ``noise`` (grey levels).

The output is ``uint8[H, W, 3]`` with three equal channels, so RGB models take it unchanged.
Parameters are drawn uniformly from the ranges in :class:`NIRParams` with the caller's
generator (deterministic per seed) and returned with the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: Mean channel weights (R, G, B) of the simulated NIR band.
CHANNEL_WEIGHTS = (0.70, 0.22, 0.08)


@dataclass(frozen=True)
class NIRParams:
    """One draw of the transform's parameters (see the module docstring for each step)."""

    weights: tuple[float, float, float]
    blur_sigma: float
    gamma: float
    contrast: float
    vignette: float
    noise: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> NIRParams:
        w = np.asarray(CHANNEL_WEIGHTS) * rng.uniform(0.85, 1.15, size=3)
        return cls(weights=tuple(float(v) for v in w / w.sum()), blur_sigma=float(rng.uniform(0.6, 1.4)),
                   gamma=float(rng.uniform(0.65, 0.9)), contrast=float(rng.uniform(0.75, 1.0)),
                   vignette=float(rng.uniform(0.1, 0.35)), noise=float(rng.uniform(2.0, 6.0)))

    def as_dict(self) -> dict:
        return asdict(self)


def simulate_nir(image: np.ndarray, rng: np.random.Generator, params: NIRParams | None = None
                 ) -> tuple[np.ndarray, NIRParams]:
    """Turn ``uint8[H, W, 3]`` RGB ``image`` into an NIR-like ``uint8[H, W, 3]`` (three equal channels).

    ``params``: fixed parameters; None draws them from ``rng``. The noise always comes from ``rng``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"simulate_nir expects uint8[H, W, 3] RGB, got shape {image.shape}")
    p = params or NIRParams.sample(rng)
    x = image.astype(np.float32) @ np.asarray(p.weights, np.float32)
    x = cv2.GaussianBlur(x, (0, 0), p.blur_sigma)
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** p.gamma
    x = (x - x.mean()) * p.contrast + x.mean()
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = (((xx - (w - 1) / 2) / ((w - 1) / 2 or 1)) ** 2 + ((yy - (h - 1) / 2) / ((h - 1) / 2 or 1)) ** 2) / 2
    x = x * (1.0 - p.vignette * r2)
    x = x + rng.normal(0.0, p.noise, size=x.shape).astype(np.float32)
    grey = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), p
