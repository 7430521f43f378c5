"""Chapter 4 (paper 003, NIR-VIS masked face recognition with HSST): the stand-in and its modality gap.

Experiments (``python -m facelab run NAME --profile P``):

* ``nirvis_masked_hsst.gap``: the pretrained recognizer (SFace, :mod:`facelab.teachers`) with no fine-tuning
  on the CASIA NIR-VIS 2.0 stand-in (:func:`facelab.data.nirvis.casia_standin`: LFW identities with >= 4
  photos that are not CFP persons, ten 50/50 identity splits, one VIS gallery photo per test identity),
  with the probes rendered five ways: VIS as they are, grey (colour removed), simulated NIR, VIS with a
  mask, masked simulated NIR (the task). Rank-1 identification and the verification rate at FAR 1% and
  0.1% (probe-gallery pairs), mean ± SD over the splits. This shows how much of the stand-in's "modality
  gap" is colour removal, how much the NIR simulation adds and how much the mask adds: what HSST
  training (:mod:`facelab.train.hsst`) would have to close.

The stand-in is simulated from visible photos (:mod:`facelab.data.nirvis` says how and what it cannot
show); SFace stands in for the paper's MobileFaceNet pretrained on MS1M (SFace's network is
MobileNet-V1-style and 10x larger).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("nirvis_masked_hsst")
#: Probe renderings of the gap measurement, in the order the chapter shows them.
GAP_KINDS = ("vis", "grey", "nir", "vis_masked", "nir_masked")


@dataclass(frozen=True)
class GapConfig:
    """The CASIA stand-in on the ``data_profile`` LFW crops: ``n_splits`` identity splits of the identities
    with >= ``min_images`` photos; ``render_seed`` fixes every rendering; ``fars``: verification operating points."""

    data_profile: str
    n_splits: int = 10
    min_images: int = 4
    render_seed: int = 0
    teacher: str = "sface"
    fars: tuple[float, ...] = (1e-2, 1e-3)
    max_identities: int | None = None


def configure_gap(profile: str) -> GapConfig:
    check_profile(profile)
    if profile == "smoke":
        return GapConfig(data_profile="smoke", n_splits=2, min_images=2, max_identities=12)
    return GapConfig(data_profile=profile)


def standin_identities(data_root, min_images: int) -> list[str]:
    """LFW identities the CASIA stand-in may use: not named like any CFP person (the other two stand-ins
    are CFP's), :func:`facelab.data.splits.lfw_train_cfp_test`."""
    from facelab.data.splits import lfw_train_cfp_test

    return list(lfw_train_cfp_test(data_root, min_images=min_images).train_identities)


def run_gap(config: GapConfig, ctx: RunContext):
    from facelab.data.manifest import load_prepared
    from facelab.data.nirvis import casia_standin, check_standin, render_rows
    from facelab.eval.identification import identification_report
    from facelab.teachers import load_teacher

    t0 = time.time()
    lfw = load_prepared("lfw", config.data_profile)
    ident = lfw.manifest["identity"].astype(str).to_numpy()
    allowed = standin_identities(ctx.data_root, config.min_images)
    if config.max_identities is not None:
        names, counts = np.unique(ident[np.isin(ident, allowed)], return_counts=True)
        allowed = sorted(names[counts >= config.min_images][:config.max_identities].tolist())
    try:
        splits = casia_standin(ident, allowed, n_splits=config.n_splits, min_images=config.min_images, seed=ctx.seed)
    except ValueError as err:
        raise DataError(f"{err} at profile {config.data_profile!r}: run `python -m facelab data prepare --profile "
                        f"{config.data_profile} --datasets lfw`") from None
    for s in splits:
        check_standin(s, ident)
    used = np.unique(np.concatenate([np.concatenate([s.gallery, s.probes]) for s in splits]))
    teacher = load_teacher(config.teacher, **({"threads": ctx.workers or os.cpu_count() or 1}
                                              if config.teacher == "sface" else {}))
    position = np.full(len(lfw), -1, np.int64)
    position[used] = np.arange(len(used))
    images = np.asarray(lfw.aligned[used])
    emb, seconds = {}, {}
    for kind in GAP_KINDS:
        t = time.time()
        rendered = render_rows(lfw.aligned, used, kind, seed=config.render_seed) if kind != "vis" else images
        emb[kind] = teacher.embed(rendered, progress=ctx.progress)
        seconds[kind] = round(time.time() - t, 1)
    per_split: list[dict] = []
    for s in splits:
        g = emb["vis"][position[s.gallery]]
        row = {"split": s.split, "gallery": int(len(s.gallery)), "probes": int(len(s.probes))}
        for kind in GAP_KINDS:
            p = emb[kind][position[s.probes]]
            rep = identification_report(p @ g.T, ident[s.probes], ident[s.gallery], ranks=(1,), far_targets=config.fars)
            row[kind] = {"rank1": rep.rank_accuracy[1],
                         "vr": {f"{t.far_target:g}": (t.tar if t.measurable else None) for t in rep.verification_rate}}
        per_split.append(row)
    summary = {}
    for kind in GAP_KINDS:
        r1 = np.array([r[kind]["rank1"] for r in per_split])
        summary[kind] = {"rank1": {"mean": float(r1.mean()), "sd": float(r1.std())}}
        for f in config.fars:
            v = np.array([np.nan if r[kind]["vr"][f"{f:g}"] is None else r[kind]["vr"][f"{f:g}"] for r in per_split])
            ok = v[np.isfinite(v)]  # a split whose impostor pairs cannot reach this FAR has no VR there
            summary[kind][f"vr_far_{f:g}"] = ({"mean": float(ok.mean()), "sd": float(ok.std()), "splits": int(len(ok))}
                                              if len(ok) else None)
    n_g, n_p = per_split[0]["gallery"], per_split[0]["probes"]
    metrics = {"teacher": teacher.name, "teacher_version": teacher.version, "n_splits": len(splits),
               "n_identities": len(set(ident[used].tolist())), "n_photos": int(len(used)),
               "per_split": per_split, "summary": summary,
               "comparisons_split0": {"genuine": n_p, "impostor": n_p * (n_g - 1),
                                      "smallest_far": 1.0 / max(1, n_p * (n_g - 1))},
               "embed_seconds": seconds, "seconds": round(time.time() - t0, 1)}
    digest = hashlib.sha256(("\n".join(lfw.manifest["path"].iloc[used]) + str(lfw.summary.get("fingerprint"))
                             ).encode()).hexdigest()[:16]
    return metrics, {}, digest


register_experiment(Experiment(
    name=CH.experiment("gap"), chapter=CH.folder,
    description="The CASIA NIR-VIS stand-in's modality gap: pretrained SFace, probes as VIS, grey, simulated NIR, "
                "masked VIS, masked NIR; rank-1 and VR@FAR over ten identity splits",
    configure=configure_gap, run=run_gap))

__all__ = ["GAP_KINDS", "configure_gap", "standin_identities"]

# Table I: plain vs HSST, masked vs non-masked (partial fine-tuning)
from facelab.experiments import nirvis_masked_hsst_table1  # noqa: E402,F401

# Table II and Fig. 4: four losses, plain and HSST, three stand-ins
from facelab.experiments import nirvis_masked_hsst_table2  # noqa: E402,F401
# the ablations the paper skips
from facelab.experiments import nirvis_masked_hsst_ablations  # noqa: E402,F401
