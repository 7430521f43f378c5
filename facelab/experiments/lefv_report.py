"""Chapter 1's tables and checks, computed from stored results (:mod:`facelab.experiments.lefv`) and
the paper's values (``facelab/paper_values/000.json``): the notebook only calls these."""

from __future__ import annotations

from facelab.claims import ClaimCheck, check_order, check_value
from facelab.tables import cells

PAPER = "000"
NOT_MEASURED = "not measured yet (the chapter's next step)"


def _pv(key: str) -> float:
    return cells(PAPER)[key]["value"]


def table2_readings():
    """Table 2 under the two possible column orders of its text copy: the marks give CF | CF+SDC |
    CF+SDC+CM | Baseline (reading A, ours); a reader who takes the first printed column as the
    baseline gets reading B. The checks the text allows: the full model is "a little" below the
    baseline and "far" cheaper, and Table 3 prints its Easy AP as 0.833."""
    import pandas as pd

    printed = [("cf", "CF"), ("cf_sdc", "CF+SDC"), ("cf_sdc_cm", "CF+SDC+CM"), ("baseline", "Baseline")]
    maps = [_pv(f"table2.map.{k}") for k, _ in printed]
    flops = [_pv(f"table2.flops.{k}") for k, _ in printed]
    easy = 100 * _pv("table3.ours.easy")
    rows = []
    for reading, order in (("A: CF | CF+SDC | CF+SDC+CM | Baseline (ours)", (0, 1, 2, 3)),
                           ("B: Baseline | CF | CF+SDC | CF+SDC+CM", (1, 2, 3, 0))):
        # order[i]: printed column holding network i of (CF, CF+SDC, CF+SDC+CM, Baseline)
        full_map, base_map = maps[order[2]], maps[order[3]]
        full_flops, base_flops = flops[order[2]], flops[order[3]]
        rows.append({"reading": reading, "full model mAP %": full_map, "baseline mAP %": base_map,
                     "full − baseline (AP points)": round(full_map - base_map, 1),
                     "baseline ÷ full FLOPs": round(base_flops / full_flops, 2),
                     "full mAP = Table 3 Easy (83.3)": abs(full_map - easy) < 0.05,
                     "'a little' below the baseline": -5 < full_map - base_map < 0,
                     "'far' cheaper than the baseline": base_flops / full_flops > 2})
    return pd.DataFrame(rows)


def table1_checks(result):
    """Every layer of ``lefv.table1``: measured parameters and MACs next to Table 1's formulas."""
    import pandas as pd

    rows = [{"row": c["row"], "n": c["n"], "N_in": c["N_in"], "N_out": c["N_out"], "H×W": f"{c['H']}×{c['W']}",
             "parameters": c["parameters"], "formula": int(c["parameters_formula"]),
             "MACs": c["macs"], "formula ": int(c["macs_formula"]),
             "equal": c["parameters"] == c["parameters_formula"] and c["macs"] == c["macs_formula"]}
            for c in result.metrics["checks"]]
    return pd.DataFrame(rows)


def side_claims_frame(result):
    """Section 2.2's numbers (VGG-16 vs MobileNet parameters; the 1×1 share of computation) measured."""
    import pandas as pd

    m = result.metrics
    rows = []
    if "vgg16_vs_mobilenet" in m:
        v = m["vgg16_vs_mobilenet"]
        rows.append({"quantity": "VGG-16 parameters ÷ MobileNet parameters", "paper": "32×",
                     "ours": f"{v['ratio']:.1f}× ({v['vgg16_parameters'] / 1e6:.1f}M / {v['mobilenet_parameters'] / 1e6:.2f}M)"})
    names = {"mobilenet_v1": "MobileNet (V1)", "torchvision:resnet50": "ResNet-50",
             "torchvision:resnext50_32x4d": "ResNeXt-50 32×4d", "torchvision:resnet34": "ResNet-34"}
    paper = {"mobilenet_v1": "94.86%", "torchvision:resnet50": "93% ('ResNet')"}
    for name, s in m["pointwise_share"].items():
        rows.append({"quantity": f"1×1 convolutions' share of {names.get(name, name)}'s multiply-adds",
                     "paper": paper.get(name, "—"), "ours": f"{100 * s['share_1x1']:.2f}%"})
    return pd.DataFrame(rows)


