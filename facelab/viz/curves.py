"""Curve figures: ROC, DET, precision-recall, CMC and discrete ROC.

Every function takes ``curves``, a mapping from a legend label to the curve's arrays
(e.g. ``{"dlib ResNet": (roc.far, roc.tar)}``), and returns a new
:class:`matplotlib.figure.Figure`. Figures are made with pyplot, like those of
:mod:`facelab.viz.faces`, so a notebook's inline backend shows them when the cell ends (end
the call with ``;`` so the returned object is not shown a second time); scripts close them
with ``matplotlib.pyplot.close(fig)``. Arrays come straight from :mod:`facelab.eval` results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

#: Tick positions of DET axes (error rates, shown in %).
DET_TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9)
FIGSIZE = (5.0, 4.0)
#: Marker styles of highlighted operating points, in order.
MARKER_STYLES = ("o", "s", "^", "D", "v")


def _new_axes(title: str | None, figsize: tuple[float, float] = FIGSIZE):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _pairs(curves: Mapping[str, tuple[Any, Any]]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Checked (label, x, y) triples (checked before any figure is created)."""
    if not curves:
        raise ValueError("no curves to plot")
    out = []
    for label, xy in curves.items():
        if len(xy) != 2:
            raise ValueError(f"curve {label!r} must be a pair of arrays (x, y)")
        x, y = (np.asarray(v, dtype=float).ravel() for v in xy)
        if x.shape != y.shape:
            raise ValueError(f"curve {label!r}: x and y have different lengths ({x.size} and {y.size})")
        out.append((label, x, y))
    return out


def _percent(v: float) -> str:
    return f"{100 * v:g}%"


