"""Chapter 1's face normalization (paper 000, Section 3.2) and Table 4 with and without it; registered by
:mod:`facelab.experiments.lefv`.

``lefv.normalizer``: the normalizer of :mod:`facelab.models.lefv_normalizer` (SFace's pretrained
network as the frozen face expert, a light decoder, four region critics) trained unpaired by
:mod:`facelab.train.normalizer` on CFP: its *profile* photos are the non-frontal set ``x`` and its
frontal photos the "normal" set ``y``; CFP's identity labels are never used (the paper: "we do not use
paired data and identity information"). Then:

* **Identity preservation** (the paper's claim, never measured there): SFace's cosine between each test
  face and its normalised version, per pose, and the share of faces whose cosine stays above SFace's
  same-person threshold at FAR = 1% on these test faces (the cosine 1% of different-identity pairs exceed).
* **Before and after, by an independent judge**: each held-out profile face, and its normalization, against
  one frontal reference photo of the same identity (the identity's first held-out frontal crop), scored by
  dlib's ResNet (``judge``; trained on other data than SFace, and neither the expert nor trained with it; one
  view per crop) and by SFace (crop + mirror embeddings summed, as Table 4): rank-1 among all references before
  and after, the cosine to the reference, and the genuine and false-match rates at the judge's FAR-1% threshold
  (profile originals against the other identities' references) (:func:`reference_similarity`).
* **Table 4 with and without normalization**: the all-pairs template protocol of
  :mod:`facelab.experiments.lefv_verification` (TAR at FAR = 0.1%, 1%, 10%) with SFace as the
  recognizer on (a) the original crops, (b) every crop normalised (the LEFV pipeline), (c) only the
  profile crops normalised. The paper reports no with/without comparison.

``lefv.normalizer_mobilefacenet``: the same normalizer, data, schedule and tests with the paper's expert,
MobileFaceNet (:mod:`facelab.models.mobilefacenet`), in place of SFace's network. No pretrained MobileFaceNet
ships offline, so :func:`distilled_expert` distils one from SFace first, on the pool of chapter 1's
recognizers (LFW identities named like no CFP person: no identity of CFP, hence none of Table 4's test
folds), with their recipe (:mod:`facelab.train.distill`: centred targets, AdamW, flips and shifts). The two
rows show what the expert changes: SFace learned from millions of faces, this MobileFaceNet from ~10k through
SFace. SFace stays the *recognizer* of Table 4 and the judge of identity preservation in both rows, so the
rows differ only in the expert the decoder reads (and the identity loss compares).

Identities: Table 4's test identities are CFP identities, so the normalizer trains on the identities of
CFP folds ``train_folds`` and Table 4 is scored here on the other folds only (both rows on the same
folds: the with/without comparison is paired). The stored ``lefv.table4_references`` scores all ten folds.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass, replace

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment
from facelab.experiments.lefv_verification import (RecognizerConfig, TemplateProtocolConfig, configure_recognizer,
                                                   configure_references, protocol_templates)

CH = chapters.get("lefv")


@dataclass(frozen=True)
class NormalizationConfig:
    """Train on the CFP identities of ``train_folds`` (1-based), test on the rest; ``steps`` x
    ``batch_size`` (non-frontal + frontal) faces (:class:`facelab.train.normalizer.NormalizerTrainConfig`);
    ``max_train_faces``: a seeded subset of each training set (smoke); ``examples``: test faces shown in the
    chapter's figure; ``expert``: ``"sface"`` (SFace's pretrained network) or ``"mobilefacenet"`` (distilled
    from SFace by ``expert_training`` first: :func:`distilled_expert`)."""

    data_profile: str
    steps: int
    protocol: TemplateProtocolConfig
    batch_size: int = 8
    train_folds: tuple[int, ...] = (1, 2, 3, 4, 5)
    lambda_ip: float = 10.0
    lambda_p: float = 10.0
    lambda_sym: float = 1.0
    max_train_faces: int | None = None
    examples: int = 6
    expert: str = "sface"
    expert_training: RecognizerConfig | None = None
    judge: str | None = "dlib"


def configure_normalizer(profile: str) -> NormalizationConfig:
    check_profile(profile)
    proto = configure_references(profile)
    if profile == "smoke":
        # the smoke subset holds ten identities in fold 1 and one in each other fold: test on fold 1
        return NormalizationConfig(data_profile="smoke", steps=2, batch_size=2, protocol=proto, max_train_faces=16,
                                   examples=2, train_folds=(2, 3, 4, 5, 6, 7, 8, 9, 10))
    if profile == "small":
        # ~15 min on 2 cores: ~3 s a step (the expert's backward pass for 16 generated faces dominates)
        return NormalizationConfig(data_profile="small", steps=300, protocol=proto)
    return NormalizationConfig(data_profile="full", steps=20000, batch_size=32, protocol=proto)


def configure_normalizer_mobilefacenet(profile: str) -> NormalizationConfig:
    """As :func:`configure_normalizer`, with MobileFaceNet distilled as chapter 1's recognizers are (at
    ``small`` 6 epochs of ~10k LFW crops, ~10 min) as the expert."""
    return replace(configure_normalizer(profile), expert="mobilefacenet",
                   expert_training=configure_recognizer("mobilefacenet")(profile))


def distilled_expert(config: RecognizerConfig, ctx: RunContext):
    """``config.network`` distilled from ``config.teacher`` on chapter 1's recognizer pool (LFW identities named
    like no CFP person, :func:`facelab.data.splits.lfw_train_cfp_test`), checkpointed in the user cache (a
    finished run is loaded, an interrupted one resumed): ``(model, head, record)``, the model and its mimic head
    in eval mode on the CPU, the record with the pool, the loss curve and the training seconds."""
    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.data.splits import lfw_train_cfp_test
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.distill import Mimic, MimicHead, pool_centre, pool_with_targets
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

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
    ckpt = (cache_root() / "checkpoints" / CH.folder / f"expert-{config.network}-{config_hash([str(config), ctx.seed])}.pt"
            if config.data_profile != "smoke" else None)
    t0 = time.time()
    history = fit(model, data, train, head=head, objective=Mimic(centre=pool_centre(targets) if config.centre else None),
                  device=ctx.device, seed=ctx.seed, checkpoint=ckpt, progress=ctx.progress)
    record = {"network": config.network, "teacher": teacher.name, "pool": {**crops.counts(),
                                                                          "excluded_as_cfp": len(split.excluded)},
              "n_train_images": len(crops), "epochs": config.epochs,
              "parameters": sum(p.numel() for p in model.parameters()),
              "history": {k: [v if np.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
              # the epochs' own seconds, kept in the checkpoint: a finished expert loaded from it keeps its cost
              "train_seconds": round(float(np.nansum(history.as_dict()["seconds"])), 1),
              "wall_seconds": round(time.time() - t0, 1), "pool_identities": sorted(set(crops.identity.tolist()))}
    return model.cpu().eval(), head.cpu().eval(), record


def build_normalizer(config: NormalizationConfig, ctx: RunContext):
    """The normalizer over ``config.expert`` (decoder and critics drawn from the seed) and the expert's record
    (None for SFace)."""
    import torch

    from facelab.models.lefv_normalizer import LEFVNormalizer
    from facelab.registry import create_model

    if config.expert == "sface":
        torch.manual_seed(ctx.seed)  # the decoder's initial weights (the runner restores the RNG)
        return create_model("lefv_normalizer", pretrained=True), None, None
    if config.expert != "mobilefacenet" or config.expert_training is None:
        raise ValueError(f"expert must be 'sface' or 'mobilefacenet' (with expert_training), got {config.expert!r}")
    if config.expert_training.network != config.expert:
        raise ValueError(f"expert_training distils {config.expert_training.network!r}, not the expert {config.expert!r}")
    model, head, record = distilled_expert(config.expert_training, ctx)
    torch.manual_seed(ctx.seed)
    return LEFVNormalizer(model), head, record


def example_grid(rows: list[np.ndarray]) -> str:
    """Rows of ``uint8[k, H, W, 3]`` faces -> one JPEG (rows stacked, quality 90), base64: the chapter's figure, compact."""
    import cv2

    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    ok, png = cv2.imencode(".jpg", np.ascontiguousarray(grid[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("could not encode the example grid as JPEG")
    return base64.b64encode(png.tobytes()).decode("ascii")


def reference_frontals(identity: np.ndarray, is_profile: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the before/after test: ``(profile, references, column)``: the profile rows whose identity has a frontal
    row, each identity's first frontal row (``references``, sorted by identity), and for each profile row the
    position of its identity's reference in ``references``."""
    frontal = np.flatnonzero(~is_profile)
    ids, first = np.unique(identity[frontal], return_index=True)
    references = frontal[first]
    profile = np.flatnonzero(is_profile & np.isin(identity, ids))
    return profile, references, np.searchsorted(ids, identity[profile])


def reference_similarity(before: np.ndarray, after: np.ndarray, references: np.ndarray, column: np.ndarray,
                         *, far: float = 0.01) -> dict:
    """Profile faces before and after normalization against frontal references: ``before``, ``after``
    ``float[N, D]`` (row i: profile face i and its normalization), ``references`` ``float[R, D]``, ``column``
    ``int[N]`` (the reference of face i's identity), any scale (rows are L2-normalised here).

    Two views. **Rank-1**: the share of faces whose own identity's reference is the most similar of all R,
    before and after, and the paired change (its standard error from the per-face changes, each -1, 0 or +1):
    a normalizer that pulls every face towards one generic frontal face cannot raise it. **At a threshold**:
    the cosine that a share ``far`` of the impostor pairs (each face *before*, against every other reference)
    exceed; the share of genuine pairs above it and of impostor pairs above it (the false-match rate), before and
    after -- a genuine gain at an unchanged false-match rate. Also cosine statistics of face to its own
    normalization and of face to reference, and the share of faces whose cosine to their reference rises."""
    b, a, r = (np.asarray(x, np.float64) for x in (before, after, references))
    column = np.asarray(column, np.int64)
    if b.ndim != 2 or a.shape != b.shape or r.ndim != 2 or r.shape[1] != b.shape[1]:
        raise ValueError(f"before and after must be [N, D] and references [R, D]; got {b.shape}, {a.shape}, {r.shape}")
    if column.shape != (len(b),) or (len(column) and (column.min() < 0 or column.max() >= len(r))):
        raise ValueError(f"column must give each of the {len(b)} faces a reference in 0..{len(r) - 1}")
    if len(b) == 0 or len(r) < 2:
        raise ValueError("the before/after test needs at least one profile face and two references")
    b, a, r = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (b, a, r))
    n = len(b)
    genuine = np.zeros((n, len(r)), bool)
    genuine[np.arange(n), column] = True
    s_before, s_after = b @ r.T, a @ r.T
    threshold = float(np.quantile(s_before[~genuine], 1 - far))
    to_before, to_after = s_before[np.arange(n), column], s_after[np.arange(n), column]
    hit_before = (s_before.argmax(axis=1) == column).astype(float)
    hit_after = (s_after.argmax(axis=1) == column).astype(float)

    def stats(c):
        return {"mean": float(c.mean()), "sd": float(c.std()), "p10": float(np.percentile(c, 10))}

    return {"n_faces": int(n), "n_references": int(len(r)), "impostor_pairs": int((~genuine).sum()), "far": far,
            "threshold": threshold, "self": stats((b * a).sum(1)), "to_reference_before": stats(to_before),
            "to_reference_after": stats(to_after), "share_closer_after": float(np.mean(to_after > to_before)),
            "rank1_before": float(hit_before.mean()), "rank1_after": float(hit_after.mean()),
            "rank1_change_se": float((hit_after - hit_before).std() / np.sqrt(n)),
            "match_rate_before": float(np.mean(to_before >= threshold)),
            "match_rate_after": float(np.mean(to_after >= threshold)),
            "false_match_rate_before": float(np.mean(s_before[~genuine] >= threshold)),
            "false_match_rate_after": float(np.mean(s_after[~genuine] >= threshold))}


def _cosines(a: np.ndarray, b: np.ndarray) -> dict:
    c = np.sum(a * b, axis=1)  # unit rows
    return {"mean": float(c.mean()), "sd": float(c.std()), "p10": float(np.percentile(c, 10)), "n": int(len(c))}


def run_normalizer(config: NormalizationConfig, ctx: RunContext):
    from facelab.data import cfp
    from facelab.data.manifest import load_prepared
    from facelab.eval.templates import evaluate_templates
    from facelab.models.lefv_normalizer import FaceCritics
    from facelab.paths import cache_root
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.normalizer import NormalizerTrainConfig, normalize_faces, train_normalizer

    t0 = time.time()
    prepared = load_prepared("cfp", config.data_profile)
    folds = cfp.identity_folds(cfp.read_pairs("FF", ctx.data_root))  # identity -> 0-based fold
    man = prepared.manifest
    ident = man["identity"].astype(str).to_numpy()
    pose = man["pose"].astype(str).to_numpy()
    train_folds = {f - 1 for f in config.train_folds}
    if not train_folds or not train_folds <= set(range(10)):
        raise ValueError(f"train_folds must be CFP folds 1-10, got {config.train_folds}")
    in_train = np.array([folds.get(i, -1) in train_folds for i in ident])
    x_rows = np.flatnonzero(in_train & (pose == "profile"))
    y_rows = np.flatnonzero(in_train & (pose == "frontal"))
    if config.max_train_faces is not None:
        rng = np.random.default_rng(ctx.seed)
        x_rows = np.sort(rng.permutation(x_rows)[:config.max_train_faces])
        y_rows = np.sort(rng.permutation(y_rows)[:config.max_train_faces])
    if not len(x_rows) or not len(y_rows):
        raise DataError(f"no CFP {'profile' if not len(x_rows) else 'frontal'} crop of folds {config.train_folds} is "
                        f"prepared at profile {config.data_profile!r}: run `python -m facelab data prepare --profile "
                        f"{config.data_profile} --datasets cfp`")

    # the judge is loaded before anything trains: a missing package fails now, not after the training
    judge = load_teacher(config.judge) if config.judge is not None else None
    normalizer, expert_head, expert_record = build_normalizer(config, ctx)
    critics = FaceCritics()  # drawn after the decoder, from the same seeded stream
    train = NormalizerTrainConfig(steps=config.steps, batch_size=config.batch_size, lambda_ip=config.lambda_ip,
                                  lambda_p=config.lambda_p, lambda_sym=config.lambda_sym,
                                  log_every=max(1, min(10, config.steps)))
    ckpt = (cache_root() / "checkpoints" / CH.folder / f"normalizer-{config_hash([str(config), ctx.seed])}.pt"
            if config.max_train_faces is None else None)
    t1 = time.time()
    history = train_normalizer(normalizer, critics, prepared.aligned[x_rows], prepared.aligned[y_rows], train,
                               seed=ctx.seed, device=ctx.device, checkpoint=ckpt, progress=ctx.progress)
    train_seconds = time.time() - t1
    normalizer.cpu()

    # Table 4's protocol on the held-out folds only
    templates = protocol_templates(prepared, config.protocol, ctx.data_root, ctx.seed)
    keep = np.flatnonzero(~np.isin(templates.fold, sorted(train_folds)))
    if not len(keep):
        raise DataError(f"no Table 4 template is left outside the training folds {config.train_folds}")
    templates = type(templates)(tuple(templates.members[k] for k in keep), templates.identity[keep],
                                templates.fold[keep])
    rows = np.unique(np.concatenate(templates.members))
    position = np.full(len(prepared), -1, np.int64)
    position[rows] = np.arange(len(rows))
    local = type(templates)(tuple(position[m] for m in templates.members), templates.identity, templates.fold)
    t2 = time.time()
    original = np.asarray(prepared.aligned[rows])
    normalised = normalize_faces(normalizer, original, device="cpu", progress=ctx.progress)
    normalize_seconds = time.time() - t2

    teacher = load_teacher("sface", threads=ctx.workers or os.cpu_count() or 1)

    def flip_summed(images: np.ndarray) -> np.ndarray:
        # paper 002's flip feature, as lefv.table4_references: crop + mirror embeddings summed
        return teacher.embed(images) + teacher.embed(images, flip=True)

    e_orig, e_norm = flip_summed(original), flip_summed(normalised)
    expert = {"name": "sface (pretrained, frozen)", "map_channels": normalizer.expert_channels}
    if expert_record is not None:
        from facelab.train.distill import agreement, embed_crops

        # how closely the distilled expert follows SFace on the held-out test faces (crop views, unit-norm)
        student = embed_crops(normalizer.expert, original, size=112, head=expert_head, flip_sum=False)
        expert = {"name": f"{config.expert} (distilled from SFace here, frozen)",
                  "map_channels": normalizer.expert_channels,
                  "agreement_with_sface": agreement(student, teacher.embed(original)),
                  **{k: v for k, v in expert_record.items() if k != "pool_identities"}}
    is_profile = pose[rows] == "profile"
    mixed = np.where(is_profile[:, None], e_norm, e_orig)
    fars = config.protocol.fars
    table4 = {"original": evaluate_templates(e_orig, local, fars), "all_normalized": evaluate_templates(e_norm, local, fars),
              "profile_normalized": evaluate_templates(mixed, local, fars)}
    unit = lambda e: e / np.linalg.norm(e, axis=1, keepdims=True)  # noqa: E731
    u_orig, u_norm = unit(e_orig), unit(e_norm)
    # SFace's same-person threshold on these faces: the cosine that 1% of different-identity image pairs
    # (original crops) exceed; a normalized face "keeps its identity" when it stays above it
    test_ident = ident[rows]
    sims = u_orig @ u_orig.T
    impostor = sims[np.triu(test_ident[:, None] != test_ident[None, :], k=1)]
    threshold = float(np.quantile(impostor, 0.99))
    preservation = {}
    for p in ("frontal", "profile"):
        sel = pose[rows] == p
        if np.any(sel):
            c = np.sum(u_orig[sel] * u_norm[sel], axis=1)
            preservation[p] = _cosines(u_orig[sel], u_norm[sel]) | {"share_above_threshold": float(np.mean(c >= threshold))}

    # before and after, against each identity's frontal reference: SFace, and an independent judge (dlib)
    profile, references, column = reference_frontals(test_ident, is_profile)
    before_after = {}
    if len(profile) and len(references) > 1:
        before_after["sface"] = reference_similarity(e_orig[profile], e_norm[profile], e_orig[references], column)
        if judge is not None:
            t3 = time.time()
            before_after[config.judge] = reference_similarity(
                judge.embed(original[profile], progress=ctx.progress),
                judge.embed(normalised[profile], progress=ctx.progress),
                judge.embed(original[references], progress=ctx.progress), column) | {
                "judge_version": judge.version, "seconds": round(time.time() - t3, 1)}

    # the figure: a few held-out profile faces and frontal faces with their normalised versions
    rng = np.random.default_rng(ctx.seed)
    prof = rng.permutation(np.flatnonzero(is_profile))[:config.examples]
    front = rng.permutation(np.flatnonzero(~is_profile))[:config.examples]
    grid_rows = [r for r in (original[prof], normalised[prof], original[front], normalised[front]) if len(r)]
    width = min(len(r) for r in grid_rows)
    examples = example_grid([r[:width] for r in grid_rows])

    metrics = {"expert": expert["name"], "expert_record": expert, "teacher_version": teacher.version,
               "recognizer": "sface",
               "train_folds": list(config.train_folds),
               "test_folds": sorted(int(f) + 1 for f in set(templates.fold.tolist())),
               "n_train_nonfrontal": int(len(x_rows)), "n_train_frontal": int(len(y_rows)),
               "n_train_identities": int(len(set(ident[np.concatenate([x_rows, y_rows])].tolist()))),
               "n_test_images": int(len(rows)), "n_test_templates": len(templates),
               "n_test_identities": int(len(set(templates.identity.tolist()))),
               "decoder_parameters": sum(p.numel() for p in normalizer.decoder.parameters()),
               "critic_parameters": sum(p.numel() for p in critics.parameters()),
               "table4": table4, "identity_preservation": preservation, "before_after": before_after,
               "same_person_threshold": {"far": 0.01, "cosine": threshold, "impostor_pairs": int(len(impostor))}, "history": history.as_dict(),
               "train_seconds": round(train_seconds, 1), "normalize_seconds": round(normalize_seconds, 1),
               "normalize_ms_per_face": round(1000 * normalize_seconds / max(1, len(rows)), 2),
               "seconds": round(time.time() - t0, 1)}
    pool = "\n".join(expert_record["pool_identities"]) if expert_record is not None else ""
    digest = hashlib.sha256(("\n".join(man["path"].iloc[np.concatenate([x_rows, y_rows, rows])])
                             + str(prepared.summary.get("fingerprint")) + pool).encode()).hexdigest()[:16]
    arrays = {"examples_jpeg": examples,
              "example_rows": ["profile", "profile normalized", "frontal", "frontal normalized"][:len(grid_rows)]}
    if expert_record is not None:  # who the distilled expert learned from, for a reader to check against the tests
        arrays["expert_pool_identities"] = expert_record["pool_identities"]
    return metrics, arrays, digest


register_experiment(Experiment(
    name=CH.experiment("normalizer"), chapter=CH.folder,
    description="Section 3.2: FNM-style normalizer over SFace trained unpaired on CFP; identity preservation, "
                "Table 4 with and without normalization",
    configure=configure_normalizer, run=run_normalizer))

register_experiment(Experiment(
    name=CH.experiment("normalizer_mobilefacenet"), chapter=CH.folder,
    description="Section 3.2 with the paper's expert: MobileFaceNet distilled from SFace on non-CFP LFW identities, "
                "then the same normalizer, identity preservation and Table 4 with and without normalization",
    configure=configure_normalizer_mobilefacenet, run=run_normalizer))

__all__ = ["build_normalizer", "configure_normalizer", "configure_normalizer_mobilefacenet", "distilled_expert",
           "example_grid", "reference_frontals", "reference_similarity"]
