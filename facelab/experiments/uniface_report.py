"""Chapter 5's report: tables, figures and claim checks from stored results (it only reads them, so it is not
tracked for staleness)."""

from __future__ import annotations

import numpy as np

LETTERS = ("A", "B", "C", "D")
#: Fig. 3's names of the ablations.
NAMES = {"A": "A (primary)", "B": "B (two networks)", "C": "C (no top-down fusion)", "D": "D (no landmark attention)"}


def _present(nets: dict):
    """``(letter, result)`` of the networks that have a result, in Table I's order."""
    return [(k, nets[k]) for k in LETTERS if nets.get(k) is not None]


def _paper(key: str):
    from facelab.tables import cells

    c = cells("004").get(key)
    return None if c is None else c["value"]


def _acc(d) -> str:
    return "not run" if d is None else f"{d['accuracy']:.2f} ± {d['accuracy_sd']:.2f}"


def aspect_ratios(data_root=None, profile: str = "small") -> dict:
    """Width / height of the face boxes the paper's statistic is about: WIDER FACE's ground truth (the 19 test
    images) and MTCNN's boxes on the prepared LFW and CFP photos (the kind of box the network is trained on)."""
    from facelab.data.manifest import boxes_of, load_prepared
    from facelab.data.widerface import read_gt

    out = {}
    b = np.concatenate([g.boxes for g in read_gt(data_root)])
    b = b[(b[:, 2] - b[:, 0] > 0) & (b[:, 3] - b[:, 1] > 0)]
    out["WIDER FACE (19 images)"] = (b[:, 2] - b[:, 0]) / (b[:, 3] - b[:, 1])
    for name in ("lfw", "cfp"):
        try:
            p = load_prepared(name, profile)
        except Exception:  # noqa: BLE001 - a dataset not prepared is left out of the figure
            continue
        bb = boxes_of(p.manifest)
        out[f"MTCNN boxes, {name.upper()} ({profile})"] = (bb[:, 2] - bb[:, 0]) / (bb[:, 3] - bb[:, 1])
    return out