def plot_roc(curves: Mapping[str, tuple[Any, Any]], *, log_far: bool = True,
             markers: Sequence[tuple[float, float, str]] = (), title: str | None = "ROC") -> Figure:
    """TAR against FAR. ``curves[label] = (far, tar)``; ``markers`` are (far, tar, legend text)
    operating points.

    On a logarithmic FAR axis the FAR = 0 points cannot be drawn and are left out; the axis
    starts just below the smallest non-zero FAR of all curves (1 / N_impostor).
    """
    checked = _pairs(curves)
    fig, ax = _new_axes(title)
    lowest, bottom = 1.0, 1.0
    for label, far, tar in checked:
        keep = far > 0 if log_far else np.ones(far.shape, bool)
        if keep.any():
            lowest = min(lowest, float(far[keep].min()))
            bottom = min(bottom, float(tar[keep].min()))
        ax.plot(far[keep], tar[keep], label=label)
    for (x, y, text), style in zip(markers, MARKER_STYLES * (1 + len(markers) // len(MARKER_STYLES))):
        ax.plot([x], [y], style, ms=7, mfc="none", mew=1.5, label=text)
        bottom = min(bottom, y)
    if log_far:
        ax.set_xscale("log")
        ax.set_xlim(lowest / 1.5, 1.0)  # room for a marker at the smallest FAR
    else:
        ax.set_xlim(0.0, 1.0)
    ax.set_ylim(max(0.0, bottom - 0.02), 1.005)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_det(curves: Mapping[str, tuple[Any, Any]], *, limits: tuple[float, float] = (0.001, 0.6),
             title: str | None = "DET") -> Figure:
    """FRR against FAR on normal-deviate axes (each axis is Φ⁻¹ of the error rate, so two
    Gaussian score distributions give a straight line). ``curves[label] = (far, frr)``.

    Points with an error rate of exactly 0 or 1 lie at infinity on these axes and are left
    out; ``limits`` are the error rates at the axis ends.
    """
    from scipy.stats import norm

    lo, hi = limits
    if not 0 < lo < hi < 1:
        raise ValueError(f"DET limits must satisfy 0 < low < high < 1 (got {limits})")
    checked = _pairs(curves)
    fig, ax = _new_axes(title)
    drawn = 0
    for label, far, frr in checked:
        keep = (far > 0) & (far < 1) & (frr > 0) & (frr < 1)
        drawn += int(keep.sum())
        ax.plot(norm.ppf(far[keep]), norm.ppf(frr[keep]), label=label)
    if not drawn:
        # Perfectly separated scores: every threshold has FAR = 0 or FRR = 0 (at -infinity here).
        ax.text(0.5, 0.5, "no threshold has both FAR > 0 and FRR > 0:\nthe scores separate perfectly",
                transform=ax.transAxes, ha="center", va="center", fontsize=9)
    ticks = [t for t in DET_TICKS if lo <= t <= hi]
    for set_ticks, set_labels, set_lim in ((ax.set_xticks, ax.set_xticklabels, ax.set_xlim),
                                           (ax.set_yticks, ax.set_yticklabels, ax.set_ylim)):
        set_ticks(norm.ppf(ticks))
        set_labels([_percent(t) for t in ticks], fontsize=7)
        set_lim(norm.ppf(lo), norm.ppf(hi))
    diag = norm.ppf([lo, hi])
    ax.plot(diag, diag, ls=":", color="grey", lw=0.8, label="FAR = FRR")
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("false reject rate (FRR)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_score_distributions(scores: Any, labels: Any, *, thresholds: Mapping[str, float] | None = None,
                             bins: int = 40, title: str | None = "Score distributions") -> Figure:
    """Histograms of genuine (label 1) and impostor (label 0) scores [N], with optional
    vertical lines at named thresholds (e.g. the EER threshold)."""
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape or s.size == 0:
        raise ValueError(f"need one label per score (got {s.size} scores and {y.size} labels)")
    fig, ax = _new_axes(title)
    edges = np.histogram_bin_edges(s, bins=bins)
    ax.hist(s[y == 1], bins=edges, alpha=0.6, label=f"genuine ({int((y == 1).sum())})")
    ax.hist(s[y == 0], bins=edges, alpha=0.6, label=f"impostor ({int((y == 0).sum())})")
    for (name, t), style in zip((thresholds or {}).items(), ("--", ":", "-.", "-")):
        ax.axvline(t, color="k", ls=style, lw=1, label=name)
    ax.set_xlabel("score (higher = more similar)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    return fig


def plot_pr(curves: Mapping[str, tuple[Any, Any]], *, title: str | None = "Precision-recall") -> Figure:
    """Precision against recall. ``curves[label] = (recall, precision)`` (e.g. with the AP in the label)."""
    checked = _pairs(curves)
    fig, ax = _new_axes(title)
    for label, recall, precision in checked:
        ax.plot(recall, precision, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def plot_cmc(curves: Mapping[str, Any], *, max_rank: int | None = None,
             title: str | None = "CMC") -> Figure:
    """Identification rate against rank. ``curves[label] = cmc`` with ``cmc[k-1]`` at rank k."""
    if not curves:
        raise ValueError("no curves to plot")
    fig, ax = _new_axes(title)
    for label, c in curves.items():
        c = np.asarray(c, dtype=float)
        k = c.size if max_rank is None else min(max_rank, c.size)
        ax.plot(np.arange(1, k + 1), c[:k], marker="." if k <= 30 else None, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_discrete_roc(curves: Mapping[str, tuple[Any, Any]], *,
                      title: str | None = "Discrete ROC") -> Figure:
    """True positive rate against the number of false positives (FDDB; paper 004 Fig. 4).
    ``curves[label] = (false_positives, tpr)``."""
    checked = _pairs(curves)
    fig, ax = _new_axes(title)
    for label, fp, tpr in checked:
        ax.plot(np.r_[0, fp], np.r_[0, tpr], label=label)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("number of false positives")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_learning_curves(curves: Mapping[str, Sequence[float]], *, ylabel: str, title: str | None = None,
                         xlabel: str = "epoch") -> Figure:
    """One line per run of a per-epoch quantity (e.g. ``{"+DWC": history["train_acc"]}``), epochs from 1."""
    fig, ax = _new_axes(title)
    for label, values in curves.items():
        v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(fontsize="small")
    return fig


def plot_recall_by_height(curves: Mapping[str, Mapping[str, Any]], *, title: str | None = "Recall by face height"
                          ) -> Figure:
    """Share of faces found per face-height bin, one line per detector; ``curves[label]`` is a
    :func:`facelab.eval.detection.recall_by_height` record (``bins``, ``recall``, ``n_faces``). The bar
    behind the lines is the number of faces per bin (right axis)."""
    if not curves:
        raise ValueError("no curves to plot")
    fig, ax = _new_axes(title)
    first = next(iter(curves.values()))
    bins = np.asarray(first["bins"], dtype=float)
    labels = [f"{int(a)}–{int(b)}" if b < 1000 else f"≥{int(a)}" for a, b in zip(bins[:-1], bins[1:])]
    x = np.arange(len(labels))
    counts = ax.twinx()
    counts.bar(x, first["n_faces"], color="0.85", zorder=0)
    counts.set_ylabel("faces in the bin")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    for label, c in curves.items():
        r = np.asarray([np.nan if v is None else v for v in c["recall"]], dtype=float)
        ax.plot(x, r, marker="o", label=label)
    ax.set_xticks(x, labels)
    ax.set_xlabel("face height (pixels, original image)")
    ax.set_ylabel("recall at the detector's operating threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    return fig
