"""Curve figures: ROC, DET, precision-recall, CMC and discrete ROC.

Every function takes ``curves``, a mapping from a legend label to the curve's arrays
(e.g. ``{"dlib ResNet": (roc.far, roc.tar)}``), and returns a new
:class:`matplotlib.figure.Figure` (created without pyplot, so nothing accumulates in global
state; a notebook displays it as the cell's value). Arrays come straight from
:mod:`facelab.eval` results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

#: Tick positions of DET axes (error rates, shown in %).
DET_TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9)
FIGSIZE = (5.0, 4.0)


def _new_axes(title: str | None, figsize: tuple[float, float] = FIGSIZE):
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _pairs(curves: Mapping[str, tuple[Any, Any]]):
    if not curves:
        raise ValueError("no curves to plot")
    for label, xy in curves.items():
        if len(xy) != 2:
            raise ValueError(f"curve {label!r} must be a pair of arrays (x, y)")
        x, y = (np.asarray(v, dtype=float) for v in xy)
        if x.shape != y.shape:
            raise ValueError(f"curve {label!r}: x and y have different lengths ({x.size} and {y.size})")
        yield label, x, y


def _percent(v: float) -> str:
    return f"{100 * v:g}%"


def plot_roc(curves: Mapping[str, tuple[Any, Any]], *, log_far: bool = True,
             markers: Sequence[tuple[float, float, str]] = (), title: str | None = "ROC") -> Figure:
    """TAR against FAR. ``curves[label] = (far, tar)``; ``markers`` are (far, tar, text) points.

    On a logarithmic FAR axis the FAR = 0 points cannot be drawn and are left out; the axis
    starts at the smallest non-zero FAR of all curves (1 / N_impostor).
    """
    fig, ax = _new_axes(title)
    lowest = 1.0
    for label, far, tar in _pairs(curves):
        keep = far > 0 if log_far else np.ones(far.shape, bool)
        if keep.any():
            lowest = min(lowest, float(far[keep].min()))
        ax.plot(far[keep], tar[keep], label=label)
    for x, y, text in markers:
        ax.plot([x], [y], "o", ms=5)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    if log_far:
        ax.set_xscale("log")
        ax.set_xlim(lowest, 1.0)
    else:
        ax.set_xlim(0.0, 1.0)
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

    fig, ax = _new_axes(title)
    lo, hi = limits
    if not 0 < lo < hi < 1:
        raise ValueError(f"DET limits must satisfy 0 < low < high < 1 (got {limits})")
    for label, far, frr in _pairs(curves):
        keep = (far > 0) & (far < 1) & (frr > 0) & (frr < 1)
        ax.plot(norm.ppf(far[keep]), norm.ppf(frr[keep]), label=label)
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


def plot_pr(curves: Mapping[str, tuple[Any, Any]], *, title: str | None = "Precision-recall") -> Figure:
    """Precision against recall. ``curves[label] = (recall, precision)`` (e.g. with the AP in the label)."""
    fig, ax = _new_axes(title)
    for label, recall, precision in _pairs(curves):
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
    fig, ax = _new_axes(title)
    if not curves:
        raise ValueError("no curves to plot")
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
    fig, ax = _new_axes(title)
    for label, fp, tpr in _pairs(curves):
        ax.plot(np.r_[0, fp], np.r_[0, tpr], label=label)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("number of false positives")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    return fig
