"""Training LEFV's normalizer (paper 000, Section 3.2, eq. 9): unpaired, WGAN-GP, a frozen expert.

Each step draws ``batch_size`` non-frontal faces ``x`` and ``batch_size`` frontal faces ``y`` (unpaired:
no identity link between them is used), generates ``x̄ = G(x)`` and ``ȳ = G(y)`` once, then

1. **critics** (eq. 9, ``L_D = L_adv``): :func:`facelab.losses.normalization.critic_loss` over the four
   region critics with FNM's ½ on each fake sum, plus a WGAN-GP penalty per critic at interpolates of
   ``y`` with ``x̄`` and with ``ȳ`` (each weighted ½, as the fake sums), on detached fakes;
2. **decoder** (eq. 9, ``L_G = −L_adv + λ1 L_ip + λ2 L_p + λ3 L_sym``): the critics' scores of the same
   (non-detached) fakes, eq. 6 on the expert's maps of ``x``/``x̄`` and ``y``/``ȳ`` (gradients pass
   through the frozen expert), eq. 8 between ``y`` and ``ȳ``, eq. 7 on ``x̄``.

One critic update per decoder update (WGAN-GP uses five; two CPU cores cannot afford them, and the
penalty keeps a single update stable enough here). Adam at 1e-4, betas (0, 0.9) for both (FNM, after
WGAN-GP). λ1, λ2, λ3 are not given by LEFV: :class:`NormalizerTrainConfig` states ours.

Inputs are ``uint8[N, 112, 112, 3]`` aligned crops (the prepared sets' ``aligned`` arrays); a step's
faces are drawn by ``numpy.random.default_rng((seed, step))`` with a random horizontal flip each, so a
resumed run draws what an uninterrupted one would. A checkpoint (decoder, critics, both optimizers,
history) is written atomically every ``checkpoint_every`` steps and at the end; ``train_normalizer``
resumes from it when the key (configuration, seed, pool sizes) matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from facelab.fileio import atomic_save_torch
from facelab.losses.normalization import (critic_loss, generator_adversarial_loss, gradient_penalty, identity_loss,
                                          pixel_loss, symmetry_loss)
from facelab.results import config_hash
from facelab.train.inputs import to_model_input


@dataclass(frozen=True)
class NormalizerTrainConfig:
    """``steps`` decoder/critic updates of ``batch_size`` non-frontal + ``batch_size`` frontal faces.

    ``lambda_ip``/``lambda_p``/``lambda_sym``: eq. 9's λ1-λ3 (ours: the identity term is a mean over
    the expert map's elements, ~0.1-1 at the start; the pixel and symmetry terms are means of absolute
    differences in [-1, 1] units). ``gp_weight``: WGAN-GP's λ = 10. ``fake_weight``: ½ (FNM), 1 as
    printed in eq. 5 (unbounded, :func:`facelab.losses.normalization.bias_gradient`).
    """

    steps: int
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    lambda_ip: float = 10.0
    lambda_p: float = 10.0
    lambda_sym: float = 1.0
    gp_weight: float = 10.0
    fake_weight: float = 0.5
    flip_p: float = 0.5
    log_every: int = 10
    checkpoint_every: int = 50

    def check(self) -> NormalizerTrainConfig:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("log_every and checkpoint_every must be >= 1")
        return self


@dataclass
class NormalizerHistory:
    """Means over each ``log_every`` window of steps: ``step`` (last step of the window, 1-based) and the terms."""

    step: list[int] = field(default_factory=list)
    critic: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    wasserstein: list[float] = field(default_factory=list)  # mean real score - mean fake score, summed over critics
    adversarial: list[float] = field(default_factory=list)
    identity: list[float] = field(default_factory=list)
    pixel: list[float] = field(default_factory=list)
    symmetry: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return asdict(self)


def draw_batch(images: np.ndarray, n: int, rng: np.random.Generator, flip_p: float) -> torch.Tensor:
    """``n`` faces of ``uint8[N, H, W, 3]`` drawn with replacement, each mirrored with probability ``flip_p``
    -> ``float[n, 3, H, W]`` book-normalised (:func:`facelab.train.inputs.to_model_input`)."""
    rows = rng.integers(0, len(images), n)
    flip = rng.random(n) < flip_p
    batch = images[rows].copy()
    batch[flip] = batch[flip][:, :, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0
    return to_model_input(t, images.shape[1])


def _key(config: NormalizerTrainConfig, seed: int, n_x: int, n_y: int) -> str:
    return config_hash([str({k: v for k, v in asdict(config).items() if k not in ("steps", "log_every",
                                                                                  "checkpoint_every")}),
                        seed, n_x, n_y])


def train_normalizer(normalizer, critics, nonfrontal: np.ndarray, frontal: np.ndarray, config: NormalizerTrainConfig,
                     *, seed: int = 0, device: str = "cpu", checkpoint: Path | None = None, progress: bool = True,
                     on_log: Callable[[int, NormalizerHistory], None] | None = None) -> NormalizerHistory:
    """Train ``normalizer.decoder`` and ``critics`` (:mod:`facelab.models.lefv_normalizer`) in place.

    Args:
        normalizer: a :class:`~facelab.models.lefv_normalizer.LEFVNormalizer` (its expert stays frozen).
        critics: a :class:`~facelab.models.lefv_normalizer.FaceCritics`.
        nonfrontal: ``uint8[Nx, 112, 112, 3]`` aligned non-frontal faces (the set eq. 3 normalises).
        frontal: ``uint8[Ny, 112, 112, 3]`` aligned frontal faces (the "normal" set of eq. 4).

    torch's global RNG is forked (and so restored) around the run; faces are drawn from ``seed`` and the step.
    """
    from tqdm.auto import tqdm

    config.check()
    if not len(nonfrontal) or not len(frontal):
        raise ValueError(f"both face sets must be non-empty, got {len(nonfrontal)} non-frontal and {len(frontal)} frontal")
    normalizer.to(device), critics.to(device)
    decoder = normalizer.decoder
    opt_g = torch.optim.Adam(decoder.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(critics.parameters(), lr=config.lr, betas=config.betas)
    history, start = NormalizerHistory(), 0
    key = _key(config, seed, len(nonfrontal), len(frontal))
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("key") == key:
            decoder.load_state_dict(state["decoder"]), critics.load_state_dict(state["critics"])
            opt_g.load_state_dict(state["opt_g"]), opt_d.load_state_dict(state["opt_d"])
            history, start = NormalizerHistory(**state["history"]), int(state["step"])
            print(f"resuming from {checkpoint} after step {start}")

    def save(step: int) -> None:
        if checkpoint is not None:
            atomic_save_torch({"key": key, "step": step, "decoder": decoder.state_dict(),
                               "critics": critics.state_dict(), "opt_g": opt_g.state_dict(),
                               "opt_d": opt_d.state_dict(), "history": history.as_dict()}, checkpoint)

    normalizer.train(), critics.train()
    window: dict[str, list[float]] = {}
    t_window = time.perf_counter()
    rng_devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=rng_devices):
        bar = tqdm(range(start, config.steps), desc="normalizer", disable=not progress, initial=start,
                   total=config.steps, leave=False)
        for step in bar:
            rng = np.random.default_rng((seed, step))
            torch.manual_seed(int(rng.integers(2**31)))
            x = draw_batch(nonfrontal, config.batch_size, rng, config.flip_p).to(device)
            y = draw_batch(frontal, config.batch_size, rng, config.flip_p).to(device)
            with torch.no_grad():
                fx, fy = normalizer.encode(x), normalizer.encode(y)
            x_bar, y_bar = decoder(fx), decoder(fy)

            # 1. critics on detached fakes (eq. 9's L_D) + the gradient penalty
            real_s, fx_s, fy_s = critics(y), critics(x_bar.detach()), critics(y_bar.detach())
            regions = list(real_s)
            l_adv = critic_loss([real_s[r] for r in regions], [fx_s[r] for r in regions], [fy_s[r] for r in regions],
                                fake_weight=config.fake_weight)
            gp = sum(config.fake_weight * (gradient_penalty(critics.region_critic(r), y, x_bar, weight=config.gp_weight)
                                           + gradient_penalty(critics.region_critic(r), y, y_bar, weight=config.gp_weight))
                     for r in regions)
            opt_d.zero_grad(set_to_none=True)
            (l_adv + gp).backward()
            opt_d.step()

            # 2. decoder: the updated critics' scores of the fakes, identity, pixel, symmetry
            for p in critics.parameters():
                p.requires_grad_(False)
            gx_s, gy_s = critics(x_bar), critics(y_bar)
            g_adv = generator_adversarial_loss([gx_s[r] for r in regions], [gy_s[r] for r in regions],
                                               fake_weight=config.fake_weight)
            l_ip = identity_loss(fx, normalizer.encode(x_bar)) + identity_loss(fy, normalizer.encode(y_bar))
            l_p = pixel_loss(y, y_bar)
            l_sym = symmetry_loss(x_bar)
            loss_g = g_adv + config.lambda_ip * l_ip + config.lambda_p * l_p + config.lambda_sym * l_sym
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for p in critics.parameters():
                p.requires_grad_(True)

            w = sum(float(real_s[r].detach().mean()) - 0.5 * float((fx_s[r] + fy_s[r]).detach().mean()) for r in regions)
            for name, v in (("critic", l_adv), ("penalty", gp), ("wasserstein", w), ("adversarial", g_adv),
                            ("identity", l_ip), ("pixel", l_p), ("symmetry", l_sym)):
                window.setdefault(name, []).append(float(v.detach()) if torch.is_tensor(v) else float(v))
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                history.step.append(done)
                for name, values in window.items():
                    getattr(history, name).append(float(np.mean(values)))
                history.seconds.append(round(time.perf_counter() - t_window, 3))
                window, t_window = {}, time.perf_counter()
                bar.set_postfix(identity=f"{history.identity[-1]:.3f}", pixel=f"{history.pixel[-1]:.3f}")
                if on_log is not None:
                    on_log(done, history)
            if done % config.checkpoint_every == 0 or done == config.steps:
                save(done)
        bar.close()
    normalizer.eval(), critics.eval()
    return history


@torch.no_grad()
def normalize_faces(normalizer, images: np.ndarray, *, batch_size: int = 32, device: str = "cpu",
                    progress: bool = False) -> np.ndarray:
    """``uint8[N, 112, 112, 3]`` aligned faces -> their normalised versions, ``uint8[N, 112, 112, 3]``
    (the decoder's [-1, 1] output mapped back to pixels), in eval mode."""
    from tqdm.auto import tqdm

    normalizer.eval().to(device)
    out = np.empty_like(images)
    for i in tqdm(range(0, len(images), batch_size), desc="normalize", disable=not progress, leave=False):
        t = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2).float() / 255.0
        g = normalizer(to_model_input(t, images.shape[1]).to(device))
        out[i:i + batch_size] = ((g.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out
