"""Chapter 2 (paper 001, SqueezeFacePoseNet): complexity, latency, training on LFW, pose protocol on CFP.

Experiments (``python -m facelab run NAME --profile P``):

* ``squeezefaceposenet.complexity_latency``: Table 1 (parameters, fp32 size, FLOPs, descriptor size) of the four
  SqueezeFacePoseNet variants and the two ResNets, Table 2 read off the model (output shape of every
  layer, fire widths), and latency (eager PyTorch and ONNX Runtime, batch 1, per thread count, each
  with its ratio to the FLOP floor; :mod:`facelab.bench.latency`).
* ``squeezefaceposenet.protocol_counts``: Table 3 on the paper's layout (368 users x 3 poses x 10 images) and on CFP.
* ``squeezefaceposenet.train.<model>``: train ``<model>`` for identification on LFW identities that are not CFP
  persons (:func:`facelab.data.splits.lfw_train_cfp_test`), softmax cross-entropy, SGD + momentum,
  lr 0.01 halved on a validation-loss plateau (paper Section 4); then descriptors of CFP images
  (GAP, 1000-d; 2048-d for the ResNets) and the pose protocol (Tables 3-4): EER for F-F, P-P and
  F-P with 1- and 5-image templates, χ² (the paper) and cosine.
* ``squeezefaceposenet.data.{wide,deep,wide_then_deep}``: Table 5's contrast with two identity-disjoint LFW
  subsets of equal image count (:mod:`facelab.data.subsets`), and pre-training on *wide* then
  fine-tuning on *deep* (the paper: MS1M, VGGFace2, MS1M -> VGGFace2).

Deviations from the paper, all forced by what is available offline: training from scratch (no
ImageNet SqueezeNet/ResNet weights), on a few thousand LFW images instead of VGGFace2/MS1M; testing
on CFP (frontal + profile only: no three-quarter pose; 5-image profile templates are 2 images, see
:mod:`facelab.data.pose_protocol`); aligned 112x112 crops resized to 113 (224 for the ResNets).
Results store EERs, DET curves on a fixed FAR grid and example pairs, not every score.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from facelab import chapters
from facelab.errors import DataError
from facelab.config import check_profile
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("squeezefaceposenet")
CHAPTER = CH.folder
SFPN_MODELS = ("squeezefaceposenet", "squeezefaceposenet_gdc", "squeezefaceposenet_dwc", "squeezefaceposenet_dwc_gdc")
RESNET_MODELS = ("resnet50", "se_resnet50")
ALL_MODELS = SFPN_MODELS + RESNET_MODELS
#: CFP's two poses, and the pose combinations measured (keys ``t<k>_<ab>`` in results).
POSES = ("frontal", "profile")
COMBOS = (("frontal", "frontal"), ("profile", "profile"), ("frontal", "profile"))
TEMPLATE_SIZES = (1, 5)
SCORES = ("chi2", "cosine")
#: Examples of genuine / impostor comparisons kept per pose combination (image paths and score).
N_EXAMPLES = 4


def combo_key(k: int, pose_a: str, pose_b: str) -> str:
    """``(1, 'frontal', 'profile')`` -> ``'t1_fp'`` (the paper-values cell suffix)."""
    return f"t{k}_{pose_a[0]}{pose_b[0]}"


# ----------------------------------------------------------------------------- complexity + latency


@dataclass(frozen=True)
class ComplexityLatencyConfig:
    """Complexity of ``complexity_models``; latency of ``latency_models`` (eager, and ONNX Runtime for
    ``onnx_models``) at each of ``threads``
    (``repeats`` timed calls after ``warmup``; the FLOP floor from a ``matmul_size``² sgemm)."""

    complexity_models: tuple[str, ...] = ALL_MODELS
    latency_models: tuple[str, ...] = ALL_MODELS
    onnx_models: tuple[str, ...] = ALL_MODELS  # also timed with ONNX Runtime (export + output check)
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 30
    warmup: int = 5
    matmul_size: int = 4096
    matmul_repeats: int = 3


def configure_complexity(profile: str) -> ComplexityLatencyConfig:
    check_profile(profile)
    if profile == "smoke":
        return ComplexityLatencyConfig(onnx_models=("squeezefaceposenet",), threads=(1,),
                                       repeats=2, warmup=1, matmul_size=1024, matmul_repeats=2)
    if profile == "small":
        return ComplexityLatencyConfig(repeats=20, warmup=3)
    return ComplexityLatencyConfig(repeats=100, warmup=10)


def _table2(model) -> dict[str, dict]:
    """Output side/channels of every Table 2 layer, and the fire widths, read off the model."""
    from facelab.bench.complexity import layer_summary

    names = [f"features.{n}" for n, _ in model.features.named_children()]
    names += ["averagepool10" if hasattr(model, "averagepool10") else "gdc10", "batchnorm10", "dropout10", "fc"]
    out: dict[str, dict] = {"input": {"output_side": model.input_size[1], "output_channels": model.input_size[0]}}
    # batch-norm needs batch > 1 in train mode only; layer_summary runs in eval mode
    for row in layer_summary(model, model.input_size, names=names):
        short = row.name.split(".")[-1]
        short = "averagepool10" if short == "gdc10" else short
        shape = row.output_shape
        side = shape[1] if shape is not None and len(shape) == 3 else 1
        ch = shape[0] if shape is not None else None
        entry = {"output_side": side, "output_channels": ch, "params": row.params, "flops": row.flops,
                 "type": row.type}
        if short.startswith("fire"):
            fire = getattr(model.features, short)
            entry.update(squeeze1x1=fire.squeeze.out_channels, expand1x1=fire.expand1x1.out_channels,
                         expand3x3=fire.out_channels - fire.expand1x1.out_channels)
        out[short] = entry
    return out


def run_complexity(config: ComplexityLatencyConfig, ctx: RunContext):
    import torch

    from facelab import models  # noqa: F401  (registers the models)
    from facelab.bench import complexity, latency
    from facelab.registry import create_model

    metrics: dict = {"models": {}}
    arrays: dict = {"times_ms": {}}
    for name in config.complexity_models:
        model = create_model(name)
        info = complexity.summarize(model, model.input_size, name=name)
        entry = info.to_dict()
        entry["paper_params"] = model.count_parameters() if hasattr(model, "count_parameters") else info.params
        entry["input_size"] = info.input_shape[-1]
        if name in RESNET_MODELS:
            # Table 1's 25.6M / 28.1M count the ImageNet classifier (2048 x 1000 + 1000) as well
            entry["params_with_imagenet_fc"] = info.params + 2048 * 1000 + 1000
        metrics["models"][name] = entry
    # Table 2 with the training head (C = 10 classes stands for "C")
    metrics["table2"] = _table2(create_model("squeezefaceposenet", num_classes=10))
    for name in config.latency_models:
        torch.manual_seed(ctx.seed)  # random weights: latency does not depend on their values
        model = create_model(name).eval()
        for t in config.threads:
            runtimes = latency.RUNTIMES if name in config.onnx_models else ("torch",)
            cfg = latency.LatencyConfig(threads=t, batches=(1,), repeats=config.repeats, warmup=config.warmup,
                                        runtimes=runtimes,
                                        matmul_size=config.matmul_size, matmul_repeats=config.matmul_repeats,
                                        seed=ctx.seed)
            m, a = latency.benchmark(model, model.input_size, name=name, config=cfg, progress=ctx.progress)
            runs = {f"{r['runtime']}_b{r['batch']}": {k: r.get(k) for k in
                                                     ("median_ms", "p10_ms", "p90_ms", "floor_ms", "floor_ratio",
                                                      "images_per_s", "repeats", "runtime_version")}
                    for r in m["runs"]}
            metrics["models"][name].setdefault("latency", {})[f"t{t}"] = {
                "runs": runs, "matmul_gflops": (m.get("matmul_floor") or {}).get("gflops"), "cpu": m.get("cpu")}
            arrays["times_ms"][f"{name}.t{t}"] = a["times_ms"]
    return metrics, arrays, None


# ----------------------------------------------------------------------------- Table 3 counts


@dataclass(frozen=True)
class ProtocolCountsConfig:
    n_impostor_users: int = 100


def configure_counts(profile: str) -> ProtocolCountsConfig:
    check_profile(profile)
    return ProtocolCountsConfig()


def run_counts(config: ProtocolCountsConfig, ctx: RunContext):
    from facelab.data import cfp, pose_protocol

    images = cfp.list_images(ctx.data_root)
    layout = pose_protocol.cfp_layout(images)
    paper_rows = pose_protocol.count_table(pose_protocol.paper_layout(), ("frontal", "profile"),
                                           n_impostor_users=config.n_impostor_users)
    cfp_rows = pose_protocol.count_table(layout, POSES, n_impostor_users=config.n_impostor_users)
    metrics = {"paper_layout": {combo_key(r["images_per_template"], r["pose_a"], r["pose_b"]): r for r in paper_rows},
               "cfp": {combo_key(r["images_per_template"], r["pose_a"], r["pose_b"]): r for r in cfp_rows},
               "cfp_users": len(layout), "cfp_images": len(images)}
    # The paper's four numbers per template size (same pose = F-F, cross pose = F-P on its layout)
    for k, word in ((1, "one_image"), (5, "five_images")):
        same, cross = metrics["paper_layout"][f"t{k}_ff"], metrics["paper_layout"][f"t{k}_fp"]
        metrics[word] = {"same_genuine": same["genuine"], "same_impostor": same["impostor"],
                         "cross_genuine": cross["genuine"], "cross_impostor": cross["impostor"]}
    manifest = hashlib.sha256("\n".join(images).encode()).hexdigest()[:16]
    return metrics, {}, manifest


# ----------------------------------------------------------------------------- training + pose protocol


@dataclass(frozen=True)
class TrainEvalConfig:
    """One training run and its CFP evaluation.

    ``data_profile``: which prepared LFW/CFP set to use (``python -m facelab data prepare``).
    Training identities: LFW persons not in CFP with at least ``min_images`` images; at most
    ``max_identities`` of them (those with the most images), at most ``max_per_identity`` images of one
    person and ``max_images`` in all.
    ``subset``: ``all``, or ``wide``/``deep``/``wide_then_deep`` (Table 5, :mod:`facelab.data.subsets`,
    ``few`` images per wide identity, ``deep_min`` per deep one). One image of every identity with at
    least ``val_min_images`` images is held out for the plateau test. ``eval_users``: CFP users
    evaluated (None: all with two templates per pose).
    """

    model: str
    data_profile: str
    epochs: int
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_factor: float = 0.5
    patience: int = 1
    min_images: int = 2
    max_identities: int | None = None
    max_images: int | None = None
    max_per_identity: int | None = None
    subset: str = "all"
    few: int = 2
    deep_min: int = 10
    finetune_epochs: int = 0
    val_min_images: int = 4
    max_batches: int | None = None
    eval_users: int | None = None
    new_layer_lr_mult: float = 10.0
    embed_runtime: str = "torch"
    flip_p: float = 0.5
    max_shift: int = 4
    channels_last: bool = False
    bf16: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def _input_size(model: str) -> int:
    return 224 if model in RESNET_MODELS else 113


def configure_train(model: str, profile: str, subset: str = "all") -> TrainEvalConfig:
    """The training configuration per model, profile and Table 5 subset.

    smoke: a few batches, 5 CFP users (3 for the ResNets), to exercise the code.
    small (sized for ~10-15 minutes on 2 shared CPU cores, where SqueezeFacePoseNet trains at ~10
    images/s at 113x113 and ResNet-50 at ~3 at 224x224): SqueezeFacePoseNet variants train on at most
    2,400 images of the LFW identities with >= 10 images, 2 epochs, and are tested on 200 CFP users;
    the ResNets on 600 images of the 30 identities with the most images, 1 epoch, tested on 60 CFP
    users. Table 5 subsets hold 1,200 images each (2 epochs, +2 epochs of fine-tuning). CFP
    descriptors are computed with ONNX Runtime (checked against PyTorch), ~3x faster than eager here.
    full: every LFW identity with >= 2 images, 30 epochs, all 500 CFP users (meant for a GPU).
    """
    check_profile(profile)
    resnet = model in RESNET_MODELS
    finetune = subset == "wide_then_deep"
    if profile == "smoke":
        return TrainEvalConfig(model=model, data_profile="smoke", epochs=1, batch_size=8, min_images=2,
                               max_images=None if subset != "all" else (16 if resnet else 32),
                               max_batches=1 if resnet else 3, eval_users=3 if resnet else 5,
                               subset=subset, few=1, deep_min=2, finetune_epochs=1 if finetune else 0,
                               val_min_images=3)
    if profile == "small":
        if subset != "all":
            return TrainEvalConfig(model=model, data_profile="small", epochs=2, batch_size=32, subset=subset,
                                   few=2, deep_min=10, max_images=1200, finetune_epochs=2 if finetune else 0,
                                   eval_users=200, embed_runtime="onnxruntime", channels_last=True, bf16=True,
                                   notes=("Table 5 substitute: wide = LFW identities x 2 images, deep = LFW identities "
                                          "with >= 10 images, 1,200 images each, identity-disjoint",))
        if resnet:
            return TrainEvalConfig(model=model, data_profile="small", epochs=1, batch_size=16, min_images=10,
                                   max_identities=30, max_images=600, eval_users=60, embed_runtime="onnxruntime",
                                   channels_last=True, bf16=True,
                                   notes=("ResNets at small: 30 identities, 600 images, 1 epoch, 60 CFP users "
                                          "(~3 images/s at 224x224 on 2 CPU cores)",))
        return TrainEvalConfig(model=model, data_profile="small", epochs=2, batch_size=32, min_images=10,
                               max_images=2400, max_per_identity=40, eval_users=200, embed_runtime="onnxruntime",
                               channels_last=True, bf16=True,
                               notes=("small: 2,400 images (at most 40 per person) of LFW identities with >= 10 "
                                      "images, 2 epochs, "
                                      "200 CFP users",))
    return TrainEvalConfig(model=model, data_profile="full", epochs=30, batch_size=64, min_images=2, subset=subset,
                           few=2, deep_min=10, finetune_epochs=15 if finetune else 0, embed_runtime="onnxruntime",
                           channels_last=True, bf16=True)


def _training_pool(config: TrainEvalConfig, lfw_set, data_root) -> dict[str, list[int]]:
    """Training identity -> rows of the prepared LFW set (identity-disjoint from CFP)."""
    from facelab.data.splits import lfw_train_cfp_test

    split = lfw_train_cfp_test(data_root, min_images=config.min_images)
    keep = set(split.train_identities)
    rows: dict[str, list[int]] = {}
    for i, ident in enumerate(lfw_set.manifest["identity"].tolist()):
        if ident in keep:
            rows.setdefault(ident, []).append(i)
    return {k: v for k, v in sorted(rows.items()) if len(v) >= config.min_images}


def _select(config: TrainEvalConfig, pool: dict[str, list[int]]) -> dict[str, dict[str, list[int]]]:
    """Stage name -> identity -> rows (one stage, or 'wide' then 'deep' for pre-train -> fine-tune)."""
    from facelab.data.subsets import matched_subsets

    if config.subset == "all":
        order = sorted(pool, key=lambda i: (-len(pool[i]), i))[: config.max_identities]
        chosen, left = {}, config.max_images or 10**12
        for ident in sorted(order):
            take = pool[ident][: config.max_per_identity][:left]
            if len(take) >= 2:
                chosen[ident] = take
                left -= len(take)
        return {"all": chosen}
    subs = matched_subsets({k: [str(r) for r in v] for k, v in pool.items()}, few=config.few,
                           deep_min=config.deep_min, n_images=config.max_images)
    as_rows = {name: {k: [int(r) for r in v] for k, v in getattr(subs, name).items()} for name in ("wide", "deep")}
    if config.subset == "wide_then_deep":
        return as_rows
    return {config.subset: as_rows[config.subset]}


def _split_val(rows_by_id: dict[str, list[int]], val_min_images: int) -> tuple[list[int], list[int]]:
    train, val = [], []
    for ident in sorted(rows_by_id):
        r = rows_by_id[ident]
        if len(r) >= val_min_images:
            train += r[:-1]
            val.append(r[-1])
        else:
            train += r
    return train, val


def _train_stage(model, lfw_set, rows_by_id, config: TrainEvalConfig, epochs: int, ctx: RunContext,
                 lr_mult: tuple = ()):
    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.datasets import AlignedFaces
    from facelab.train.inputs import ModelInput, PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    train_rows, val_rows = _split_val(rows_by_id, config.val_min_images)
    size = _input_size(config.model)
    aug = FlipJitter(config.flip_p, config.max_shift)
    train_faces = AlignedFaces(lfw_set, train_rows, augment=aug, seed=ctx.seed)
    classes = train_faces.classes
    # validation labels must use the training classes' numbering
    val_faces = AlignedFaces(lfw_set, val_rows, seed=ctx.seed)
    index = {c: i for i, c in enumerate(classes)}
    val_faces.labels = np.array([index[c] for c in np.asarray(val_faces.classes)[val_faces.labels]], dtype=np.int64)
    train_set = PackedFaces.from_faces(train_faces, size)  # the batched path: the same pixels, whole batches
    if config.max_batches is not None:
        train_set = torch.utils.data.Subset(train_set, list(range(min(len(train_set),
                                                                      config.max_batches * config.batch_size))))
    tc = TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr, momentum=config.momentum,
                     weight_decay=config.weight_decay, lr_factor=config.lr_factor, patience=config.patience,
                     lr_mult=lr_mult, speed=Speed(channels_last=config.channels_last, autocast_bf16=config.bf16))
    history = fit(model, train_set, tc, val_set=ModelInput(val_faces, size) if val_rows else None,
                  device=ctx.device, seed=ctx.seed, progress=ctx.progress,
                  on_epoch=lambda e, h: train_faces.set_epoch(e + 1))
    stats = {"identities": len(classes), "train_images": len(train_set), "val_images": len(val_rows),
             "history": history.as_dict(), "speed": history.as_record()["speed"]}
    return stats


def _new_model(name: str, num_classes: int, trunk_state: dict | None = None):
    from facelab import models  # noqa: F401
    from facelab.registry import create_model

    model = create_model(name, num_classes=num_classes)
    if trunk_state is not None:
        own = model.state_dict()
        keep = {k: v for k, v in trunk_state.items() if k in own and own[k].shape == v.shape and not k.startswith("fc.")}
        model.load_state_dict(keep, strict=False)
    return model


class DescriptorModule:
    """Factory of an ``nn.Module`` whose forward is ``model.forward_features`` (``(B, 3, S, S) -> (B, D)``),
    what the ONNX export of a trained model runs."""

    def __new__(cls, model):
        from torch import nn

        wrapper = nn.Module()
        wrapper.m = model
        wrapper.input_size = model.input_size
        wrapper.forward = model.forward_features
        return wrapper


def _cfp_descriptors(model, cfp_set, rows: list[int], config: TrainEvalConfig, ctx: RunContext) -> np.ndarray:
    """``[N, D]`` descriptors of the CFP rows: eager PyTorch, or ONNX Runtime (``config.embed_runtime``),
    whose outputs are checked against PyTorch's first (:func:`facelab.bench.onnx_export.check_onnx`)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from facelab.data.datasets import AlignedFaces
    from facelab.train.inputs import ModelInput
    from facelab.train.loop import embed

    faces = ModelInput(AlignedFaces(cfp_set, rows), _input_size(config.model))
    if config.embed_runtime == "torch":
        return embed(model, faces, batch_size=64, device=ctx.device, progress=ctx.progress).numpy()
    from facelab.bench import onnx_export

    desc_model = DescriptorModule(model).eval().cpu()
    shape = (3, _input_size(config.model), _input_size(config.model))
    path = onnx_export.export_onnx(desc_model, shape, name=f"squeezefaceposenet-train-{config.model}")
    session = onnx_export.onnx_session(path, threads=torch.get_num_threads())
    check = onnx_export.check_onnx(desc_model, session, shape, seed=ctx.seed)
    if not check.ok:
        raise DataError(f"ONNX Runtime descriptors differ from PyTorch's ({check.max_abs_diff:.3g}): use "
                         "embed_runtime='torch'")
    out = [session.run(None, {onnx_export.INPUT_NAME: x.numpy()})[0]
           for x, _ in tqdm(DataLoader(faces, batch_size=64), desc="embed (onnxruntime)", disable=not ctx.progress)]
    return np.concatenate(out)


