"""Chapter 4's ablations, which the paper does not run: what each part of HSST contributes, on the CASIA
stand-in with Table I's network and schedule (frozen SFace + residual head, softmax, trained and tested masked);
registered by :mod:`facelab.experiments.nirvis_masked_hsst`.

``nirvis_masked_hsst.ablations``, one training per variant and split:

* **directions**: both directions of eq. 2 on every pair (the method) vs one direction drawn at random per
  step (the "even chance" reading of Fig. 2) vs the NIR-probe direction only;
* **queues**: one per modality (the method) vs one queue shared by both directions;
* **moving average** α ∈ {0, 0.9, 0.99, 0.999}: α = 0 makes the gallery-net a copy of the probe-net;
* **queue size** Q ∈ {64, 128, 192} (Q + B must not exceed the ~256 training identities of a split);
* **a held-out mask style**: plain and HSST trained with every NIR training photo masked in any style but
  ``held_out_style``, tested on the probes masked in that style and on the others, beside the same methods
  trained on every style (:func:`facelab.data.nirvis.mask_style_of`).

Costs: the training time per step (64 pairs) of each variant, and the deployed network's parameters, which
are the plain head's whatever the variant (only the probe-net is deployed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.experiments import Experiment, RunContext, register_experiment
from facelab.experiments.nirvis_masked_hsst_table1 import Table1Config

CH = chapters.get("nirvis_masked_hsst")

#: variant -> (method, HSST overrides, trained without the held-out style)
VARIANTS: dict[str, tuple[str, dict, bool]] = {
    "plain": ("plain", {}, False),
    "hsst": ("hsst", {}, False),
    "hsst, one random direction per step": ("hsst", {"directions": "random"}, False),
    "hsst, NIR-probe direction only": ("hsst", {"directions": "nir_probe"}, False),
    "hsst, one shared queue": ("hsst", {"shared_queue": True}, False),
    "hsst, alpha = 0": ("hsst", {"alpha": 0.0}, False),
    "hsst, alpha = 0.9": ("hsst", {"alpha": 0.9}, False),
    "hsst, alpha = 0.99": ("hsst", {"alpha": 0.99}, False),
    "hsst, Q = 64": ("hsst", {"queue_size": 64}, False),
    "hsst, Q = 192": ("hsst", {"queue_size": 192}, False),
    "plain, style held out": ("plain", {}, True),
    "hsst, style held out": ("hsst", {}, True),
}


@dataclass(frozen=True)
class AblationConfig(Table1Config):
    """Table I's stand-in and schedule; ``variants`` (keys of :data:`VARIANTS`) and the held-out mask style."""

    variants: tuple[str, ...] = tuple(VARIANTS)
    held_out_style: str = "n95"


def configure_ablations(profile: str) -> AblationConfig:
    check_profile(profile)
    if profile == "smoke":
        return AblationConfig(data_profile="smoke", n_splits=2, min_images=2, max_identities=24, steps=20,
                              batch_size=2, queue_size=4, milestones=(12, 16), alpha=0.9,
                              variants=("plain", "hsst", "hsst, one shared queue", "hsst, style held out"))
    if profile == "small":
        # 12 trainings of ~35 s per split (one core): three splits, ~22 min
        return AblationConfig(data_profile="small", n_splits=3)
    return AblationConfig(data_profile=profile)


