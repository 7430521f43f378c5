"""Training a Uniface network (paper 004, Section III-E): detection and mimic losses together, eq. 2.

:func:`fit_uniface` trains on square ``uint8[N, S, S, 3]`` images, each with its faces' ground truth
``{"boxes": [G, 4] xyxy, "landmarks": [G, 5, 2], "teacher": [G, 2, D]}`` (the teacher's embedding of
each face's aligned crop and of its mirror, :mod:`facelab.teachers.targets`). Per batch:

* the detection terms (:func:`facelab.losses.detection.multibox_loss`: SSD matching, hard negatives
  3:1, smooth-L1 boxes and landmarks), weighted ``λ1 = λ2 = 1`` and ``λ3 = landmark_weight`` (the paper
  names λ_i and gives no values);
* the mimic term, eq. 3, on the **ground-truth** boxes and landmarks (as the paper trains; predicted ones
  at test): ``L_id = 1/M Σ ||f̂_i - ĝ_i||²`` over the batch's M faces, with both sides L2-normalised
  (the teacher's embeddings are compared by cosine, so eq. 3 on raw vectors would weigh their norms);
  with ``centre`` the teacher targets are first centred by the pool's mean embedding and re-normalised
  (:class:`facelab.train.distill.Mimic`: a student otherwise sits at the mean direction). On unit
  vectors, ``||a - b||² = 2 - 2 cos``. Weighted ``mimic_weight`` (the paper: 1).

Random horizontal flips mirror boxes and landmarks (:func:`facelab.train.detection.flip_targets`) and
switch each face's target to its mirrored crop's embedding. AdamW or SGD, cosine schedule, a checkpoint
after every epoch (resumed when configuration, seed and data agree), per-step losses kept for Fig. 5's
curves (same seed, so every network of a run sees the same data order). torch's global RNG is seeded
from ``(seed, epoch)`` inside and restored on return.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facelab.fileio import atomic_save_torch


@dataclass(frozen=True)
class UnifaceTrainConfig:
    """``epochs`` of ``batch_size`` images; ``optimizer`` "adamw"/"sgd" at ``lr`` (cosine to ``min_lr``);
    detection as :class:`facelab.train.detection.DetectorTrainConfig`; ``mimic_weight``, ``centre`` as the
    module docstring; ``flip_p`` the flip probability; ``freeze_stem``: the first backbone layers left
    frozen (``BatchNorm`` in eval mode too): ImageNet's low-level filters, and a faster backward."""

    epochs: int
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 5e-4
    neg_pos: int = 3
    iou_threshold: float = 0.35
    landmark_weight: float = 1.0
    mimic_weight: float = 1.0
    centre: bool = True
    flip_p: float = 0.5
    freeze_stem: int = 0

    def check(self) -> UnifaceTrainConfig:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd' (got {self.optimizer!r})")
        if self.freeze_stem < 0:
            raise ValueError(f"freeze_stem must be >= 0 (got {self.freeze_stem})")
        return self


