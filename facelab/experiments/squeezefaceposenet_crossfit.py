"""Chapter 2, distilled track with more data: students cross-fitted over LFW View 2's folds.

``squeezefaceposenet.distill_crossfit.<model>`` (``python -m facelab run ... --profile small``): the
distilled track of :mod:`facelab.experiments.squeezefaceposenet` (same student, head, mimic loss,
optimiser, input size and CFP test users), but each student's pool grows by the LFW persons of the
View 2 folds it is not tested on (:func:`facelab.data.crossfit.crossfit_groups`): two students, one
tested on folds 1-5 and trained with the persons of folds 6-10, the other the reverse. At ``small``
that is about three times the single student's pool (~3.3k crops), which is what SqueezeFacePoseNet
lacks most (issue: the single-pool students stop at 73-79% on LFW with their loss still falling).

Reported: LFW View 2 accuracy over the ten folds, each fold scored by the student that never saw its
persons (threshold chosen on the other folds of the same student), next to SFace on the same pairs;
each student's cosine agreement with SFace on its own test faces; each student's 1-image CFP pose
EERs (cosine, as the distilled track) and their mean; each student's learning curve and pool.

Deviations from the single-pool track, said in the chapter: two models, not one (the LFW accuracy is
their folds' mean); ``small`` trains 6 epochs of the larger pool (the single pool: 8 of the smaller),
about twice the optimisation steps, for 25-50 CPU minutes per model instead of 10-15.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace

import numpy as np

from facelab.config import check_profile
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment
from facelab.experiments.squeezefaceposenet import (CH, CHAPTER, SFPN_MODELS, DistillEvalConfig, _new_model,
                                                    cfp_eval_layout, configure_distill, evaluate_pose_protocol)

#: The models with a cross-fitted run: the paper's SqueezeFacePoseNet and its best distilled variant.
CROSSFIT_MODELS = ("squeezefaceposenet", "squeezefaceposenet_dwc_gdc")


@dataclass(frozen=True)
class CrossfitConfig:
    """``distill``: the single-pool track's configuration (epochs changed per profile); ``groups``:
    how many students (blocks of contiguous View 2 folds)."""

    distill: DistillEvalConfig
    groups: int = 2


def configure_crossfit(model: str, profile: str) -> CrossfitConfig:
    check_profile(profile)
    base = configure_distill(model, profile)
    if profile == "small":
        # ~10k crops per student: 6 epochs, ~20-25 min per student on 2 cores (bf16 + channels-last)
        base = replace(base, epochs=6)
    elif profile == "smoke":
        base = replace(base, max_images=16)
    return CrossfitConfig(distill=base, groups=2)


def _train_student(config: DistillEvalConfig, crops, targets, ctx: RunContext, checkpoint):
    """One student (trunk + :class:`~facelab.train.distill.MimicHead`) fitted to ``targets``
    (``float32[N, 2, D]``, crop and mirror) of ``crops``; as the single-pool track trains it."""
    import torch

    from facelab.data.augment import FlipJitter
    from facelab.train.distill import Mimic, MimicHead, pool_centre
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    torch.manual_seed(ctx.seed)  # initial weights
    model = _new_model(config.model, 0)
    head = MimicHead(model.num_features, targets.shape[-1], norm=config.head_norm)
    data = PackedFaces(crops.images, np.arange(len(crops)), targets, size=config.input_size,
                       augment=FlipJitter(config.flip_p, config.max_shift), seed=ctx.seed)
    objective = Mimic(centre=pool_centre(targets) if config.centre else None, relational=config.relational)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               momentum=config.momentum, weight_decay=config.weight_decay, optimizer=config.optimizer,
                               grad_clip=None, min_lr=1e-6,
                               speed=Speed(channels_last=config.channels_last, autocast_bf16=config.bf16))
    history = fit(model, data, train_config, head=head, objective=objective, device=ctx.device, seed=ctx.seed,
                  checkpoint=checkpoint, progress=ctx.progress)
    return model.cpu(), head.cpu(), history


def _lfw_group(model, head, lfw_set, teacher, resolved, folds, size: int, progress: bool) -> dict:
    """A student's verification on the pairs of its own ``folds`` (``resolved``: all View 2 pairs):
    per-fold accuracy (k-fold within these folds) beside the teacher's, agreement on these faces."""
    from facelab.eval.verification import kfold_accuracy
    from facelab.teachers.targets import teacher_targets
    from facelab.train.distill import agreement, decision_agreement, embed_crops_views

    sel = np.isin(resolved.fold, folds)
    i1, i2 = resolved.index1[sel], resolved.index2[sel]
    rows = np.unique(np.concatenate([i1, i2]))
    pos1, pos2 = np.searchsorted(rows, i1), np.searchsorted(rows, i2)
    plain, student = embed_crops_views(model, lfw_set.aligned[rows], size=size, head=head)
    t = teacher_targets(lfw_set, teacher, rows, progress=progress)
    t_sum = t[:, 0] + t[:, 1]
    t_sum /= np.linalg.norm(t_sum, axis=1, keepdims=True)
    score = np.einsum("ij,ij->i", student[pos1], student[pos2])
    teacher_score = np.einsum("ij,ij->i", t_sum[pos1], t_sum[pos2])
    label, fold = resolved.same[sel].astype(int), resolved.fold[sel]
    acc, tacc = kfold_accuracy(score, label, fold), kfold_accuracy(teacher_score, label, fold)
    return {"folds": [int(f) + 1 for f in folds], "per_fold_accuracy": acc.per_fold.tolist(),
            "teacher_per_fold_accuracy": tacc.per_fold.tolist(), "n_pairs": int(sel.sum()),
            "n_test_images": int(len(rows)), "agreement": agreement(plain, t[:, 0]),
            "decision_agreement": decision_agreement(score, teacher_score, label, fold),
            "scores": {"score": [float(s) for s in score], "teacher_score": [float(s) for s in teacher_score],
                       "label": label.tolist(), "fold": fold.tolist(),
                       "pair_index": resolved.pair_index[sel].tolist()}}


