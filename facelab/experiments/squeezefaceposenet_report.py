"""Tables, figures and claim checks of chapter 2 (paper 001) from stored experiment results.

Kept apart from :mod:`facelab.experiments.squeezefaceposenet` so that a change in how results are
shown never makes a stored result stale. Every function reads :class:`~facelab.results.Result`
objects (``outcome.result`` of :func:`facelab.experiments.load_or_run`); nothing is recomputed
except what is derived from stored numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from facelab import tables
from facelab.claims import ClaimCheck, check_order
from facelab.experiments.squeezefaceposenet import ALL_MODELS, COMBOS, SFPN_MODELS, TEMPLATE_SIZES, combo_key
from facelab.results import Result

#: Display names of the models, as in the paper's tables.
LABELS = {"squeezefaceposenet": "SqueezeFacePoseNet", "squeezefaceposenet_gdc": "+GDC",
          "squeezefaceposenet_dwc": "+DWC", "squeezefaceposenet_dwc_gdc": "+DWC+GDC",
          "resnet50": "ResNet-50", "se_resnet50": "SE-ResNet-50",
          "wide": "wide (MS1M-like)", "deep": "deep (VGGFace2-like)", "wide_then_deep": "wide -> deep"}
POSE_LABEL = {"frontal": "F", "profile": "P"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _in_paper_order(models: Mapping[str, dict]) -> list[tuple[str, dict]]:
    """Stored results sort their keys; show the models in Table 1's order."""
    rank = {m: i for i, m in enumerate(ALL_MODELS)}
    return sorted(models.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def latency_frame(result: Result):
    """Latency per model, runtime and thread count: median ms, p10-p90, floor ms and floor ratio."""
    import pandas as pd

    rows = []
    for name, m in _in_paper_order(result.metrics["models"]):
        for threads, lat in (m.get("latency") or {}).items():
            for run, r in lat["runs"].items():
                rows.append({"model": _label(name), "threads": int(threads[1:]), "runtime": run.split("_b")[0],
                             "median ms": r["median_ms"], "p10–p90 ms": f"{r['p10_ms']:.1f}–{r['p90_ms']:.1f}",
                             "FLOP floor ms": r["floor_ms"], "floor ratio": r["floor_ratio"],
                             "within 1.3× floor": (r["floor_ratio"] is not None and r["floor_ratio"] <= 1.3)})
    return pd.DataFrame(rows).round(2)


def runs_frame(results: Mapping[str, Result]):
    """Our runs beside Table 4/5 (which show their χ² EERs): per run the training data, the CFP users
    tested, the training time, and the EERs with the cosine score instead of χ² (not in the paper), in %."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        stages = r.metrics["stages"].values()
        row = {"run": _label(name), "train images": sum(st["train_images"] for st in stages),
               "identities": max(st["identities"] for st in stages),
               "epochs": sum(len(st["history"]["train_loss"]) for st in stages), "CFP users": r.metrics["cfp_users"]}
        for k in TEMPLATE_SIZES:
            for pa, pb in COMBOS:
                row[f"cos EER {k} img {POSE_LABEL[pa]}-{POSE_LABEL[pb]} %"] = round(
                    100 * r.metrics["eer"]["cosine"][combo_key(k, pa, pb)], 2)
        row["train min"] = round(r.metrics.get("train_seconds", r.metrics["seconds"]) / 60, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def det_curves(result: Result, score: str = "chi2") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{label: (far, frr)}`` of every pose combination and template size (for ``plot_det``)."""
    far = np.asarray(result.arrays["det_far_grid"])
    out = {}
    for k in TEMPLATE_SIZES:
        for pa, pb in COMBOS:
            key = combo_key(k, pa, pb)
            s = result.arrays["summaries"][score][key]
            out[f"{POSE_LABEL[pa]}-{POSE_LABEL[pb]}, {k} img (EER {100 * s['eer']:.1f}%)"] = (far, np.asarray(s["det_frr"]))
    return out


def det_curves_by_model(results: Mapping[str, Result], key: str, score: str = "chi2") -> dict:
    """``{model: (far, frr)}`` for one pose combination/template key (e.g. ``t1_fp``)."""
    out = {}
    for name, r in results.items():
        s = r.arrays["summaries"][score][key]
        out[f"{_label(name)} (EER {100 * s['eer']:.1f}%)"] = (np.asarray(r.arrays["det_far_grid"]), np.asarray(s["det_frr"]))
    return out


def example_pairs(result: Result, key: str, data_root=None, *, size: int = 112):
    """The stored example comparisons of ``key`` as ``(images, titles)`` for :func:`facelab.viz.faces.pair_grid`
    (images read from the CFP folder and resized to ``size`` squares for display)."""
    import cv2

    from facelab.data.cfp import root_dir
    from facelab.data.imageio import read_rgb

    root = root_dir(data_root)
    pairs, titles = [], []
    for ex in result.arrays["examples"][key]:
        a, b = (cv2.resize(read_rgb(root / p), (size, size), interpolation=cv2.INTER_AREA)
                for p in (ex["image1"], ex["image2"]))
        pairs.append((a, b))
        titles.append(f"{'genuine' if ex['genuine'] else 'impostor'}, χ² {-ex['score']:.3g}")
    return pairs, titles


def history_frame(result: Result):
    """Per-epoch training record of every stage (loss, accuracy, learning rate, images/s)."""
    import pandas as pd

    rows = []
    for stage, st in result.metrics["stages"].items():
        h = st["history"]
        for e in range(len(h["train_loss"])):
            rows.append({"stage": stage, "epoch": e + 1, "train loss": h["train_loss"][e], "train acc": h["train_acc"][e],
                         "val loss": h["val_loss"][e], "val acc": h["val_acc"][e], "lr": h["lr"][e],
                         "images/s": h["images_per_s"][e], "seconds": h["seconds"][e]})
    return pd.DataFrame(rows).round(4)


def _eer_and_se(r: Result, key: str, score: str = "chi2") -> tuple[float, float]:
    s = r.arrays["summaries"][score][key]
    return 100 * s["eer"], 100 * s["eer_se"]


def _mean_eer(r: Result, keys, score: str = "chi2") -> tuple[float, float]:
    vals = [_eer_and_se(r, k, score) for k in keys]
    return float(np.mean([v for v, _ in vals])), float(math.sqrt(sum(se**2 for _, se in vals)) / len(vals))


def claims(train: Mapping[str, Result], data: Mapping[str, Result] | None = None,
           complexity: Result | None = None, *, score: str = "chi2", track: str = "") -> list[ClaimCheck]:
    """The paper's claims checked on our results (EER in %, spread = combined binomial SE)."""
    out: list[ClaimCheck] = []
    keys1 = [combo_key(1, a, b) for a, b in COMBOS]
    keys5 = [combo_key(5, a, b) for a, b in COMBOS]
    base = train.get("squeezefaceposenet")
    if base is not None:
        e1, s1 = _mean_eer(base, keys1, score)
        e5, s5 = _mean_eer(base, keys5, score)
        out.append(check_order("5-image templates beat 1-image templates (mean over F-F, P-P, F-P)", better=e5,
                               worse=e1, spread=math.hypot(s1, s5), higher_is_better=False,
                               names=("5 img", "1 img"), unit="%"))
        ff, sff = _eer_and_se(base, "t1_ff", score=score)
        pp, spp = _eer_and_se(base, "t1_pp", score=score)
        fp, sfp = _eer_and_se(base, "t1_fp", score=score)
        out.append(check_order("frontal pairs are easier than profile pairs (1 img)", better=ff, worse=pp,
                               spread=math.hypot(sff, spp), higher_is_better=False, names=("F-F", "P-P"), unit="%"))
        out.append(check_order("same-pose frontal beats cross-pose F-P (1 img)", better=ff, worse=fp,
                               spread=math.hypot(sff, sfp), higher_is_better=False, names=("F-F", "F-P"), unit="%"))
        for other, text in (("squeezefaceposenet_gdc", "GDC does not help: SqueezeFacePoseNet at least as good as +GDC"),
                            ("squeezefaceposenet_dwc", "DWC costs a little accuracy: SqueezeFacePoseNet better than +DWC")):
            if other in train:
                a, sa = _mean_eer(base, keys1, score)
                b, sb = _mean_eer(train[other], keys1, score)
                out.append(check_order(text + " (1 img mean)", better=a, worse=b, spread=math.hypot(sa, sb),
                                       higher_is_better=False, names=(_label("squeezefaceposenet"), _label(other)),
                                       unit="%"))
        if "resnet50" in train:
            a, sa = _mean_eer(train["resnet50"], keys1, score)
            b, sb = _mean_eer(base, keys1, score)
            out.append(check_order("the big ResNet-50 is more accurate than SqueezeFacePoseNet (1 img mean)", better=a,
                                   worse=b, spread=math.hypot(sa, sb), higher_is_better=False,
                                   names=("ResNet-50", "SqueezeFacePoseNet"), unit="%"))
    if complexity is not None:
        m = complexity.metrics["models"]
        paper = tables.cells("001")
        if "squeezefaceposenet_dwc" in m:
            c = tables.claim("001", "dwc_size_cut")
            base_mb, dwc_mb = (paper[k]["value"] for k in c["cells"])
            lo, hi = c["accept"]
            cut = 1 - m["squeezefaceposenet_dwc"]["size_mb"] / m["squeezefaceposenet"]["size_mb"]
            out.append(ClaimCheck(f"{c['claim']}; Table 1 gives {base_mb:g} -> {dwc_mb:g} MB",
                                  f"-{100 * (1 - dwc_mb / base_mb):.0f}% (Table 1), about -{100 * c['text_value']:.0f}% "
                                  "(text)",
                                  f"{m['squeezefaceposenet']['size_mb']:.2f} MB -> {m['squeezefaceposenet_dwc']['size_mb']:.2f} MB "
                                  f"({-100 * cut:.0f}%)", "reproduced" if lo <= cut <= hi else "not reproduced"))
        c = tables.claim("001", "few_mb")
        size = paper[c["cells"][0]]["value"]
        out.append(ClaimCheck(c["claim"], f"{size:g} MB", f"{m['squeezefaceposenet']['size_mb']:.2f} MB (fp32)",
                              "reproduced" if m["squeezefaceposenet"]["size_mb"] < c["accept_below"] else "not reproduced"))
        if "resnet50" in m:
            c = tables.claim("001", "params_vs_resnet50")
            big, small = (paper[k]["value"] for k in c["cells"])
            ratio = m["resnet50"]["params"] / m["squeezefaceposenet"]["params"]
            out.append(ClaimCheck(c["claim"], f"{big / 1e6:g}M / {small / 1e6:g}M = {big / small:.0f}x",
                                  f"{ratio:.0f}x (trunks)", "reproduced" if ratio >= c["accept_at_least"] else "not reproduced"))
    if data:
        if "wide" in data and "deep" in data:
            a, sa = _mean_eer(data["deep"], keys1, score)
            b, sb = _mean_eer(data["wide"], keys1, score)
            out.append(check_order("many images per identity beat many identities (VGGFace2 > MS1M; 1 img mean)",
                                   better=a, worse=b, spread=math.hypot(sa, sb), higher_is_better=False,
                                   names=("deep", "wide"), unit="%"))
        if "wide_then_deep" in data and "deep" in data:
            a, sa = _mean_eer(data["wide_then_deep"], keys1, score)
            b, sb = _mean_eer(data["deep"], keys1, score)
            out.append(check_order("pre-training then fine-tuning beats the fine-tuning data alone (1 img mean)",
                                   better=a, worse=b, spread=math.hypot(sa, sb), higher_is_better=False,
                                   names=("wide -> deep", "deep"), unit="%"))
    if track:
        out = [ClaimCheck(f"{c.claim} [{track}]", c.paper, c.ours, c.verdict) for c in out]
    return out


def claims_frame(checks: list[ClaimCheck]):
    import pandas as pd

    return pd.DataFrame([c.as_row() for c in checks])


def distilled_frame(results: Mapping[str, Result]):
    """The distilled track beside the teacher: LFW View 2 accuracy (± SD over folds) of each student and of
    SFace on the same crops, the student's cosine agreement with the teacher per test face and the share
    of LFW pairs both decide alike, the 1-image F-F EER on CFP (cosine), the pool and the training time."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        m = r.metrics
        rows.append({"model": _label(name), "LFW %": round(100 * m["lfw_accuracy"], 2),
                     "± SD": round(100 * m["lfw_accuracy_sd"], 2),
                     "SFace LFW %": round(100 * m["teacher_lfw_accuracy"], 2),
                     "cosine to SFace": round(m["agreement"]["cosine_mean"], 3),
                     "centred cosine": _centred(m),
                     "same decision %": round(100 * m["decision_agreement"], 1),
                     "CFP 1 img F-F EER %": round(100 * m["eer"]["cosine"]["t1_ff"], 2),
                     "pool images": m["n_train_images"], "epochs": len(m["history"]["train_loss"]),
                     # the epochs' own times: a run resumed from its finished checkpoint (re-evaluated
                     # only) keeps them, while its train_seconds is the (near-zero) time of that rerun
                     "train min": round(sum(m["history"]["seconds"]) / 60, 1)})
    return pd.DataFrame(rows)


def distilled_curves(results: Mapping[str, Result]) -> dict[str, list[float]]:
    """``{model: mean cosine to the teacher per epoch}`` (for :func:`facelab.viz.curves.plot_learning_curves`)."""
    return {_label(name): r.metrics["history"]["train_acc"] for name, r in results.items()}


def crossfit_frame(crossfit: Mapping[str, Result], single: Mapping[str, Result] | None = None):
    """The cross-fitted students (:mod:`facelab.experiments.squeezefaceposenet_crossfit`) beside the
    single-pool student of the same model: LFW View 2 accuracy (± SD over the ten folds, each scored by
    the student that never saw its persons), SFace on the same pairs, the students' centred cosine to
    SFace on their own test faces, the 1-image F-F EER on CFP (the students' mean and each), pool size
    per student, epochs and training minutes (all students); Table 4's 1-image F-F EER of the paper
    (VGGFace2-Pose, χ²) beside it."""
    import pandas as pd

    paper = tables.cells("001")
    rows = []
    for name, r in crossfit.items():
        m = r.metrics
        st = m["students"]
        # paper 001's cells name the variants without the family prefix: table4.dwc_gdc.t1_ff
        cell = paper.get(f"table4.{name.removeprefix('squeezefaceposenet_')}.t1_ff")
        paper_ff = None if cell is None else cell["value"]
        if single and name in single:
            s = single[name].metrics
            rows.append({"model": _label(name), "pool": "single (all of View 2 held out)",
                         "LFW %": round(100 * s["lfw_accuracy"], 2), "± SD": round(100 * s["lfw_accuracy_sd"], 2),
                         "SFace LFW %": round(100 * s["teacher_lfw_accuracy"], 2), "centred cosine": _centred(s),
                         "CFP 1 img F-F EER %": f"{100 * s['eer']['cosine']['t1_ff']:.2f}",
                         "paper F-F EER %": paper_ff,
                         "pool images": f"{s['n_train_images']:,}", "epochs": len(s["history"]["train_loss"]),
                         "train min": round(sum(s["history"]["seconds"]) / 60, 1)})
        ffs = [100 * x["eer"]["cosine"]["t1_ff"] for x in st]
        centred = [x["agreement"].get("centred_cosine_mean") for x in st]
        rows.append({"model": _label(name), "pool": f"cross-fitted ({len(st)} students)",
                     "LFW %": round(100 * m["lfw_accuracy"], 2), "± SD": round(100 * m["lfw_accuracy_sd"], 2),
                     "SFace LFW %": round(100 * m["teacher_lfw_accuracy"], 2),
                     "centred cosine": round(float(np.mean(centred)), 3) if None not in centred else None,
                     "CFP 1 img F-F EER %": f"{np.mean(ffs):.2f} (" + " / ".join(f"{v:.2f}" for v in ffs) + ")",
                     "paper F-F EER %": paper_ff,
                     "pool images": " / ".join(f"{x['n_train_images']:,}" for x in st),
                     "epochs": len(st[0]["history"]["train_loss"]),
                     "train min": round(sum(sum(x["history"]["seconds"]) for x in st) / 60, 1)})
    return pd.DataFrame(rows)


def crossfit_curves(crossfit: Mapping[str, Result]) -> dict[str, list[float]]:
    """``{model, student (its test folds): mean cosine to the teacher per epoch}``."""
    out = {}
    for name, r in crossfit.items():
        for x in r.metrics["students"]:
            folds = x["test_folds"]
            out[f"{_label(name)}, tested on folds {folds[0]}-{folds[-1]}"] = x["history"]["train_acc"]
    return out


def run_summary(outcomes: Mapping[str, object]):
    """Where every number of the chapter comes from: per experiment, loaded / ran / stale, the profile,
    its run time, the commit it ran at and when."""
    import pandas as pd

    rows = []
    for name, o in outcomes.items():
        r = o.result
        prov = r.provenance
        rows.append({"experiment": r.experiment, "status": o.status, "profile": r.profile,
                     "minutes": round(prov.get("wall_time_s", float("nan")) / 60, 1),
                     "commit": (prov.get("git_commit") or "unknown")[:10], "finished": prov.get("finished", "")})
    return pd.DataFrame(rows)


__all__ = ["latency_frame", "runs_frame", "distilled_frame", "distilled_curves", "crossfit_frame", "crossfit_curves",
           "det_curves", "det_curves_by_model", "example_pairs",
           "history_frame", "claims", "claims_frame", "run_summary", "SFPN_MODELS"]


def _centred(metrics: dict):
    """The centred cosine agreement (:func:`facelab.train.distill.agreement`); None in a result stored
    before it was measured."""
    value = metrics["agreement"].get("centred_cosine_mean")
    return None if value is None else round(value, 3)