def plot_aspect_ratios(ratios: dict):
    import matplotlib.pyplot as plt

    from facelab.models.uniface import ASPECT_RATIOS

    fig, ax = plt.subplots(figsize=(6.5, 3))
    bins = np.linspace(0.3, 1.5, 49)
    for label, r in ratios.items():
        ax.hist(r, bins=bins, histtype="step", density=True, lw=1.5,
                label=f"{label}: median {np.median(r):.2f}, n = {len(r):,}")
    for a in ASPECT_RATIOS:
        ax.axvline(a, color="k", ls=":", lw=1)
    ax.set_xlabel("box width / height (dotted: the anchors' 0.95, 0.8, 0.65)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def table1_frame(nets: dict, teacher) -> "pd.DataFrame":  # noqa: F821
    """Table I in the paper's shape: the paper's rows (its other methods paper-only), the teacher's two rows in
    place of FaceNet's "Aligned No/Yes", and models A-D; ours next to the paper's accuracy."""
    import pandas as pd

    rows = []
    for key, label in (("deepface", "DeepFace"), ("deepid", "DeepID"), ("deepid2", "DeepID2"),
                       ("deepid2plus", "DeepID2+")):
        rows.append({"Methods": label, "Aligned": "(paper)", "Networks": f"{_paper(f'tableI.{key}.networks'):g}",
                     "Images (ours)": "—", "Accuracy (ours)": "paper only",
                     "Accuracy (paper)": f"{_paper(f'tableI.{key}.accuracy'):.2f}"})
    t = teacher.metrics if teacher is not None else None
    for key, label, ours in (("facenet_unaligned", "Teacher, fixed centre crop (paper: FaceNet, Aligned No)", "centre_crop"),
                             ("facenet_aligned", "Teacher, MTCNN + alignment (paper: FaceNet, Aligned Yes)", "aligned")):
        rows.append({"Methods": label, "Aligned": "No" if ours == "centre_crop" else "Yes", "Networks": "1",
                     "Images (ours)": "SFace (pretrained, OpenCV Zoo)",
                     "Accuracy (ours)": _acc(t["table1"][ours]) if t else "not run",
                     "Accuracy (paper)": f"{_paper(f'tableI.{key}.accuracy'):.2f}"})
    for letter in LETTERS:
        r = nets.get(letter)
        m = r.metrics if r is not None else None
        rows.append({"Methods": f"Ours, model {NAMES[letter]}", "Aligned": "No", "Networks": "2" if letter == "B" else "1",
                     "Images (ours)": (f"{m['training_images']['n_photos'] + m['training_images']['n_scenes']:,}"
                                       if m else "—"),
                     "Accuracy (ours)": _acc(m["table1"]) if m else "not run",
                     "Accuracy (paper)": f"{_paper(f'tableI.model_{letter.lower()}.accuracy'):.2f}"})
    return pd.DataFrame(rows).set_index("Methods")


def selection_frame(nets: dict) -> "pd.DataFrame":  # noqa: F821
    """How each network's face was chosen on LFW (counts), its agreement with the teacher, and its landmarks."""
    import pandas as pd

    rows = []
    for letter, r in _present(nets):
        t = r.metrics["table1"]
        lm = t["landmarks_vs_mtcnn"]
        rows.append({"model": NAMES[letter], "images": sum(t["selection"].values()),
                     "face above the score": t["selection"]["selected"],
                     "fallback: best box": t["selection"]["fallback_best_box"],
                     "teacher on the same pairs": _acc(t["teacher_same_crops"]),
                     "cosine to teacher (centred)": f"{t['cosine_to_teacher']['centred_mean']:.3f}",
                     "same decision as teacher": f"{100 * t['decision_agreement']:.1f}%",
                     "landmark NME vs MTCNN": "—" if lm["nme"] is None else f"{100 * lm['nme']:.1f}%",
                     "parameters": f"{r.metrics['parameters'] / 1e6:.2f}M",
                     "head parameters": f"{r.metrics['head_parameters'] / 1e6:.3f}M"})
    return pd.DataFrame(rows).set_index("model")


def body_parameters(backbone: str) -> int:
    """Parameters of the backbone layers a Uniface network uses (its bottom-up body up to the last tap, no extras)."""
    from facelab.models.uniface import BottomUp

    return sum(p.numel() for p in BottomUp(backbone).body.parameters())


FLOOR_ROWS = {"aligned_crop": "ImageNet MobileNetV2, no face training: aligned crop",
              "whole_image_roi": "ImageNet MobileNetV2, no face training: image fed whole, centre-box RoI",
              "untrained_student": "Model A before training (ImageNet backbone, random branch), MTCNN's face"}


def floor_frame(nets: dict, floor) -> "pd.DataFrame":  # noqa: F821
    """The floor's rows (``uniface.imagenet_floor``) and each student against the fed-whole floor and against model
    A before training, on the same pairs: the mean over folds of the per-fold accuracy difference, its SD over
    folds, and whether the student is above or below by more than that SD (else not resolved). The floor's rows
    are given their face, the students detect theirs: a gap mixes localisation with recognition. Pairs count as
    the same when the data manifest, the profile's pairs per fold and the number of pairs agree."""
    import pandas as pd

    if floor is None:
        return pd.DataFrame([{"system": "ImageNet floor", "LFW accuracy": "not run"}]).set_index("system")
    f = floor.metrics["table1"]
    rows = [{"system": label, "LFW accuracy": _acc(f[k]), "pairs": f[k]["n_pairs"]} for k, label in FLOOR_ROWS.items()
            if k in f]
    def same_pairs(r) -> bool:
        prov = (getattr(r, "provenance", {}) or {}), (getattr(floor, "provenance", {}) or {})
        conf = (getattr(r, "config", {}) or {}), (getattr(floor, "config", {}) or {})
        return (prov[0].get("data_manifest_hash") == prov[1].get("data_manifest_hash")
                and all(conf[0].get(k) == conf[1].get(k) for k in ("data_profile", "pairs_per_fold")))

    def paired(r, t, ref, col, above, below, row):
        base = np.asarray(ref["folds"], float)
        if t["n_pairs"] == ref["n_pairs"] and len(t["folds"]) == len(base) and same_pairs(r):
            d = np.asarray(t["folds"], float) - base
            sd = float(d.std())
            row[col] = f"{d.mean():+.2f} ± {sd:.2f}"
            row[f"{col}: verdict"] = "not resolved" if abs(d.mean()) <= sd else (above if d.mean() > 0 else below)
        else:  # another profile's pairs: no paired comparison
            row[col], row[f"{col}: verdict"] = "different pairs", "not compared"

    for letter, r in _present(nets):
        t = r.metrics["table1"]
        row = {"system": f"Ours, model {NAMES[letter]} (mimic-trained)", "LFW accuracy": _acc(t), "pairs": t["n_pairs"]}
        paired(r, t, f["whole_image_roi"], "minus the fed-whole floor", "above the floor", "below the floor", row)
        if "untrained_student" in f:
            paired(r, t, f["untrained_student"], "minus model A before training", "above untrained A",
                   "below untrained A", row)
        rows.append(row)
    return pd.DataFrame(rows).set_index("system").fillna("—")


def robustness_frame(nets: dict, teacher) -> "pd.DataFrame":  # noqa: F821
    """LFW accuracy (mean ± SD over folds) under crop/pad of up to p px per side, per system."""
    import pandas as pd

    rows = []
    systems = [(NAMES[k], r.metrics["robustness"]) for k, r in _present(nets)]
    if teacher is not None:
        systems.append(("MTCNN + SFace (pipeline)", teacher.metrics["robustness"]))
    for name, sweep in systems:
        row = {"system": name}
        for px, v in sweep.items():
            row[f"±{px} px"] = _acc(v)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows).set_index("system")
    df["paper (±60 px)"] = "not reported"
    return df


