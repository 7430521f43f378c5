"""Chapter 1's verification protocol (Table 4's stand-in for IJB-A), registered by :mod:`facelab.experiments.lefv`.

* ``lefv.table4_references``: the two packaged recognizers (SFace and dlib's ResNet,
  :mod:`facelab.teachers`) on an all-pairs template protocol over CFP's ten identity-disjoint folds
  (:mod:`facelab.eval.templates`: per identity 7 templates of 2 images drawn from its 10 frontal and 4
  profile photos; every pair of templates in a fold compared), TAR at FAR = 0.1%, 1% and 10%, mean ±
  SD over the folds. These are the reference rows the chapter's own recognizer will sit beside. SFace
  embeds each crop and its mirror (summed, paper 002's flip feature; cached by
  :func:`facelab.teachers.targets.teacher_targets`); dlib embeds the crop alone (its cost: ~85 ms a crop here).

* ``lefv.recognizer.<network>``: the paper's recognizer with or without MSFF
  (:mod:`facelab.models.lefv_recognizer`) distilled from SFace (:mod:`facelab.train.distill`: the
  mimic loss of Uniface eq. 3; no identity labels) on LFW identities that are not CFP persons
  (:func:`facelab.data.splits.lfw_train_cfp_test`; every Table 4 test identity is a CFP identity), then
  measured on the same template protocol. The paper trains with softmax on a large labelled set; softmax
  on a few thousand LFW images learns little here (chapters 2-3), so the distilled track stands in for it.

IJB-A is not available offline. CFP's templates are small (2 images) and its poses are frontal and full
profile only, so TARs are not comparable with the paper's; the *ordering* of recognizers is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("lefv")


@dataclass(frozen=True)
class TemplateProtocolConfig:
    """The protocol (:func:`facelab.eval.templates.build_templates`) on the ``data_profile`` CFP crops and
    the recognizers measured on it."""

    data_profile: str
    teachers: tuple[str, ...] = ("sface", "dlib")
    images_per_template: int = 2
    templates_per_identity: int = 7
    fars: tuple[float, ...] = (1e-3, 1e-2, 1e-1)


def configure_references(profile: str) -> TemplateProtocolConfig:
    check_profile(profile)
    if profile == "smoke":
        return TemplateProtocolConfig(data_profile="smoke", teachers=("sface",), templates_per_identity=2)
    return TemplateProtocolConfig(data_profile=profile)


def protocol_templates(prepared, config: TemplateProtocolConfig, data_root, seed: int):
    """The templates over ``prepared`` (a CFP prepared set), with the fold of every identity from CFP's
    protocol files; DataError when no identity has enough accepted crops."""
    from facelab.data import cfp
    from facelab.eval.templates import build_templates

    folds = cfp.identity_folds(cfp.read_pairs("FF", data_root))
    t = build_templates(prepared.manifest["identity"].astype(str).tolist(), folds,
                        images_per_template=config.images_per_template,
                        templates_per_identity=config.templates_per_identity, seed=seed)
    if not len(t):
        need = config.images_per_template * config.templates_per_identity
        raise DataError(f"no CFP identity has {need} accepted crops at profile {config.data_profile!r}: run "
                        f"`python -m facelab data prepare --profile {config.data_profile} --datasets cfp`")
    return t


def run_references(config: TemplateProtocolConfig, ctx: RunContext):
    import time

    from facelab.data.manifest import load_prepared
    from facelab.eval.templates import evaluate_templates
    from facelab.teachers import load_teacher
    from facelab.teachers.targets import teacher_targets

    prepared = load_prepared("cfp", config.data_profile)
    templates = protocol_templates(prepared, config, ctx.data_root, ctx.seed)
    rows = np.unique(np.concatenate(templates.members))
    position = np.full(len(prepared), -1, np.int64)
    position[rows] = np.arange(len(rows))
    local = type(templates)(tuple(position[m] for m in templates.members), templates.identity, templates.fold)
    metrics: dict = {"n_templates": len(templates), "n_identities": len(set(templates.identity.tolist())),
                     "n_images": int(len(rows)),
                     "identities_left_out": int(prepared.manifest["identity"].nunique()
                                                - len(set(templates.identity.tolist()))),
                     "recognizers": {}}
    for name in config.teachers:
        t0 = time.perf_counter()
        if name == "sface":
            teacher = load_teacher(name, threads=ctx.workers or os.cpu_count() or 1)
            t = teacher_targets(prepared, teacher, rows, progress=ctx.progress)  # [N, 2, D]: crop, mirror
            emb, how = t[:, 0] + t[:, 1], "crop + mirror embeddings summed"
        else:
            teacher = load_teacher(name)
            emb, how = teacher.embed(prepared.aligned, rows=rows, progress=ctx.progress), "crop embedding"
        out = evaluate_templates(emb, local, config.fars)
        out.update({"teacher": teacher.name, "teacher_version": teacher.version, "embedding": how,
                    "seconds": round(time.perf_counter() - t0, 1)})
        metrics["recognizers"][name] = out
    g = metrics["recognizers"][config.teachers[0]]["per_fold"]
    metrics["comparisons_per_fold"] = {"genuine": [p["genuine"] for p in g], "impostor": [p["impostor"] for p in g]}
    digest = hashlib.sha256(("\n".join(prepared.manifest["path"].iloc[rows])
                             + str(prepared.summary.get("fingerprint"))).encode()).hexdigest()[:16]
    return metrics, {}, digest


@dataclass(frozen=True)
class RecognizerConfig:
    """Distillation of ``network`` from ``teacher`` on at most ``max_images`` (a seeded subset; None: all)
    of the pool's crops for ``epochs`` (AdamW at ``lr``, batch ``batch_size``, flips and shifts), bf16 +
    channels_last where the CPU has them; tested on the template protocol of ``protocol``. ``centre``:
    targets centred by the pool's mean teacher embedding (:class:`facelab.train.distill.Mimic`): with raw
    targets this network learns the teachers' shared mean and little else (its centred agreement with
    SFace stays near 0), as chapter 2's SqueezeFacePoseNet did."""

    network: str
    data_profile: str
    epochs: int
    max_images: int | None
    protocol: TemplateProtocolConfig
    teacher: str = "sface"
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    flip_p: float = 0.5
    max_shift: int = 4
    channels_last: bool = True
    bf16: bool = True
    centre: bool = True


