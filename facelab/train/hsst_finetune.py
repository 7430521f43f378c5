"""End-to-end fine-tuning of a whole face network on (NIR, VIS) image pairs, plain or with HSST (paper 003,
Section III-A and IV): the paper's optimisation, where :func:`facelab.experiments.nirvis_masked_hsst_table1.train_head`
trains only a residual head over frozen embeddings.

* **HSST** (:class:`JointHSST`): the network is the probe-net φ_p, a deep copy its moving average φ_g; both
  directions of eq. 2 on every pair, one prototype queue per modality (:class:`facelab.train.hsst.PrototypeQueue`),
  batches of distinct identities none of which is in the queues
  (:class:`facelab.train.hsst.DisjointIdentityBatches`); only φ_p is returned (the deployed network). It is
  :class:`facelab.train.hsst.SemiSiamese` (``directions="both"``, two queues) with one difference that matters
  only for a network with BatchNorm: the probe-net sees the batch's NIR and VIS images in **one** forward pass.
  ``SemiSiamese`` runs it once per modality, which for a BatchNorm network normalises each modality with its own
  batch statistics in training -- removing the NIR/VIS offset for free -- but with the running statistics of
  both at test (the residual head it trains in chapter 4 has no BatchNorm, so there it makes no difference;
  ``tests/test_hsst_finetune.py`` checks the two agree on a network without BatchNorm). Plain training sees
  both modalities in one batch too.
* **Plain** ("fine-tunes [the pretrained model] on the NIR-VIS datasets"): the network and a cosine classifier
  over the training identities, eq. 1's loss on every NIR and every VIS image of a batch. The classifier starts
  from random unit vectors drawn from the seed, as the partial fine-tuning's, or ``imprint``-ed: each identity's
  row is the mean of the pretrained network's unit features of its training photos, both modalities (over a
  short run a random classifier would spend the run pulling features towards random targets, while HSST's
  prototypes are the gallery-net's features from the first step).

Both: SGD with momentum, the learning rate divided by 10 at each milestone, images ``uint8[N, 112, 112, 3]``
RGB drawn one VIS and one NIR photo per identity per step (uniformly among the identity's photos, seeded),
the book's input normalisation (:func:`facelab.train.inputs.to_model_input`), BatchNorm in training mode
for φ_p (φ_g runs in eval mode with moving-average statistics). The caller chooses the device and the
numerics (:class:`facelab.train.speed.Speed`: bf16 autocast and channels-last where supported; ``compile`` and
``threads`` are not used here). On a GPU the runs are not bit-reproducible (cuDNN's kernels are not made
deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facelab.train.hsst import (DisjointIdentityBatches, PrototypeQueue, cosine_loss, ema_update_, make_gallery,
                                queue_logits)
from facelab.train.inputs import to_model_input
from facelab.train.speed import Speed, autocast

METHODS = ("plain", "hsst")


@dataclass(frozen=True)
class FineTuneConfig:
    """``steps`` SGD steps of ``batch_size`` (NIR, VIS) pairs at ``lr`` (÷10 at each of ``milestones``),
    ``momentum``; HSST's queue size per modality and moving-average weight ``alpha``; eq. 1's ``scale`` and
    ``loss`` (softmax, AM or Arc: the plain triplet of the partial fine-tuning is in-batch, not here);
    ``imprint``: plain training's classifier starts from the identities' mean pretrained features."""

    steps: int
    batch_size: int
    lr: float = 5e-4
    milestones: tuple[int, ...] = ()
    momentum: float = 0.9
    queue_size: int = 128
    alpha: float = 0.999
    scale: float = 30.0
    loss: str = "softmax"
    log_every: int = 100
    imprint: bool = False


class _Features(nn.Module):
    """``net.forward_features`` under bf16 autocast when asked, returned in float32 (the queues, the classifier
    and the moving average stay in float32)."""

    def __init__(self, net: nn.Module, device: str, bf16: bool) -> None:
        super().__init__()
        self.net, self.device, self.bf16 = net, device, bf16

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.bf16):
            return self.net.forward_features(x).float()


class JointHSST:
    """HSST's step on a batch of ``B`` pairs with one probe pass over ``[NIR; VIS]`` (module docstring):
    ``loss(nir, vis)`` is eq. 2 in both directions, ``L(I_N, I_V)`` against the VIS queue and ``L(I_V, I_N)``
    against the NIR queue, averaged; :meth:`after_step` writes the gallery features into their queues and
    moves φ_g towards φ_p. Queues are drawn from ``generator`` VIS first, as :class:`SemiSiamese` does."""

    def __init__(self, probe: nn.Module, dim: int, *, queue_size: int, alpha: float, scale: float, loss: str,
                 generator: torch.Generator | None = None) -> None:
        self.probe, self.gallery = probe, make_gallery(probe)
        self.alpha, self.scale, self.loss_name = alpha, scale, loss
        self.queues = {"vis": PrototypeQueue(queue_size, dim, generator=generator),
                       "nir": PrototypeQueue(queue_size, dim, generator=generator)}
        self._pending: dict[str, torch.Tensor] = {}

    def loss(self, nir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        b = len(nir)
        p = self.probe.forward_features(torch.cat([nir, vis]))
        with torch.no_grad():
            self.gallery.eval()  # a moving average of weights, used as a fixed feature extractor
            g = self.gallery.forward_features(torch.cat([nir, vis]))
        terms = []
        for probe_feats, queue, gallery_feats in ((p[:b], "vis", g[b:]), (p[b:], "nir", g[:b])):
            protos, cols = self.queues[queue].with_batch(gallery_feats)
            self._pending[queue] = gallery_feats.detach()
            terms.append(cosine_loss(queue_logits(probe_feats, protos), cols, loss=self.loss_name, scale=self.scale))
        return torch.stack(terms).mean()

    @torch.no_grad()
    def after_step(self) -> None:
        for queue, feats in self._pending.items():
            self.queues[queue].commit([feats])
        self._pending = {}
        ema_update_(self.gallery, self.probe, self.alpha)


def _batch(images: np.ndarray, rows: np.ndarray, device: str, channels_last: bool) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).float().div_(255.0)
    x = to_model_input(x, images.shape[1]).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def _imprint(features, vis_images, nir_images, vis_by_id, nir_by_id, device, channels_last) -> torch.Tensor:
    """``float[K, D]`` unit rows: identity k's mean of the pretrained network's unit features (eval mode) over its
    VIS and NIR training photos."""
    net = features.net
    mode = net.training
    net.eval()
    rows = []
    for v, n in zip(vis_by_id, nir_by_id):
        f = torch.cat([features.forward_features(_batch(vis_images, v, device, channels_last)),
                       features.forward_features(_batch(nir_images, n, device, channels_last))])
        rows.append(F.normalize(f, dim=1).mean(0))
    net.train(mode)
    return F.normalize(torch.stack(rows), dim=1).cpu()


def fine_tune(method: str, net: nn.Module, vis_images: np.ndarray, nir_images: np.ndarray,
              vis_by_id: list[np.ndarray], nir_by_id: list[np.ndarray], config: FineTuneConfig, *, seed: int,
              device: str = "cpu", speed: Speed | None = None, progress: bool = False) -> tuple[nn.Module, list[float]]:
    """Fine-tune ``net`` (``forward_features(x [B, 3, 112, 112]) -> [B, D]``, trained in place) and return it in
    eval mode on the CPU with the loss averaged per ``log_every`` steps.

    ``vis_by_id[k]`` / ``nir_by_id[k]``: the rows of ``vis_images`` / ``nir_images`` of training identity ``k``
    (each non-empty). HSST needs at least ``queue_size + batch_size`` identities and a queue size that is a
    multiple of the batch size; plain training needs ``batch_size`` identities.
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {config.steps} and {config.batch_size}")
    n_ids = len(vis_by_id)
    if n_ids != len(nir_by_id) or any(len(v) == 0 for v in vis_by_id) or any(len(v) == 0 for v in nir_by_id):
        raise ValueError("every training identity needs at least one VIS and one NIR photo")
    if n_ids < config.batch_size:
        raise ValueError(f"{n_ids} training identities cannot fill a batch of {config.batch_size} distinct ones")
    if config.loss not in ("softmax", "am", "arc"):
        raise ValueError(f"loss must be 'softmax', 'am' or 'arc' for end-to-end fine-tuning, got {config.loss!r}")
    speed = (speed or Speed()).check()
    used = speed.resolve(device)
    channels_last, bf16 = bool(used["channels_last"]), bool(used["bf16_used"])
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    with torch.no_grad():  # the embedding width, read off the network in eval mode (no BatchNorm update)
        dim = net.eval().forward_features(_batch(vis_images, vis_by_id[0][:1], device, channels_last)).shape[1]
    net.train()
    features = _Features(net, device, bf16)
    if method == "hsst":
        model = JointHSST(features, dim, queue_size=config.queue_size, alpha=config.alpha, scale=config.scale,
                          loss=config.loss, generator=g)
        params = list(net.parameters())
        batches = iter(DisjointIdentityBatches(n_ids, config.batch_size, config.queue_size, config.steps, seed=seed))
    else:
        weights = F.normalize(torch.randn(n_ids, dim, generator=g), dim=1)
        if config.imprint:
            weights = _imprint(features, vis_images, nir_images, vis_by_id, nir_by_id, device, channels_last)
        classifier = nn.Parameter(weights.to(device))
        params = list(net.parameters()) + [classifier]
        rng_b = np.random.default_rng((seed, 1))
        batches = (rng_b.choice(n_ids, config.batch_size, replace=False) for _ in range(config.steps))
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(config.milestones), gamma=0.1)
    rng = np.random.default_rng((seed, 2))
    vis_counts = np.array([len(v) for v in vis_by_id])
    nir_counts = np.array([len(v) for v in nir_by_id])
    curve, window = [], []
    bar = tqdm(total=config.steps, desc=f"fine-tune ({method})", disable=not progress, leave=False)
    for step, ids in enumerate(batches):
        # one VIS and one NIR photo of each identity, uniformly among its photos
        v_rows = np.array([vis_by_id[k][j] for k, j in zip(ids, (rng.random(len(ids)) * vis_counts[ids]).astype(int))])
        n_rows = np.array([nir_by_id[k][j] for k, j in zip(ids, (rng.random(len(ids)) * nir_counts[ids]).astype(int))])
        vis = _batch(vis_images, v_rows, device, channels_last)
        nir = _batch(nir_images, n_rows, device, channels_last)
        if method == "hsst":
            value = model.loss(nir, vis)
        else:
            feats = features.forward_features(torch.cat([nir, vis]))
            labels = torch.from_numpy(np.concatenate([ids, ids])).to(device)
            cos = F.normalize(feats, dim=1) @ F.normalize(classifier, dim=1).T
            value = cosine_loss(cos, labels, loss=config.loss, scale=config.scale)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        if method == "hsst":
            model.after_step()
        window.append(float(value.detach()))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            curve.append(float(np.mean(window)))
            window = []
            bar.set_postfix(loss=f"{curve[-1]:.3f}")
        bar.update(1)
    bar.close()
    net.eval()
    if channels_last:
        net.to(memory_format=torch.contiguous_format)
    return net.cpu(), curve


__all__ = ["METHODS", "FineTuneConfig", "JointHSST", "fine_tune"]
