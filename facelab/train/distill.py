"""Distillation: train a student network to reproduce a pretrained teacher's face embeddings.

The mimic objective is eq. 3 of Uniface (paper 004): the squared distance between the student's and
the teacher's L2-normalised embeddings, ``||s/|s| - t/|t| ||² = 2 (1 - cos(s, t))``. We minimise its
half, the mean of ``1 - cos`` over the batch (same minimiser, gradients halved), so the loss reads as
one minus the mean cosine agreement with the teacher (0: perfect, 1: orthogonal).

* **Projection.** A student whose embedding is not the teacher's size (SqueezeFacePoseNet's 1000-d
  descriptor, the chapter-3 ResNet's 512-d) gets a bias-free linear projection to the teacher's
  dimension (:class:`MimicHead`), trained with it and dropped or kept by the caller: the
  projected embedding is what is compared with the teacher.
* **Flips.** The flip augmentation needs the *flipped* crop's target:
  :class:`facelab.train.inputs.PackedFaces` with ``float[N, 2, D]`` targets gives every sample the
  teacher's embedding of the crop or of its mirror, whichever the sample shows
  (:mod:`facelab.teachers.targets` caches both).
* **Remedies for a student that sits at the mean.** A network can lower a pointwise cosine loss a
  long way by predicting the teachers' mean embedding (the pool's embeddings share a large common
  component: their mean has norm ~0.4-0.6). ``centre`` subtracts the training pool's mean teacher
  embedding from every target (and renormalises), which removes that shortcut; ``relational`` adds
  ``relational`` x the mean squared difference between the batch's student and teacher cosine
  similarity matrices (off the diagonal), which only pairwise structure can lower.

Identities: a distillation pool must never hold an identity of the test set it is compared on;
the experiments build their pools with :mod:`facelab.data.splits` and say which they used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facelab.train.speed import Speed


def mimic_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``1 - cos(student_i, teacher_i)``; ``[B, D]`` each (any norms)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


def relational_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the batch's cosine-similarity matrices, off the diagonal; ``[B, D]`` each."""
    s, t = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
    b = len(s)
    if b < 2:
        return student.new_zeros(())
    off = ~torch.eye(b, dtype=torch.bool, device=s.device)
    return ((s @ s.T - t @ t.T)[off] ** 2).mean()


class MimicHead(nn.Module):
    """``[B, in_features] -> [B, out_features]``: a bias-free linear projection to the teacher's
    dimension, or the identity when the sizes already agree; with ``norm``, a batch-norm of the
    student's descriptor first (it standardises every descriptor dimension over the batch, so a
    network whose descriptor barely varies from face to face, such as one without batch-norm of its
    own, still hands the projection a signal to work with). ``forward(x, targets)`` ignores the
    targets (the training step passes them to every head)."""

    def __init__(self, in_features: int, out_features: int, *, norm: bool = False):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.norm = nn.BatchNorm1d(in_features) if norm else nn.Identity()
        self.proj = (nn.Identity() if in_features == out_features and not norm
                     else nn.Linear(in_features, out_features, bias=False))

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(self.norm(x))


@dataclass(frozen=True)
class Mimic:
    """The distillation objective for :class:`facelab.train.loop.TrainStep` / ``fit``.

    ``centre``: ``float[D]`` subtracted from every target before comparing (the training pool's mean
    teacher embedding; None: raw targets). ``relational``: weight of :func:`relational_loss`.
    ``__call__(pred [B, D], targets [B, D]) -> (loss, sum over the batch of the cosine to the target)``.
    """

    centre: tuple[float, ...] | None = None
    relational: float = 0.0
    metric: str = "cosine to the teacher"

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        if self.centre is None:
            return targets
        return F.normalize(targets - torch.as_tensor(self.centre, dtype=targets.dtype, device=targets.device), dim=1)

    def __call__(self, pred: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.targets(targets.float())
        loss = mimic_loss(pred, t)
        if self.relational:
            loss = loss + self.relational * relational_loss(pred, t)
        return loss, F.cosine_similarity(pred.detach(), t, dim=1).sum()


def pool_centre(targets: np.ndarray) -> tuple[float, ...]:
    """The mean teacher embedding of a pool (``float[N, 2, D]`` or ``[N, D]``), for :attr:`Mimic.centre`."""
    t = np.asarray(targets, np.float64).reshape(-1, np.asarray(targets).shape[-1])
    return tuple(float(v) for v in t.mean(axis=0))


def agreement(student: np.ndarray, teacher: np.ndarray) -> dict:
    """How closely a student's embeddings follow the teacher's on the same faces (``[N, D]`` each):
    mean, SD and 10th percentile of the per-face cosine, raw and *centred*.

    Centred: each side minus its own mean over these faces before the cosine. A student trained on
    centred targets (:attr:`Mimic.centre`) learns the teacher's embedding *minus* the pool's mean,
    so its raw cosine to the teacher is near 0 however well it learned; the centred cosine compares
    what distinguishes one face from another on both sides, the part verification uses, and is the
    fair number for every student (for one trained on raw targets it is the stricter of the two).
    """
    s = np.asarray(student, np.float64)
    t = np.asarray(teacher, np.float64)

    def cosines(a, b):
        return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)

    cos = cosines(s, t)
    centred = cosines(s - s.mean(axis=0), t - t.mean(axis=0)) if len(s) else cos
    return {"cosine_mean": float(cos.mean()), "cosine_sd": float(cos.std()),
            "cosine_p10": float(np.percentile(cos, 10)),
            "centred_cosine_mean": float(centred.mean()), "centred_cosine_sd": float(centred.std()),
            "centred_cosine_p10": float(np.percentile(centred, 10)), "n": int(len(cos))}


