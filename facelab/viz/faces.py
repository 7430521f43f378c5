"""Figures of faces: detections with landmarks, grids of crops, verification pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Landmark colours in facelab order (left eye, right eye, nose, left mouth, right mouth).
LANDMARK_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple")


def draw_detections(ax, image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None,
                    scores: np.ndarray | None = None, colour: str = "lime") -> None:
    """Draw ``uint8[H, W, 3]`` ``image`` with xyxy ``boxes[N, 4]`` and ``landmarks[N, 5, 2]`` on ``ax``."""
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes).reshape(-1, 4)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.5))
        if scores is not None:
            ax.text(x1, y1 - 2, f"{scores[i]:.3f}", color=colour, fontsize=7, va="bottom")
        if landmarks is not None:
            for (x, y), c in zip(landmarks[i], LANDMARK_COLOURS):
                ax.plot(x, y, "o", color=c, markersize=3)
    ax.set_axis_off()


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, ncols: int = 6,
               size: float = 1.8, suptitle: str | None = None):
    """A grid of ``uint8[H, W, 3]`` images; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < n:
            ax.imshow(images[k])
            if titles is not None:
                ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def pair_grid(pairs: Sequence[tuple[np.ndarray, np.ndarray]], titles: Sequence[str], ncols: int = 4,
              size: float = 1.6, suptitle: str | None = None):
    """Verification pairs side by side (two images per cell); returns the Figure."""
    joined = [np.concatenate([a, b], axis=1) for a, b in pairs]
    return image_grid(joined, titles, ncols=ncols, size=size * 2, suptitle=suptitle)


def detections_grid(images: Sequence[np.ndarray], detections: Sequence, ncols: int = 6, size: float = 2.2):
    """Images with their :class:`~facelab.data.detect.FaceDetections` drawn; returns the Figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, det in zip(axes.flat, images, detections):
        draw_detections(ax, image, det.boxes, det.landmarks, det.scores)
    fig.tight_layout()
    return fig
