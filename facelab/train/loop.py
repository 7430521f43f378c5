"""One small, explicit training loop for identification training (softmax or margin heads).

The caller passes everything that matters: the model, an optional head, the datasets, a
:class:`TrainConfig`, the device and the seed. Nothing global is touched except torch's RNG,
which is re-seeded from ``seed`` and the epoch number at the start of every epoch, so that a run
resumed from a checkpoint draws exactly the same batches and dropout masks as an uninterrupted one
(and the thread count, when ``TrainConfig.speed.threads`` sets it, for the duration of ``fit``).

Speed levers (:class:`facelab.train.speed.Speed`: channels-last, bf16 autocast, ``torch.compile``,
threads) are opt-in in ``TrainConfig.speed``; one SGD step is :class:`TrainStep`, which the
training-throughput benchmark (:mod:`facelab.bench.train_throughput`) times. A dataset that
assembles whole batches itself (``__getitems__`` returning a :class:`facelab.train.inputs.Batch`,
e.g. :class:`facelab.train.inputs.PackedFaces`) is passed through the DataLoader as it is.

Checkpoints (model, head, optimizer, scheduler, history) are written atomically after every epoch
when ``checkpoint`` is given; ``fit`` resumes from it when its configuration matches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from facelab.fileio import atomic_save_torch
from facelab.results import config_hash
from facelab.train.inputs import collate_batches
from facelab.train.speed import Speed, autocast, torch_threads


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    ``lr_mult`` maps a parameter-name prefix (``"fc"``, ``"head."``, ``"stn."``) to a learning-rate
    multiplier: paper 001 trains newly added layers 10x faster, paper 002 the localization network
    10-100x slower. The learning rate is lowered by ``lr_factor`` when the validation loss has not
    improved for ``patience`` epochs (ReduceLROnPlateau), never below ``min_lr``.
    """

    epochs: int
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.5
    patience: int = 1
    min_lr: float = 1e-4
    lr_mult: tuple[tuple[str, float], ...] = ()
    grad_clip: float | None = 10.0
    #: ``sgd`` (with ``momentum``), ``adam`` (``weight_decay`` as L2) or ``adamw`` (decoupled decay).
    optimizer: str = "sgd"
    #: Opt-in speed levers (default: float32, NCHW, eager); see :mod:`facelab.train.speed`.
    speed: Speed = Speed()


@dataclass
class History:
    """Training record: per-epoch lists, and ``speed``, what the run used (its levers).

    :meth:`as_dict` gives the per-epoch lists only (every value a list of floats, as callers
    that iterate over it expect); :meth:`as_record` adds ``speed``.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_s: list[float] = field(default_factory=list)
    #: Seconds per epoch spent waiting for the next batch (data loading, augmentation, resize),
    #: the rest of ``seconds`` being the steps.
    data_seconds: list[float] = field(default_factory=list)
    #: What the run used: :meth:`facelab.train.speed.Speed.resolve` (levers, whether bf16 was
    #: actually used on this machine and why, threads), the data path and the compile time.
    speed: dict = field(default_factory=dict)
    #: What ``train_acc``/``val_acc`` hold: the objective's metric ("accuracy", "cosine to the teacher", ...).
    metric: str = "accuracy"

    def as_dict(self) -> dict[str, list[float]]:
        """The per-epoch lists."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("speed", "metric")}

    def as_record(self) -> dict:
        """The per-epoch lists, ``speed`` (levers, bf16 used or not and why, data path, threads) and ``metric``."""
        return dataclasses.asdict(self)