def latency_frame(result):
    """Every timed network: runtime, threads, median ms (p10-p90), images/s, ratio to the FLOP floor and
    to the roofline floor."""
    import pandas as pd

    rows = []
    for kind in ("detectors", "recognizers"):
        for name, entry in result.metrics[kind].items():
            for t, lat in (entry.get("latency") or {}).items():
                for runtime, r in lat["runs"].items():
                    rows.append({"model": name, "runtime": runtime, "threads": int(t[1:]),
                                 "median ms": round(r["median_ms"], 2),
                                 "p10–p90 ms": f"{r['p10_ms']:.2f}–{r['p90_ms']:.2f}",
                                 "images/s": round(r["images_per_s"], 1),
                                 "÷ FLOP floor": round(r["floor_ratio"], 2) if r.get("floor_ratio") else None,
                                 "÷ roofline": round(r["roofline_ratio"], 2) if r.get("roofline_ratio") else None})
    return pd.DataFrame(rows)


def roofline_frame(result, threads: int = 1):
    """Per timed network at ``threads``: FLOPs, bytes moved (unfused and fused), the compute and memory
    floors, the roofline floor, ONNX Runtime's median and the share of memory-bound layers."""
    import pandas as pd

    rows = []
    bws = result.metrics["memory_bandwidth"]
    bw = (bws.get(f"t{threads}") or {}).get("gb_per_s", bws.get("gb_per_s", float("nan")))
    for kind in ("detectors", "recognizers"):
        for name, entry in result.metrics[kind].items():
            lat = (entry.get("latency") or {}).get(f"t{threads}")
            if not lat or not lat.get("roofline"):
                continue
            fused, ort = lat["roofline"]["fused"], lat["runs"].get("onnxruntime", {})
            flops = entry["flops"] if isinstance(entry["flops"], (int, float)) else entry["flops"].get("480x640")
            rows.append({"model": name, "GFLOPs": round(flops / 1e9, 3),
                         "MB moved (unfused)": round(entry["bytes_moved"] / 1e6, 1),
                         "compute floor ms": round(fused["compute_ms"], 2), "memory floor ms": round(fused["memory_ms"], 2),
                         "roofline ms": round(fused["floor_ms"], 2), "ONNX Runtime ms": round(ort.get("median_ms", float("nan")), 2),
                         "÷ FLOP floor": round(ort["floor_ratio"], 2) if ort.get("floor_ratio") else None,
                         "÷ roofline": round(ort["roofline_ratio"], 2) if ort.get("roofline_ratio") else None,
                         "memory-bound layers": f"{fused['memory_bound_layers']}/{fused['layers']}",
                         "matmul GFLOP/s": round(lat["matmul_gflops"], 1), "bandwidth GB/s": round(bw, 1)})
    return pd.DataFrame(rows)


def msff_shapes():
    """The MSFF walk-through on a 112×112 input: each block's map, its max-pooled 7×7 version, the
    480-channel concatenation and Block 5 (computed with the model on a zero image)."""
    import pandas as pd
    import torch

    from facelab.models.lefv_recognizer import LEFVRecognizer

    m = LEFVRecognizer(msff=True).eval()
    x = torch.zeros(1, 3, 112, 112)
    rows = []
    with torch.no_grad():
        maps = m.block_maps(x)
        for i, t in enumerate(maps, 1):
            rows.append({"step": f"Block {i}", "output": "×".join(map(str, t.shape[1:])),
                         "max-pooled for MSFF": "×".join(map(str, m.scale_pool(t).shape[1:]))})
        fused = m.fused(x)
        rows.append({"step": "concatenate (MSFF)", "output": "×".join(map(str, fused.shape[1:])), "max-pooled for MSFF": ""})
        b5 = m.block5(fused)
        rows.append({"step": "Block 5 (960 filters, 1×1)", "output": "×".join(map(str, b5.shape[1:])), "max-pooled for MSFF": ""})
        rows.append({"step": "average pool, dropout, FC + BN", "output": str(m.forward_features(x).shape[1]),
                     "max-pooled for MSFF": ""})
    return pd.DataFrame(rows)


def _ratio_spread(a: dict, b: dict) -> tuple[float, float]:
    """``median_a / median_b`` and a spread for it from the p10-p90 ranges (half the range of the ratio)."""
    r = a["median_ms"] / b["median_ms"]
    lo, hi = a["p10_ms"] / b["p90_ms"], a["p90_ms"] / b["p10_ms"]
    return r, (hi - lo) / 2


