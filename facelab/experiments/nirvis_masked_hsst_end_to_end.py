"""Chapter 4's Table I by **end-to-end fine-tuning** (``nirvis_masked_hsst.end_to_end``): the paper's optimisation,
where ``nirvis_masked_hsst.table1`` trains a residual head over frozen features (*partial* fine-tuning).

The whole MobileFaceNet (the paper's network; pretrained here by distillation from SFace on identities disjoint
from every stand-in, :mod:`facelab.experiments.nirvis_masked_hsst_backbone`) is fine-tuned on the CASIA stand-in's
(masked NIR, VIS) photo pairs, plainly and with HSST (:func:`facelab.train.hsst_finetune.fine_tune`: the probe-net
and its moving average, both directions of eq. 2, one queue per modality), and the fine-tuned probe-net is
tested on the split's VIS gallery against its NIR probes, masked and non-masked (rank-1, VR at FAR 0.1% and 1%),
beside the pretrained network without fine-tuning.

* **Plain**'s classifier starts imprinted (each training identity's mean pretrained feature,
  :class:`facelab.train.hsst_finetune.FineTuneConfig`); the paper does not say how its softmax classifier starts,
  and a random one would spend a short run pulling features towards random targets while HSST's prototypes are
  the gallery-net's features from the first step. Both methods see NIR and VIS in one BatchNorm batch
  (:class:`facelab.train.hsst_finetune.JointHSST`).
* ``full`` (a GPU): the paper's schedule, 10k steps of 64 pairs, lr 5e-4 ÷10 at 6k and 8k, Q = 128,
  α = 0.999, trained masked, ten splits.
* ``small`` (this CPU): split 1 only (Table I's "1-fold", the same split as ``nirvis_masked_hsst.table1``), 300
  steps of 32 pairs (3% of the paper's steps, milestones at the same fractions), Q = 64 per queue, α scaled to
  keep the paper's moving-average horizon (:func:`facelab.train.hsst.scaled_alpha`), the paper's learning rate
  unscaled, bf16 autocast and channels-last where the CPU has them: a short end-to-end run (1.5% of the paper's
  pairs), not the paper's schedule. With one split there is no spread over splits: the SD is left empty, not 0.
  What one split can still give is the **paired per-probe change** of HSST against plain on the same probes
  (:func:`paired_rank1_change`: the mean of each probe's change in rank-1 hit, -1, 0 or +1, and its standard
  error): it measures how much the probes' sampling could move the difference, not how much another training
  seed would.

It registers from its own module, so Table I's module, on whose source the stored partial fine-tuning results
depend, stays unchanged.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from facelab.config import check_profile
from facelab.experiments import Experiment, RunContext, register_experiment
from facelab.experiments.nirvis_masked_hsst_table1 import CH, TEST_MASKS, Table1Config

METHODS = ("plain", "hsst")
#: The paper's number of steps, which ``alpha`` refers to (α = 0.999: a 1,000-step time constant).
PAPER_STEPS = 10_000


@dataclass(frozen=True)
class EndToEndConfig(Table1Config):
    """Table I's stand-in and schedule fields, the backbone fine-tuned end to end; ``splits_run``: how many of
    the stand-in's splits are trained (split 1 first); ``train_masks``: the training sets (``masked``: masked NIR);
    ``bf16`` / ``channels_last``: the training numerics (:class:`facelab.train.speed.Speed`)."""

    backbone: str = "mobilefacenet"
    splits_run: int = 10
    train_masks: tuple[str, ...] = ("masked",)
    bf16: bool = False
    channels_last: bool = False
    imprint: bool = True


def configure_end_to_end(profile: str) -> EndToEndConfig:
    from facelab.train.hsst import scaled_alpha

    check_profile(profile)
    if profile == "smoke":
        return EndToEndConfig(data_profile="smoke", n_splits=1, splits_run=1, min_images=2, max_identities=24, steps=3,
                              batch_size=2, queue_size=4, milestones=(2,), alpha=0.9)
    if profile == "small":
        # ~2 s a step on two cores (MobileFaceNet forward and backward on 64 images, the gallery-net forward on
        # 64): two trainings of ~10 min, plus the backbone's pretraining when it is not cached (~13 min)
        steps = 300
        return EndToEndConfig(data_profile="small", n_splits=1, splits_run=1, steps=steps, batch_size=32, queue_size=64,
                              milestones=(180, 240), alpha=round(scaled_alpha(0.999, PAPER_STEPS, steps), 4),
                              bf16=True, channels_last=True)
    return EndToEndConfig(data_profile=profile)


def rank1_hits(gallery, probes, g_ids, p_ids) -> np.ndarray:
    """``bool[P]``: whether each probe's own identity ranks first in the gallery (cosine; ``gallery``
    ``float[G, D]`` and ``probes`` ``float[P, D]`` unit rows; :func:`facelab.eval.identification.probe_ranks`, the
    tie rule of the rank-1 in the table): its mean is that rank-1."""
    from facelab.eval.identification import probe_ranks

    return probe_ranks(np.asarray(probes) @ np.asarray(gallery).T, p_ids, g_ids) == 1


def paired_rank1_change(hits_a, hits_b) -> dict:
    """The paired change in rank-1 from ``b`` to ``a`` on the same probes (``bool[P]`` each, :func:`rank1_hits`):
    ``diff`` (points), its standard error ``se`` from the per-probe changes (each -1, 0 or +1), and the discordant
    counts (``a_only``: probes only ``a`` gets right; ``b_only``: only ``b``)."""
    a, b = np.asarray(hits_a, bool), np.asarray(hits_b, bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two hit vectors of the same length >= 2, got shapes {a.shape} and {b.shape}")
    d = a.astype(float) - b.astype(float)
    return {"diff": float(100 * d.mean()), "se": float(100 * d.std() / np.sqrt(len(d))), "n": int(len(d)),
            "a_only": int((a & ~b).sum()), "b_only": int((b & ~a).sum())}


def run_end_to_end(config: EndToEndConfig, ctx: RunContext):
    import torch
    from torch import nn

    from facelab.data.nirvis import render_rows
    from facelab.experiments.nirvis_masked_hsst_table1 import (casia_standin_embeddings, flat_cells, identify,
                                                               pair_pools, summarise_splits)
    from facelab.train.distill import embed_crops
    from facelab.train.hsst_finetune import FineTuneConfig, fine_tune
    from facelab.train.speed import Speed

    if config.backbone != "mobilefacenet":
        raise ValueError(f"end-to-end fine-tuning runs the distilled MobileFaceNet, got backbone={config.backbone!r}")
    unknown = set(config.train_masks) - {"masked", "non_masked"}
    if unknown or not config.train_masks:
        raise ValueError(f"train_masks must be some of ('masked', 'non_masked'), got {config.train_masks}")
    from facelab.experiments.nirvis_masked_hsst_backbone import backbone_config

    pre = backbone_config(config.data_profile)
    if config.min_images < pre.min_images:
        # the pretraining pool leaves out the stand-in's identities of pre.min_images photos or more: a lower
        # bound here would put pretraining identities in the stand-in
        raise ValueError(f"min_images ({config.min_images}) must be at least the backbone pool's ({pre.min_images})")
    t0 = time.time()
    st = casia_standin_embeddings(config, ctx)  # the pretrained network's embeddings: the "no fine-tuning" row
    ident, position = st.ident, st.position
    images = {"vis": np.asarray(st.lfw.aligned[st.used])}
    for kind in ("nir", "nir_masked"):
        images[kind] = render_rows(st.lfw.aligned, st.used, kind, seed=config.render_seed)

    class Deployed(nn.Module):
        """The pretrained student and its projection to SFace's space: ``[B, 3, 112, 112] -> [B, 128]``."""

        def __init__(self, model, head):
            super().__init__()
            self.model, self.head = model, head

        def forward_features(self, x):
            return self.head(self.model.forward_features(x))

    train = FineTuneConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                           milestones=tuple(config.milestones), momentum=config.momentum, queue_size=config.queue_size,
                           alpha=config.alpha, scale=config.scale, imprint=config.imprint)
    speed = Speed(channels_last=config.channels_last, autocast_bf16=config.bf16)
    per_split, curves, train_seconds = [], {}, {}
    for s in st.splits[:config.splits_run]:
        row: dict = {"split": s.split, "train_identities": len(s.train_identities),
                     "test_identities": len(s.test_identities), "probes": int(len(s.probes))}
        g_ids, p_ids = ident[s.gallery], ident[s.probes]
        gal, probe_rows = position[s.gallery], position[s.probes]
        probe = {"non_masked": st.emb["nir"][probe_rows], "masked": st.emb["nir_masked"][probe_rows]}
        row["pretrained"] = {tm: identify(st.emb["vis"][gal], probe[tm], g_ids, p_ids, config.fars)
                             for tm in TEST_MASKS}
        hits = {"pretrained": {tm: rank1_hits(st.emb["vis"][gal], probe[tm], g_ids, p_ids) for tm in TEST_MASKS}}
        train_ids, vis_by_id, nir_by_id = pair_pools(s, ident, position)
        row["pair_identities"] = len(train_ids)
        for method in METHODS:
            for trm in config.train_masks:
                net = Deployed(copy.deepcopy(st.teacher.model), copy.deepcopy(st.teacher.head))
                t = time.time()
                net, curve = fine_tune(method, net, images["vis"], images["nir_masked" if trm == "masked" else "nir"],
                                       vis_by_id, nir_by_id, train, seed=ctx.seed * 100 + s.split, device=ctx.device,
                                       speed=speed, progress=ctx.progress)
                train_seconds[f"{method}.{trm}.{s.split}"] = round(time.time() - t, 1)
                if s.split == 0:
                    curves[f"{method}.{trm}"] = curve

                def embed(x, net=net):
                    return embed_crops(net, x, size=st.teacher.size, flip_sum=False, speed=Speed())

                g_e = embed(images["vis"][gal])
                p_e = {tm: embed(images["nir" if tm == "non_masked" else "nir_masked"][probe_rows]) for tm in TEST_MASKS}
                row[f"{method}.{trm}"] = {tm: identify(g_e, p_e[tm], g_ids, p_ids, config.fars) for tm in TEST_MASKS}
                hits[f"{method}.{trm}"] = {tm: rank1_hits(g_e, p_e[tm], g_ids, p_ids) for tm in TEST_MASKS}
        # on the same probes: HSST against plain, and each fine-tuned network against the pretrained one
        row["paired_rank1"] = {
            f"{a}-{b}": {tm: paired_rank1_change(hits[a][tm], hits[b][tm]) for tm in TEST_MASKS}
            for trm in config.train_masks
            for a, b in ((f"hsst.{trm}", f"plain.{trm}"), (f"plain.{trm}", "pretrained"), (f"hsst.{trm}", "pretrained"))}
        per_split.append(row)

    keys = ["pretrained"] + [f"{m}.{t}" for m in METHODS for t in config.train_masks]
    summary = {k: {tm: summarise_splits(per_split, k, tm, config.fars) for tm in TEST_MASKS} for k in keys}
    table = {(k if k == "pretrained" else k.replace(".", "_").replace("non_masked", "nonmasked"))
             + f"_{tm.replace('non_masked', 'nonmasked')}": flat_cells(per_split, k, tm, config.fars)
             for k in keys for tm in TEST_MASKS}
    if len(per_split) < 2:  # one split has no spread: an SD of 0 would read as an exact number
        for cells in table.values():
            for stats in cells.values():
                stats["sd"] = None
    metrics = {"teacher": st.teacher.name, "teacher_version": st.teacher.version, "n_splits": len(per_split),
               "n_photos": int(len(st.used)), "per_split": per_split, "summary": summary, "table": table,
               "loss_curves_split0": curves, "train_seconds": train_seconds, "embed_seconds": st.embed_seconds,
               "alpha_used": config.alpha, "steps": config.steps, "paper_steps": PAPER_STEPS,
               "speed": speed.resolve(ctx.device),
               "backbone": f"{st.backbone['name']}: end-to-end fine-tuning",
               "backbone_record": st.backbone, "seconds": round(time.time() - t0, 1),
               "torch_threads": torch.get_num_threads()}
    return metrics, {}, st.digest()


register_experiment(Experiment(
    name=CH.experiment("end_to_end"), chapter=CH.folder,
    description="Table I by end-to-end fine-tuning of the distilled MobileFaceNet (plain vs HSST, trained masked); "
                "the paper's schedule at full (GPU), a short run on split 1 at small",
    configure=configure_end_to_end, run=run_end_to_end))

__all__ = ["EndToEndConfig", "configure_end_to_end", "paired_rank1_change", "rank1_hits", "run_end_to_end"]
