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


def table1_claims(result, backbone: str | None = None):
    """The paper's Table I claims on the stand-in, with the spread over the splits (SD of the paired
    per-split differences; one split: not resolved). ``backbone``: a name appended to every claim."""
    return _labelled(_table1_claims(result), backbone)


def end_to_end_claims(result):
    """Table I's claims that end-to-end fine-tuning (``nirvis_masked_hsst.end_to_end``, trained masked) can check:
    fine-tuning on synthetic masks beats the pretrained network on masked probes, and HSST beats plain on masked
    and non-masked probes (rank-1). Spread: with two splits or more, the SD over splits of the paired per-split
    differences; with one, the standard error of the paired per-probe change on that split's probes (probe
    sampling only: another training seed could move it more), named in the claim."""
    from facelab.claims import ClaimCheck, check_order

    if result is None:
        return [ClaimCheck("HSST beats plain training end to end (trained masked)", "stated", "not run",
                           "not resolved")]
    per = result.metrics["per_split"]
    one = len(per) == 1

    def diff(a, b, tm):
        x = np.array([100 * r[a][tm]["rank1"] for r in per])
        y = np.array([100 * r[b][tm]["rank1"] for r in per])
        spread = per[0]["paired_rank1"][f"{a}-{b}"][tm]["se"] if one else float((x - y).std())
        return float(x.mean()), float(y.mean()), spread

    how = " (spread: SE of the paired per-probe change, one split)" if one else ""
    a, b, sd = diff("plain.masked", "pretrained", "masked")
    out = [check_order(f"fine-tuning on synthetic masks recovers masked accuracy (plain, end to end){how}",
                       better=a, worse=b, spread=sd, higher_is_better=True, names=("fine-tuned", "pretrained"),
                       unit="%")]
    for tm in TEST_MASKS_ORDER:
        a, b, sd = diff("hsst.masked", "plain.masked", tm)
        out.append(check_order(f"HSST beats plain training end to end (train Masked, test {_TRAIN[tm]}; rank-1){how}",
                               better=a, worse=b, spread=sd, higher_is_better=True, names=("HSST", "plain"),
                               unit="%"))
    return out


#: Table I's test sets, in its column order.
TEST_MASKS_ORDER = ("non_masked", "masked")


def _table1_claims(result):
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


# ----------------------------------------------------------------------------- Table II and Fig. 4

#: Table II's loss names, in its row order (the rows of ``nirvis_masked_hsst.table2``'s result).
LOSS_LABELS = {"softmax": "softmax", "am_softmax": "AM-softmax", "arc_softmax": "Arc-softmax", "triplet": "triplet"}


def _per_split(result, key: str, test: str, measure: str) -> np.ndarray:
    """``float[n_splits]`` in %: rank-1 (``measure="rank1"``) or VR at FAR ``measure`` ("0.01") per split."""
    rows = result.metrics["per_split"]
    vals = [r[key][test]["rank1"] if measure == "rank1" else r[key][test]["vr"][measure] for r in rows]
    return 100 * np.array([np.nan if v is None else v for v in vals], float)


def plot_fig4(result):
    """Fig. 4 on the CASIA stand-in: rank-1 and VR@FAR=1% per loss, plain vs HSST (mean ± SD over the splits),
    and the paired per-split differences HSST − plain."""
    import matplotlib.pyplot as plt

    losses = [k for k in LOSS_LABELS if k in result.metrics["per_split"][0]]
    x = np.arange(len(losses))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (measure, label) in zip(axes[:2], (("rank1", "rank-1 (%)"), ("0.01", "VR@FAR=1% (%)"))):
        for j, (prefix, name) in enumerate((("", "plain"), ("hsst_", "HSST"))):
            vals = [_per_split(result, prefix + k, "casia", measure) for k in losses]
            ax.bar(x + (j - 0.5) * 0.38, [np.nanmean(v) for v in vals], 0.38, yerr=[np.nanstd(v) for v in vals],
                   capsize=3, label=name)
        lo = min(np.nanmin(_per_split(result, p + k, "casia", measure)) for k in losses for p in ("", "hsst_"))
        ax.set(xticks=x, xticklabels=[LOSS_LABELS[k] for k in losses], ylabel=label, ylim=(max(0, lo - 3), 100))
        ax.legend(fontsize=7)
    ax = axes[2]
    for j, (measure, name) in enumerate((("rank1", "rank-1"), ("0.01", "VR@1%"))):
        for i, k in enumerate(losses):
            d = _per_split(result, "hsst_" + k, "casia", measure) - _per_split(result, k, "casia", measure)
            ax.plot(np.full(len(d), i + (j - 0.5) * 0.3), d, "o", ms=4, color=f"C{j}", label=name if i == 0 else None)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xticks=x, xticklabels=[LOSS_LABELS[k] for k in losses], ylabel="HSST − plain (points), per split")
    ax.legend(fontsize=7)
    fig.suptitle(f"CASIA stand-in, {result.metrics['n_splits']} splits (the paper's Fig. 4: ten folds)", fontsize=9)
    fig.tight_layout()
    return fig


