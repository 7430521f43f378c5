"""Chapter 4's MobileFaceNet backbone: the paper's network (Chen et al., MobileFaceNets), pretrained here by
distillation from SFace on identities disjoint from all three of the chapter's stand-ins.

The paper fine-tunes a MobileFaceNet pretrained on MS1M (Table I); no pretrained MobileFaceNet ships offline, so
:func:`pretrained_mobilefacenet` distils one (:mod:`facelab.train.distill`: centred targets, flips, AdamW) on the
**chapter-4 pool**:

* LFW identities the CASIA stand-in never uses: fewer than its ``min_images`` photos, or named like a CFP person
  (:func:`facelab.experiments.nirvis_masked_hsst.standin_identities` is its complement);
* CFP identities named like an LFW person: the Oulu-CASIA and BUAA-VisNir stand-ins use only CFP identities named
  like no LFW person.

So pretraining, the stand-in's training identities and all three test sets are identity-disjoint, checked by name
(:func:`facelab.data.splits.find_name_overlaps`) before anything trains. The getting-started student pool cannot
be reused: it holds CFP identities of the cross-dataset stand-ins. The distilled network then replaces SFace as the
frozen backbone of Table I (``nirvis_masked_hsst.table1_mobilefacenet``): a MobileFaceNet, as the paper's Table I,
but one that learned from ~12k faces through a teacher rather than from MS1M's millions.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from facelab.errors import DataError


@dataclass(frozen=True)
class BackboneConfig:
    """How the chapter's MobileFaceNet is distilled (``max_images``: a seeded subset, smoke)."""

    data_profile: str
    epochs: int
    min_images: int = 4
    teacher: str = "sface"
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    max_images: int | None = None
    flip_p: float = 0.5
    max_shift: int = 4


def backbone_config(profile: str) -> BackboneConfig:
    if profile == "smoke":
        return BackboneConfig(data_profile="smoke", epochs=1, min_images=2, batch_size=16, max_images=64)
    if profile == "small":
        # ~11.6k crops; MobileFaceNet trains at ~45 images/s on 2 cores: 3 epochs, ~13 min
        return BackboneConfig(data_profile="small", epochs=3)
    return BackboneConfig(data_profile=profile, epochs=20)


def chapter_pool(data_root, min_images: int) -> dict:
    """``{"lfw": identities, "cfp": identities, "counts": ...}`` of the chapter-4 pool (module docstring),
    after checking by name that no pool identity is a person of any of the three stand-ins."""
    from facelab.data import cfp
    from facelab.data.splits import cfp_train_lfw_test, find_name_overlaps, lfw_identities
    from facelab.experiments.nirvis_masked_hsst import standin_identities

    standin = set(standin_identities(data_root, min_images))
    lfw_ids = sorted(i for i in lfw_identities(data_root) if i not in standin)
    split = cfp_train_lfw_test(data_root)
    cfp_ids = sorted(split.excluded)  # CFP identities named like an LFW person
    names = cfp.read_names(data_root)
    cross = set(split.train_identities)  # where the Oulu and BUAA stand-ins draw from
    clash = find_name_overlaps({i: names[i] for i in cfp_ids}, {s.replace("_", " ") for s in standin})
    clash.update(find_name_overlaps({i: i.replace("_", " ") for i in lfw_ids}, {names[i] for i in cross}))
    if clash or set(cfp_ids) & cross:
        raise DataError(f"the chapter-4 pretraining pool would hold a test person ({next(iter(clash), '?')}); "
                        "this is a bug in the pool's rules, not in the data")
    return {"lfw": lfw_ids, "cfp": cfp_ids,
            "counts": {"lfw_identities": len(lfw_ids), "cfp_identities": len(cfp_ids),
                       "standin_lfw_identities_excluded": len(standin),
                       "cfp_identities_excluded": len(cross)}}


class StudentEmbedder:
    """A distilled network as a frozen embedder with the teachers' interface: ``embed(uint8[N, 112, 112, 3])``
    -> ``float32[N, 128]`` unit-norm (single view, fp32), ``name``, ``version``, ``embedding_dim``."""

    def __init__(self, model, head, *, name: str, version: str, size: int):
        self.model, self.head, self.name, self.version, self.size = model, head, name, version, size
        self.embedding_dim = 128

    def embed(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        from facelab.train.distill import embed_crops
        from facelab.train.speed import Speed

        return embed_crops(self.model, np.asarray(images), size=self.size, head=self.head, flip_sum=False,
                           speed=Speed())


def pretrained_mobilefacenet(config: BackboneConfig, ctx) -> tuple[StudentEmbedder, dict]:
    """Distil MobileFaceNet from SFace on :func:`chapter_pool` (checkpointed in the user cache: a finished run is
    loaded, an interrupted one resumed) and return it as a frozen embedder with its record (pool counts, training
    seconds, the loss curve)."""
    import os

    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.distill import Mimic, MimicHead, pool_centre, pool_with_targets
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    pool = chapter_pool(ctx.data_root, config.min_images)
    prepared = {name: load_prepared(name, config.data_profile) for name in ("lfw", "cfp")}
    teacher = load_teacher(config.teacher, **({"threads": ctx.workers or os.cpu_count() or 1}
                                              if config.teacher == "sface" else {}))
    t0 = time.time()
    crops, targets = pool_with_targets(prepared, {"lfw": pool["lfw"], "cfp": pool["cfp"]}, teacher,
                                       max_images=config.max_images, seed=ctx.seed, progress=ctx.progress)
    targets_seconds = time.time() - t0
    if not len(crops):
        raise DataError(f"the chapter-4 pool holds no prepared crop at profile {config.data_profile!r}: run "
                        f"`python -m facelab data prepare --profile {config.data_profile}`")
    torch.manual_seed(ctx.seed)
    model = create_model("mobilefacenet")
    head = MimicHead(model.num_features, teacher.embedding_dim)
    size = model.input_size[-1]
    data = PackedFaces(crops.images, np.arange(len(crops)), targets, size=size,
                       augment=FlipJitter(config.flip_p, config.max_shift), seed=ctx.seed)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, optimizer="adamw", grad_clip=None, min_lr=1e-6,
                               speed=Speed(channels_last=True))
    key = config_hash([str(config), ctx.seed])
    ckpt = (cache_root() / "checkpoints" / "04_nirvis_masked_hsst" / f"mobilefacenet-{key}.pt"
            if config.max_images is None else None)
    t1 = time.time()
    history = fit(model, data, train_config, head=head, objective=Mimic(centre=pool_centre(targets)),
                  device=ctx.device, seed=ctx.seed, checkpoint=ckpt, progress=ctx.progress)
    model.cpu().eval(), head.cpu().eval()
    version = hashlib.sha256(f"{key}{teacher.version}".encode()).hexdigest()[:16]
    record = {"pool": {**pool["counts"], **crops.counts()}, "n_train_images": int(len(crops)),
              "parameters": int(sum(p.numel() for p in model.parameters())),
              "train_seconds": round(time.time() - t1, 1), "targets_seconds": round(targets_seconds, 1),
              "history": {k: [v if np.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
              "teacher": teacher.name, "teacher_version": teacher.version, "config": str(config)}
    return StudentEmbedder(model, head, name="mobilefacenet (distilled from SFace, chapter-4 pool)",
                           version=f"mobilefacenet-{version}", size=size), record


__all__ = ["BackboneConfig", "StudentEmbedder", "backbone_config", "chapter_pool", "pretrained_mobilefacenet"]
