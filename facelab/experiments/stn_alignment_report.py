"""Chapter 3 report helpers: the tables, figures and claim checks of ``book/03_stn_alignment.ipynb``.

Everything here reads stored results (:mod:`facelab.experiments.stn_alignment`) or the local
prepared data; nothing trains. Kept apart from the experiment module so that changing how the
chapter *shows* numbers never makes the stored results stale (their code hash covers the
experiment module only).
"""

from __future__ import annotations

import math

import numpy as np

from facelab.data.datasets import pack_loose_crops
from facelab.experiments import RunContext
from facelab.experiments.stn_alignment import (
    CH,
    TRANSFORMS,
    RecognitionConfig,
    lfw_rows_by_relpath,
    perturbed_loose_crops,
    to_float,
)

def apply_matrices(images: np.ndarray, matrices: np.ndarray, output_size: int) -> np.ndarray:
    """What the transformer showed the recognizer: ``uint8[N, S, S, 3]`` crops sampled with stored
    ``[N, 3, 3]`` matrices (bilinear, zeros outside, eq. 1; affine types have last row 0 0 1)."""
    import torch
    import torch.nn.functional as F

    from facelab.models.stn import projective_grid

    x = to_float(images)
    grid = projective_grid(torch.as_tensor(np.asarray(matrices), dtype=torch.float32), (output_size, output_size))
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()




def accuracy_of(result, which: str = "lfw"):
    """``KFoldAccuracy`` of a recognition result from its stored per-pair scores
    (``which``: 'lfw' or 'perturbed')."""
    from facelab.eval.verification import kfold_accuracy

    a = result.arrays
    scores = a["score"] if which == "lfw" else a["perturbed_score"]
    return kfold_accuracy(np.asarray(scores), np.asarray(a["label"]), np.asarray(a["fold"]))


def score_precision_notes(results: dict, tolerance: float = 0.0005) -> list[str]:
    """Where the claims' accuracies (recomputed from the stored per-pair scores) differ from the
    accuracies the run computed from its unrounded scores by more than
    ``tolerance``, one Markdown line per result and test set saying so, with the score spread that
    makes the rounding matter. Empty when they agree."""
    notes = []
    for t, r in results.items():
        for which, key, arr in (("LFW", "lfw_accuracy", "score"), ("perturbed LFW", "perturbed_lfw_accuracy",
                                                                    "perturbed_score")):
            recomputed = accuracy_of(r, "lfw" if which == "LFW" else "perturbed").mean
            stored = r.metrics[key]
            if abs(recomputed - stored) > tolerance:
                scores = np.asarray(r.arrays[arr], np.float64)
                tied = len(scores) - len(np.unique(scores))
                notes.append(f"**{t}, {which}:** the run measured {100 * stored:.2f}%; recomputed from the stored "
                             f"scores it is {100 * recomputed:.2f}%: {tied:,} of its {len(scores):,} "
                             "cosine scores coincide with another one after rounding (they crowd within 1e-5 of "
                             "each other, a sign of a nearly degenerate embedding). The claims use the recomputed "
                             "value (they need per-fold accuracies).")
    return notes


def roc_curves(results: dict, which: str = "lfw") -> dict:
    """``{transform: (far, tar)}`` from stored per-pair scores, for :func:`facelab.viz.curves.plot_roc`."""
    from facelab.eval.verification import roc

    out = {}
    for t, r in results.items():
        scores = r.arrays["score"] if which == "lfw" else r.arrays["perturbed_score"]
        c = roc(np.asarray(scores), np.asarray(r.arrays["label"]))
        out[t] = (c.far, c.tar)
    return out


def ordering_claims(results: dict, which: str = "lfw") -> list:
    """Paper 002's orderings (identity < similarity < affine < projective, and identity < every
    learned transform) as :class:`facelab.claims.ClaimCheck` rows. The spread is the SD over
    folds of the per-fold accuracy difference (the two models are scored on the same folds)."""
    from facelab.claims import check_order

    label = "LFW" if which == "lfw" else "perturbed LFW"
    checks = []
    chain = [("similarity", "identity"), ("affine", "similarity"), ("projective", "affine"),
             ("projective", "identity"), ("affine", "identity")]
    for better, worse in chain:
        if better not in results or worse not in results:
            continue
        a, b = accuracy_of(results[better], which), accuracy_of(results[worse], which)
        spread = float(np.std(100 * (np.asarray(a.per_fold) - np.asarray(b.per_fold))))
        checks.append(check_order(f"{label}: {better} beats {worse}", better=100 * a.mean, worse=100 * b.mean,
                                  spread=spread, higher_is_better=True, names=(better, worse), unit="%"))
    return checks


