"""Chapter 4's report: figures and tables from stored results (not tracked for staleness: it only reads them)."""

from __future__ import annotations

import numpy as np

#: How the chapter names each probe rendering of the gap measurement.
KIND_LABELS = {"vis": "VIS (as photographed)", "grey": "grey (colour removed)", "nir": "simulated NIR",
               "vis_masked": "VIS + mask", "nir_masked": "masked simulated NIR (the task)"}


def plot_standin(prepared, rows, data_root=None, *, seed: int = 0, n_real: int = 4):
    """Fig. 1's stand-in: per column one prepared face as VIS, simulated NIR and masked simulated NIR (rows),
    and a row of real masked photos (RWMFD samples) when the data root has them."""
    import matplotlib.pyplot as plt

    from facelab.data.imageio import read_rgb
    from facelab.data.nirvis import render
    from facelab.paths import dataset_dir

    kinds = ("vis", "nir", "nir_masked")
    try:
        files = sorted(dataset_dir("rwmfd", data_root).rglob("*.jpg"))
    except Exception:  # noqa: BLE001 - the real photos are an optional comparison row
        files = []
    pick = (sorted(np.random.default_rng(seed).choice(len(files), size=min(n_real, len(files)), replace=False))
            if files else [])
    n_rows = len(kinds) + (1 if pick else 0)
    fig, axes = plt.subplots(n_rows, len(rows), figsize=(1.6 * len(rows), 1.7 * n_rows), squeeze=False)
    for j, r in enumerate(rows):
        face = np.asarray(prepared.aligned[r])
        for i, kind in enumerate(kinds):
            axes[i, j].imshow(render(face, kind, seed=seed, row=int(r)))
    for i, kind in enumerate(kinds):
        axes[i, 0].set_ylabel(KIND_LABELS[kind].split(" (")[0], fontsize=8)
    for j in range(len(rows)):
        if pick and j < len(pick):
            axes[-1, j].imshow(read_rgb(files[pick[j]]))
    if pick:
        axes[-1, 0].set_ylabel("real masked\n(RWMFD)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def gap_frame(result):
    """Rank-1 and VR at each FAR (%, mean ± SD over the splits) per probe rendering."""
    import pandas as pd

    rows = []
    for kind, s in result.metrics["summary"].items():
        row = {"probes": KIND_LABELS.get(kind, kind),
               "rank-1": f"{100 * s['rank1']['mean']:.2f} ± {100 * s['rank1']['sd']:.2f}"}
        for key, v in s.items():
            if key.startswith("vr_far_"):
                label = f"VR@FAR={100 * float(key[len('vr_far_'):]):g}%"
                row[label] = "not measurable" if v is None else f"{100 * v['mean']:.2f} ± {100 * v['sd']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("probes")