def claims(table1, cx, detectors: dict | None = None, baselines=None, recognizers: dict | None = None,
           normalizer=None, softmax: dict | None = None, normalizer_mobilefacenet=None) -> list[ClaimCheck]:
    """The paper's testable claims that stored results can check now; the rest listed as not measured."""
    out: list[ClaimCheck] = []
    if table1 is not None:
        m = table1.metrics
        out.append(ClaimCheck("Table 1's formulas give a convolution's parameters and multiply-adds",
                              "formulas", f"{sum(c['parameters'] == c['parameters_formula'] for c in m['checks'])}"
                              f"/{len(m['checks'])} layers exact", "reproduced" if m["formulas_exact"] else "not reproduced"))
        if "vgg16_vs_mobilenet" in m:
            out.append(check_value("VGG-16 has 32× MobileNet's parameters (Section 2.2)", paper=32,
                                   ours=m["vgg16_vs_mobilenet"]["ratio"], spread=0.0, unit="×", tolerance=1.0))
        s = m["pointwise_share"]
        if "mobilenet_v1" in s:
            out.append(check_value("1×1 convolutions are 94.86% of MobileNet's computation", paper=94.86,
                                   ours=100 * s["mobilenet_v1"]["share_1x1"], spread=0.0, unit="%", tolerance=0.05))
        if "torchvision:resnet50" in s:
            out.append(check_value("1×1 convolutions are 93% of ResNet's computation (ResNet-50)", paper=93,
                                   ours=100 * s["torchvision:resnet50"]["share_1x1"], spread=0.0, unit="%", tolerance=2))
        if "torchvision:resnext50_32x4d" in s:
            out.append(check_value("... the same 93% for ResNeXt-50 (ShuffleNet's figure, the likely source)", paper=93,
                                   ours=100 * s["torchvision:resnext50_32x4d"]["share_1x1"], spread=0.0, unit="%",
                                   tolerance=2))
    if cx is not None:
        d = cx.metrics["detectors"]

        def fl(name):
            return d[name]["flops"]["480x640"]

        design = " [our widths: evidence about our design]"
        out.append(check_value("CF cuts the detector's FLOPs about 5× (440.4M → 87.3M)" + design,
                               paper=round(_pv("table2.flops.baseline") / _pv("table2.flops.cf"), 2),
                               ours=fl("lefv_detector_baseline") / fl("lefv_detector_cf"), spread=0.0, unit="×",
                               tolerance=1.0))
        out.append(check_value("SDC cuts FLOPs by 15.9% (87.3M → 73.4M)" + design,
                               paper=round(100 * (1 - _pv("table2.flops.cf_sdc") / _pv("table2.flops.cf")), 1),
                               ours=100 * (1 - fl("lefv_detector_cf_sdc") / fl("lefv_detector_cf")), spread=0.0,
                               unit="%", tolerance=5))
        out.append(check_value("CM adds 6.9% FLOPs (73.4M → 78.5M)" + design,
                               paper=round(100 * (_pv("table2.flops.cf_sdc_cm") / _pv("table2.flops.cf_sdc") - 1), 1),
                               ours=100 * (fl("lefv_detector") / fl("lefv_detector_cf_sdc") - 1), spread=0.0, unit="%",
                               tolerance=5))
        sizes = cx.metrics.get("baseline_sizes", {})
        if sizes.get("mtcnn"):
            out.append(check_value("the detector is half MTCNN's size (0.95 vs 1.90 MB)" + design, paper=0.5,
                                   ours=d["lefv_detector"]["fp32_bytes"] / sizes["mtcnn"]["bytes"], spread=0.0,
                                   tolerance=0.1))
        r = cx.metrics["recognizers"]
        t1 = {n: e["latency"]["t1"]["runs"]["onnxruntime"] for n, e in r.items()
              if "t1" in (e.get("latency") or {}) and "onnxruntime" in e["latency"]["t1"]["runs"]}
        for fast, slow in (("lefv_recognizer", "torchvision:resnet34"), ("torchvision:resnet34", "torchvision:vgg16")):
            if fast in t1 and slow in t1:
                ratio, spread = _ratio_spread(t1[slow], t1[fast])
                out.append(check_order(f"{fast} runs faster than {slow} (Table 5; this CPU, ONNX Runtime, 1 thread)",
                                       better=ratio, worse=1.0, spread=spread, higher_is_better=True,
                                       names=(f"speed-up {fast}/{slow}", "1"), unit="×"))
        if "lefv_recognizer" in t1 and "torchvision:vgg16" in t1:
            ratio, _ = _ratio_spread(t1["torchvision:vgg16"], t1["lefv_recognizer"])
            arm = _pv("table5.ours.arm") / _pv("table5.vgg16.arm")
            gpu = _pv("table5.ours.gpu") / _pv("table5.vgg16.gpu")
            out.append(ClaimCheck("the speed-up over VGG-16 is larger on a CPU than on a GPU (Table 5)",
                                  f"ARM {arm:.1f}× vs GPU {gpu:.1f}×",
                                  f"this CPU {ratio:.1f}×; no GPU measured", "not resolved"))
    out += detector_claims(detectors or {}, baselines)
    out.append(msff_claim(recognizers or {}))
    if softmax:
        c = msff_claim(softmax)
        out.append(type(c)(c.claim.replace("distilled", "softmax, the paper's recipe"), c.paper, c.ours, c.verdict))
    out += normalization_claims(normalizer, normalizer_mobilefacenet)
    return out