def decision_agreement(student_scores: np.ndarray, teacher_scores: np.ndarray, labels: np.ndarray,
                       folds: np.ndarray) -> float:
    """Share of verification pairs on which the student and the teacher decide alike, each at its own
    k-fold thresholds (:func:`facelab.eval.verification.kfold_accuracy`)."""
    from facelab.eval.verification import kfold_accuracy

    decisions = []
    for scores in (student_scores, teacher_scores):
        acc = kfold_accuracy(np.asarray(scores), np.asarray(labels), np.asarray(folds))
        fold_ids = np.unique(folds)
        thr = np.asarray(acc.thresholds)[np.searchsorted(fold_ids, folds)]
        decisions.append(np.asarray(scores) >= thr)
    return float((decisions[0] == decisions[1]).mean())


#: How students are evaluated unless the caller says otherwise: bf16 autocast where the CPU has native
#: bf16 dot products (fp32 elsewhere: :meth:`facelab.train.speed.Speed.resolve`) and channels_last,
#: the levers the distilled runs train with. Evaluation is forward-only, so bf16 changes an
#: embedding by ~1e-3 in cosine (tested); it makes the evaluation of 15k LFW crops ~3x faster here.
EVAL_SPEED = Speed(channels_last=True, autocast_bf16=True)


@torch.no_grad()
def embed_crops_views(model: nn.Module, images: np.ndarray, *, size: int, head: nn.Module | None = None,
                      batch_size: int = 128, device: str = "cpu", normalize: bool = True,
                      speed: Speed | None = None, mirror: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(plain, flip_summed)``: ``float32[N, D]`` unit-norm embeddings of ``uint8[N, H, W, 3]`` crops
    (eval mode), of each crop alone and summed with its mirror's (:func:`facelab.eval.descriptors.embed_with_flip`,
    paper 002's flip-summed feature; None without ``mirror``). One forward pass per view.

    The model's ``forward_features`` (through ``head`` when given: a student's projection to the
    teacher's space), at ``size`` and normalised as in training (:func:`facelab.train.inputs.to_model_input`;
    ``normalize=False``: [0, 1] pixels). ``speed``: the levers of the forward pass (None:
    :data:`EVAL_SPEED`; ``Speed()`` for plain fp32). The model's memory format is restored after.
    """
    from facelab.eval.descriptors import fuse_flip
    from facelab.train.inputs import MEAN, STD, to_model_input
    from facelab.train.speed import autocast

    speed = EVAL_SPEED if speed is None else speed
    bf16 = speed.resolve(device)["bf16_used"]
    model.eval()
    if head is not None:
        head.eval()
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)

    def embed(x):
        with autocast(device, bf16):
            f = model.forward_features(x)
            return (head(f) if head is not None else f).float()

    plain, summed = [], []
    try:
        for start in range(0, len(images), batch_size):
            crops = np.ascontiguousarray(np.asarray(images[start:start + batch_size]).transpose(0, 3, 1, 2))
            x = torch.from_numpy(crops).float().div_(255.0)
            x = to_model_input(x, size)  # resized (and normalised, as in training)
            x = (x if normalize else x * STD + MEAN).to(device)
            if speed.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            e = embed(x)
            plain.append(F.normalize(e, dim=1).cpu())
            if mirror:
                summed.append(F.normalize(fuse_flip(e, embed(torch.flip(x, dims=[3]))), dim=1).cpu())
    finally:
        if speed.channels_last:
            model.to(memory_format=torch.contiguous_format)
    empty = np.zeros((0, 0), np.float32)
    return (torch.cat(plain).numpy() if plain else empty,
            (torch.cat(summed).numpy() if summed else empty) if mirror else None)


def embed_crops(model: nn.Module, images: np.ndarray, *, size: int, head: nn.Module | None = None,
                flip_sum: bool = True, batch_size: int = 128, device: str = "cpu", normalize: bool = True,
                speed: Speed | None = None) -> np.ndarray:
    """``float32[N, D]`` unit-norm embeddings of ``uint8[N, H, W, 3]`` crops: the flip-summed ones
    (``flip_sum``) or each crop's alone (:func:`embed_crops_views`)."""
    plain, summed = embed_crops_views(model, images, size=size, head=head, batch_size=batch_size, device=device,
                                      normalize=normalize, speed=speed, mirror=flip_sum)
    return summed if flip_sum else plain