def mimic_term(pred: torch.Tensor, target: torch.Tensor, centre: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 3 on unit vectors: mean over faces of ``||pred/|pred| - t/|t|||²`` (``[M, D]`` each; ``t`` =
    ``target - centre`` when a centre is given)."""
    if pred.shape[0] == 0:
        return pred.new_zeros(())
    t = target.float() if centre is None else target.float() - centre
    return (F.normalize(pred.float(), dim=1) - F.normalize(t, dim=1)).pow(2).sum(dim=1).mean()


def _stem_modules(model: nn.Module, n: int) -> list[nn.Module]:
    from facelab.models.uniface import BottomUp

    return [layer for m in model.modules() if isinstance(m, BottomUp) for layer in list(m.body)[:n]]


def _key(config: UnifaceTrainConfig, seed: int, n: int, shape, n_faces: int) -> str:
    text = json.dumps({"config": dataclasses.asdict(config), "seed": seed, "n": n, "shape": list(shape),
                       "faces": n_faces}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pool_centre_of(targets: list[dict]) -> np.ndarray:
    """The mean teacher embedding (crops and mirrors) over every face of the training images."""
    t = np.concatenate([np.asarray(g["teacher"], np.float64).reshape(-1, np.asarray(g["teacher"]).shape[-1])
                        for g in targets if len(g["boxes"])])
    return t.mean(axis=0)


def fit_uniface(model: nn.Module, images: np.ndarray, targets: list[dict], config: UnifaceTrainConfig, *,
                seed: int = 0, device: str = "cpu", checkpoint: Path | None = None, progress: bool = True) -> dict:
    """Train ``model`` (:class:`facelab.models.uniface.Uniface` or ``UnifaceSeparate``) in place; returns the
    history: per epoch the mean of each term, learning rate, seconds, images/s; per step the mimic term
    (``step_mimic``) and the total (``step_loss``)."""
    from tqdm.auto import tqdm

    from facelab.losses.detection import multibox_loss
    from facelab.models.uniface import to_input
    from facelab.train.detection import flip_targets

    config.check()
    n, h, w = images.shape[:3]
    if h != w:
        raise ValueError(f"Uniface trains on square images (got {h}x{w}): pad them first (facelab.models.uniface.pad_to_square)")
    if len(targets) != n:
        raise ValueError(f"{n} images but {len(targets)} targets")
    n_faces = int(sum(len(t["boxes"]) for t in targets))
    model.to(device)
    stem = _stem_modules(model, config.freeze_stem)
    frozen = {id(p) for m in stem for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in frozen]
    opt = (torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay) if config.optimizer == "adamw"
           else torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay))
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs

    def lr_at(step: int) -> float:
        return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * step / total))

    centre = (torch.as_tensor(pool_centre_of(targets), dtype=torch.float32, device=device)
              if config.centre and n_faces else None)
    anchors = model.anchors(h, w).to(device)
    key = _key(config, seed, n, images.shape[1:], n_faces)
    terms = ("loss", "cls", "box", "landmarks", "mimic", "cosine")
    history: dict[str, list[float]] = {k: [] for k in (*terms, "lr", "seconds", "images_per_s", "step_mimic",
                                                       "step_loss")}
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            history = state["history"]
            start = state["epoch"] + 1
            print(f"resuming from {checkpoint} after epoch {start}")
    rng_devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=rng_devices):
        for epoch in range(start, config.epochs):
            model.train()
            for m in stem:
                m.eval()  # frozen layers keep ImageNet's BatchNorm statistics
            rng = np.random.default_rng([seed, epoch])
            torch.manual_seed(int(rng.integers(2**31)))
            order = rng.permutation(n)
            flips = rng.random(n) < config.flip_p
            sums = dict.fromkeys(terms, 0.0)
            t0 = time.perf_counter()
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                       leave=False)
            for s in bar:
                idx = order[s * config.batch_size:(s + 1) * config.batch_size]
                batch = images[idx]
                tg, teach = [], []
                for i, f in zip(idx, flips[idx]):
                    t = targets[i]
                    g = flip_targets(t, w) if f else {"boxes": t["boxes"], "landmarks": t["landmarks"]}
                    tg.append(g)
                    teach.append(np.asarray(t["teacher"], np.float32).reshape(len(t["boxes"]), 2, -1)[:, int(f)])
                if flips[idx].any():
                    batch = batch.copy()
                    fl = flips[idx]
                    batch[fl] = batch[fl][:, :, ::-1]
                x = to_input(batch).to(device)
                for gr in opt.param_groups:
                    gr["lr"] = lr_at(epoch * steps_per_epoch + s)
                out = model(x)
                det = multibox_loss(out["logits"], out["boxes"], out["landmarks"], tg, anchors,
                                    neg_pos=config.neg_pos, iou_threshold=config.iou_threshold,
                                    landmark_weight=config.landmark_weight)
                boxes = torch.as_tensor(np.concatenate([g["boxes"] for g in tg]).reshape(-1, 4), device=device)
                marks = torch.as_tensor(np.concatenate([g["landmarks"] for g in tg]).reshape(-1, 5, 2), device=device)
                which = torch.as_tensor(np.repeat(np.arange(len(tg)), [len(g["boxes"]) for g in tg]), device=device)
                pred = model.embed(out, boxes.float(), marks.float(), which, w)
                target = torch.as_tensor(np.concatenate(teach), device=device)
                mim = mimic_term(pred, target, centre)
                loss = det["loss"] + config.mimic_weight * mim
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    t_dir = target if centre is None else target - centre
                    cos = F.cosine_similarity(pred.detach().float(), t_dir, dim=1).mean() if len(pred) else pred.new_zeros(())
                vals = {"loss": loss, "cls": det["cls"], "box": det["box"], "landmarks": det["landmarks"],
                        "mimic": mim, "cosine": cos}
                for k, v in vals.items():
                    sums[k] += float(v.detach()) * len(idx)
                history["step_mimic"].append(round(float(mim.detach()), 5))
                history["step_loss"].append(round(float(loss.detach()), 5))
                bar.set_postfix(mimic=f"{float(mim.detach()):.3f}", det=f"{float(det['loss'].detach()):.3f}")
            seconds = time.perf_counter() - t0
            for k in terms:
                history[k].append(sums[k] / n)
            history["lr"].append(opt.param_groups[0]["lr"])
            history["seconds"].append(seconds)
            history["images_per_s"].append(n / seconds)
            if checkpoint is not None:
                atomic_save_torch({"key": key, "epoch": epoch, "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "history": history}, checkpoint)
    model.eval()
    history["centre"] = None if centre is None else [float(v) for v in centre.cpu()]
    return history


__all__ = ["UnifaceTrainConfig", "fit_uniface", "mimic_term", "pool_centre_of"]