def _ap(result, test: str, split: str) -> tuple[float, float] | None:
    s = result.metrics[test][split]
    return None if s["ap"] is None else (100 * s["ap"], 100 * s["bootstrap"]["sd"])


def detector_claims(detectors: dict, baselines=None) -> list[ClaimCheck]:
    """Table 2's AP orderings on the held-out scenes (the test with enough faces; spread: the two
    bootstrap SDs combined) and Table 3's "close to MTCNN" on the WIDER splits."""
    out = []
    pairs = (("CF costs AP against the VGG-style baseline (87.4 → 83.7)", "lefv_detector_baseline", "lefv_detector_cf"),
             ("SDC costs AP (83.7 → 82.5)", "lefv_detector_cf", "lefv_detector_cf_sdc"),
             ("CM adds AP (82.5 → 83.3)", "lefv_detector", "lefv_detector_cf_sdc"),
             ("Leaky ReLU beats ReLU (Section 3.1.3; promised, not reported)", "lefv_detector", "lefv_detector_relu"))
    for claim, better, worse in pairs:
        if better in detectors and worse in detectors:
            a, b = _ap(detectors[better], "heldout", "all"), _ap(detectors[worse], "heldout", "all")
            if a and b:
                out.append(check_order(claim + " [held-out scenes]", better=a[0], worse=b[0],
                                       spread=(a[1] ** 2 + b[1] ** 2) ** 0.5, higher_is_better=True,
                                       names=(better, worse), unit=" AP"))
                continue
        out.append(ClaimCheck(claim, "stated", NOT_MEASURED, "not resolved"))
    ours = detectors.get("lefv_detector")
    if ours is not None and baselines is not None and "mtcnn" in baselines.metrics:
        for split in ("easy", "medium", "hard"):
            a, m = _ap(ours, "wider", split), _ap(baselines, "mtcnn", split)
            if a and m:
                check = check_value(f"the detector's AP is close to MTCNN's (Table 3, {split}; paper: MTCNN's measured AP)",
                                    paper=round(m[0], 1), ours=a[0], spread=(a[1] ** 2 + m[1] ** 2) ** 0.5, unit=" AP")
                out.append(check)
    else:
        out.append(ClaimCheck("the detector's AP is close to MTCNN's at half the size (Table 3)", "stated",
                              NOT_MEASURED, "not resolved"))
    return out


DETECTOR_LABELS = {"mtcnn": "MTCNN (facenet-pytorch)", "yunet": "YuNet (yuface)"}


def detection_frame(result):
    """AP per split of each detector of ``lefv.detection_baselines`` with its per-image bootstrap
    interval, the faces in the split and the highest recall reached."""
    import pandas as pd

    rows = []
    for name, label in DETECTOR_LABELS.items():
        if name not in result.metrics:
            continue
        for split in ("easy", "medium", "hard", "all"):
            s = result.metrics[name][split]
            b = s["bootstrap"]
            rows.append({"detector": label, "split": split, "faces": s["n_gt"],
                         "AP": None if s["ap"] is None else round(s["ap"], 3),
                         "95% bootstrap interval": f"{b['ci_low']:.3f}–{b['ci_high']:.3f}",
                         "max recall": round(s["max_recall"], 3), "detections": s["n_detections"]})
    return pd.DataFrame(rows)


def recall_curves(result) -> dict:
    """``{label: recall_by_height record}`` for :func:`facelab.viz.curves.plot_recall_by_height`."""
    return {label: result.metrics[name]["recall_by_height"] for name, label in DETECTOR_LABELS.items()
            if name in result.metrics}