def lfw_student_evaluation(model, head, lfw_set, teacher, *, size: int, pairs_per_fold, data_root, device="cpu",
                           progress: bool = False, speed: Speed | None = None) -> tuple[dict, dict]:
    """A student's LFW View 2 verification (cosine of flip-summed embeddings) next to its teacher's on the
    same crops: per-pair scores, the student's cosine agreement with the teacher per face (raw and
    centred: :func:`agreement`), the share of pairs both decide alike. ``speed``: as :func:`embed_crops_views`.
    Returns ``(metrics, arrays)``."""
    from facelab.data import lfw
    from facelab.data.pairs import resolve_pairs
    from facelab.eval.verification import kfold_accuracy
    from facelab.teachers.targets import teacher_targets

    pairs = lfw.read_pairs("view2", data_root)
    if pairs_per_fold is not None:
        pairs = lfw.subsample_pairs(pairs, pairs_per_fold)
    resolved = resolve_pairs(lfw_set, pairs)
    rows = np.unique(np.concatenate([resolved.index1, resolved.index2]))
    position = np.searchsorted(rows, np.arange(len(lfw_set)))
    crops = lfw_set.aligned[rows]
    plain, student = embed_crops_views(model, crops, size=size, head=head, device=device, speed=speed)
    t = teacher_targets(lfw_set, teacher, rows, progress=progress)
    t_sum = t[:, 0] + t[:, 1]
    t_sum /= np.linalg.norm(t_sum, axis=1, keepdims=True)
    i1, i2 = position[resolved.index1], position[resolved.index2]
    score = np.einsum("ij,ij->i", student[i1], student[i2]).astype(np.float32)
    teacher_score = np.einsum("ij,ij->i", t_sum[i1], t_sum[i2]).astype(np.float32)
    label, fold = resolved.same.astype(int), resolved.fold
    acc, tacc = kfold_accuracy(score, label, fold), kfold_accuracy(teacher_score, label, fold)
    metrics = {"lfw_accuracy": acc.mean, "lfw_accuracy_sd": acc.std, "teacher_lfw_accuracy": tacc.mean,
               "teacher_lfw_accuracy_sd": tacc.std, "n_pairs_scored": len(resolved),
               "n_pairs_dropped": int(sum(resolved.dropped.values())), "n_test_images": int(len(rows)),
               "agreement": agreement(plain, t[:, 0]),
               "decision_agreement": decision_agreement(score, teacher_score, label, fold)}
    arrays = {"score": [float(s) for s in score], "teacher_score": [float(s) for s in teacher_score],
              "label": label.tolist(), "fold": fold.tolist(), "pair_index": resolved.pair_index.tolist()}
    return metrics, arrays


def pool_with_targets(prepared: dict, identities: dict, teacher, *, max_images: int | None = None, seed: int = 0,
                      progress: bool = False):
    """A distillation pool's crops (:func:`facelab.data.datasets.pool_crops` of ``identities[name]`` in
    ``prepared[name]``) and their teacher targets ``float32[N, 2, D]`` (crop, mirror), in pool order
    (computed once per crop and cached: :mod:`facelab.teachers.targets`)."""
    from facelab.data.datasets import pool_crops
    from facelab.teachers.targets import teacher_targets

    crops = pool_crops(prepared, identities, max_images=max_images, seed=seed)
    targets = np.empty((len(crops), 2, teacher.embedding_dim), np.float32)
    for name in identities:
        sel = crops.dataset == name
        if sel.any():
            targets[sel] = teacher_targets(prepared[name], teacher, crops.row[sel], progress=progress)
    return crops, targets