def initial_gradient_norms(config: RecognitionConfig, n_classes: int, *, batch: int = 32, seed: int = 0) -> dict:
    """Gradient norms at initialisation, for one ArcFace step on a batch of uniform random images.

    ``{"localization output layer": float, "localization (all)": float, "recognizer": float}``:
    what the paper means by "the loss value generated by the recognition network is much larger
    than the value of the transformation parameter" and why the chapter clips the localization
    gradients. The model is built as in :func:`facelab.experiments.stn_alignment.run_recognition`
    (with ``config.transform`` ``"identity"`` replaced by ``"affine"``: the identity has no
    localization network).
    """
    import torch

    from facelab.losses.margin import ArcFaceHead
    from facelab.models.stn import STNFaceNet

    g = torch.Generator().manual_seed(seed)
    transform = "affine" if config.transform == "identity" else config.transform
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's RNG left as it was
        torch.manual_seed(seed)
        model = STNFaceNet(transform=transform, setting=config.setting, input_size=config.input_size,
                           output_size=config.output_size)
        head = ArcFaceHead(model.num_features, n_classes, margin=config.margin, scale=config.scale)
    model.train()
    x = torch.rand(batch, 3, config.input_size, config.input_size, generator=g)
    y = torch.randint(0, n_classes, (batch,), generator=g)
    with torch.enable_grad():
        torch.nn.functional.cross_entropy(head(model.forward_features(x), y), y).backward()

    def norm(params) -> float:
        grads = [p.grad.flatten() for p in params if p.grad is not None]
        return float(torch.cat(grads).norm()) if grads else 0.0

    return {"localization output layer": norm(model.stn.localization.fc_out.parameters()),
            "localization (all)": norm(model.stn.parameters()),
            "recognizer": norm(model.backbone.parameters())}


def load_chapter_results(profile: str, ctx: RunContext, *, retrain: bool = False, results_dir=None) -> dict:
    """The chapter's results via :func:`facelab.experiments.load_stored`.

    At ``smoke`` (or with ``retrain``) every experiment runs. Otherwise stored results are
    loaded and a missing one is *not* run inside the notebook (a recognition run takes longer
    than the page's budget): it is listed under ``"missing"`` with the command that produces it.
    Returns ``{"localization": Outcome | None, "recognition": {transform: Outcome}, "missing": [str]}``.
    """
    from facelab.experiments import load_stored

    localization = CH.experiment("localization_mse")
    names = [localization] + [CH.experiment(f"{kind}_{t}") for kind in ("recognition", "distill") for t in TRANSFORMS]
    outcomes, missing = load_stored(names, profile, ctx, retrain=retrain, results_dir=results_dir)
    return {"localization": outcomes.get(localization),
            "recognition": {t: outcomes[CH.experiment(f"recognition_{t}")] for t in TRANSFORMS
                            if CH.experiment(f"recognition_{t}") in outcomes},
            "distilled": {t: outcomes[CH.experiment(f"distill_{t}")] for t in TRANSFORMS
                          if CH.experiment(f"distill_{t}") in outcomes},
            "missing": missing}


def distilled_frame(results: dict):
    """The distilled transformers beside their teacher: LFW and perturbed-LFW accuracy (± SD over folds),
    SFace on the aligned crops of the same pairs, the cosine agreement and the share of same decisions."""
    import pandas as pd

    rows = []
    for t, r in results.items():
        m = r.metrics
        rows.append({"transform": t, "LFW %": round(100 * m["lfw_accuracy"], 2), "± SD": round(100 * m["lfw_accuracy_sd"], 2),
                     "perturbed LFW %": round(100 * m["perturbed_lfw_accuracy"], 2),
                     "SFace (aligned) LFW %": round(100 * m["teacher_lfw_accuracy"], 2),
                     "cosine to SFace": round(m["agreement"]["cosine_mean"], 3),
                     "centred cosine": _centred(m),
                     "same decision %": round(100 * m["decision_agreement"], 1),
                     "output read inside input": round(sampling_inside(r), 2),
                     "train min": round(m["train_seconds"] / 60, 1)})
    return pd.DataFrame(rows)


def learned_views(results: dict, which: str = "lfw", data_root=None) -> tuple[np.ndarray, dict]:
    """The stored test images' input crops and what each transformer made of them.

    ``results``: transform -> Result (same configuration apart from the transform). The crops come
    from the local prepared LFW cache (clean) or are re-generated (``which="perturbed"``); the
    stored ``matrix_clean``/``matrix_perturbed`` are applied with :func:`apply_matrices`.
    Returns ``(uint8[N, S_in, S_in, 3] inputs, {transform: uint8[N, S_out, S_out, 3]})``.
    """
    from facelab.data.manifest import load_prepared

    first = next(iter(results.values()))
    cfg = RecognitionConfig(**first.config)
    rels = list(first.arrays["matrix_images"])
    lfw_set = load_prepared("lfw", cfg.data_profile)
    row_of = lfw_rows_by_relpath(lfw_set)
    rows = [row_of[r] for r in rels]
    if which == "lfw":
        inputs = pack_loose_crops(lfw_set, rows, cfg.input_size)
    else:
        inputs = perturbed_loose_crops(lfw_set, rows, cfg.input_size, cfg, data_root, keys=rels)
    key = "matrix_clean" if which == "lfw" else "matrix_perturbed"
    outputs = {t: apply_matrices(inputs, np.asarray(r.arrays[key], np.float32), r.config["output_size"])
               for t, r in results.items()}
    return inputs, outputs


