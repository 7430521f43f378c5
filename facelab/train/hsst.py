"""Heterogeneous semi-siamese training (HSST; paper 003, Section III-A, eqs. 1-2), from the paper's text.

Semi-siamese training (Du et al., "Semi-Siamese Training for Shallow Face Learning", ECCV 2020, the
paper's [16]) trains a **probe-net** φ_p by SGD and keeps a **gallery-net** φ_g as its moving average,
``θ_g ← α θ_g + (1 − α) θ_p`` (α = 0.999, Section IV), both starting from the same pretrained weights;
the gallery-net's features of earlier batches form a **prototype queue** that the probe features are
classified against. HSST keeps **two queues, one per modality** (NIR and VIS), and on every positive
pair (masked NIR image ``I_N``, VIS image ``I_V`` of one identity) computes eq. 2 in **both directions**:

``L(I_N, I_V)``: ``φ_p(I_N)`` against the VIS queue with ``φ_g(I_V)`` as its positive, and
``L(I_V, I_N)``: ``φ_p(I_V)`` against the NIR queue with ``φ_g(I_N)`` as its positive,

minimised together (Section III-A: "minimized simultaneously"; the "even chance" of Fig. 2 is this
symmetry). Random single-direction assignment is kept as an ablation (``directions="random"``).

What the paper leaves out, and what fills it (each choice stated):

* **Queue layout** (:class:`PrototypeQueue`): the current batch's gallery features are written into a
  copy of the queue at rows ``index … index + B`` (wrapping), so the positive of probe row ``i`` is
  column ``index + i`` and the other ``Q − B`` columns are earlier batches' features, detached; the
  queue then keeps that copy (FIFO) and advances ``index`` by ``B``. Both queues are updated every step,
  each with its own modality's gallery features. Size Q = 128 *per queue* (the paper: "the size of
  prototypes as 128"; per queue is our reading), initialised with random unit vectors, Q divisible by B.
* **Identities**: "the sampled training ID is disjoint to the ID in prototype queue": no identity of the
  batch may be among the queue's last ``Q − B`` entries, and none may repeat in a batch
  (:class:`DisjointIdentityBatches`), so training identities must outnumber ``Q``.
* **Losses on the queue logits** ``cos(φ_p(x), f_j)``: eq. 1 is a normalised-cosine softmax with scale
  ``s`` (not given: :data:`SCALE` = 30); AM-softmax (``cos − m`` on the positive, m = 0.35) and
  Arc-softmax (``cos(θ + m)`` on the positive, m = 0.5) put the margin on the positive logit only. The
  paper names "triplet" and "HSST-triplet" losses without defining them; ours: a hinge
  ``max(0, m + max_j cos_neg − cos_pos)`` (m = 0.3) over the same logits, the hardest negative of the
  queue (HSST-triplet) or of the batch (the plain triplet of :func:`plain_logits`).
* **The plain model** (Table I's "plain"): one network, the same losses with the batch's own features
  as prototypes (:func:`plain_logits`: NIR probes against the VIS features of the batch, and back).
* **BatchNorm buffers** of φ_g follow the same moving average as its weights (integer buffers are copied).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: eq. 1's scale factor s (the paper does not give it; 30 is a common choice for cosine softmax).
SCALE = 30.0
LOSSES = ("softmax", "am", "arc", "triplet")
MARGINS = {"softmax": 0.0, "am": 0.35, "arc": 0.5, "triplet": 0.3}


# ------------------------------------------------------------------------------ moving average


@torch.no_grad()
def ema_update_(gallery: nn.Module, probe: nn.Module, alpha: float) -> None:
    """``θ_g ← α θ_g + (1 − α) θ_p`` for every parameter and floating buffer, in place; integer buffers
    (BatchNorm's step counter) are copied. ``alpha`` = 0 copies the probe, 1 freezes the gallery."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    for g, p in zip(gallery.parameters(), probe.parameters(), strict=True):
        g.mul_(alpha).add_(p.detach(), alpha=1.0 - alpha)
    for g, p in zip(gallery.buffers(), probe.buffers(), strict=True):
        if g.dtype.is_floating_point:
            g.mul_(alpha).add_(p.detach(), alpha=1.0 - alpha)
        else:
            g.copy_(p)


def scaled_alpha(alpha: float, paper_steps: int, steps: int) -> float:
    """The moving-average weight that keeps the paper's horizon in units of the run: a time constant of
    ``1 / (1 − alpha)`` steps out of ``paper_steps`` becomes the same fraction of ``steps``
    (α = 0.999 over 10k steps -> 0.99 over 1k)."""
    if not (0.0 <= alpha < 1.0) or paper_steps < 1 or steps < 1:
        raise ValueError("alpha must be in [0, 1) and the step counts >= 1")
    tau = (1.0 / (1.0 - alpha)) * steps / paper_steps
    return max(0.0, 1.0 - 1.0 / tau) if tau > 1.0 else 0.0


def make_gallery(probe: nn.Module) -> nn.Module:
    """φ_g: a deep copy of the probe-net that takes no gradients (updated only by :func:`ema_update_`)."""
    gallery = copy.deepcopy(probe)
    for p in gallery.parameters():
        p.requires_grad_(False)
    return gallery


# ------------------------------------------------------------------------------ prototype queues


class PrototypeQueue:
    """``Q`` prototypes ``float[Q, D]`` (unit rows) and a write pointer ``index``.

    :meth:`with_batch` returns a copy of the prototypes with a batch's (detached, normalised) gallery
    features written at rows ``index + offset …`` (modulo ``Q``) and the positive column of each batch
    row; :meth:`commit` writes the step's batches into the queue and advances the pointer past them
    (FIFO: the oldest rows are overwritten first). ``Q`` must be a multiple of the batch size.
    """

    def __init__(self, size: int, dim: int, *, generator: torch.Generator | None = None) -> None:
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dimension must be >= 1, got {size} and {dim}")
        self.size, self.dim, self.index = int(size), int(dim), 0
        self.features = F.normalize(torch.randn(size, dim, generator=generator), dim=1)

    def _cols(self, b: int, offset: int, device) -> torch.Tensor:
        if self.size % b:
            raise ValueError(f"the queue size ({self.size}) must be a multiple of the batch size ({b})")
        return (self.index + offset + torch.arange(b, device=device)) % self.size

    def with_batch(self, batch: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` ``[B, D]`` -> ``(prototypes [Q, D], positive columns int64[B])``; nothing is stored."""
        if batch.shape[1] != self.dim:
            raise ValueError(f"features of dimension {batch.shape[1]} for a queue of dimension {self.dim}")
        protos = self.features.to(batch.device).clone()
        cols = self._cols(batch.shape[0], offset, batch.device)
        protos[cols] = F.normalize(batch.detach(), dim=1).to(protos.dtype)
        return protos, cols

    def commit(self, batches: Sequence[torch.Tensor]) -> None:
        """Write ``batches`` (each ``[B, D]``, as passed to :meth:`with_batch` with offsets 0, B, 2B, ...)
        and advance the pointer by their total size."""
        offset = 0
        for batch in batches:
            cols = self._cols(batch.shape[0], offset, self.features.device)
            self.features[cols] = F.normalize(batch.detach(), dim=1).to(self.features.device, self.features.dtype)
            offset += batch.shape[0]
        self.index = (self.index + offset) % self.size

    def state_dict(self) -> dict:
        return {"features": self.features.clone(), "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.features, self.index = state["features"].clone(), int(state["index"])


# ------------------------------------------------------------------------------ losses


def queue_logits(probe: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Cosines ``[B, Q]`` between the probe features ``[B, D]`` and the prototypes ``[Q, D]``."""
    return F.normalize(probe, dim=1) @ F.normalize(protos, dim=1).T


def cosine_loss(cos: torch.Tensor, positive: torch.Tensor, *, loss: str = "softmax", scale: float = SCALE,
                margin: float | None = None) -> torch.Tensor:
    """Mean loss over the batch of cosine logits ``cos`` ``[B, Q]`` whose positive column for row ``i`` is
    ``positive[i]`` (eq. 1 for ``softmax``; the margin variants and the triplet hinge of the module docstring)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    m = MARGINS[loss] if margin is None else float(margin)
    rows = torch.arange(cos.shape[0], device=cos.device)
    pos = cos[rows, positive]
    if loss == "triplet":
        neg = cos.clone()
        neg[rows, positive] = -math.inf
        return F.relu(m + neg.max(dim=1).values - pos).mean()
    if loss == "am":
        target = pos - m
    elif loss == "arc":
        target = torch.cos(torch.acos(pos.clamp(-1 + 1e-7, 1 - 1e-7)) + m)
    else:
        target = pos
    logits = cos.clone()
    logits[rows, positive] = target
    return F.cross_entropy(scale * logits, positive)


def plain_logits(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain model's logits: each row of ``a`` ``[B, D]`` against the batch's ``b`` ``[B, D]`` (row ``i``
    of ``b`` is its positive; the other rows, other identities, its negatives) -> ``(cos [B, B], positive)``."""
    return queue_logits(a, b), torch.arange(a.shape[0], device=a.device)


# ------------------------------------------------------------------------------ the semi-siamese pair


@dataclass(frozen=True)
class HSSTConfig:
    """``directions``: ``"both"`` (eq. 2 each way, the method), ``"random"`` (one direction per step, with
    probability ½ each: the ablation), ``"nir_probe"`` (only ``L(I_N, I_V)``). ``shared_queue``: one queue
    for both modalities (ablation). ``alpha``: the moving-average weight."""

    queue_size: int = 128
    alpha: float = 0.999
    loss: str = "softmax"
    scale: float = SCALE
    margin: float | None = None
    directions: str = "both"
    shared_queue: bool = False


class SemiSiamese(nn.Module):
    """φ_p (``probe``, trained) and φ_g (its moving average) with the NIR and VIS prototype queues.

    ``loss(nir, vis, generator)`` computes the step's loss on a batch of positive pairs (row ``i`` of
    ``nir`` and ``vis``: one identity; ``[B, 3, H, W]`` each) and leaves the queue copies pending;
    after the optimiser's step, :meth:`after_step` stores them and moves φ_g towards φ_p. ``embed``
    must map images to features ``[B, D]`` (``forward_features`` for the book's models). Only the
    probe-net is deployed (:attr:`probe`).
    """

    def __init__(self, probe: nn.Module, dim: int, config: HSSTConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        if config.directions not in ("both", "random", "nir_probe"):
            raise ValueError(f"directions must be 'both', 'random' or 'nir_probe', got {config.directions!r}")
        self.config = config
        self.probe = probe
        self.gallery = make_gallery(probe)
        vis = PrototypeQueue(config.queue_size, dim, generator=generator)
        nir = vis if config.shared_queue else PrototypeQueue(config.queue_size, dim, generator=generator)
        self.queues = {"vis": vis, "nir": nir}
        self._pending: list[tuple[str, torch.Tensor]] = []  # (queue, gallery features) of this step

    def _embed(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.forward_features(x) if hasattr(net, "forward_features") else net(x)

    def _direction(self, probe_images: torch.Tensor, gallery_images: torch.Tensor, queue: str) -> torch.Tensor:
        p = self._embed(self.probe, probe_images)
        with torch.no_grad():
            self.gallery.eval()  # a moving average of weights, used as a fixed feature extractor
            g = self._embed(self.gallery, gallery_images)
        # a shared queue takes both directions' batches in one step: the second goes after the first,
        # and neither sees the other (same identities) among its negatives
        offset = sum(len(b) for q, b in self._pending if self.queues[q] is self.queues[queue])
        protos, cols = self.queues[queue].with_batch(g, offset)
        self._pending.append((queue, g.detach()))
        return cosine_loss(queue_logits(p, protos), cols, loss=self.config.loss, scale=self.config.scale,
                           margin=self.config.margin)

    def loss(self, nir: torch.Tensor, vis: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The step's loss on ``B`` positive pairs; eq. 2 in the configured direction(s)."""
        self._pending = []
        d = self.config.directions
        if d == "random":
            d = "nir_probe" if float(torch.rand((), generator=generator)) < 0.5 else "vis_probe"
        terms = []
        if d in ("both", "nir_probe"):
            terms.append(self._direction(nir, vis, "vis"))  # L(I_N, I_V): against VIS prototypes
        if d in ("both", "vis_probe"):
            terms.append(self._direction(vis, nir, "nir"))  # L(I_V, I_N): against NIR prototypes
        return torch.stack(terms).mean()

    @torch.no_grad()
    def after_step(self) -> None:
        """Write the step's gallery features into their queues (each its own modality) and update φ_g."""
        done: list[PrototypeQueue] = []
        for queue, _ in self._pending:
            target = self.queues[queue]
            if any(target is d for d in done):
                continue
            target.commit([b for q, b in self._pending if self.queues[q] is target])
            done.append(target)
        self._pending = []
        ema_update_(self.gallery, self.probe, self.config.alpha)


# ------------------------------------------------------------------------------ sampling


class DisjointIdentityBatches:
    """Batches of ``batch_size`` distinct identities, none of them among the identities of the last
    ``queue_batches`` batches (those whose gallery features are still in a queue of ``queue_batches *
    batch_size`` rows besides the current batch's). Seeded; ``identities`` are the training identities.

    ``__iter__`` yields ``int64[batch_size]`` identity indices, ``steps`` batches.
    """

    def __init__(self, n_identities: int, batch_size: int, queue_size: int, steps: int, seed: int = 0) -> None:
        if queue_size % batch_size:
            raise ValueError(f"the queue size ({queue_size}) must be a multiple of the batch size ({batch_size})")
        self.queue_batches = queue_size // batch_size - 1  # queue rows besides the current batch's
        need = batch_size * (self.queue_batches + 1)
        if n_identities < need + batch_size:
            raise ValueError(f"HSST needs more training identities than queue + batch: {n_identities} < "
                             f"{need + batch_size} (queue {queue_size}, batch {batch_size})")
        self.n, self.batch_size, self.steps, self.seed = n_identities, batch_size, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        recent: list[np.ndarray] = []
        for _ in range(self.steps):
            blocked = np.concatenate(recent) if recent else np.empty(0, np.int64)
            allowed = np.setdiff1d(np.arange(self.n), blocked)
            batch = rng.choice(allowed, self.batch_size, replace=False)
            yield batch
            recent.append(batch)
            if len(recent) > self.queue_batches:
                recent.pop(0)


def check_disjoint(batches: Sequence[np.ndarray], queue_batches: int) -> bool:
    """True when no batch repeats an identity and none shares one with the ``queue_batches`` before it."""
    for k, b in enumerate(batches):
        if len(set(b.tolist())) != len(b):
            return False
        for prev in batches[max(0, k - queue_batches):k]:
            if set(b.tolist()) & set(prev.tolist()):
                return False
    return True