def plot_detection_examples(result, data_root=None, indices=(1, 3)):
    """The stored detections of each detector (operating thresholds: MTCNN's last stage 0.7, YuNet 0.5)
    on WIDER images ``indices`` of ``lefv.detection_baselines``, ground truth in white."""
    import matplotlib.pyplot as plt
    import numpy as np

    from facelab.data.imageio import read_rgb
    from facelab.data.widerface import images_dir, read_gt
    from facelab.viz.faces import draw_detections

    gt = {g.path: g for g in read_gt(data_root)}
    names = [n for n in DETECTOR_LABELS if f"{n}_detections" in result.arrays]
    thresholds = {"mtcnn": 0.7, "yunet": 0.5}
    indices = [i for i in indices if i < len(result.arrays["images"])]
    fig, axes = plt.subplots(len(indices), len(names), figsize=(5.2 * len(names), 3.8 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        path = result.arrays["images"][i]
        image = read_rgb(images_dir(data_root) / path)
        for c, name in enumerate(names):
            det = result.arrays[f"{name}_detections"][i]
            boxes, scores = np.asarray(det["boxes"]).reshape(-1, 4), np.asarray(det["scores"])
            keep = scores >= thresholds[name]
            ax = axes[r][c]
            draw_detections(ax, image, gt[path].boxes, colour="white")
            draw_detections(ax, image, boxes[keep], colour="lime")
            ax.set_title(f"{DETECTOR_LABELS[name]}: {int(keep.sum())} found, {len(gt[path].boxes)} annotated",
                         fontsize=8)
    fig.tight_layout()
    return fig


def detector_runs_frame(results: dict):
    """Per trained detector: training scenes and faces, epochs, final loss terms, training minutes,
    images/s, and AP on the WIDER splits and on the held-out scenes."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        m = r.metrics
        h = m["history"]
        row = {"network": name, "scenes": m["n_train_scenes"], "faces": m["n_train_faces"],
               "epochs": len(h["loss"]), "final loss": round(h["loss"][-1], 3), "cls": round(h["cls"][-1], 3),
               "box": round(h["box"][-1], 3), "landmarks": round(h["landmarks"][-1], 3),
               "train min": round(sum(h["seconds"]) / 60, 1), "images/s": round(float(h["images_per_s"][-1]), 1)}
        for split in ("easy", "medium", "hard"):
            ap = m["wider"][split]["ap"]
            row[f"WIDER {split} AP"] = None if ap is None else round(ap, 3)
        ap = m["heldout"]["all"]["ap"]
        row["held-out AP"] = None if ap is None else round(ap, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def by_network(outcomes: dict) -> dict:
    """``{network: result}`` of :func:`facelab.experiments.load_stored`'s ``lefv.detector.*`` outcomes."""
    return {o.result.metrics["network"]: o.result for o in outcomes.values()}


def recognizer_frame(results: dict):
    """Per distilled recognizer: pool, epochs, training minutes, final mimic cosine, the centred cosine
    agreement with SFace on the CFP test crops, and TAR at each FAR (mean ± SD over folds)."""
    import pandas as pd

    rows = []
    for name, r in results.items():
        m = r.metrics
        row = {"network": m["network"], "pool images": m["n_train_images"], "epochs": len(m["history"]["train_loss"]),
               "train min": round(sum(m["history"]["seconds"]) / 60, 1),
               "final cosine (train)": round(m["history"]["train_acc"][-1], 3),
               "centred cosine to SFace (test)": round(m["agreement"]["centred_cosine_mean"], 3)}
        for key, label in (("tar_far_1e-3", "TAR@0.1%"), ("tar_far_1e-2", "TAR@1%"), ("tar_far_1e-1", "TAR@10%")):
            t = m["templates"][key]
            row[label] = f"{100 * t['mean']:.1f} ± {100 * t['sd']:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def msff_claim(recognizers: dict) -> ClaimCheck:
    """MSFF improves recognition: TAR at FAR = 1% with and without it (spread: the fold SDs combined)."""
    by = {r.metrics["network"]: r for r in recognizers.values()}
    if not {"lefv_recognizer", "lefv_recognizer_no_msff"} <= set(by):
        return ClaimCheck("MSFF improves recognition (Section 3.3)", "stated", NOT_MEASURED, "not resolved")
    a, b = (by[n].metrics["templates"]["tar_far_1e-2"] for n in ("lefv_recognizer", "lefv_recognizer_no_msff"))
    return check_order("MSFF improves recognition (Section 3.3; TAR at FAR 1%, CFP templates, distilled)",
                       better=100 * a["mean"], worse=100 * b["mean"], spread=100 * (a["sd"] ** 2 + b["sd"] ** 2) ** 0.5,
                       higher_is_better=True, names=("with MSFF", "without"), unit="%")


def cf_lesson(cx) -> dict[str, str]:
    """Baseline ÷ CF FLOPs and CF ÷ baseline latency (1 thread, eager and ONNX Runtime), as text for the
    chapter; "not run" where the stored result lacks a number."""
    d = cx.metrics["detectors"]
    out = {"cf_flops": "not run", "cf_eager": "not run", "cf_ort": "not run"}
    try:
        out["cf_flops"] = f"{d['lefv_detector_baseline']['flops']['480x640'] / d['lefv_detector_cf']['flops']['480x640']:.1f}"
        runs = {n: d[n]["latency"]["t1"]["runs"] for n in ("lefv_detector_baseline", "lefv_detector_cf")}
        out["cf_eager"] = f"{runs['lefv_detector_cf']['torch']['median_ms'] / runs['lefv_detector_baseline']['torch']['median_ms']:.2f}"
        out["cf_ort"] = (f"{runs['lefv_detector_cf']['onnxruntime']['median_ms'] / runs['lefv_detector_baseline']['onnxruntime']['median_ms']:.2f}")
        out["cf_sentence"] = (f"CF cuts the FLOPs {out['cf_flops']}× (baseline ÷ CF at 640×480), but with one thread the CF "
                              f"network takes {out['cf_eager']}× the baseline's time in eager PyTorch and {out['cf_ort']}× "
                              "with ONNX Runtime (below 1: faster): FLOPs are not latency.")
    except KeyError:
        out["cf_sentence"] = ("The latency of the baseline and the CF network was not measured in this run "
                              f"(profile {cx.profile}): the comparison of FLOPs and latency needs the small profile.")
    return out


# ------------------------------------------------------------------------------ normalization (Section 3.2)

_TAR_KEYS = (("tar_far_1e-3", "TAR@0.1%"), ("tar_far_1e-2", "TAR@1%"), ("tar_far_1e-1", "TAR@10%"))
_CONDITIONS = (("original", "SFace on the original crops"),
               ("all_normalized", "SFace on every crop normalized (LEFV's pipeline)"),
               ("profile_normalized", "SFace, only profile crops normalized"))


def expert_label(result) -> str:
    """``"SFace"`` or ``"MobileFaceNet (distilled)"``: which frozen expert a normalizer result reads."""
    return "SFace" if result.metrics["expert"].startswith("sface") else "MobileFaceNet (distilled)"


def _normalizers(*results) -> list:
    return [r for r in results if r is not None]


def normalization_frame(result, *others):
    """Table 4's shape with and without normalization (held-out CFP folds): TAR (%) mean ± SD over folds, one
    block of normalized rows per expert (``result`` and each of ``others``: normalizer results on the same folds;
    the original crops' row once, from ``result``); the paper's column: not reported."""
    import pandas as pd

    rows = []
    for i, r in enumerate(_normalizers(result, *others)):
        for key, label in _CONDITIONS:
            if key == "original" and i:
                continue  # the same SFace on the same crops and folds in every result
            t = r.metrics["table4"][key]
            row = {"Method": label if key == "original" else f"{label}; expert {expert_label(r)}"}
            for k, name in _TAR_KEYS:
                row[name] = f"{100 * t[k]['mean']:.2f} ± {100 * t[k]['sd']:.2f}"
            row["paper"] = "not reported"
            rows.append(row)
    return pd.DataFrame(rows).set_index("Method")


def preservation_frame(result, *others):
    """SFace's cosine between each held-out face and its normalized version, per expert and pose."""
    import pandas as pd

    rows = []
    for r in _normalizers(result, *others):
        t = r.metrics["same_person_threshold"]["cosine"]
        for pose, v in r.metrics["identity_preservation"].items():
            rows.append({"expert": expert_label(r), "pose": pose, "faces": v["n"], "cosine mean": round(v["mean"], 3),
                         "SD": round(v["sd"], 3), "10th percentile": round(v["p10"], 3),
                         "SFace's FAR-1% threshold": round(t, 3),
                         "share above it": f"{100 * v['share_above_threshold']:.1f}%"})
    return pd.DataFrame(rows).set_index(["expert", "pose"])


def expert_sentence(result) -> str:
    """What the distilled expert of a normalizer result is: pool, schedule, size and its agreement with SFace on
    the held-out test faces ("" for SFace's own network)."""
    e = result.metrics.get("expert_record", {})
    if "agreement_with_sface" not in e:
        return ""
    a, pool = e["agreement_with_sface"], e["pool"]["lfw"]
    return (f"The MobileFaceNet expert ({e['parameters']:,} parameters, a {e['map_channels']}-channel 7×7 map) was "
            f"distilled from SFace on {pool['images']:,} LFW crops of {pool['identities']:,} identities named like no "
            f"CFP person ({e['epochs']} epoch{'s' if e['epochs'] != 1 else ''}, {e['train_seconds'] / 60:.1f} min); on the {a['n']:,} held-out test "
            f"faces its centred cosine to SFace is {a['centred_cosine_mean']:.3f} ± {a['centred_cosine_sd']:.3f}.")


def before_after_frame(result, *others):
    """Held-out profile faces against their identity's frontal reference, before and after normalization, per
    expert and judge (SFace, and dlib: an independent network): rank-1 among all references, mean cosine to the
    reference, and the genuine and false-match rates at the judge's FAR-1% threshold of the original faces
    (``metrics["before_after"]``)."""
    import pandas as pd

    rows = []
    for r in _normalizers(result, *others):
        for judge, v in r.metrics.get("before_after", {}).items():
            if "rank1_before" not in v:
                continue  # an older result without the rank-1 view
            pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
            rows.append({"expert": expert_label(r), "judge": {"sface": "SFace", "dlib": "dlib (independent)"}.get(judge, judge),
                         "profile faces": v["n_faces"], "references": v["n_references"],
                         "rank-1 before": pct(v["rank1_before"]), "rank-1 after": pct(v["rank1_after"]),
                         "cosine to reference before": round(v["to_reference_before"]["mean"], 3),
                         "after": round(v["to_reference_after"]["mean"], 3),
                         "face to its normalization": round(v["self"]["mean"], 3),
                         "match before (FAR 1%)": pct(v["match_rate_before"]), "match after": pct(v["match_rate_after"]),
                         "false matches after": pct(v["false_match_rate_after"])})
    if not rows:
        return "not measured in these results (rerun lefv.normalizer)"
    return pd.DataFrame(rows).set_index(["expert", "judge"])


def show_critic_crops(result):
    """The four critics' fixed crops (:data:`facelab.models.lefv_normalizer.REGIONS`) drawn on the first held-out
    frontal and profile faces of the stored example grid (real aligned 112×112 CFP crops): the boxes sit on a
    frontal face's eyes, nose and mouth and miss them on a profile, which is what the critics ask of a
    normalized face."""
    import base64

    import cv2
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    from facelab.models.lefv_normalizer import INPUT_SIZE, REGIONS

    jpeg = base64.b64decode(result.arrays["examples_jpeg"])
    grid = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    names = list(result.arrays["example_rows"])
    shown = [n for n in ("frontal", "profile") if n in names]
    fig, axes = plt.subplots(1, len(shown), figsize=(2.8 * len(shown) + 1.6, 2.8), squeeze=False)
    for ax, name in zip(axes[0], shown):
        y0 = names.index(name) * INPUT_SIZE
        ax.imshow(grid[y0:y0 + INPUT_SIZE, :INPUT_SIZE])
        for i, (region, (x1, y1, x2, y2)) in enumerate(REGIONS.items()):
            inset = 1.5 * (region == "face")  # keep the whole-face box visible at the border
            ax.add_patch(Rectangle((x1 - 0.5 + inset, y1 - 0.5 + inset), x2 - x1 - 2 * inset, y2 - y1 - 2 * inset,
                                   fill=False, lw=1.5, color=f"C{i}", label=f"{region} ({x2 - x1}×{y2 - y1})"))
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"critics' crops, held-out {name} face", fontsize=9)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.tight_layout()
    return fig


def normalizer_curves(result, *others):
    """The normalizer's training terms per logged window (identity, pixel, symmetry; critics' Wasserstein
    estimate), one row of panels per expert (the identity term is each expert's own feature distance, so its
    scale differs between rows)."""
    import matplotlib.pyplot as plt

    results = _normalizers(result, *others)
    fig, axes = plt.subplots(len(results), 2, figsize=(9, 3 * len(results)), squeeze=False)
    for row, r in zip(axes, results):
        h = r.metrics["history"]
        for k in ("identity", "pixel", "symmetry"):
            row[0].plot(h["step"], h[k], label=k)
        row[0].set(xlabel="step", ylabel="loss term", title=f"decoder terms (eqs. 6-8), expert {expert_label(r)}")
        row[0].legend()
        row[1].plot(h["step"], h["wasserstein"], color="C3")
        row[1].set(xlabel="step", ylabel="real − fake score", title="critics' Wasserstein estimate (4 critics)")
    fig.tight_layout()
    return fig


def show_examples(result, ax=None):
    """The stored grid of held-out faces (rows: :data:`example_rows`) and their normalized versions."""
    import base64

    import cv2
    import matplotlib.pyplot as plt
    import numpy as np

    jpeg = base64.b64decode(result.arrays["examples_jpeg"])
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    rows = result.arrays["example_rows"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.3 * img.shape[1] / 112 + 1.5, 1.3 * img.shape[0] / 112))
    ax.imshow(img)
    h = img.shape[0] / len(rows)
    ax.set_yticks([h * (i + 0.5) for i in range(len(rows))], rows)
    ax.set_xticks([])
    ax.figure.tight_layout()  # room for the row labels
    return ax