def configure_recognizer(network: str):
    def configure(profile: str) -> RecognizerConfig:
        check_profile(profile)
        proto = configure_references(profile)
        if profile == "smoke":
            return RecognizerConfig(network=network, data_profile="smoke", epochs=1, max_images=64,
                                    protocol=proto, batch_size=16)
        if profile == "small":
            # ~12 min on 2 cores (~110 images/s with bf16): 6 epochs of the whole pool (~12k LFW crops)
            return RecognizerConfig(network=network, data_profile="small", epochs=6, max_images=None, protocol=proto)
        return RecognizerConfig(network=network, data_profile="full", epochs=30, max_images=None, protocol=proto)

    return configure


def run_recognizer(config: RecognizerConfig, ctx: RunContext):
    import time

    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.data.splits import lfw_train_cfp_test
    from facelab.eval.templates import evaluate_templates
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.distill import Mimic, MimicHead, agreement, embed_crops_views, pool_centre, pool_with_targets
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    t0 = time.time()
    lfw_set = load_prepared("lfw", config.data_profile)
    split = lfw_train_cfp_test(ctx.data_root, min_images=1)
    teacher = load_teacher(config.teacher, threads=ctx.workers or os.cpu_count() or 1)
    crops, targets = pool_with_targets({"lfw": lfw_set}, {"lfw": split.train_identities}, teacher,
                                       max_images=config.max_images, seed=ctx.seed, progress=ctx.progress)
    if not len(crops):
        raise DataError(f"no LFW crop of a non-CFP identity is prepared at profile {config.data_profile!r}: run "
                        f"`python -m facelab data prepare --profile {config.data_profile} --datasets lfw`")
    torch.manual_seed(ctx.seed)
    model = create_model(config.network)
    head = MimicHead(model.num_features, teacher.embedding_dim)
    data = PackedFaces(crops.images, np.arange(len(crops)), targets, size=model.input_size[-1],
                       augment=FlipJitter(config.flip_p, config.max_shift), seed=ctx.seed)
    speed = Speed(channels_last=config.channels_last, autocast_bf16=config.bf16)
    train = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, optimizer="adamw", grad_clip=None, min_lr=1e-6, speed=speed)
    ckpt = (cache_root() / "checkpoints" / CH.folder / f"recognizer-{config.network}-{config_hash([str(config), ctx.seed])}.pt"
            if config.data_profile != "smoke" else None)
    t1 = time.time()
    objective = Mimic(centre=pool_centre(targets) if config.centre else None)
    history = fit(model, data, train, head=head, objective=objective, device=ctx.device, seed=ctx.seed, checkpoint=ckpt,
                  progress=ctx.progress)
    t_train = time.time() - t1
    model.cpu(), head.cpu()
    # Table 4's protocol on CFP: flip-summed embeddings in the teacher's space
    cfp_set = load_prepared("cfp", config.protocol.data_profile)
    templates = protocol_templates(cfp_set, config.protocol, ctx.data_root, ctx.seed)
    rows = np.unique(np.concatenate(templates.members))
    position = np.full(len(cfp_set), -1, np.int64)
    position[rows] = np.arange(len(rows))
    local = type(templates)(tuple(position[m] for m in templates.members), templates.identity, templates.fold)
    plain, summed = embed_crops_views(model, cfp_set.aligned[rows], size=model.input_size[-1], head=head, speed=speed)
    result = evaluate_templates(summed, local, config.protocol.fars)
    from facelab.teachers.targets import teacher_targets

    t = teacher_targets(cfp_set, teacher, rows, progress=ctx.progress)
    metrics = {"network": config.network, "teacher": teacher.name, "teacher_version": teacher.version,
               "templates": result, "agreement": agreement(plain, t[:, 0]),
               "pool": {**crops.counts(), "excluded_as_cfp": len(split.excluded)}, "n_train_images": len(crops),
               "parameters": sum(p.numel() for p in model.parameters()),
               "history": {k: [v if np.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
               "speed": history.as_record()["speed"], "train_seconds": round(t_train, 1),
               "seconds": round(time.time() - t0, 1)}
    digest = hashlib.sha256(("\n".join(crops.identity.tolist()) + "\n".join(cfp_set.manifest["path"].iloc[rows])
                             ).encode()).hexdigest()[:16]
    return metrics, {"pool_identities": sorted(set(crops.identity.tolist()))}, digest


for _network in ("lefv_recognizer", "lefv_recognizer_no_msff"):
    register_experiment(Experiment(
        name=CH.experiment(f"recognizer.{_network}"), chapter=CH.folder,
        description=f"Table 4: {_network} distilled from SFace on non-CFP LFW identities; CFP template protocol",
        configure=configure_recognizer(_network), run=run_recognizer))

register_experiment(Experiment(
    name=CH.experiment("table4_references"), chapter=CH.folder,
    description="Table 4 stand-in: SFace and dlib on an all-pairs 2-image template protocol over CFP's 10 folds (TAR@FAR)",
    configure=configure_references, run=run_references))

__all__ = ["configure_references", "protocol_templates"]
