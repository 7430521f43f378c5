"""Chapter 3 (paper 002, Tang et al., Optik 2020): alignment learned from identity labels.

Two kinds of experiment:

* ``stn_alignment.localization_mse`` (Table 2): each of the five localization-network settings
  (:data:`facelab.models.stn.LOCALIZATION_SETTINGS`) regresses the 5 detector landmarks of CFP
  loose crops with a mean-squared-error loss, under identical conditions; we report the final
  training MSE (the paper's "final loss") and the MSE on held-out CFP identities.
* ``stn_alignment.recognition_<transform>`` for identity / similarity / affine / projective
  (Table 3, Figs. 3-4): the spatial transformer + Table 1 network trained end to end on CFP
  loose crops (no landmark alignment anywhere) with ArcFace (m = 0.5, s = 64), SGD with momentum
  0.9, the localization network's learning rate 10x lower, horizontal-flip augmentation; tested
  on LFW View 2 (10 folds, cosine similarity of flip-summed features) and on *perturbed LFW*
  (the same pairs re-cropped with random shift / scale / rotation, :mod:`facelab.data.perturb`),
  which replaces YouTube Faces. Per-pair scores are stored (for the ROC figures), and the
  transformer's 3x3 matrices for a fixed set of test images (for the "what it learned" figure:
  the chapter re-applies them to the crops in the local cache; no image is stored).

Coordinates: landmarks are regressed as ``(x + 0.5) / S`` of an ``S`` x ``S`` crop, i.e. in
[0, 1] (the paper does not state its units; its MSEs of ~0.005 suggest normalised coordinates).

Deviations from the paper (all forced by data or compute; the chapter states them):

- Training set: CFP (500 identities, 7,000 images, frontal and profile) instead of
  CASIA-WebFace (10,575 identities, 494k images); CFP persons who are also LFW persons are
  removed (:func:`facelab.data.splits.cfp_train_lfw_test`).
- Resolution at ``smoke``/``small``: on two CPU cores the 36-layer network at 112x112
  (~7.8 GFLOPs per forward pass) cannot be trained in minutes, so ``small`` uses a 40x40 loose
  crop and a 32x32 transformer output (the same layers; the final feature map is 2x2 instead
  of 7x7), every kept CFP identity (~4,300 images), 4 epochs (~540 SGD steps of 32 images, where
  the paper decays its learning rate every 10,000 steps of 64) and 150 LFW pairs per fold (1,500
  pairs); the network trains at ~40 images/s per CPU core at this size.
  Table 2 at ``small`` uses a fixed random 2,000 training images and 4 epochs.
  ``full`` uses the 128x128 prepared crop, 112x112, all identities, all 6,000 pairs.
- Learning rate at ``small``: 0.05 instead of the paper's 0.01. With ArcFace (s = 64, m = 0.5)
  from scratch, a few hundred steps at 0.01 leave the loss near its starting value (~37 for
  60 identities: the target logit starts at s cos(pi/2 + m) = -31) and the embeddings near
  chance on LFW; at 0.05 the loss falls (45 -> 22 in four epochs on the kept identities).
- Gradient clipping of the localization network (not in the paper): at initialisation the
  gradient of its output layer has a norm of ~4.5e4 (ArcFace's s = 64 summed over every output
  pixel), so even the paper's 10-100x lower rate moves the predicted transform by more than the
  crop in one step; without clipping our projective transformer diverged (parameters ~10, every
  output black, LFW accuracy exactly 50%). Each localization tensor's gradient norm is clipped
  at 1 (:mod:`facelab.train.grad_clip`); the recognizer's gradients are not touched.
- The localization network's absolute learning rate is 1e-4, the paper's lowest (0.01 / 100):
  multiplier 0.01 at ``full`` (lr 0.01) and 0.002 at ``small`` (lr 0.05). With clipping and
  5e-4 (multiplier 0.01 at ``small``) the projective transform still drifted off the face
  within two epochs (perspective terms ~1.9, so z = 0 crossed the output grid).
- Table 2's optimiser is not stated: we use Adam (lr 1e-3) for every setting.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("stn_alignment")
CHAPTER = CH.folder
TRANSFORMS = ("identity", "similarity", "affine", "projective")
#: Side of the loose crops written by ``facelab data prepare`` (1.4x the detector box).
PREPARED_LOOSE_SIZE = 128
#: Landmark order of the manifests: left eye, right eye, nose, left mouth, right mouth.
N_LANDMARKS = 5


# ----------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class LocalizationMSEConfig:
    """Table 2: five localization settings regressing 5 landmarks with MSE.

    ``data_profile``: which prepared CFP set to read. ``val_every``: every k-th kept CFP
    identity (sorted) is held out for the validation MSE. ``crop_size``: the loose crop is
    resized to it before the network (which works at 64x64 anyway, Section 3.1).
    ``max_images``: cap on training images (None: all).
    """

    data_profile: str
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    settings: tuple[int, ...] = (1, 2, 3, 4, 5)
    val_every: int = 10
    crop_size: int = 64
    max_images: int | None = None
    choose_tolerance: float = 0.01


def configure_localization(profile: str) -> LocalizationMSEConfig:
    return {
        "smoke": LocalizationMSEConfig(data_profile="smoke", epochs=1, batch_size=32, max_images=96, val_every=4),
        # 2 CPU cores: a fixed random 2,000 training images, 4 epochs (~5 min uncontended).
        "small": LocalizationMSEConfig(data_profile="small", epochs=4, max_images=2000),
        "full": LocalizationMSEConfig(data_profile="full", epochs=30),
    }[profile]


@dataclass(frozen=True)
class RecognitionConfig:
    """End-to-end training of one transform type and its LFW / perturbed-LFW evaluation.

    ``input_size``: side of the loose crop fed to the transformer (resized from the prepared
    128x128); ``output_size``: the transformer's output = the recognizer's input (multiple of 16).
    ``n_identities``: first kept CFP identities in sorted order (None: all);
    ``pairs_per_fold``: LFW View 2 pairs per fold (None: all 600). ``stn_lr_mult``: the
    localization network's learning-rate multiplier; ``stn_grad_clip``: the largest gradient norm of
    each localization-network tensor (None: no clipping, :mod:`facelab.train.grad_clip`). ``n_matrices``: test images whose
    transformer matrices are stored. ``perturb_*``: the perturbed-LFW ranges and seed.
    """

    transform: str
    data_profile: str
    input_size: int
    output_size: int
    epochs: int
    n_identities: int | None
    pairs_per_fold: int | None
    batch_size: int = 64
    lr: float = 0.01
    stn_lr_mult: float = 0.1
    stn_grad_clip: float | None = 1.0
    weight_decay: float = 5e-4
    margin: float = 0.5
    scale: float = 64.0
    flip_p: float = 0.5
    setting: int = 3
    min_images_per_identity: int = 2
    max_steps: int | None = None
    n_matrices: int = 64
    perturb_max_shift: float = 0.1
    perturb_max_scale: float = 0.15
    perturb_max_rotation: float = 20.0
    perturb_seed: int = 0
    channels_last: bool = False
    bf16: bool = False


def configure_recognition(transform: str):
    def configure(profile: str) -> RecognitionConfig:
        return {
            # A few real SGD steps on 10 identities; 2 pairs per fold keep all 10 folds.
            "smoke": RecognitionConfig(transform=transform, data_profile="smoke", input_size=40, output_size=32,
                                       epochs=1, n_identities=10, pairs_per_fold=2, batch_size=8, max_steps=2,
                                       n_matrices=8),
            # 2 CPU cores: 32x32 faces, every kept CFP identity, 4 epochs (~540 SGD steps), 150 pairs per
            # fold; lr 0.05 because at 0.01 ArcFace stays at its starting loss for that few steps; the
            # localization net at 0.05 x 0.002 = 1e-4, the paper's lowest rate (0.01 / 100).
            "small": RecognitionConfig(transform=transform, data_profile="small", input_size=40, output_size=32,
                                       epochs=4, n_identities=None, pairs_per_fold=150, batch_size=32, lr=0.05,
                                       stn_lr_mult=0.002, channels_last=True, bf16=True),
            # A GPU: the paper's resolution, all CFP identities, all 6,000 pairs.
            "full": RecognitionConfig(transform=transform, data_profile="full", input_size=PREPARED_LOOSE_SIZE,
                                      output_size=112, epochs=30, n_identities=None, pairs_per_fold=None,
                                      stn_lr_mult=0.01, channels_last=True, bf16=True),
        }[profile]

    return configure


# ----------------------------------------------------------------------------- data


def normalised_landmarks(prepared, rows) -> np.ndarray:
    """``float32[N, 10]`` loose-crop landmarks as ``(x + 0.5) / 128`` (x1, y1, ..., x5, y5)."""
    from facelab.data.manifest import landmarks_of

    lm = landmarks_of(prepared.manifest.iloc[np.asarray(rows, dtype=np.int64)], "loose")
    return ((lm + 0.5) / PREPARED_LOOSE_SIZE).reshape(len(lm), 2 * N_LANDMARKS).astype(np.float32)


def cfp_training_rows(prepared, data_root, *, n_identities: int | None, min_images: int = 2):
    """Rows of the prepared CFP manifest for training: identities that are not LFW persons,
    with at least ``min_images`` accepted images, the first ``n_identities`` in sorted order.

    Returns ``(rows int64[N], identities list[str], number of CFP identities excluded as LFW persons)``.
    """
    from facelab.data.splits import cfp_train_lfw_test

    split = cfp_train_lfw_test(data_root)
    kept = set(split.train_identities)
    ids = prepared.manifest["identity"].to_numpy()
    counts = {i: int((ids == i).sum()) for i in sorted(set(ids) & kept)}
    chosen = [i for i, n in counts.items() if n >= min_images]
    if n_identities is not None:
        chosen = chosen[:n_identities]
    if not chosen:
        raise DataError("no CFP identity with enough prepared images: run "
                         f"`python -m facelab data prepare --profile {prepared.profile} --datasets cfp`")
    rows = np.flatnonzero(np.isin(ids, chosen))
    return rows, chosen, len(split.excluded)


def to_float(images: np.ndarray):
    """``uint8[N, H, W, 3]`` -> ``float32[N, 3, H, W]`` tensor in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