def parameter_groups(modules: dict[str, nn.Module], config: TrainConfig) -> list[dict]:
    """Split parameters into optimizer groups by the ``lr_mult`` prefixes (first match wins)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for prefix_mod, module in modules.items():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            full = f"{prefix_mod}.{name}" if prefix_mod else name
            mult = next((m for prefix, m in config.lr_mult if full.startswith(prefix)), 1.0)
            groups.setdefault(mult, []).append(p)
    return [{"params": ps, "lr": config.lr * mult, "lr_mult": mult} for mult, ps in sorted(groups.items())]


@dataclass(frozen=True)
class Classification:
    """Identification training: cross-entropy over logits (the model's, or ``head(embedding,
    labels)``'s, e.g. an ArcFace head); the running metric counts correct top-1 predictions.
    ``__call__(pred [B, C], labels int64[B]) -> (loss, number correct)``."""

    metric: str = "accuracy"

    def __call__(self, pred: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return nn.functional.cross_entropy(pred, labels), (pred.argmax(1) == labels).sum()


@dataclass(frozen=True)
class Regression:
    """Regression of ``float[B, K]`` targets (e.g. landmark coordinates) by mean squared error; the
    running metric sums the per-sample MSE."""

    metric: str = "mse"

    def __call__(self, pred: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = targets.to(pred.dtype)
        return nn.functional.mse_loss(pred, targets), ((pred - targets) ** 2).mean(1).sum()


#: What a training step minimises: ``objective(pred, targets) -> (loss, batch sum of the metric)``
#: (also :class:`facelab.train.distill.Mimic`).
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _predict(model: nn.Module, head: nn.Module | None, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if head is None:
        return model(images)
    return head(model.forward_features(images), targets)


def training_parameters(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for g in optimizer.param_groups for p in g["params"]]


class TrainStep:
    """One optimisation step: forward, the objective's loss, backward, gradient clipping, ``optimizer.step()``.

    ``step(images, targets)`` takes ``float[B, 3, H, W]`` and the targets (``int64[B]`` labels for
    :class:`Classification`; any device; moved to ``device``) and returns the detached ``(loss,
    metric)``, the metric summed over the batch (correct predictions, summed cosines, ...). With ``speed``:

    * ``channels_last``: the model is converted once, here (:meth:`restore` converts it back),
      and every batch is made channels-last before the forward;
    * ``autocast_bf16`` (where :func:`facelab.train.speed.bf16_support` allows): the model's
      forward runs under bf16 autocast; the head and the loss run outside it on float32;
    * ``compile``: the model's forward (``forward_features`` when there is a head) is wrapped in
      ``torch.compile``; the first step compiles.

    With every lever off, the step is exactly the eager float32 step (``.float()`` of a float32
    tensor is the tensor itself).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, head: nn.Module | None = None,
                 speed: Speed = Speed(), grad_clip: float | None = None, device: str = "cpu",
                 objective: Objective = Classification()):
        self.model, self.head, self.optimizer, self.device = model, head, optimizer, device
        self.objective = objective
        self.speed, self.grad_clip = speed.check(), grad_clip
        self.resolved = speed.resolve(device)
        self.bf16 = self.resolved["bf16_used"]
        if speed.channels_last:
            model.to(memory_format=torch.channels_last)
        forward = model if head is None else model.forward_features
        self.forward = torch.compile(forward) if speed.compile else forward

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = images.to(self.device), labels.to(self.device)
        if self.speed.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.bf16):
            out = self.forward(images)
        # Head and loss in float32: CPU autocast would run log_softmax (and a margin head's or the
        # mimic loss's cosines) in bf16, whose 8-bit mantissa cannot resolve a cosine near 1.
        out = out.float()
        pred = out if self.head is None else self.head(out, labels)
        loss, metric = self.objective(pred, labels)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training diverged (loss {loss.item()}): lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(training_parameters(self.optimizer), self.grad_clip)
        self.optimizer.step()
        return loss.detach(), metric.detach()

    def restore(self) -> None:
        """Give the model back in the default (contiguous NCHW) memory format."""
        if self.speed.channels_last:
            self.model.to(memory_format=torch.contiguous_format)


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(modules: dict[str, nn.Module], config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over :func:`parameter_groups` (what :func:`fit` uses): SGD with momentum
    and weight decay, Adam (``weight_decay`` as an L2 penalty) or AdamW (decoupled weight decay)."""
    groups = parameter_groups(modules, config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")


def evaluate_loss(model: nn.Module, head: nn.Module | None, loader: DataLoader, device: str,
                  objective: Objective = Classification()) -> tuple[float, float]:
    """Mean loss and mean metric (per sample) of ``objective`` over ``loader``, in eval mode."""
    model.eval()
    if head is not None:
        head.eval()
    total, metric_sum, loss_sum = 0, 0.0, 0.0
    with torch.no_grad():
        for images, targets in loader:
            images, targets = images.to(device), targets.to(device)
            loss, metric = objective(_predict(model, head, images, targets), targets)
            loss_sum += loss.item() * len(targets)
            metric_sum += metric.item()
            total += len(targets)
    return loss_sum / max(total, 1), metric_sum / max(total, 1)


def fit(model: nn.Module, train_set: Dataset, config: TrainConfig, *, head: nn.Module | None = None,
        val_set: Dataset | None = None, device: str = "cpu", seed: int = 0, checkpoint: Path | None = None,
        progress: bool = True, on_epoch: Callable[[int, History], None] | None = None,
        objective: Objective = Classification()) -> History:
    """Train ``model`` (and ``head``) with ``config.optimizer`` on ``(image, target)`` pairs.

    Args:
        model: maps ``(B, 3, H, W)`` to predictions (``head=None``) or has ``forward_features``.
        train_set: yields ``(float[3, H, W], target)`` (or whole :class:`~facelab.train.inputs.Batch` es).
        head: optional ``head(embeddings, targets) -> predictions`` (an ArcFace head, a mimic projection).
        checkpoint: file to resume from and to write after every epoch.
        objective: :class:`Classification` (targets are labels), :class:`Regression`, or
            :class:`facelab.train.distill.Mimic` (targets are teacher embeddings).

    torch's global RNG is re-seeded from (``seed``, epoch) inside and restored when ``fit`` returns.

    Returns:
        The :class:`History` of all epochs (including those before a resume); ``train_acc`` and
        ``val_acc`` hold the objective's metric (``history.metric`` names it).
    """
    if config.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {config.epochs}")
    model.to(device)
    if head is not None:
        head.to(device)
    modules = {"": model} if head is None else {"model": model, "head": head}
    optimizer = make_optimizer(modules, config)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor,
                                                           patience=config.patience,
                                                           min_lr=[config.min_lr * g["lr_mult"] for g in optimizer.param_groups])
    history, start_epoch = History(metric=objective.metric), 0
    key = checkpoint_key(config, seed=seed, n_train=len(train_set))
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            if head is not None:
                head.load_state_dict(state["head"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history = History(**state["history"])
            start_epoch = state["epoch"] + 1
            print(f"resuming from {checkpoint} after epoch {start_epoch}")
    val_loader = DataLoader(val_set, batch_size=config.batch_size) if val_set is not None and len(val_set) else None
    rng_devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch_threads(config.speed.threads), torch.random.fork_rng(devices=rng_devices):
        step = TrainStep(model, optimizer, head=head, speed=config.speed, grad_clip=config.grad_clip, device=device,
                         objective=objective)
        history.speed = dict(step.resolved)
        try:
            for epoch in range(start_epoch, config.epochs):
                _train_epoch(step, train_set, config, history, epoch=epoch, seed=seed, progress=progress)
                if val_loader is not None:
                    vl, va = evaluate_loss(model, head, val_loader, device, objective)
                else:
                    vl, va = history.train_loss[-1], float("nan")
                history.val_loss.append(vl)
                history.val_acc.append(va)
                history.lr.append(optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_mult"])
                scheduler.step(vl)
                if checkpoint is not None:
                    atomic_save_torch({"key": key, "epoch": epoch, "model": model.state_dict(),
                                  "head": head.state_dict() if head is not None else None,
                                  "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                  "history": history.as_record()}, checkpoint)
                if on_epoch is not None:
                    on_epoch(epoch, history)
        finally:
            step.restore()
    return history


def _train_epoch(step: TrainStep, train_set: Dataset, config: TrainConfig, history: History, *, epoch: int,
                 seed: int, progress: bool) -> None:
    """One pass over ``train_set`` in the order drawn from (seed, epoch); appends to ``history``."""
    from tqdm.auto import tqdm

    from facelab.train.inputs import Batch

    torch.manual_seed(seed * 100_003 + epoch)  # batches and dropout depend only on (seed, epoch)
    if hasattr(train_set, "set_epoch"):  # augmentation draws depend on the epoch (resumed runs too)
        train_set.set_epoch(epoch)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                        drop_last=len(train_set) > config.batch_size, collate_fn=collate_batches,
                        generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    step.model.train()
    if step.head is not None:
        step.head.train()
    t0, seen, metric_sum, loss_sum, waiting = time.time(), 0, 0.0, 0.0, 0.0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress, leave=False)
    batches = iter(bar)
    while True:
        t_wait = time.perf_counter()
        batch = next(batches, None)
        waiting += time.perf_counter() - t_wait
        if batch is None:
            break
        images, labels = batch
        if "data_path" not in history.speed:
            history.speed["data_path"] = "batched" if isinstance(batch, Batch) else "per-sample"
        t_step = time.perf_counter()
        try:
            loss, metric = step(images, labels)
        except FloatingPointError as err:
            raise FloatingPointError(f"epoch {epoch + 1}: {err}") from None
        if "first_step_s" not in history.speed:  # with compile: includes compiling the model
            history.speed["first_step_s"] = round(time.perf_counter() - t_step, 3)
        seen += len(labels)
        loss_sum += loss.item() * len(labels)
        metric_sum += metric.item()
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
    seconds = time.time() - t0
    history.train_loss.append(loss_sum / max(seen, 1))
    history.train_acc.append(metric_sum / max(seen, 1))
    history.seconds.append(seconds)
    history.images_per_s.append(seen / seconds if seconds > 0 else float("nan"))
    history.data_seconds.append(waiting)


def checkpoint_key(config: TrainConfig, *, seed: int, n_train: int) -> str:
    """What a checkpoint must match to be resumed: the optimisation settings, the seed, the data size
    and the speed levers that change the arithmetic (left out while all are off, so checkpoints
    written before the levers existed still resume; threads are left out like before)."""
    cfg = dataclasses.asdict(config)
    cfg.pop("speed")
    parts = {"config": cfg, "seed": seed, "n_train": n_train}
    if any(config.speed.numerics.values()):
        parts["speed"] = config.speed.numerics
    return config_hash(parts)


@torch.no_grad()
def embed(model: nn.Module, dataset: Dataset, *, batch_size: int = 128, device: str = "cpu",
          progress: bool = False) -> torch.Tensor:
    """``(N, D)`` descriptors of every image of ``dataset`` (``(image, label)`` items) in eval mode."""
    from tqdm.auto import tqdm

    model.eval().to(device)
    out = [model.forward_features(images.to(device)).cpu()
           for images, _ in tqdm(DataLoader(dataset, batch_size=batch_size), desc="embed", disable=not progress)]
    return torch.cat(out) if out else torch.zeros(0)
