"""Latency figures from latency results (:mod:`facelab.bench.latency`, :mod:`facelab.bench.edge_bench`).

:func:`latency_figure` draws, per (runtime, batch) run, the per-image latency: a bar at the median
with a p10–p90 whisker (``kind='bar'``) or the distribution of every timed call (``kind='box'``),
the model's FLOP floor as a short black line, and the ratio median/floor written above.
Several results (e.g. one per thread count or device) go side by side, labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facelab.results import Result

RUNTIME_COLORS = {"torch": "#4C72B0", "onnxruntime": "#DD8452"}


def _runs(result: Result | dict[str, Any]) -> tuple[list[dict], dict[str, list[float]], str]:
    metrics = result.metrics if isinstance(result, Result) else result["metrics"]
    arrays = result.arrays if isinstance(result, Result) else result.get("arrays", {})
    where = metrics.get("device_label") or metrics.get("device", "")
    label = f"{metrics['model']}\n{where}, {metrics['threads']} thread(s)"
    return metrics["runs"], arrays.get("times_ms", {}), label


def latency_figure(results: Result | dict | Sequence[Result | dict], *, kind: str = "bar", ax=None,
                   per_image: bool = True, title: str | None = None):
    """Per-image latency (ms) of every run in ``results``, with the FLOP floor and the floor ratio.

    ``results``: one latency result or several (a :class:`~facelab.results.Result` or the dict of a
    result JSON). ``per_image`` divides batch-N times by N. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if kind not in ("bar", "box"):
        raise ValueError(f"kind must be 'bar' or 'box' (got {kind!r})")
    if isinstance(results, (Result, dict)):
        results = [results]
    if not results:
        raise ValueError("no latency results to plot")
    if ax is None:
        n_runs = sum(len(_runs(r)[0]) for r in results)
        _, ax = plt.subplots(figsize=(max(5.0, 1.1 * n_runs + 3.0), 3.6))
    fig = ax.figure
    x, ticks, labels, group_mid = 0.0, [], [], []
    for r in results:
        runs, times, group = _runs(r)
        start = x
        for rec in runs:
            scale = rec["batch"] if per_image else 1
            color = RUNTIME_COLORS.get(rec["runtime"], "#777777")
            median = rec["median_ms"] / scale
            if kind == "bar":
                ax.bar(x, median, width=0.7, color=color, alpha=0.85)
                ax.errorbar(x, median, yerr=[[median - rec["p10_ms"] / scale], [rec["p90_ms"] / scale - median]],
                            color="black", capsize=3, lw=1)
            else:
                key = f"{rec['runtime']}.b{rec['batch']}"
                data = np.asarray(times.get(key, [rec["median_ms"]])) / scale
                box = ax.boxplot(data, positions=[x], widths=0.6, patch_artist=True, showfliers=True)
                for patch in box["boxes"]:
                    patch.set_facecolor(color)
                    patch.set_alpha(0.85)
            top = rec["p90_ms"] / scale
            if rec.get("floor_ms"):
                floor = rec["floor_ms"] / scale
                ax.hlines(floor, x - 0.4, x + 0.4, colors="black", lw=2)
                ax.annotate(f"{rec['floor_ratio']:.1f}× floor", (x, max(top, median)), textcoords="offset points",
                            xytext=(0, 4), ha="center", fontsize=8)
            ticks.append(x)
            labels.append(f"{rec['runtime']}\nbatch {rec['batch']}")
            x += 1.0
        group_mid.append(((start + x - 1.0) / 2, group))
        x += 0.6
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_xlim(-0.7, x - 0.9)
    ax.set_ylabel("ms per image" if per_image else "ms per call")
    ax.set_ylim(bottom=0)
    ax.margins(y=0.15)
    if len(group_mid) == 1:
        heading = group_mid[0][1].replace("\n", " — ")
        ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
    else:
        for mid, group in group_mid:
            ax.annotate(group, (mid, 1.0), xycoords=("data", "axes fraction"), textcoords="offset points",
                        xytext=(0, 4), ha="center", va="bottom", fontsize=8)
        if title:
            ax.set_title(title, pad=28, fontsize=9)
    handles = [plt.Line2D([], [], color="black", lw=2, label="FLOP floor\n(FLOPs / sgemm\nthroughput)")]
    handles += [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.85, label=r) for r, c in RUNTIME_COLORS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