# ----------------------------------------------------------------------------- Table 2


def choose_setting(mse: dict[int, float], params: dict[int, int], tolerance: float = 0.01) -> int:
    """The paper's choice (Section 3.2): among settings whose MSE is within ``tolerance``
    (relative) of the lowest, the one with the fewest parameters."""
    best = min(mse.values())
    near = [s for s, v in mse.items() if v <= best * (1 + tolerance)]
    return min(near, key=lambda s: (params[s], mse[s]))


def run_localization(config: LocalizationMSEConfig, ctx: RunContext):
    import torch

    from facelab.data.datasets import pack_loose_crops
    from facelab.data.manifest import load_prepared
    from facelab.models.stn import LOCALIZATION_SETTINGS, LocalizationNet
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import Regression, TrainConfig, fit

    prepared = load_prepared("cfp", config.data_profile)
    rows, identities, n_excluded = cfp_training_rows(prepared, ctx.data_root, n_identities=None)
    val_ids = set(identities[config.val_every - 1::config.val_every])
    ids = prepared.manifest["identity"].to_numpy()[rows]
    train_rows, val_rows = rows[~np.isin(ids, list(val_ids))], rows[np.isin(ids, list(val_ids))]
    if config.max_images is not None:  # a fixed random subset (many identities), in manifest order
        pick = np.random.default_rng(0)
        train_rows = np.sort(pick.permutation(train_rows)[:config.max_images])
        val_rows = np.sort(pick.permutation(val_rows)[:max(8, config.max_images // 4)])
    train_images = pack_loose_crops(prepared, train_rows, config.crop_size, ctx.progress)
    x_train, x_val = to_float(train_images), to_float(pack_loose_crops(prepared, val_rows, config.crop_size, ctx.progress))
    lm_train = normalised_landmarks(prepared, train_rows)
    y_train, y_val = torch.from_numpy(lm_train), torch.from_numpy(normalised_landmarks(prepared, val_rows))
    # [0, 1] pixels, no augmentation (a flip would have to swap the landmarks), Adam at a fixed rate
    data = PackedFaces(train_images, np.arange(len(train_rows)), lm_train, size=config.crop_size, normalize=False)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, optimizer="adam",
                               weight_decay=0.0, grad_clip=None, patience=10**6)

    def evaluate(net, x, y):
        net.eval()
        with torch.no_grad():
            err = torch.cat([((net(x[i:i + 256]) - y[i:i + 256]) ** 2).mean(1) for i in range(0, len(x), 256)])
        return float(err.mean()), float(err.std(unbiased=True) / math.sqrt(len(err))) if len(err) > 1 else float("nan")

    out: dict[str, dict] = {k: {} for k in ("train_mse", "val_mse", "val_mse_se", "parameters", "seconds",
                                            "epoch_train_mse", "name", "conv_blocks", "fc_layers")}
    for setting in config.settings:
        torch.manual_seed(ctx.seed)
        net = LocalizationNet(num_outputs=2 * N_LANDMARKS, setting=setting)
        t0 = time.time()
        history = fit(net, data, train_config, objective=Regression(), device=ctx.device, seed=ctx.seed,
                      progress=ctx.progress)
        curve = history.train_loss
        net.cpu()
        key = str(setting)
        out["train_mse"][key], _ = evaluate(net, x_train, y_train)
        out["val_mse"][key], out["val_mse_se"][key] = evaluate(net, x_val, y_val)
        out["parameters"][key] = sum(p.numel() for p in net.parameters())
        out["seconds"][key] = round(time.time() - t0, 2)
        out["epoch_train_mse"][key] = curve
        out["name"][key] = LOCALIZATION_SETTINGS[setting].name
        # Table 2's structure, counted in the network as built
        out["conv_blocks"][key] = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
        out["fc_layers"][key] = sum(isinstance(m, torch.nn.Linear) for m in net.modules())
    chosen = choose_setting({int(k): v for k, v in out["val_mse"].items()},
                            {int(k): v for k, v in out["parameters"].items()}, config.choose_tolerance)
    metrics = {**out, "chosen_setting": chosen, "n_train_images": len(train_rows), "n_val_images": len(val_rows),
               "n_val_identities": len(val_ids), "n_cfp_excluded_as_lfw": n_excluded,
               "mse_units": "normalised loose-crop coordinates (x + 0.5) / 128, mean over the 10 coordinates"}
    manifest = hashlib.sha256("\n".join(prepared.manifest["path"].iloc[np.r_[train_rows, val_rows]]).encode()).hexdigest()[:16]
    return metrics, {}, manifest


# ----------------------------------------------------------------------------- LFW evaluation


def lfw_rows_by_relpath(prepared) -> dict[str, int]:
    """LFW protocol path (``Name/Name_0001.jpg``) -> row of the prepared manifest."""
    from facelab.data import lfw
    from facelab.paths import DATASETS

    prefix = f"{DATASETS['lfw'].folder}/{lfw.IMAGES_FOLDER}/"
    return {p[len(prefix):] if p.startswith(prefix) else p: i for i, p in enumerate(prepared.manifest["path"])}


def perturbed_loose_crops(prepared, rows, size: int, config, data_root=None, *, keys=None, seed: int | None = None,
                          progress: bool = False) -> np.ndarray:
    """``uint8[N, size, size, 3]`` loose crops of manifest ``rows`` re-cropped from the original images
    with a random shift, scale and rotation (:func:`facelab.data.perturb.perturbed_crop`), drawn per
    image from its key (``keys``, default the manifest path) and ``seed`` (default ``config.perturb_seed``)."""
    import cv2
    from tqdm.auto import tqdm

    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import LOOSE_BOX_COLUMNS, resolve_image
    from facelab.data.perturb import PerturbationRange, perturbation_for, perturbed_crop

    spread = PerturbationRange(config.perturb_max_shift, config.perturb_max_scale, config.perturb_max_rotation)
    df = prepared.manifest.iloc[np.asarray(rows, np.int64)]
    boxes = df[list(LOOSE_BOX_COLUMNS)].to_numpy(np.float64)
    keys = list(df["path"]) if keys is None else list(keys)
    seed = config.perturb_seed if seed is None else seed
    out = np.empty((len(df), size, size, 3), np.uint8)
    for k, (path, key, box) in enumerate(tqdm(list(zip(df["path"], keys, boxes)), desc="perturb", disable=not progress,
                                              leave=False)):
        image = read_rgb(resolve_image(prepared.dataset, path, data_root))
        crop, _ = perturbed_crop(image, box, perturbation_for(key, seed, spread), PREPARED_LOOSE_SIZE)
        out[k] = crop if size == PREPARED_LOOSE_SIZE else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return out


def embed_flip_sum(model, images: np.ndarray, batch: int = 128, device: str = "cpu", head=None) -> np.ndarray:
    """``float32[N, D]`` L2-normalised flip-summed embeddings (paper 002, Section 4); through ``head``
    (a distilled student's projection to the teacher's space) when given."""
    import torch

    from facelab.eval.descriptors import embed_with_flip

    model.eval()
    if head is not None:
        head.eval()
    embed = model.forward_features if head is None else (lambda x: head(model.forward_features(x)))
    feats = []
    for i in range(0, len(images), batch):
        x = to_float(images[i:i + batch]).to(device)
        feats.append(embed_with_flip(embed, x).cpu())
    f = torch.cat(feats) if feats else torch.zeros(0, model.num_features)
    return torch.nn.functional.normalize(f, dim=1).numpy()


def stn_matrices(model, images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``float32[N, 3, 3]`` transformer matrices (output -> input, normalised coordinates)."""
    import torch

    model.eval()
    with torch.no_grad():
        return model.stn.matrix(to_float(images).to(device)).cpu().numpy().astype(np.float32)


def _scores(features: np.ndarray, index: dict[str, int], pairs) -> np.ndarray:
    return np.array([float(features[index[a]] @ features[index[b]]) for a, b in (p.images() for p in pairs)])


def _f32(a) -> list[float]:
    """Values as the shortest decimals that round-trip through float32 (JSON)."""
    return [float(np.format_float_positional(x, unique=True, trim="-")) for x in np.asarray(a, np.float32)]


def lfw_test(model, config, ctx: RunContext, *, head=None, teacher=None) -> tuple[dict, dict, list[str]]:
    """LFW View 2 (clean loose crops) and perturbed LFW accuracy of a trained STN model, the transformer
    matrices of the first test images; with ``teacher``, the teacher's scores on the aligned crops of the
    same pairs and the student's agreement with it. Returns ``(metrics, arrays, test image paths)``."""
    from facelab.data import lfw
    from facelab.data.datasets import pack_loose_crops
    from facelab.data.manifest import load_prepared
    from facelab.eval.verification import kfold_accuracy

    t1 = time.time()
    pairs = lfw.read_pairs("view2", ctx.data_root)
    if config.pairs_per_fold is not None:
        pairs = lfw.subsample_pairs(pairs, config.pairs_per_fold)
    lfw_set = load_prepared("lfw", config.data_profile)
    row_of = lfw_rows_by_relpath(lfw_set)
    missing = {r for p in pairs for r in p.images() if r not in row_of}
    kept_pairs = [p for p in pairs if not (set(p.images()) & missing)]
    all_pairs = lfw.read_pairs("view2", ctx.data_root)
    pair_index = {(p.fold, p.images()): k for k, p in enumerate(all_pairs)}
    rels = sorted({r for p in kept_pairs for r in p.images()})
    test_rows = [row_of[r] for r in rels]
    index = {r: k for k, r in enumerate(rels)}
    clean = pack_loose_crops(lfw_set, test_rows, config.input_size, ctx.progress)
    perturbed = perturbed_loose_crops(lfw_set, test_rows, config.input_size, config, ctx.data_root, keys=rels,
                                      progress=ctx.progress)
    emb_clean = embed_flip_sum(model, clean, device=ctx.device, head=head)
    score_clean = _scores(emb_clean, index, kept_pairs)
    score_pert = _scores(embed_flip_sum(model, perturbed, device=ctx.device, head=head), index, kept_pairs)
    show = rels[:config.n_matrices]
    m_clean = stn_matrices(model, clean[:len(show)], ctx.device)
    m_pert = stn_matrices(model, perturbed[:len(show)], ctx.device)
    label = np.array([int(p.same) for p in kept_pairs])
    fold = np.array([p.fold for p in kept_pairs])
    acc, acc_p = kfold_accuracy(score_clean, label, fold), kfold_accuracy(score_pert, label, fold)
    metrics = {
        "lfw_accuracy": acc.mean, "lfw_accuracy_sd": acc.std,
        "perturbed_lfw_accuracy": acc_p.mean, "perturbed_lfw_accuracy_sd": acc_p.std,
        "n_pairs_protocol": len(pairs), "n_pairs_scored": len(kept_pairs), "n_test_images": len(rels),
        "score": "cosine similarity of L2-normalised flip-summed embeddings",
    }
    r5 = lambda a: np.round(np.asarray(a, np.float64), 5).tolist()  # noqa: E731 (JSON size)
    arrays = {
        # scores at full float32 precision: a barely trained embedding's cosines crowd within 1e-5 of each
        # other, and rounding them would change the accuracies recomputed from them (the claims)
        "score": _f32(score_clean), "label": label.tolist(), "fold": fold.tolist(),
        "pair_index": [pair_index[(p.fold, p.images())] for p in kept_pairs],
        "perturbed_score": _f32(score_pert),
        "matrix_images": show, "matrix_clean": r5(m_clean), "matrix_perturbed": r5(m_pert),
        "dropped_images": sorted(missing),
    }
    if teacher is not None:
        from facelab.teachers.targets import teacher_targets
        from facelab.train.distill import agreement, decision_agreement

        t = teacher_targets(lfw_set, teacher, test_rows, progress=ctx.progress)
        t_sum = t[:, 0] + t[:, 1]
        t_sum /= np.linalg.norm(t_sum, axis=1, keepdims=True)
        teacher_score = _scores(t_sum, index, kept_pairs)
        tacc = kfold_accuracy(teacher_score, label, fold)
        metrics.update({"teacher_lfw_accuracy": tacc.mean, "teacher_lfw_accuracy_sd": tacc.std,
                        "agreement": agreement(emb_clean, t_sum),
                        "decision_agreement": decision_agreement(score_clean, teacher_score, label, fold)})
        arrays["teacher_score"] = _f32(teacher_score)
    metrics["eval_seconds"] = round(time.time() - t1, 1)
    return metrics, arrays, rels


def run_recognition(config: RecognitionConfig, ctx: RunContext):
    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.datasets import pack_loose_crops
    from facelab.data.manifest import load_prepared
    from facelab.losses.margin import ArcFaceHead
    from facelab.models.stn import STNFaceNet
    from facelab.paths import cache_root
    from facelab.results import config_hash
    from facelab.train.grad_clip import clip_grad_norm_per_tensor
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    # --- training data: CFP loose crops
    cfp_set = load_prepared("cfp", config.data_profile)
    rows, identities, n_excluded = cfp_training_rows(cfp_set, ctx.data_root, n_identities=config.n_identities,
                                                     min_images=config.min_images_per_identity)
    images = pack_loose_crops(cfp_set, rows, config.input_size, ctx.progress)
    label_of = {ident: k for k, ident in enumerate(identities)}
    labels = np.array([label_of[i] for i in cfp_set.manifest["identity"].to_numpy()[rows]])
    if config.max_steps is not None:  # smoke: exactly max_steps batches
        keep = np.random.default_rng(ctx.seed).permutation(len(rows))[:config.max_steps * config.batch_size]
        images, labels = images[np.sort(keep)], labels[np.sort(keep)]
    # [0, 1] pixels (the transformer samples zeros outside the crop), random horizontal flips
    train_set = PackedFaces(images, np.arange(len(images)), labels, size=config.input_size,
                            augment=FlipJitter(config.flip_p, 0), seed=ctx.seed, normalize=False)

    torch.manual_seed(ctx.seed)
    model = STNFaceNet(transform=config.transform, setting=config.setting, input_size=config.input_size,
                       output_size=config.output_size)
    head = ArcFaceHead(model.num_features, len(identities), margin=config.margin, scale=config.scale)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, lr_mult=(("model.stn.", config.stn_lr_mult),),
                               speed=Speed(channels_last=config.channels_last, autocast_bf16=config.bf16))
    if config.stn_grad_clip is not None:
        clip_grad_norm_per_tensor(model.stn, config.stn_grad_clip)
    ckpt = cache_root() / "checkpoints" / CHAPTER / f"{config.transform}-{config_hash({'c': str(config), 's': ctx.seed})}.pt"
    t0 = time.time()
    # Checkpoints make long runs resumable; smoke runs always train (a finished checkpoint would skip it).
    history = fit(model, train_set, train_config, head=head, device=ctx.device, seed=ctx.seed,
                  checkpoint=ckpt if config.max_steps is None else None, progress=ctx.progress)
    train_seconds = time.time() - t0
    model.cpu()

    metrics, arrays, rels = lfw_test(model, config, ctx)
    metrics.update({
        "transform": config.transform, "n_train_images": int(len(train_set)), "n_identities": len(identities),
        "n_cfp_excluded_as_lfw": n_excluded, "parameters": sum(p.numel() for p in model.parameters()),
        "localization_parameters": sum(p.numel() for p in model.stn.parameters()),
        "train_seconds": round(train_seconds, 1),
        # strict JSON: no NaN (val_acc is NaN without a validation set)
        "history": {k: [v if math.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
        "speed": history.as_record()["speed"]})
    digest = hashlib.sha256("\n".join(list(cfp_set.manifest["path"].iloc[rows]) + rels).encode()).hexdigest()[:16]
    return metrics, arrays, digest


# ----------------------------------------------------------------------------- the distilled track


@dataclass(frozen=True)
class DistillConfig:
    """Chapter 3's transformers trained by mimicking SFace (facelab.train.distill) instead of ArcFace.

    The student (the transformer + Table 1 network + a 512 -> 128 projection) sees a *perturbed* loose
    crop of each CFP training image (random shift, scale, rotation: the perturbed-LFW ranges, another
    seed), the teacher embeds the image's properly aligned crop (its mirror for a flipped sample): to
    match the teacher the transformer has to undo the perturbation. AdamW at ``lr``, the
    localization network at ``lr * stn_lr_mult`` with its gradients clipped per tensor, as the ArcFace
    track. Sizes, identities and test as :class:`RecognitionConfig`.

    ``centre``: the targets minus the training pool's mean teacher embedding (renormalised;
    :attr:`facelab.train.distill.Mimic.centre`). With raw targets the first ``small`` run sat at the
    pool's mean embedding (raw cosine to SFace 0.24, centred 0.00, LFW 51%): the shortcut chapter 2
    and the getting-started students also took before their targets were centred.
    """

    transform: str
    data_profile: str
    input_size: int
    output_size: int
    epochs: int
    pairs_per_fold: int | None
    teacher: str = "sface"
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    # 100x lower, the bottom of the paper's 10-100x: AdamW moves every weight by ~lr per step whatever its
    # gradient (clipping the gradient does not slow it), and at 0.1 the zero-initialised last layer of the
    # localization network drifted to translations of ~6 (outside the image) within the first epoch
    stn_lr_mult: float = 0.01
    stn_grad_clip: float | None = 1.0
    flip_p: float = 0.5
    setting: int = 3
    max_images: int | None = None
    n_matrices: int = 64
    perturb_max_shift: float = 0.1
    perturb_max_scale: float = 0.15
    perturb_max_rotation: float = 20.0
    perturb_seed: int = 0
    train_perturb_seed: int = 1
    channels_last: bool = False
    bf16: bool = False
    centre: bool = True


def configure_distill(transform: str):
    def configure(profile: str) -> DistillConfig:
        return {
            "smoke": DistillConfig(transform=transform, data_profile="smoke", input_size=40, output_size=32, epochs=1,
                                   pairs_per_fold=2, batch_size=8, max_images=16, n_matrices=8),
            # 2 CPU cores: as the ArcFace track's small profile (32x32 faces from 40x40 crops, every kept
            # CFP identity, 150 LFW pairs per fold), 10 epochs (~100 images/s with bf16)
            "small": DistillConfig(transform=transform, data_profile="small", input_size=40, output_size=32, epochs=10,
                                   pairs_per_fold=150, channels_last=True, bf16=True),
            "full": DistillConfig(transform=transform, data_profile="full", input_size=PREPARED_LOOSE_SIZE,
                                  output_size=112, epochs=30, pairs_per_fold=None, channels_last=True, bf16=True),
        }[profile]

    return configure


def run_distill(config: DistillConfig, ctx: RunContext):
    import os

    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.models.stn import STNFaceNet
    from facelab.paths import cache_root
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.teachers.targets import teacher_targets
    from facelab.train.distill import Mimic, MimicHead, pool_centre
    from facelab.train.grad_clip import clip_grad_norm_per_tensor
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    cfp_set = load_prepared("cfp", config.data_profile)
    rows, identities, n_excluded = cfp_training_rows(cfp_set, ctx.data_root, n_identities=None)
    if config.max_images is not None:  # smoke: a seeded subset
        rows = np.sort(np.random.default_rng(ctx.seed).permutation(rows)[:config.max_images])
    teacher = load_teacher(config.teacher, **({"threads": ctx.workers or os.cpu_count() or 1}
                                              if config.teacher == "sface" else {}))
    targets = teacher_targets(cfp_set, teacher, rows, progress=ctx.progress)  # of the aligned crops
    images = perturbed_loose_crops(cfp_set, rows, config.input_size, config, ctx.data_root,
                                   seed=config.train_perturb_seed, progress=ctx.progress)
    train_set = PackedFaces(images, np.arange(len(rows)), targets, size=config.input_size,
                            augment=FlipJitter(config.flip_p, 0), seed=ctx.seed, normalize=False)
    torch.manual_seed(ctx.seed)
    model = STNFaceNet(transform=config.transform, setting=config.setting, input_size=config.input_size,
                       output_size=config.output_size)
    head = MimicHead(model.num_features, teacher.embedding_dim)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, optimizer="adamw", min_lr=1e-6,
                               lr_mult=(("model.stn.", config.stn_lr_mult),),
                               speed=Speed(channels_last=config.channels_last, autocast_bf16=config.bf16))
    if config.stn_grad_clip is not None:
        clip_grad_norm_per_tensor(model.stn, config.stn_grad_clip)
    ckpt = (cache_root() / "checkpoints" / CHAPTER / f"distill-{config.transform}-{config_hash([str(config), ctx.seed])}.pt"
            if config.max_images is None else None)
    t0 = time.time()
    objective = Mimic(centre=pool_centre(targets) if config.centre else None)
    history = fit(model, train_set, train_config, head=head, objective=objective, device=ctx.device, seed=ctx.seed,
                  checkpoint=ckpt, progress=ctx.progress)
    train_seconds = time.time() - t0
    model.cpu(), head.cpu()
    metrics, arrays, rels = lfw_test(model, config, ctx, head=head, teacher=teacher)
    metrics.update({
        "transform": config.transform, "teacher": teacher.name, "teacher_version": teacher.version,
        "n_train_images": int(len(rows)), "n_identities": len(set(cfp_set.manifest["identity"].to_numpy()[rows])),
        "n_cfp_excluded_as_lfw": n_excluded, "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_seconds, 1),
        "history": {k: [v if math.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
        "speed": history.as_record()["speed"]})
    digest = hashlib.sha256("\n".join(list(cfp_set.manifest["path"].iloc[rows]) + rels).encode()).hexdigest()[:16]
    return metrics, arrays, digest


# ----------------------------------------------------------------------------- Table 1


@dataclass(frozen=True)
class ArchitectureConfig:
    """Table 1 read off :class:`facelab.models.stn.RecognitionResNet` at each of ``input_sizes``
    (112: the paper's scale; 32: what ``small`` trains)."""

    input_sizes: tuple[int, ...] = (112, 32)


def configure_architecture(profile: str) -> ArchitectureConfig:
    return ArchitectureConfig()


def run_architecture(config: ArchitectureConfig, ctx: RunContext):
    """Per stage: filters, kernel, stride and residual units of the layers themselves, the output
    shape, parameters and forward FLOPs (FlopCounterMode, 2 per multiply-add); then the embedding head."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from facelab.models.stn import STAGES, RecognitionResNet

    metrics: dict = {}
    for size in config.input_sizes:
        net = RecognitionResNet(input_size=size).eval()
        x = torch.zeros(1, 3, size, size)
        out: dict = {}
        with torch.no_grad():
            for name, _, _ in STAGES:
                stage = getattr(net, name)
                down = stage.down[0]  # ConvNormAct: 0 conv, 1 norm, 2 activation
                units = [m for n, m in stage.named_children() if n.startswith("unit")]
                with FlopCounterMode(display=False) as fc:
                    y = stage(x)
                out[name] = {"filters": down.out_channels, "kernel": down.kernel_size[0], "stride": down.stride[0],
                             "residual_units": len(units),
                             "residual_filters": units[0].conv_a[0].out_channels if units else None,
                             "output": list(y.shape[1:]), "parameters": sum(p.numel() for p in stage.parameters()),
                             "gflops": fc.get_total_flops() / 1e9}
                x = y
            with FlopCounterMode(display=False) as fc:
                emb = net.bn(net.fc1(net.dropout(x.flatten(1))))
            head = [net.dropout, net.fc1, net.bn]
            out["head"] = {"embedding_size": int(emb.shape[1]), "fc_inputs": int(x.flatten(1).shape[1]),
                           "dropout": net.dropout.p, "output": [int(emb.shape[1])],
                           "parameters": sum(p.numel() for m in head for p in m.parameters()),
                           "gflops": fc.get_total_flops() / 1e9}
        out["total"] = {"parameters": sum(p.numel() for p in net.parameters()),
                        "gflops": sum(v["gflops"] for v in out.values())}
        metrics[str(size)] = out
    return metrics, {}, None


# ----------------------------------------------------------------------------- registration

register_experiment(Experiment(
    name=CH.experiment("architecture"),
    chapter=CHAPTER,
    description="Table 1: the recognition network's stages read off the model (filters, units, shapes, FLOPs)",
    configure=configure_architecture,
    run=run_architecture,
))

register_experiment(Experiment(
    name=CH.experiment("localization_mse"),
    chapter=CHAPTER,
    description="Table 2: five localization-network settings regressing 5 landmarks (MSE) on CFP loose crops",
    configure=configure_localization,
    run=run_localization,
))

for _t in TRANSFORMS:
    register_experiment(Experiment(
        name=CH.experiment(f"distill_{_t}"),
        chapter=CHAPTER,
        description=f"Table 3, distilled track: STN ({_t}) + Table 1 net mimicking SFace from perturbed CFP loose crops",
        configure=configure_distill(_t),
        run=run_distill,
    ))
    register_experiment(Experiment(
        name=CH.experiment(f"recognition_{_t}"),
        chapter=CHAPTER,
        description=f"Table 3: STN ({_t}) + Table 1 net, ArcFace on CFP loose crops; LFW and perturbed LFW",
        configure=configure_recognition(_t),
        run=run_recognition,
    ))