def plot_mimic_curves(nets: dict, smooth: int = 10):
    """Fig. 5: the mimic term per step (moving average over ``smooth`` steps) of each network, same data order."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for letter, r in _present(nets):
        y = np.asarray(r.metrics["history"]["step_mimic"], float)
        k = max(1, min(smooth, len(y)))
        ys = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(ys)) + k, ys, label=NAMES[letter])
    ax.set_xlabel("training step (batch of 16 images)")
    ax.set_ylabel("mimic term ‖f̂ − ĝ‖² (eq. 3, unit vectors)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def detection_frame(nets: dict, baselines=None) -> "pd.DataFrame":  # noqa: F821
    """AP (all faces) with its bootstrap interval on the WIDER images (300 px and native) and held-out composites;
    MTCNN's and YuNet's WIDER rows from chapter 1's ``lefv.detection_baselines`` (native resolution)."""
    import pandas as pd

    def cell(d):
        a = d["all"]
        b = a["bootstrap"]
        return f"{a['ap']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}]"

    rows = []
    for letter, r in _present(nets):
        d = r.metrics["detection"]
        rows.append({"detector": f"Uniface {NAMES[letter]}", "WIDER, 300 px": cell(d["wider_300"]),
                     "WIDER, native": cell(d["wider_native"]) if "wider_native" in d else "not run",
                     "held-out composites": cell(d["heldout"])})
    if baselines is not None:
        for name in ("mtcnn", "yunet"):
            rows.append({"detector": f"{name.upper() if name == 'mtcnn' else 'YuNet'} (chapter 1)",
                         "WIDER, 300 px": "—", "WIDER, native": cell(baselines.metrics[name]),
                         "held-out composites": "—"})
    return pd.DataFrame(rows).set_index("detector") if rows else pd.DataFrame()


def _tp_fp(d: dict) -> tuple[np.ndarray, np.ndarray]:
    a = d["all"]
    p, r = np.asarray(a["pr"]["precision"]), np.asarray(a["pr"]["recall"])
    tp = r * a["n_gt"]
    fp = np.where(p > 0, tp * (1 - p) / np.maximum(p, 1e-12), 0.0)
    return tp, fp


def plot_discrete_roc(nets: dict, baselines=None):
    """Fig. 4's stand-in: true positives against false positives (per image) on the 19 WIDER images."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    n_img = None
    for letter, r in _present(nets):
        for key, ls in (("wider_300", ":"), ("wider_native", "-")):
            if key not in r.metrics["detection"]:
                continue
            d = r.metrics["detection"][key]
            n_img = d["all"]["n_images"]
            tp, fp = _tp_fp(d)
            ax.plot(fp / n_img, tp / d["all"]["n_gt"], ls=ls, label=f"{letter}, {key.split('_')[1]}")
    if baselines is not None:
        for name in ("mtcnn", "yunet"):
            d = baselines.metrics[name]
            tp, fp = _tp_fp(d)
            ax.plot(fp / d["all"]["n_images"], tp / d["all"]["n_gt"], lw=2, label=f"{name} (native)")
    ax.axvline(0.7, color="k", ls="--", lw=0.8)
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("false positives per image (dashed: the paper's 0.7 per image on FDDB)")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def speed_frame(speed) -> "pd.DataFrame":  # noqa: F821
    """Table II's stand-in: ms per image (median) and images/s per system, threads and faces, and the fitted line."""
    import pandas as pd

    m = speed.metrics
    rows = []
    for system, per in m["systems"].items():
        for threads, counts in per.items():
            row = {"system": system, "threads": int(threads)}
            for k, v in counts.items():
                row[f"{k} face{'s' if k != '1' else ''}: ms"] = f"{v['median_ms']:.1f}"
                row[f"{k}: img/s"] = f"{v['fps']:.1f}"
            f = m["fits"][system][threads]
            row["intercept ms"] = f"{f['intercept_ms']:.1f}"
            row["ms per added face"] = f"{f['slope_ms_per_face']:.2f}"
            rows.append(row)
    return pd.DataFrame(rows).set_index(["system", "threads"])