def run_crossfit(config: CrossfitConfig, ctx: RunContext):
    import os

    from facelab.data import lfw
    from facelab.data.crossfit import crossfit_groups
    from facelab.data.manifest import load_prepared
    from facelab.data.pairs import resolve_pairs
    from facelab.paths import cache_root
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.distill import embed_crops, pool_with_targets

    d = config.distill
    t0 = time.time()
    prepared = {name: load_prepared(name, d.data_profile) for name in ("lfw", "cfp")}
    layout, rel, eval_rows = cfp_eval_layout(prepared["cfp"], d.eval_users)
    groups = crossfit_groups(ctx.data_root, groups=config.groups, exclude_cfp_users=layout)
    teacher = load_teacher(d.teacher, **({"threads": ctx.workers or os.cpu_count() or 1}
                                         if d.teacher == "sface" else {}))
    pairs = lfw.read_pairs("view2", ctx.data_root)
    if d.pairs_per_fold is not None:
        pairs = lfw.subsample_pairs(pairs, d.pairs_per_fold)
    resolved = resolve_pairs(prepared["lfw"], pairs)
    students, digests, pool_ids = [], [], []
    for k, group in enumerate(groups):
        crops, targets = pool_with_targets(prepared, {"lfw": group.pool.lfw_identities,
                                                      "cfp": group.pool.cfp_identities}, teacher,
                                           max_images=d.max_images, seed=ctx.seed, progress=ctx.progress)
        if not len(crops):
            raise DataError(f"cross-fit student {k + 1} has no prepared crop in its pool at profile "
                            f"{d.data_profile!r}: run `python -m facelab data prepare --profile {d.data_profile}`")
        seen = {i.split(":", 1)[1] for i in crops.identity if i.startswith("lfw:")}
        if seen & group.test_identities:  # the pool's own guarantee, checked on what is trained on
            raise DataError(f"cross-fit student {k + 1}'s pool holds {len(seen & group.test_identities)} of its "
                            "test persons; this is a bug in facelab.data.crossfit")
        t_k = time.time()
        ckpt = (cache_root() / "checkpoints" / CHAPTER
                / f"crossfit-{d.model}-{k + 1}of{len(groups)}-{config_hash([str(config), ctx.seed])}.pt"
                if d.max_images is None else None)
        model, head, history = _train_student(d, crops, targets, ctx, ckpt)
        train_s = time.time() - t_k
        emb = embed_crops(model, prepared["cfp"].aligned[eval_rows], size=d.input_size, head=head, flip_sum=False)
        eer, extra, _ = evaluate_pose_protocol({rel[r]: emb[j] for j, r in enumerate(eval_rows)}, layout)
        lfw_k = _lfw_group(model, head, prepared["lfw"], teacher, resolved, np.asarray(group.test_folds),
                           d.input_size, ctx.progress)
        students.append({
            "test_folds": lfw_k.pop("folds"), "pool": {**crops.counts(), "excluded": group.pool.excluded},
            "n_train_images": len(crops), "train_seconds": round(train_s, 1),
            "history": {key: [v if np.isfinite(v) else None for v in vs] for key, vs in history.as_dict().items()},
            "speed": history.as_record()["speed"], "eer": {"cosine": eer["cosine"]}, **lfw_k,
            "lfw_accuracy": float(np.mean(lfw_k["per_fold_accuracy"])),
        })
        digests.append("\n".join(crops.identity.tolist()))
        pool_ids.append(sorted(set(crops.identity.tolist())))
    per_fold = np.concatenate([s["per_fold_accuracy"] for s in students])
    teacher_fold = np.concatenate([s["teacher_per_fold_accuracy"] for s in students])
    eer_keys = students[0]["eer"]["cosine"]
    metrics = {
        "model": d.model, "teacher": teacher.name, "teacher_version": teacher.version, "groups": len(groups),
        "lfw_accuracy": float(per_fold.mean()), "lfw_accuracy_sd": float(per_fold.std()),
        "teacher_lfw_accuracy": float(teacher_fold.mean()), "teacher_lfw_accuracy_sd": float(teacher_fold.std()),
        "n_pairs_scored": int(sum(s["n_pairs"] for s in students)),
        "n_pairs_dropped": int(sum(resolved.dropped.values())),
        "eer_mean": {"cosine": {key: float(np.mean([s["eer"]["cosine"][key] for s in students])) for key in eer_keys}},
        "cfp_users": len(layout), "cfp_images": len(eval_rows),
        "students": [{k: v for k, v in s.items() if k != "scores"} for s in students],
        "seconds": round(time.time() - t0, 1),
    }
    arrays = {"lfw": [s["scores"] for s in students], "pool_identities": pool_ids,
              "cfp_summaries": [s["eer"] for s in students]}
    digest = hashlib.sha256(("\n--\n".join(digests) + "\n".join(rel[r] for r in eval_rows)
                             + str(prepared["cfp"].summary.get("fingerprint"))).encode()).hexdigest()[:16]
    return metrics, arrays, digest


for _m in CROSSFIT_MODELS:
    assert _m in SFPN_MODELS
    register_experiment(Experiment(
        name=CH.experiment(f"distill_crossfit.{_m}"), chapter=CHAPTER,
        description=f"Table 4, distilled track with cross-fitted pools: {_m}, two students over LFW View 2's folds",
        configure=lambda profile, _mm=_m: configure_crossfit(_mm, profile), run=run_crossfit))


__all__ = ["CROSSFIT_MODELS", "CrossfitConfig", "configure_crossfit", "run_crossfit"]