def mean_faces(outputs: dict) -> dict:
    """``{transform: uint8[S, S, 3]}`` pixel-wise mean of each transformer's outputs."""
    return {t: np.round(np.asarray(v, np.float64).mean(0)).astype(np.uint8) for t, v in outputs.items()}


def run_times(outcomes: dict):
    """Training / evaluation seconds and images per second of the stored recognition runs.

    ``train s`` sums the epochs' own durations from the training history, so a run that resumed from
    a finished checkpoint (and only re-evaluated) still shows what the training took; ``this run s`` is
    the wall time of the run that wrote the result."""
    import pandas as pd

    rows = []
    for t, o in outcomes.items():
        m = o.result.metrics
        ips = m["history"]["images_per_s"]
        rows.append({"transform": t, "profile": o.result.profile, "train s": float(np.sum(m["history"]["seconds"])),
                     "eval s": m["eval_seconds"], "this run s": m["train_seconds"] + m["eval_seconds"], "train images/s": float(np.mean(ips)) if ips else math.nan,
                     "epochs": len(m["history"]["train_loss"]),
                     "final train loss": m["history"]["train_loss"][-1] if m["history"]["train_loss"] else math.nan,
                     "final train acc": m["history"]["train_acc"][-1] if m["history"]["train_acc"] else math.nan,
                     "output read inside input": sampling_inside(o.result),
                     "LFW score SD": float(np.std(o.result.arrays["score"])),
                     "parameters": m["parameters"], "localization parameters": m["localization_parameters"]})
    return pd.DataFrame(rows)


def table2_claims(result) -> list:
    """Table 2's orderings (setting 5 < setting 3 < setting 1 in MSE) on our held-out MSE; the
    spread is the combined standard error over held-out images."""
    from facelab.claims import check_order

    mse, se = result.metrics["val_mse"], result.metrics["val_mse_se"]
    out = []
    for better, worse in (("5", "3"), ("3", "1"), ("3", "2")):
        out.append(check_order(f"Table 2: setting {better} regresses landmarks better than setting {worse}",
                               better=mse[better], worse=mse[worse], spread=float(np.hypot(se[better], se[worse])),
                               higher_is_better=False, names=(f"setting {better}", f"setting {worse}")))
    return out


def robustness_claims(results: dict) -> list:
    """Our test in place of YTF: a learned transform loses less accuracy than the fixed centre crop
    when the crops are perturbed. Drop = LFW - perturbed-LFW accuracy (points); the spread is the SD
    over folds of the per-fold difference of the two drops."""
    from facelab.claims import check_order

    if "identity" not in results:
        return []
    base = np.asarray(accuracy_of(results["identity"], "lfw").per_fold) - np.asarray(
        accuracy_of(results["identity"], "perturbed").per_fold)
    out = []
    for t in TRANSFORMS[1:]:
        if t not in results:
            continue
        drop = np.asarray(accuracy_of(results[t], "lfw").per_fold) - np.asarray(accuracy_of(results[t], "perturbed").per_fold)
        out.append(check_order(f"perturbed LFW: {t} loses less accuracy than identity", better=100 * drop.mean(),
                               worse=100 * base.mean(), spread=float(np.std(100 * (drop - base))),
                               higher_is_better=False, names=(t, "identity"), unit=" pt drop"))
    return out


def sampling_inside(result, which: str = "lfw") -> float:
    """Fraction of the transformer's output pixels that read *inside* the input crop, averaged over
    the stored test images (1.0 for the identity crop). Near 0 means the transformer collapsed:
    it samples outside the image, every output is black and every embedding the same."""
    import torch

    from facelab.models.stn import projective_grid

    m = torch.as_tensor(np.asarray(result.arrays["matrix_clean" if which == "lfw" else "matrix_perturbed"]),
                        dtype=torch.float32)
    size = int(result.config["output_size"])
    grid = projective_grid(m, (size, size))
    return float((grid.abs() <= 1).all(-1).float().mean())


def _centred(metrics: dict):
    """The centred cosine agreement (:func:`facelab.train.distill.agreement`); None in a result stored
    before it was measured."""
    value = metrics["agreement"].get("centred_cosine_mean")
    return None if value is None else round(value, 3)