def flops_frame(speed) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    m = speed.metrics
    rows = []
    for name, parts in m["flops"].items():
        row = {"network": name, "parameters": f"{m['parameters'][name] / 1e6:.2f}M"}
        row.update({k.replace("_", " "): f"{v / 1e9:.2f} GFLOPs" for k, v in parts.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("network")


def claims(nets: dict, teacher, speed) -> list:
    """The paper's claims, each with our numbers and spread (SD over folds of the paired accuracy
    differences, same pairs)."""
    from facelab.claims import ClaimCheck, check_order

    out = []

    def folds(letter):
        r = nets.get(letter)
        return None if r is None else np.asarray(r.metrics["table1"]["folds"])

    a = folds("A")
    if a is not None and teacher is not None:
        t = teacher.metrics["table1"]["aligned"]
        d = np.asarray(t["folds"]) - a
        gap = float(d.mean())
        out.append(ClaimCheck("A is near its teacher (paper: 98.98 vs 99.4, a gap of 0.4 points)", "gap ≤ 1 point",
                              f"A {a.mean():.2f} vs teacher {np.mean(t['folds']):.2f}: gap {gap:.2f} ± {d.std():.2f}",
                              "reproduced" if gap + d.std() <= 1.0 else ("not reproduced" if gap - d.std() > 1.0
                                                                          else "not resolved")))
    else:
        out.append(ClaimCheck("A is near its teacher", "gap ≤ 1 point", "not run", "not resolved"))
    for better, worse in (("A", "B"), ("B", "C"), ("C", "D")):
        x, y = folds(better), folds(worse)
        if x is None or y is None:
            out.append(ClaimCheck(f"{better} > {worse} on LFW", "stated", "not run", "not resolved"))
            continue
        out.append(check_order(f"{better} > {worse} on LFW (paper: {_paper(f'tableI.model_{better.lower()}.accuracy'):.2f}"
                               f" vs {_paper(f'tableI.model_{worse.lower()}.accuracy'):.2f})",
                               better=float(x.mean()), worse=float(y.mean()), spread=float((x - y).std()),
                               higher_is_better=True, names=(better, worse), unit="%"))
    curves = {k: np.asarray(r.metrics["history"]["mimic"]) for k, r in _present(nets)}
    if "A" in curves and len(curves) > 1:
        last = {k: float(v[-1]) for k, v in curves.items()}
        others = [k for k in curves if k != "A"]
        best_other = min(others, key=lambda k: last[k])
        out.append(ClaimCheck("A converges better (lowest final mimic loss, Fig. 5)", "A lowest",
                              ", ".join(f"{k} {v:.3f}" for k, v in last.items()) + " (last epoch's mean)",
                              "reproduced" if last["A"] < last[best_other] else "not reproduced"))
    if nets.get("A") is not None and nets.get("D") is not None:
        ratio = nets["D"].metrics["head_parameters"] / nets["A"].metrics["head_parameters"]
        out.append(ClaimCheck("D keeps A's parameter count (recognition module)", "ratio ≈ 1",
                              f"D/A = {ratio:.3f}", "reproduced" if abs(ratio - 1) < 0.05 else "not reproduced"))
    if speed is not None:
        f = speed.metrics["fits"]
        for system in [s for s in ("uniface_a", "uniface_a_ort") if s in f]:
            runtime = " (dense part in ONNX Runtime)" if system.endswith("_ort") else " (eager)"
            for threads in sorted(f[system], key=int):
                u = speed.metrics["systems"][system][threads]
                p = speed.metrics["systems"]["mtcnn_sface"][threads]
                k = "4" if "4" in u else sorted(u, key=int)[-1]
                t = f"{threads} thread{'s' if threads != '1' else ''}"
                out.append(ClaimCheck(f"the unified pass{runtime} is faster at {k} faces ({t})",
                                      "unified < pipeline", f"{u[k]['median_ms']:.1f} vs {p[k]['median_ms']:.1f} ms",
                                      "reproduced" if u[k]["median_ms"] < p[k]["median_ms"] else "not reproduced"))
                su, sp = f[system][threads]["slope_ms_per_face"], f["mtcnn_sface"][threads]["slope_ms_per_face"]
                out.append(ClaimCheck(f"the unified pass{runtime} scales better with faces ({t})",
                                      "smaller ms per added face", f"{su:.2f} vs {sp:.2f} ms per face",
                                      "reproduced" if su < sp else "not reproduced"))
    return out
