"""End-to-end fine-tuning of a whole face network on (NIR, VIS) image pairs, plain or with HSST (paper 003,
Section III-A and IV): the paper's optimisation, where :func:`facelab.experiments.nirvis_masked_hsst_table1.train_head`
trains only a residual head over frozen embeddings.

* **HSST**: the network is the probe-net φ_p, a deep copy its moving average φ_g
  (:class:`facelab.train.hsst.SemiSiamese`: both directions of eq. 2 on every pair, one prototype queue per
  modality, batches of distinct identities none of which is in the queues,
  :class:`facelab.train.hsst.DisjointIdentityBatches`); only φ_p is returned (the deployed network).
* **Plain** ("fine-tunes [the pretrained model] on the NIR-VIS datasets"): the network and a cosine classifier
  over the training identities (one normalised weight per identity, drawn from the seed), eq. 1's loss on
  every NIR and every VIS image of a batch.

Both: SGD with momentum, the learning rate divided by 10 at each milestone, images ``uint8[N, 112, 112, 3]``
RGB drawn one VIS and one NIR photo per identity per step (uniformly among the identity's photos, seeded),
the book's input normalisation (:func:`facelab.train.inputs.to_model_input`), BatchNorm in training mode
for φ_p (φ_g runs in eval mode with moving-average statistics). The caller chooses the device and the
numerics (:class:`facelab.train.speed.Speed`: bf16 autocast and channels-last where supported).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from facelab.train.hsst import DisjointIdentityBatches, HSSTConfig, SemiSiamese, cosine_loss
from facelab.train.inputs import to_model_input
from facelab.train.speed import Speed, autocast

METHODS = ("plain", "hsst")


@dataclass(frozen=True)
class FineTuneConfig:
    """``steps`` SGD steps of ``batch_size`` (NIR, VIS) pairs at ``lr`` (÷10 at each of ``milestones``),
    ``momentum``; HSST's queue size per modality and moving-average weight ``alpha``; eq. 1's ``scale``."""

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


class _Features(nn.Module):
    """``net.forward_features`` under bf16 autocast when asked, returned in float32 (the queues, the classifier
    and the moving average stay in float32)."""

    def __init__(self, net: nn.Module, device: str, bf16: bool) -> None:
        super().__init__()
        self.net, self.device, self.bf16 = net, device, bf16

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.bf16):
            return self.net.forward_features(x).float()


def _batch(images: np.ndarray, rows: np.ndarray, device: str, channels_last: bool) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).float().div_(255.0)
    x = to_model_input(x, images.shape[1]).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def fine_tune(method: str, net: nn.Module, vis_images: np.ndarray, nir_images: np.ndarray,
              vis_by_id: list[np.ndarray], nir_by_id: list[np.ndarray], config: FineTuneConfig, *, seed: int,
              device: str = "cpu", speed: Speed | None = None, progress: bool = False) -> tuple[nn.Module, list[float]]:
    """Fine-tune ``net`` (``forward_features(x [B, 3, 112, 112]) -> [B, D]``, trained in place) and return it in
    eval mode on the CPU with the loss averaged per ``log_every`` steps.

    ``vis_by_id[k]`` / ``nir_by_id[k]``: the rows of ``vis_images`` / ``nir_images`` of training identity ``k``
    (each non-empty). HSST needs more identities than ``queue_size + batch_size``; plain training needs
    ``batch_size`` of them.
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
        model = SemiSiamese(features, dim, HSSTConfig(queue_size=config.queue_size, alpha=config.alpha,
                                                      scale=config.scale, loss=config.loss), generator=g).to(device)
        params = list(net.parameters())
        batches = iter(DisjointIdentityBatches(n_ids, config.batch_size, config.queue_size, config.steps, seed=seed))
    else:
        classifier = nn.Parameter(F.normalize(torch.randn(n_ids, dim, generator=g), dim=1).to(device))
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
            value = model.loss(nir, vis, generator=g)
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


__all__ = ["METHODS", "FineTuneConfig", "fine_tune"]