def table2_counts_frame(result):
    """The three test sets of Table II: identities, gallery and probe photos, genuine and impostor comparisons
    and the smallest FAR they can measure."""
    import pandas as pd

    names = {"casia": "CASIA stand-in (LFW, split 1)", "oulu": "Oulu-CASIA stand-in (CFP frontal)",
             "buaa": "BUAA-VisNir stand-in (CFP frontal + profile)"}
    rows = [{"test set": names[k], **v} for k, v in result.metrics["test_counts"].items()]
    return pd.DataFrame(rows).set_index("test set").loc[list(names.values())]


def table2_claims(result, backbone: str | None = None):
    """Table II's and Fig. 4's claims on the stand-ins; spread: the SD over splits of the paired differences
    (one split: not resolved). ``backbone``: a name appended to every claim (a second backbone's rows)."""
    return _labelled(_table2_claims(result), backbone)


def _labelled(claims, backbone: str | None):
    """``claims`` with ``[<backbone> backbone]`` appended to each claim's text (a second backbone's rows)."""
    import dataclasses

    if backbone is None:
        return claims
    return [dataclasses.replace(c, claim=f"{c.claim} [{backbone} backbone]") for c in claims]


def _table2_claims(result):
    from facelab.claims import ClaimCheck, check_order

    if result is None:
        return [ClaimCheck("HSST improves every loss (Table II, Fig. 4)", "stated", "not run", "not resolved")]
    losses = [k for k in LOSS_LABELS if k in result.metrics["per_split"][0]]

    def paired(a, b, test, measure):
        x, y = _per_split(result, a, test, measure), _per_split(result, b, test, measure)
        ok = np.isfinite(x) & np.isfinite(y)  # VR is unmeasurable where a test set has too few impostors
        if not ok.any():
            return float("nan"), float("nan"), float("nan")
        d = x[ok] - y[ok]
        return float(x[ok].mean()), float(y[ok].mean()), float(d.std()) if len(d) > 1 else float("nan")

    out = []
    others = [k for k in losses if k != "triplet"]
    if "triplet" in losses and others:
        best = max(others, key=lambda k: np.nanmean(_per_split(result, k, "casia", "rank1")))
        a, b, sd = paired("triplet", best, "casia", "rank1")
        out.append(check_order(f"plain training: triplet beats the classification losses (best: {LOSS_LABELS[best]}; "
                               "paper: 97.40 vs ≤ 95.00 rank-1)", better=a, worse=b, spread=sd, higher_is_better=True,
                               names=("triplet", LOSS_LABELS[best]), unit="%"))
    for k in losses:
        a, b, sd = paired("hsst_" + k, k, "casia", "rank1")
        out.append(check_order(f"HSST improves {LOSS_LABELS[k]} on CASIA (rank-1)", better=a, worse=b, spread=sd,
                               higher_is_better=True, names=("HSST", "plain"), unit="%"))
    for test, label in (("oulu", "Oulu-CASIA"), ("buaa", "BUAA-VisNir")):
        for k in losses:
            a, b, sd = paired("hsst_" + k, k, test, "0.001")
            out.append(check_order(f"HSST generalises better to the {label} stand-in ({LOSS_LABELS[k]}, VR@0.1%)",
                                   better=a, worse=b, spread=sd, higher_is_better=True, names=("HSST", "plain"),
                                   unit="%"))
    return out


# ----------------------------------------------------------------------------- ablations


def ablation_frame(result):
    """One row per ablation variant: rank-1 and VR@FAR=0.1% on every masked probe (mean ± SD over the splits),
    the paired difference to HSST as run (mean ± SD over splits), rank-1 on the probes in the held-out mask style
    and in the others, and the training time per step of 64 pairs."""
    import pandas as pd

    m = result.metrics
    per = m["per_split"]
    style = m["held_out_style"]

    def stat(name, probes, measure):
        v = _per_split(result, name, probes, measure) if all(r[name][probes] is not None for r in per) else None
        if v is None or not np.isfinite(v).any():
            return "not measurable", None
        return f"{np.nanmean(v):.2f} ± {np.nanstd(v):.2f}", v

    rows = []
    for name in m["variants"]:
        r1, v1 = stat(name, "all", "rank1")
        vr, _ = stat(name, "all", "0.001")
        held, _ = stat(name, "held-out style", "rank1")
        other, _ = stat(name, "other styles", "rank1")
        base = _per_split(result, "hsst", "all", "rank1") if "hsst" in m["variants"] else None
        diff = ("—" if name == "hsst" or base is None or v1 is None
                else f"{np.nanmean(v1 - base):+.2f} ± {np.nanstd(v1 - base):.2f}")
        rows.append({"variant": name, "rank-1 (%)": r1, "Δ rank-1 vs HSST (paired)": diff, "VR@FAR=0.1% (%)": vr,
                     f"rank-1, {style} probes": held, "rank-1, other probes": other,
                     "ms per step": f"{m['ms_per_step'][name]:.2f}"})
    return pd.DataFrame(rows).set_index("variant")