def normalization_claims(result, mobilefacenet=None) -> list[ClaimCheck]:
    """"The identity is preserved": the share of held-out profile faces whose normalization SFace still
    matches to them at its FAR-1% threshold on these faces (reproduced at >= 90%, not reproduced below
    50%, otherwise not resolved: our bar, the paper gives none); "normalization helps recognition": TAR
    at FAR 1% with and without, on paired folds (spread: SD of the per-fold differences). With
    ``mobilefacenet`` (the normalizer over the distilled MobileFaceNet, the paper's expert) both claims once
    more for that expert."""
    import numpy as np

    if result is None and mobilefacenet is None:
        return [ClaimCheck("normalization preserves identity (Section 3.2)", "stated", NOT_MEASURED, "not resolved"),
                ClaimCheck("normalization helps verification (Section 4.3, implied)", "not reported", NOT_MEASURED,
                           "not resolved")]
    out = []
    for r in _normalizers(result, mobilefacenet):
        m, who = r.metrics, f"; expert {expert_label(r)}"
        prof = m["identity_preservation"].get("profile")
        if prof is not None:
            share = prof["share_above_threshold"]
            verdict = "reproduced" if share >= 0.9 else ("not reproduced" if share < 0.5 else "not resolved")
            out.append(ClaimCheck("normalization preserves identity (Section 3.2; profile faces SFace still matches to "
                                  f"their normalization at FAR 1%{who})", "stated",
                                  f"{100 * share:.1f}% of {prof['n']} faces (cosine mean {prof['mean']:.3f}, threshold "
                                  f"{m['same_person_threshold']['cosine']:.3f})", verdict))
        judge = m.get("before_after", {}).get("dlib")
        if judge is not None and "rank1_before" in judge:
            # rank-1 among every identity's reference: a pull towards one generic face cannot raise it; spread:
            # the standard error of the paired per-face change
            out.append(check_order("normalization makes a profile face easier to identify from its person's frontal "
                                   f"photo (dlib as independent judge, rank-1 among {judge['n_references']} "
                                   f"references{who})", better=100 * judge["rank1_after"],
                                   worse=100 * judge["rank1_before"], spread=100 * judge["rank1_change_se"],
                                   higher_is_better=True, names=("normalized", "original"), unit="%"))
        a = {p["fold"]: p["tar"]["0.01"] for p in m["table4"]["all_normalized"]["per_fold"]}
        b = {p["fold"]: p["tar"]["0.01"] for p in m["table4"]["original"]["per_fold"]}
        common = sorted(set(a) & set(b))
        d = 100 * np.array([a[f] - b[f] for f in common])
        out.append(check_order(f"normalization helps verification (TAR at FAR 1%, paired held-out CFP folds{who})",
                               better=100 * float(np.mean([a[f] for f in common])),
                               worse=100 * float(np.mean([b[f] for f in common])),
                               spread=float(d.std()) if len(d) > 1 else float("nan"), higher_is_better=True,
                               names=("normalized", "original"), unit="%"))
    return out