def _scaled_overrides(overrides: dict, config: AblationConfig) -> dict:
    """A smoke profile's tiny batches cannot hold Q = 192: queue sizes scale with the configured one."""
    out = dict(overrides)
    if "queue_size" in out:
        out["queue_size"] = max(config.batch_size, int(out["queue_size"] * config.queue_size / 128)
                                // config.batch_size * config.batch_size)
    return out


def run_ablations(config: AblationConfig, ctx: RunContext):
    from facelab.data.masks import MASK_STYLES
    from facelab.data.nirvis import mask_style_of
    from facelab.errors import DataError
    from facelab.experiments.nirvis_masked_hsst_table1 import (casia_standin_embeddings, flat_cells, head_embed,
                                                               identify, pair_pools, train_head)
    from facelab.train.speed import torch_threads

    unknown = [v for v in config.variants if v not in VARIANTS]
    if unknown or config.held_out_style not in MASK_STYLES:
        raise DataError(f"unknown ablation variant(s) {unknown} or mask style {config.held_out_style!r}: variants are "
                        f"{', '.join(VARIANTS)}; styles {', '.join(MASK_STYLES)}")
    t0 = time.time()
    st = casia_standin_embeddings(config, ctx, kinds=("vis", "nir_masked"))
    ident, position, emb = st.ident, st.position, st.emb
    style = {int(r): mask_style_of("nir_masked", seed=config.render_seed, row=int(r)) for r in st.used}
    per_split, train_seconds, raw_seconds, params = [], {}, {}, {}
    for s in st.splits:
        row: dict = {"split": s.split}
        g_ids = ident[s.gallery]
        gal = emb["vis"][position[s.gallery]]
        probes = {"all": s.probes,
                  "held-out style": s.probes[[style[int(r)] == config.held_out_style for r in s.probes]],
                  "other styles": s.probes[[style[int(r)] != config.held_out_style for r in s.probes]]}
        train_ids, vis_by_id, nir_by_id = pair_pools(s, ident, position)
        row["probes"] = {k: int(len(v)) for k, v in probes.items()}
        # without the held-out style: the identities left with a NIR photo in another style
        used_row = st.used  # embedding position -> prepared row
        keep = [np.array([p for p in n if style[int(used_row[p])] != config.held_out_style], np.int64)
                for n in nir_by_id]
        ok = [i for i, k in enumerate(keep) if len(k)]
        held = ([vis_by_id[i] for i in ok], [keep[i] for i in ok])
        row["pair_identities"] = {"all styles": len(train_ids), "style held out": len(ok)}
        for name in config.variants:
            method, overrides, hold = VARIANTS[name]
            vb, nb = held if hold else (vis_by_id, nir_by_id)
            t = time.time()
            with torch_threads(1):  # a 128-d head: one thread is faster than two
                head, _ = train_head(method, emb["vis"], emb["nir_masked"], vb, nb, config,
                                     seed=ctx.seed * 100 + s.split, hsst=_scaled_overrides(overrides, config))
            raw_seconds.setdefault(name, []).append(time.time() - t)
            train_seconds[f"{name}.{s.split}"] = round(raw_seconds[name][-1], 1)
            params[name] = int(sum(p.numel() for p in head.parameters()))
            g_h = head_embed(head, gal)
            row[name] = {k: identify(g_h, head_embed(head, emb["nir_masked"][position[v]]), g_ids, ident[v],
                                     config.fars) if len(v) else None
                         for k, v in probes.items()}
        per_split.append(row)
    table = {name: {k: flat_cells(per_split, name, k, config.fars) for k in ("all", "held-out style", "other styles")
                    if all(r[name][k] is not None for r in per_split)}
             for name in config.variants}
    ms_per_step = {name: float(np.mean(raw_seconds[name])) * 1000 / config.steps for name in config.variants}
    metrics = {"teacher": st.teacher.name, "teacher_version": st.teacher.version, "n_splits": len(st.splits),
               "variants": list(config.variants), "held_out_style": config.held_out_style,
               "per_split": per_split, "table": table, "train_seconds": train_seconds,
               "ms_per_step": ms_per_step, "deployed_parameters": params,
               "embed_seconds": st.embed_seconds, "seconds": round(time.time() - t0, 1)}
    return metrics, {}, st.digest()


register_experiment(Experiment(
    name=CH.experiment("ablations"), chapter=CH.folder,
    description="Ablations the paper skips: one direction vs both, one queue vs two, the moving average α, the queue "
                "size, a mask style held out of training; training cost per step",
    configure=configure_ablations, run=run_ablations))

__all__ = ["VARIANTS", "AblationConfig", "configure_ablations"]
