"""Chapter 1's recognizer trained as the paper trains it (Section 3.3: "a Dropout layer and softmax layer with
cross entropy loss"), beside the distilled track; registered by :mod:`facelab.experiments.lefv`.

``lefv.recognizer_softmax.<network>``: :mod:`facelab.models.lefv_recognizer` with a linear classifier over
the LFW identities that are not CFP persons and have at least ``min_images`` prepared crops
(:func:`facelab.data.splits.lfw_train_cfp_test`; every Table 4 test identity is a CFP identity), trained
with SGD (momentum 0.9) and cross-entropy, flips and shifts, from Xavier initialisation (Section 4); then
the classifier is dropped and the 128-d embedding is measured on the same CFP template protocol as the
distilled track (:mod:`facelab.experiments.lefv_verification`), flip-summed, cosine.

The paper trains on a large labelled set (its text does not say which); here a few thousand LFW images
of a few hundred people, so this track shows what the paper's *recipe* gives at this scale, which the
distilled track (same network, SFace's knowledge instead of labels) is compared with.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment
from facelab.experiments.lefv_verification import TemplateProtocolConfig, configure_references, protocol_templates

CH = chapters.get("lefv")
NETWORKS = ("lefv_recognizer", "lefv_recognizer_no_msff")


@dataclass(frozen=True)
class SoftmaxRecognizerConfig:
    """Softmax training of ``network`` on LFW identities with >= ``min_images`` crops (none a CFP person):
    SGD at ``lr`` (halved when the epoch's loss stops falling), batch ``batch_size``, ``epochs``;
    ``max_identities``: a seeded subset of the identities (smoke); tested on ``protocol``."""

    network: str
    data_profile: str
    epochs: int
    protocol: TemplateProtocolConfig
    min_images: int = 4
    max_identities: int | None = None
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip_p: float = 0.5
    max_shift: int = 4
    channels_last: bool = True
    bf16: bool = True


def configure_softmax(network: str):
    def configure(profile: str) -> SoftmaxRecognizerConfig:
        check_profile(profile)
        proto = configure_references(profile)
        if profile == "smoke":
            return SoftmaxRecognizerConfig(network=network, data_profile="smoke", epochs=1, protocol=proto,
                                           min_images=2, max_identities=8, batch_size=16)
        if profile == "small":
            # ~8 min on 2 cores (~110 images/s with bf16): 12 epochs of the 4,266 crops of the 511
            # non-CFP LFW identities with >= 4 (at min_images 2: 1,538 identities, but most with 2-3 crops)
            return SoftmaxRecognizerConfig(network=network, data_profile="small", epochs=12, protocol=proto)
        return SoftmaxRecognizerConfig(network=network, data_profile="full", epochs=40, protocol=proto, min_images=2)

    return configure


def run_softmax(config: SoftmaxRecognizerConfig, ctx: RunContext):
    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.data.splits import lfw_train_cfp_test
    from facelab.eval.templates import evaluate_templates
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.train.distill import embed_crops_views
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    t0 = time.time()
    lfw_set = load_prepared("lfw", config.data_profile)
    split = lfw_train_cfp_test(ctx.data_root, min_images=1)
    keep = set(split.train_identities)
    ident = lfw_set.manifest["identity"].astype(str).to_numpy()
    names, counts = np.unique(ident[np.isin(ident, sorted(keep))], return_counts=True)
    classes = names[counts >= config.min_images]
    if config.max_identities is not None:
        classes = np.sort(np.random.default_rng(ctx.seed).permutation(classes)[:config.max_identities])
    if len(classes) < 2:
        raise DataError(f"fewer than two non-CFP LFW identities have {config.min_images} prepared crops at profile "
                        f"{config.data_profile!r}: run `python -m facelab data prepare --profile {config.data_profile} "
                        "--datasets lfw`")
    rows = np.flatnonzero(np.isin(ident, classes))
    labels = np.searchsorted(classes, ident[rows])
    torch.manual_seed(ctx.seed)
    model = create_model(config.network, num_classes=len(classes))
    data = PackedFaces(lfw_set.aligned, rows, labels, size=model.input_size[-1],
                       augment=FlipJitter(config.flip_p, config.max_shift), seed=ctx.seed)
    speed = Speed(channels_last=config.channels_last, autocast_bf16=config.bf16)
    train = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, momentum=config.momentum,
                        weight_decay=config.weight_decay, optimizer="sgd", min_lr=1e-4, speed=speed)
    ckpt = (cache_root() / "checkpoints" / CH.folder / f"softmax-{config.network}-{config_hash([str(config), ctx.seed])}.pt"
            if config.max_identities is None else None)
    t1 = time.time()
    history = fit(model, data, train, device=ctx.device, seed=ctx.seed, checkpoint=ckpt, progress=ctx.progress)
    t_train = time.time() - t1
    model.cpu()

    cfp_set = load_prepared("cfp", config.protocol.data_profile)
    templates = protocol_templates(cfp_set, config.protocol, ctx.data_root, ctx.seed)
    test_rows = np.unique(np.concatenate(templates.members))
    position = np.full(len(cfp_set), -1, np.int64)
    position[test_rows] = np.arange(len(test_rows))
    local = type(templates)(tuple(position[m] for m in templates.members), templates.identity, templates.fold)
    _, summed = embed_crops_views(model, cfp_set.aligned[test_rows], size=model.input_size[-1], speed=speed)
    result = evaluate_templates(summed, local, config.protocol.fars)
    metrics = {"network": config.network, "objective": "softmax", "templates": result,
               "n_classes": int(len(classes)), "n_train_images": int(len(rows)),
               "excluded_as_cfp": len(split.excluded),
               "parameters": sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier")),
               "history": {k: [v if np.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
               "speed": history.as_record()["speed"], "train_seconds": round(t_train, 1),
               "seconds": round(time.time() - t0, 1)}
    digest = hashlib.sha256(("\n".join(lfw_set.manifest["path"].iloc[rows]) + "\n".join(
        cfp_set.manifest["path"].iloc[test_rows])).encode()).hexdigest()[:16]
    return metrics, {"classes": classes.tolist()}, digest


for _network in NETWORKS:
    register_experiment(Experiment(
        name=CH.experiment(f"recognizer_softmax.{_network}"), chapter=CH.folder,
        description=f"Table 4, the paper's recipe: {_network} trained with softmax on non-CFP LFW identities; "
                    "CFP template protocol",
        configure=configure_softmax(_network), run=run_softmax))

__all__ = ["NETWORKS", "configure_softmax"]