def system_frame(cx):
    """Table 5's whole system on one real 640x480 image: median ms per stage (detector network, alignment,
    normalizer, recognizer; the faces batched) and the chain's frames per second, per face count and thread
    count; None when the stored result predates the measurement."""
    import pandas as pd

    s = cx.metrics.get("system")
    if not s:
        return None
    rows = []
    for k, by_t in s.items():
        for t, e in by_t.items():
            if not e.get("stages"):
                continue
            row = {"faces": e["faces"], "threads": int(t[1:])}
            row |= {f"{name} ms": round(v["median_ms"], 1) for name, v in e["stages"].items()}
            row |= {"whole chain ms": round(e["total"]["median_ms"], 1),
                    "p10–p90 ms": f"{e['total']['p10_ms']:.1f}–{e['total']['p90_ms']:.1f}",
                    "fps": round(e["total"]["fps"], 1)}
            rows.append(row)
    return pd.DataFrame(rows) if rows else None


def softmax_frame(results: dict):
    """Per softmax-trained recognizer (the paper's recipe): classes, images, epochs, training minutes, final
    training accuracy and TAR at each FAR (mean ± SD over folds)."""
    import pandas as pd

    rows = []
    for r in results.values():
        m = r.metrics
        row = {"network": m["network"], "classes": m["n_classes"], "images": m["n_train_images"],
               "epochs": len(m["history"]["train_loss"]), "train min": round(sum(m["history"]["seconds"]) / 60, 1),
               "final train accuracy": round(m["history"]["train_acc"][-1], 3)}
        for key, label in _TAR_KEYS:
            t = m["templates"][key]
            row[label] = f"{100 * t['mean']:.1f} ± {100 * t['sd']:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)
