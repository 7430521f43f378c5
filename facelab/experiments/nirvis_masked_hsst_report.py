"""Chapter 4's report: figures and tables from stored results (not tracked for staleness: it only reads them)."""

from __future__ import annotations

import numpy as np

#: How the chapter names each probe rendering of the gap measurement.
KIND_LABELS = {"vis": "VIS (as photographed)", "grey": "grey (colour removed)", "nir": "simulated NIR",
               "vis_masked": "VIS + mask", "nir_masked": "masked simulated NIR (the task)"}


def plot_standin(prepared, rows, data_root=None, *, seed: int = 0, n_real: int | None = None):
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
    n_real = len(rows) if n_real is None else n_real
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
        if not ax.images:
            ax.axis("off")
    fig.tight_layout()
    return fig


def gap_frame(result):
    """Rank-1 and VR at each FAR (%, mean ± SD over the splits) per probe rendering."""
    import pandas as pd

    rows = []
    summary = result.metrics["summary"]
    for kind in sorted(summary, key=lambda k: list(KIND_LABELS).index(k) if k in KIND_LABELS else len(KIND_LABELS)):
        s = summary[kind]
        row = {"probes": KIND_LABELS.get(kind, kind),
               "rank-1": f"{100 * s['rank1']['mean']:.2f} ± {100 * s['rank1']['sd']:.2f}"}
        for key, v in s.items():
            if key.startswith("vr_far_"):
                label = f"VR@FAR={100 * float(key[len('vr_far_'):]):g}%"
                row[label] = "not measurable" if v is None else f"{100 * v['mean']:.2f} ± {100 * v['sd']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("probes")


_TRAIN = {"non_masked": "Non-masked", "masked": "Masked"}


def _paper(key: str):
    from facelab.tables import cells

    c = cells("003").get(key)
    return None if c is None else c["value"]


def _fmt(v, sd=None):
    if v is None:
        return "not measurable"
    return f"{100 * v:.2f}" if sd is None else f"{100 * v:.2f} ± {100 * sd:.2f}"


def table1_frame(result):
    """Table I in the paper's shape (rows: method × training set × test set; the cell the paper omits, trained
    masked and tested non-masked, and the pretrained model without fine-tuning added): ours on split 1, ours
    as mean ± SD over the splits, and the paper's value (%)."""
    import pandas as pd

    m = result.metrics
    first = m["per_split"][0]
    rows = []
    keys = [("pretrained", None)] + [(f"{meth}.{trm}", (meth, trm)) for meth in ("plain", "hsst")
                                     for trm in ("non_masked", "masked")]
    for key, what in keys:
        for tm in ("non_masked", "masked"):
            if what is None:
                label, pkey = f"Pretrained, no fine-tuning: test {_TRAIN[tm]}", None
            else:
                meth, trm = what
                label = f"{'Plain training' if meth == 'plain' else 'HSST'}: train {_TRAIN[trm]}, test {_TRAIN[tm]}"
                pkey = f"tableI.{meth}_{trm.replace('_', '')}_{tm.replace('_', '')}"
            s, f = m["summary"][key][tm], first[key][tm]
            vr = s.get("vr_far_0.001")
            rows.append({"": label,
                         "Rank-1 (split 1)": _fmt(f["rank1"]),
                         "Rank-1 (mean ± SD)": _fmt(s["rank1"]["mean"], s["rank1"]["sd"]),
                         "paper Rank-1": ("not reported" if pkey is None or _paper(pkey + ".rank1") is None
                                          else f"{_paper(pkey + '.rank1'):.2f}"),
                         "VR@FAR=0.1% (split 1)": _fmt(f["vr"].get("0.001")),
                         "VR@FAR=0.1% (mean ± SD)": "not measurable" if vr is None else _fmt(vr["mean"], vr["sd"]),
                         "paper VR@FAR=0.1%": ("not reported" if pkey is None or _paper(pkey + ".vr_far1e-3") is None
                                               else f"{_paper(pkey + '.vr_far1e-3'):.2f}")})
    return pd.DataFrame(rows).set_index("")


def table1_claims(result):
    """The paper's Table I claims on the stand-in, with the spread over the splits (SD of the paired
    per-split differences; one split: not resolved)."""
    from facelab.claims import ClaimCheck, check_order

    if result is None:
        return [ClaimCheck("HSST beats plain training in every Table I cell", "stated", "not run", "not resolved")]
    per = result.metrics["per_split"]

    def diff(a, b, tm):
        d = np.array([100 * (r[a][tm]["rank1"] - r[b][tm]["rank1"]) for r in per])
        return float(np.mean([100 * r[a][tm]["rank1"] for r in per])), float(
            np.mean([100 * r[b][tm]["rank1"] for r in per])), (float(d.std()) if len(d) > 1 else float("nan"))

    out = []
    non = float(np.mean([100 * r["plain.non_masked"]["non_masked"]["rank1"] for r in per]))
    msk = float(np.mean([100 * r["plain.non_masked"]["masked"]["rank1"] for r in per]))
    d = np.array([100 * (r["plain.non_masked"]["non_masked"]["rank1"] - r["plain.non_masked"]["masked"]["rank1"])
                  for r in per])
    out.append(check_order("masks cut a plain model's rank-1 (paper: 98.25 → 53.88)", better=non, worse=msk,
                           spread=float(d.std()) if len(d) > 1 else float("nan"), higher_is_better=True,
                           names=("non-masked probes", "masked probes"), unit="%"))
    a, b, sd = diff("plain.masked", "plain.non_masked", "masked")
    out.append(check_order("training on synthetic masks recovers masked accuracy (paper: 53.88 → 83.90)", better=a,
                           worse=b, spread=sd, higher_is_better=True, names=("trained masked", "trained non-masked"),
                           unit="%"))
    for trm in ("non_masked", "masked"):
        for tm in ("non_masked", "masked"):
            if trm == "masked" and tm == "non_masked":
                continue  # the cell the paper does not report
            a, b, sd = diff(f"hsst.{trm}", f"plain.{trm}", tm)
            out.append(check_order(f"HSST beats plain training (train {_TRAIN[trm]}, test {_TRAIN[tm]}; rank-1)",
                                   better=a, worse=b, spread=sd, higher_is_better=True, names=("HSST", "plain"),
                                   unit="%"))
    return out


def plot_loss_curves(result):
    """Split 1's training loss per 100 steps for each (method, training set)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for key, curve in result.metrics["loss_curves_split0"].items():
        ax.plot(100 * np.arange(1, len(curve) + 1), curve, label=key.replace(".", ", "))
    ax.set(xlabel="step", ylabel="loss (eq. 1 / eq. 2)", title="training loss, split 1")
    ax.legend(fontsize=7)
    return fig