def evaluate_pose_protocol(descriptors: dict[str, np.ndarray], layout: dict) -> tuple[dict, dict, dict]:
    """EER summaries and examples of every (template size, pose combination, score).

    Returns ``(eer, summaries, examples)``: ``eer[score][t<k>_<ab>]`` (fraction), ``summaries`` the
    :class:`~facelab.eval.pose_verification.ScoreSummary` dicts, ``examples[t1_<ab>]`` a few genuine
    and impostor comparisons (image paths and χ² score).
    """
    from facelab.data.pose_protocol import build_protocol
    from facelab.eval.pose_verification import score_pairs, summarize_scores, template_descriptors

    eer: dict = {s: {} for s in SCORES}
    summaries: dict = {s: {} for s in SCORES}
    counts: dict = {}
    examples: dict = {}
    for k in TEMPLATE_SIZES:
        for pa, pb in COMBOS:
            key = combo_key(k, pa, pb)
            proto = build_protocol(layout, pa, pb, k)
            templates = template_descriptors(proto, descriptors)
            counts[key] = {**proto.counts(), "skipped": sum(proto.skipped.values()),
                           "images_per_template": [len(t.images) for t in proto.templates[:1]]}
            for s in SCORES:
                scores = score_pairs(templates, proto.pairs, s)
                summ = summarize_scores(scores, proto.genuine)
                eer[s][key] = summ.eer
                summaries[s][key] = summ.as_dict()
                if s == "chi2" and k == 1:
                    ex = []
                    for gen in (True, False):
                        idx = np.flatnonzero(proto.genuine == gen)
                        # the hardest and easiest comparisons of each kind
                        order = idx[np.argsort(scores[idx])]
                        pick = list(order[: N_EXAMPLES // 2]) + list(order[-(N_EXAMPLES // 2):])
                        for j in pick:
                            a, b = proto.pairs[j]
                            ex.append({"genuine": gen, "image1": proto.templates[a].images[0],
                                       "image2": proto.templates[b].images[0], "score": float(scores[j])})
                    examples[key] = ex
    return eer, {"summaries": summaries, "counts": counts}, examples


def cfp_eval_layout(cfp_set, eval_users: int | None) -> tuple[dict, list[str], list[int]]:
    """The CFP users of the pose protocol (the first ``eval_users`` in sorted order of those with two
    templates per pose in the prepared set): ``(layout, relative path of every prepared row, rows used)``."""
    from facelab.data.pose_protocol import cfp_layout, users_with_templates

    paths = cfp_set.manifest["path"].tolist()
    rel = [p.split("/", 1)[1] if p.startswith("cfp/") else p for p in paths]
    rel = [r[r.index("Data/Images/"):] for r in rel]
    layout = users_with_templates(cfp_layout(rel), POSES)
    if eval_users is not None:
        layout = {u: layout[u] for u in sorted(layout)[:eval_users]}
    if len(layout) < 2:
        raise DataError(f"only {len(layout)} CFP users have >= 2 frontal and >= 2 profile images in the prepared "
                        f"{cfp_set.profile!r} set: run python -m facelab data prepare --profile {cfp_set.profile} "
                        "--datasets cfp")
    used = {i for u in layout.values() for imgs in u.values() for i in imgs}
    row_of = {r: i for i, r in enumerate(rel)}
    return layout, rel, sorted(row_of[i] for i in used)


def run_train(config: TrainEvalConfig, ctx: RunContext):
    import torch

    from facelab.data.manifest import load_prepared
    from facelab.eval.pose_verification import DET_FAR_GRID

    t0 = time.time()
    lfw_set = load_prepared("lfw", config.data_profile)
    cfp_set = load_prepared("cfp", config.data_profile)
    pool = _training_pool(config, lfw_set, ctx.data_root)
    stages = _select(config, pool)
    if not any(stages.values()):
        raise DataError(f"no LFW training identity with >= {config.min_images} images in the prepared "
                         f"{config.data_profile!r} set: prepare more data (python -m facelab data prepare "
                         f"--profile {config.data_profile} --datasets lfw)")
    torch.manual_seed(ctx.seed)  # initial weights
    stage_stats: dict = {}
    model, state = None, None
    for n, (stage, rows_by_id) in enumerate(stages.items()):
        n_classes = len(rows_by_id)
        model = _new_model(config.model, n_classes, state)
        epochs = config.epochs if n == 0 else config.finetune_epochs
        # fine-tuning: the new layers (batch-norm + FC of the head) learn 10x faster (paper Section 4)
        mult = (("fc", config.new_layer_lr_mult), ("batchnorm10", config.new_layer_lr_mult)) if n > 0 else ()
        stage_stats[stage] = _train_stage(model, lfw_set, rows_by_id, config, epochs, ctx, mult)
        state = model.state_dict()
    t_train = time.time() - t0

    # CFP evaluation: users with two templates per pose in the prepared set
    layout, rel, rows = cfp_eval_layout(cfp_set, config.eval_users)
    paths = cfp_set.manifest["path"].tolist()
    t1 = time.time()
    desc = _cfp_descriptors(model, cfp_set, rows, config, ctx)
    t_embed = time.time() - t1
    if not np.all(np.isfinite(desc)):
        raise FloatingPointError(f"{config.model} produced non-finite descriptors: training diverged")
    descriptors = {rel[r]: desc[j] for j, r in enumerate(rows)}
    eer, extra, examples = evaluate_pose_protocol(descriptors, layout)
    metrics = {
        "model": config.model, "eer": eer, "counts": extra["counts"], "stages": stage_stats,
        "cfp_users": len(layout), "cfp_images": len(rows), "descriptor_dim": int(desc.shape[1]),
        "descriptor_min": float(desc.min()), "train_seconds": t_train, "embed_seconds": t_embed,
        "embed_images_per_s": len(rows) / t_embed if t_embed > 0 else None,
        "seconds": time.time() - t0,
    }
    arrays = {"summaries": extra["summaries"], "examples": examples,
              "det_far_grid": list(DET_FAR_GRID),
              "train_identities": {s: sorted(v) for s, v in _select(config, pool).items()}}
    manifest = hashlib.sha256(("\n".join(lfw_set.manifest["path"].tolist()) + "\n".join(paths)).encode()).hexdigest()[:16]
    return metrics, arrays, manifest


# ----------------------------------------------------------------------------- the distilled track


@dataclass(frozen=True)
class DistillEvalConfig:
    """A model of Table 4 trained by mimicking SFace (facelab.train.distill) instead of softmax.

    The student is the model's trunk (its descriptor: SqueezeFacePoseNet's 1000-d GAP, the ResNets'
    2048-d) with a linear projection to the teacher's 128 dimensions; it learns the teacher's
    embedding of every crop (and of its mirror) of a pool that holds no test identity: LFW identities
    in no View 2 pair and CFP users who are neither test users here nor named like an LFW person
    (:func:`facelab.data.splits.lfw_test_pool`). Tested on the pose protocol of the first
    ``eval_users`` CFP users (cosine of the projected embeddings, the space the student was trained in)
    and on LFW View 2 next to the teacher. AdamW; ``centre``: targets centred by the pool's mean
    teacher embedding (a network without batch-norm can otherwise sit at that mean); ``head_norm``: a
    batch-norm of the descriptor in front of the projection (:class:`facelab.train.distill.MimicHead`);
    ``input_size``:
    the ResNets train at 112 (224 at ``full``), four times cheaper than the paper's 224.
    """

    model: str
    data_profile: str
    epochs: int
    input_size: int
    eval_users: int | None
    pairs_per_fold: int | None
    teacher: str = "sface"
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    centre: bool = True
    relational: float = 0.0
    head_norm: bool = True
    max_images: int | None = None
    flip_p: float = 0.5
    max_shift: int = 4
    channels_last: bool = False
    bf16: bool = False


def configure_distill(model: str, profile: str) -> DistillEvalConfig:
    check_profile(profile)
    size = {"smoke": 113, "small": 113, "full": 113} if model in SFPN_MODELS else {"smoke": 64, "small": 112, "full": 224}
    if profile == "smoke":
        return DistillEvalConfig(model=model, data_profile="smoke", epochs=1, input_size=size["smoke"], eval_users=5,
                                 pairs_per_fold=10, batch_size=8, max_images=24)
    if profile == "small":
        # ~12-15 minutes on 2 cores with bf16 + channels_last: 8 epochs of the ~4.2k-crop pool
        return DistillEvalConfig(model=model, data_profile="small", epochs=8, input_size=size["small"], eval_users=200,
                                 pairs_per_fold=None, channels_last=True, bf16=True)
    return DistillEvalConfig(model=model, data_profile="full", epochs=40, input_size=size["full"], eval_users=None,
                             pairs_per_fold=None, channels_last=True, bf16=True)


def run_distill(config: DistillEvalConfig, ctx: RunContext):
    import os

    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.data.splits import lfw_test_pool
    from facelab.eval.pose_verification import DET_FAR_GRID
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.distill import Mimic, MimicHead, embed_crops, lfw_student_evaluation, pool_centre, pool_with_targets
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    t0 = time.time()
    prepared = {name: load_prepared(name, config.data_profile) for name in ("lfw", "cfp")}
    layout, rel, eval_rows = cfp_eval_layout(prepared["cfp"], config.eval_users)
    pool = lfw_test_pool(ctx.data_root, exclude_cfp_users=layout)
    teacher = load_teacher(config.teacher, **({"threads": ctx.workers or os.cpu_count() or 1}
                                              if config.teacher == "sface" else {}))
    crops, targets = pool_with_targets(prepared, {"lfw": pool.lfw_identities, "cfp": pool.cfp_identities}, teacher,
                                       max_images=config.max_images, seed=ctx.seed, progress=ctx.progress)
    if not len(crops):
        raise DataError(f"the distillation pool holds no prepared crop at profile {config.data_profile!r}: run "
                        f"`python -m facelab data prepare --profile {config.data_profile}`")
    torch.manual_seed(ctx.seed)  # initial weights
    model = _new_model(config.model, 0)
    head = MimicHead(model.num_features, teacher.embedding_dim, norm=config.head_norm)
    data = PackedFaces(crops.images, np.arange(len(crops)), targets, size=config.input_size,
                       augment=FlipJitter(config.flip_p, config.max_shift), seed=ctx.seed)
    objective = Mimic(centre=pool_centre(targets) if config.centre else None, relational=config.relational)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               momentum=config.momentum, weight_decay=config.weight_decay, optimizer=config.optimizer,
                               grad_clip=None, min_lr=1e-6,
                               speed=Speed(channels_last=config.channels_last, autocast_bf16=config.bf16))
    ckpt = (cache_root() / "checkpoints" / CHAPTER / f"distill-{config.model}-{config_hash([str(config), ctx.seed])}.pt"
            if config.max_images is None else None)
    history = fit(model, data, train_config, head=head, objective=objective, device=ctx.device, seed=ctx.seed,
                  checkpoint=ckpt, progress=ctx.progress)
    t_train = time.time() - t0
    model.cpu(), head.cpu()
    # the pose protocol on the projected embeddings (one image each, no flip: as the softmax track)
    emb = embed_crops(model, prepared["cfp"].aligned[eval_rows], size=config.input_size, head=head, flip_sum=False)
    descriptors = {rel[r]: emb[j] for j, r in enumerate(eval_rows)}
    eer, extra, examples = evaluate_pose_protocol(descriptors, layout)
    lfw_metrics, lfw_arrays = lfw_student_evaluation(model, head, prepared["lfw"], teacher, size=config.input_size,
                                                     pairs_per_fold=config.pairs_per_fold, data_root=ctx.data_root,
                                                     progress=ctx.progress)
    metrics = {
        "model": config.model, "teacher": teacher.name, "teacher_version": teacher.version,
        "eer": {"cosine": eer["cosine"]}, "counts": extra["counts"], "cfp_users": len(layout),
        "cfp_images": len(eval_rows), "pool": {**crops.counts(), "excluded": pool.excluded},
        "n_train_images": len(crops), "history": {k: [v if np.isfinite(v) else None for v in vs]
                                                  for k, vs in history.as_dict().items()},
        "speed": history.as_record()["speed"], "train_seconds": round(t_train, 1),
        "seconds": round(time.time() - t0, 1), **lfw_metrics,
    }
    arrays = {"summaries": {"cosine": extra["summaries"]["cosine"]}, "det_far_grid": list(DET_FAR_GRID),
              "lfw": lfw_arrays, "pool_identities": sorted(set(crops.identity.tolist()))}
    digest = hashlib.sha256(("\n".join(crops.identity.tolist()) + "\n".join(rel[r] for r in eval_rows)
                             + str(prepared["cfp"].summary.get("fingerprint"))).encode()).hexdigest()[:16]
    return metrics, arrays, digest


def _register_train(model: str) -> None:
    register_experiment(Experiment(
        name=CH.experiment(f"train.{model}"), chapter=CHAPTER,
        description=f"train {model} on LFW identities (softmax, SGD), pose protocol EERs on CFP",
        configure=lambda profile, _m=model: configure_train(_m, profile), run=run_train))


def _register_data(subset: str) -> None:
    register_experiment(Experiment(
        name=CH.experiment(f"data.{subset}"), chapter=CHAPTER,
        description=f"Table 5 substitute: SqueezeFacePoseNet trained on the '{subset}' LFW subset",
        configure=lambda profile, _s=subset: configure_train("squeezefaceposenet", profile, _s), run=run_train))


register_experiment(Experiment(
    name=CH.experiment("complexity_latency"), chapter=CHAPTER,
    description="Tables 1-2: parameters, size, FLOPs, per-layer shapes; eager + ONNX Runtime latency with FLOP floor",
    configure=configure_complexity, run=run_complexity))
register_experiment(Experiment(
    name=CH.experiment("protocol_counts"), chapter=CHAPTER,
    description="Table 3: genuine/impostor counts on the paper's layout and on CFP",
    configure=configure_counts, run=run_counts))
for _m in ALL_MODELS:
    _register_train(_m)
    register_experiment(Experiment(
        name=CH.experiment(f"distill.{_m}"), chapter=CHAPTER,
        description=f"Table 4, distilled track: {_m} mimicking SFace on an identity-disjoint pool; CFP pose protocol, LFW",
        configure=lambda profile, _mm=_m: configure_distill(_mm, profile), run=run_distill))
for _s in ("wide", "deep", "wide_then_deep"):
    _register_data(_s)


def train_experiment(model: str) -> str:
    return CH.experiment(f"train.{model}")


__all__ = ["ALL_MODELS", "SFPN_MODELS", "RESNET_MODELS", "COMBOS", "TEMPLATE_SIZES", "combo_key",
           "configure_complexity", "configure_counts", "configure_train", "evaluate_pose_protocol",
           "train_experiment"]
