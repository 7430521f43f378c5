"""Chapter 4's Table I on the CASIA stand-in: plain vs HSST training, masked vs non-masked, by *partial
fine-tuning*; registered by :mod:`facelab.experiments.nirvis_masked_hsst`.

``nirvis_masked_hsst.table1``: the pretrained network stays frozen (SFace; :mod:`facelab.teachers`) and a
**residual head** over its 128-d embedding, ``h(f) = f + W₂ ReLU(W₁ f)`` (W₂ initialised at zero, so training
starts from the pretrained model), is what is trained, with the paper's exact schedule: 10,000 steps of 64
pairs, learning rate 5e-4 divided by 10 at 6k and 8k (SGD, momentum 0.9), Q = 128, α = 0.999. End-to-end
fine-tuning of the backbone does not fit two CPU cores (``full`` on a GPU is where it belongs); the chapter
labels this *partial fine-tuning*.

* **Plain** (the paper's baseline, "fine-tunes [the pretrained model] on the NIR-VIS datasets"): the head
  and a cosine classifier over the training identities (one normalised weight per identity) with eq. 1's
  loss (s = 30) on every NIR and every VIS image of a batch.
* **HSST** (:class:`facelab.train.hsst.SemiSiamese`): the head as probe-net, its moving average as
  gallery-net, both directions of eq. 2 on each (NIR, VIS) pair, one queue per modality, batches of
  distinct identities none of which is in the queues (:class:`facelab.train.hsst.DisjointIdentityBatches`).
* **Training data**: each split's training identities, their VIS-pool photos as photographed and their
  NIR-pool photos as simulated NIR, *with* masks ("trained masked") or without ("trained non-masked").
  A pair draws one VIS and one NIR photo of an identity.
* **Test**: the split's VIS gallery (one photo per test identity) against its NIR probes, masked or not;
  rank-1 and VR at FAR 0.1% (and 1%), for the head's embeddings and for the frozen network alone
  ("pretrained, no fine-tuning"). Ten splits at ``full``, three at ``small``; Table I in the paper's shape
  is split 1 (the paper's "1-fold"), the chapter also gives mean ± SD over the splits.

Embeddings of every rendered photo are computed once per run (SFace's ONNX Runtime graph, single view).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import DataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("nirvis_masked_hsst")
METHODS = ("plain", "hsst")
TRAIN_MASKS = ("non_masked", "masked")
TEST_MASKS = ("non_masked", "masked")


@dataclass(frozen=True)
class Table1Config:
    """The stand-in (as ``nirvis_masked_hsst.gap``) and the training schedule of each (method, training set).
    ``backbone``: the frozen network, ``sface`` (the teacher itself) or ``mobilefacenet`` (the paper's network,
    distilled from SFace on the chapter-4 pool: :mod:`facelab.experiments.nirvis_masked_hsst_backbone`)."""

    data_profile: str
    n_splits: int = 10
    min_images: int = 4
    render_seed: int = 0
    teacher: str = "sface"
    steps: int = 10_000
    batch_size: int = 64
    lr: float = 5e-4
    milestones: tuple[int, ...] = (6_000, 8_000)
    momentum: float = 0.9
    queue_size: int = 128
    alpha: float = 0.999
    hidden: int = 256
    scale: float = 30.0
    fars: tuple[float, ...] = (1e-3, 1e-2)
    max_identities: int | None = None
    backbone: str = "sface"


def configure_table1(profile: str) -> Table1Config:
    check_profile(profile)
    if profile == "smoke":
        return Table1Config(data_profile="smoke", n_splits=2, min_images=2, max_identities=24, steps=20,
                            batch_size=2, queue_size=4, milestones=(12, 16), alpha=0.9)
    if profile == "small":
        # the paper's schedule (10k steps of 64 pairs) takes ~40 s per configuration on one core: three of
        # the ten splits (12 trainings), ~8 min, plus ~4 min of SFace embeddings
        return Table1Config(data_profile="small", n_splits=3)
    return Table1Config(data_profile=profile)


class ResidualHead:
    """Factory of the trained part: ``[B, 128] -> [B, 128]``, ``f + W₂ ReLU(W₁ f)`` with W₂ = 0 at the start."""

    @staticmethod
    def build(dim: int, hidden: int):
        import torch
        from torch import nn

        class _Head(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
                nn.init.zeros_(self.fc2.weight), nn.init.zeros_(self.fc2.bias)

            def forward_features(self, f: torch.Tensor) -> torch.Tensor:
                return f + self.fc2(torch.relu(self.fc1(f)))

            forward = forward_features

        return _Head()


class _Photos:
    """Each training identity's photos (positions in an embedding array), packed for vectorised draws."""

    def __init__(self, by_id: list[np.ndarray]):
        self.counts = np.array([len(v) for v in by_id])
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.flat = np.concatenate(by_id)

    def draw(self, rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
        """One photo of each identity index of ``ids``, uniformly among its photos."""
        return self.flat[self.offsets[ids] + (rng.random(len(ids)) * self.counts[ids]).astype(np.int64)]


def train_head(method: str, vis_emb, nir_emb, vis_by_id, nir_by_id, config: Table1Config, *, seed: int,
               loss: str = "softmax", hsst: dict | None = None):
    """Train a :class:`ResidualHead` on the training identities' embeddings; returns (head, loss per 100 steps).

    ``loss`` (:data:`facelab.train.hsst.LOSSES`): on the queue logits for HSST; for plain training the
    classification losses (softmax, AM, Arc) score every NIR and VIS feature of the batch against the cosine
    classifier, and the triplet hinge (an embedding loss: no classifier) scores the batch's NIR features
    against its VIS features and back (:func:`facelab.train.hsst.plain_logits`, the hardest in-batch negative).
    ``hsst``: fields of :class:`facelab.train.hsst.HSSTConfig` that override ``config``'s (the ablations:
    ``directions``, ``shared_queue``, ``alpha``, ``queue_size``).
    """
    import torch
    from torch.nn import functional as F

    from facelab.train.hsst import DisjointIdentityBatches, HSSTConfig, SemiSiamese, cosine_loss, plain_logits

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dim = vis_emb.shape[1]
    head = ResidualHead.build(dim, config.hidden)
    n_ids = len(vis_by_id)
    vis_t, nir_t = torch.from_numpy(vis_emb), torch.from_numpy(nir_emb)
    if method == "hsst":
        hc = HSSTConfig(**{"queue_size": config.queue_size, "alpha": config.alpha, "scale": config.scale, "loss": loss,
                           **(hsst or {})})
        model = SemiSiamese(head, dim, hc, generator=g)
        params = list(head.parameters())
        batches = iter(DisjointIdentityBatches(n_ids, config.batch_size, hc.queue_size, config.steps, seed=seed))
    else:
        classifier = torch.nn.Parameter(F.normalize(torch.randn(n_ids, dim, generator=g), dim=1))
        params = list(head.parameters()) + ([] if loss == "triplet" else [classifier])
        rng_b = np.random.default_rng((seed, 1))
        batches = (rng_b.choice(n_ids, config.batch_size, replace=False) for _ in range(config.steps))
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(config.milestones), gamma=0.1)
    rng = np.random.default_rng((seed, 2))
    vis_photos, nir_photos = _Photos(vis_by_id), _Photos(nir_by_id)
    curve, window = [], []
    for step, ids in enumerate(batches):
        v, n = vis_photos.draw(rng, ids), nir_photos.draw(rng, ids)
        if method == "hsst":
            value = model.loss(nir_t[n], vis_t[v], generator=g)
        elif loss == "triplet":
            a, b = head.forward_features(nir_t[n]), head.forward_features(vis_t[v])
            value = (cosine_loss(*plain_logits(a, b), loss="triplet")
                     + cosine_loss(*plain_logits(b, a), loss="triplet")) / 2
        else:
            feats = torch.cat([head.forward_features(nir_t[n]), head.forward_features(vis_t[v])])
            labels = torch.from_numpy(np.concatenate([ids, ids]))
            cos = F.normalize(feats, dim=1) @ F.normalize(classifier, dim=1).T
            value = cosine_loss(cos, labels, loss=loss, scale=config.scale)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        if method == "hsst":
            model.after_step()
        window.append(float(value.detach()))
        if (step + 1) % 100 == 0 or step + 1 == config.steps:
            curve.append(float(np.mean(window)))
            window = []
    return head.eval(), curve


def identify(gallery, probes, g_ids, p_ids, fars) -> dict:
    from facelab.eval.identification import identification_report

    rep = identification_report(probes @ gallery.T, p_ids, g_ids, ranks=(1,), far_targets=fars)
    return {"rank1": rep.rank_accuracy[1],
            "vr": {f"{t.far_target:g}": (t.tar if t.measurable else None) for t in rep.verification_rate}}


@dataclass
class CasiaStandIn:
    """The CASIA stand-in's splits (:func:`facelab.data.nirvis.casia_standin`, checked) on the prepared LFW set,
    and the frozen network's embeddings ``float32[len(used), D]`` of every photo the splits use, per rendering:
    ``emb[kind][position[row]]`` is prepared row ``row`` rendered as ``kind``."""

    lfw: object
    ident: np.ndarray
    splits: list
    used: np.ndarray
    position: np.ndarray
    teacher: object
    emb: dict
    embed_seconds: dict
    backbone: dict

    def digest(self) -> str:
        return hashlib.sha256(("\n".join(self.lfw.manifest["path"].iloc[self.used])
                               + str(self.lfw.summary.get("fingerprint"))).encode()).hexdigest()[:16]


def casia_standin_embeddings(config, ctx: RunContext, kinds=("vis", "nir", "nir_masked")) -> CasiaStandIn:
    """Build the splits of ``config`` (``data_profile``, ``min_images``, ``max_identities``, ``n_splits``) and
    embed every used photo rendered as each of ``kinds`` with ``config.teacher`` (SFace: ONNX Runtime, one view)."""
    from facelab.data.manifest import load_prepared
    from facelab.data.nirvis import casia_standin, check_standin, render_rows
    from facelab.experiments.nirvis_masked_hsst import standin_identities
    from facelab.teachers import load_teacher

    lfw = load_prepared("lfw", config.data_profile)
    ident = lfw.manifest["identity"].astype(str).to_numpy()
    allowed = standin_identities(ctx.data_root, config.min_images)
    if config.max_identities is not None:
        names, counts = np.unique(ident[np.isin(ident, allowed)], return_counts=True)
        allowed = sorted(names[counts >= config.min_images][:config.max_identities].tolist())
    try:
        splits = casia_standin(ident, allowed, n_splits=config.n_splits, min_images=config.min_images, seed=ctx.seed)
    except ValueError as err:
        raise DataError(f"{err} at profile {config.data_profile!r}: run `python -m facelab data prepare --profile "
                        f"{config.data_profile} --datasets lfw`") from None
    for s in splits:
        check_standin(s, ident)
    used = np.unique(np.concatenate([s.rows() for s in splits]))
    position = np.full(len(lfw), -1, np.int64)
    position[used] = np.arange(len(used))
    if config.backbone == "sface":
        teacher = load_teacher(config.teacher, **({"threads": ctx.workers or os.cpu_count() or 1}
                                                  if config.teacher == "sface" else {}))
        backbone = {"name": "SFace (pretrained, frozen)", "version": teacher.version}
    elif config.backbone == "mobilefacenet":
        from facelab.experiments.nirvis_masked_hsst_backbone import backbone_config, pretrained_mobilefacenet

        teacher, record = pretrained_mobilefacenet(backbone_config(config.data_profile), ctx)
        backbone = {"name": teacher.name, "version": teacher.version, "pretraining": record}
    else:
        raise DataError(f"unknown backbone {config.backbone!r}: use 'sface' or 'mobilefacenet'")
    emb, embed_seconds = {}, {}
    for kind in kinds:
        t = time.time()
        imgs = np.asarray(lfw.aligned[used]) if kind == "vis" else render_rows(lfw.aligned, used, kind,
                                                                               seed=config.render_seed)
        emb[kind] = teacher.embed(imgs, progress=ctx.progress).astype(np.float32)
        embed_seconds[kind] = round(time.time() - t, 1)
    return CasiaStandIn(lfw, ident, splits, used, position, teacher, emb, embed_seconds, backbone)


def pair_pools(split, ident: np.ndarray, position: np.ndarray) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """A split's training identities that have photos in both modality pools (a pair needs one of each) and,
    per identity, the embedding positions of its VIS and of its NIR photos."""
    train_ids = sorted(set(ident[split.train_vis]) & set(ident[split.train_nir]))
    index = {name: k for k, name in enumerate(train_ids)}
    vis_by_id: list[list] = [[] for _ in train_ids]
    nir_by_id: list[list] = [[] for _ in train_ids]
    for rows, out in ((split.train_vis, vis_by_id), (split.train_nir, nir_by_id)):
        for r in rows:
            if ident[r] in index:
                out[index[ident[r]]].append(position[r])
    return train_ids, [np.array(v) for v in vis_by_id], [np.array(v) for v in nir_by_id]


def head_embed(head, e: np.ndarray) -> np.ndarray:
    """Unit-norm ``float32[N, D]`` embeddings of a trained head over frozen features ``e``."""
    import torch
    from torch.nn import functional as F

    with torch.no_grad():
        return F.normalize(head.forward_features(torch.from_numpy(e)), dim=1).numpy()


def summarise_splits(per_split: list, key: str, test: str, fars) -> dict:
    """Mean and SD over the splits of ``per_split[i][key][test]``'s rank-1 and VR at each FAR (None when
    no split could measure it)."""
    r1 = np.array([r[key][test]["rank1"] for r in per_split])
    out = {"rank1": {"mean": float(r1.mean()), "sd": float(r1.std())}}
    for f in fars:
        v = np.array([np.nan if r[key][test]["vr"][f"{f:g}"] is None else r[key][test]["vr"][f"{f:g}"]
                      for r in per_split])
        ok = v[np.isfinite(v)]
        out[f"vr_far_{f:g}"] = {"mean": float(ok.mean()), "sd": float(ok.std())} if len(ok) else None
    return out


def far_label(far: float) -> str:
    """The paper-values suffix of a FAR: 0.001 -> ``1e-3``."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def flat_cells(per_split: list, key: str, test: str, fars) -> dict:
    """``{"rank1": stats, "vr_far1e-3": stats, ...}`` of ``per_split[i][key][test]`` over the splits, stats
    ``{"mean", "sd", "n_splits", "split1"}`` (None values where no split could measure a VR: too few impostors): the flat shape the
    chapter's table bindings read (``facelab/paper_values/003.json``)."""
    out = {}
    for measure in ["rank1"] + list(fars):
        vals = [r[key][test]["rank1"] if measure == "rank1" else r[key][test]["vr"][f"{measure:g}"] for r in per_split]
        ok = np.array([v for v in vals if v is not None], float)
        name = "rank1" if measure == "rank1" else f"vr_far{far_label(measure)}"
        out[name] = ({"mean": float(ok.mean()), "sd": float(ok.std()), "n_splits": int(len(ok)), "split1": vals[0]}
                     if len(ok) else {"mean": None, "sd": None, "n_splits": 0, "split1": None})
    return out


def run_table1(config: Table1Config, ctx: RunContext):
    from facelab.train.speed import torch_threads

    t0 = time.time()
    st = casia_standin_embeddings(config, ctx)
    ident, splits, position, teacher, emb = st.ident, st.splits, st.position, st.teacher, st.emb
    per_split, curves, train_seconds = [], {}, {}
    for s in splits:
        row: dict = {"split": s.split, "train_identities": len(s.train_identities),
                     "test_identities": len(s.test_identities), "probes": int(len(s.probes))}
        g_ids, p_ids = ident[s.gallery], ident[s.probes]
        gal = emb["vis"][position[s.gallery]]
        probe = {"non_masked": emb["nir"][position[s.probes]], "masked": emb["nir_masked"][position[s.probes]]}
        row["pretrained"] = {tm: identify(gal, probe[tm], g_ids, p_ids, config.fars) for tm in TEST_MASKS}
        train_ids, vis_by_id, nir_by_id = pair_pools(s, ident, position)
        row["pair_identities"] = len(train_ids)
        for method in METHODS:
            for trm in TRAIN_MASKS:
                t = time.time()
                with torch_threads(1):  # a 128-d head: one thread is faster than two (per-op overhead)
                    head, curve = train_head(method, emb["vis"], emb["nir_masked" if trm == "masked" else "nir"],
                                             vis_by_id, nir_by_id, config, seed=ctx.seed * 100 + s.split)
                train_seconds[f"{method}.{trm}.{s.split}"] = round(time.time() - t, 1)
                if s.split == 0:
                    curves[f"{method}.{trm}"] = curve
                g_h = head_embed(head, gal)
                row[f"{method}.{trm}"] = {tm: identify(g_h, head_embed(head, probe[tm]), g_ids, p_ids, config.fars)
                                          for tm in TEST_MASKS}
        per_split.append(row)

    keys = ["pretrained"] + [f"{m}.{t}" for m in METHODS for t in TRAIN_MASKS]
    summary = {k: {tm: summarise_splits(per_split, k, tm, config.fars) for tm in TEST_MASKS} for k in keys}
    # Table I's rows by their paper-values names: plain_nonmasked_masked = plain, trained non-masked, tested masked
    table = {(k if k == "pretrained" else k.replace(".", "_").replace("non_masked", "nonmasked"))
             + f"_{tm.replace('non_masked', 'nonmasked')}": flat_cells(per_split, k, tm, config.fars)
             for k in keys for tm in TEST_MASKS}
    metrics = {"teacher": teacher.name, "teacher_version": teacher.version, "n_splits": len(splits),
               "n_photos": int(len(st.used)), "per_split": per_split, "summary": summary, "table": table, "loss_curves_split0": curves,
               "train_seconds": train_seconds, "embed_seconds": st.embed_seconds,
               "backbone": f"{st.backbone['name']} + residual head (trained): partial fine-tuning",
               "backbone_record": st.backbone, "seconds": round(time.time() - t0, 1)}
    digest = st.digest()
    return metrics, {}, digest


def configure_table1_mobilefacenet(profile: str) -> Table1Config:
    return dataclasses.replace(configure_table1(profile), backbone="mobilefacenet")


register_experiment(Experiment(
    name=CH.experiment("table1"), chapter=CH.folder,
    description="Table I on the CASIA stand-in: plain vs HSST, trained non-masked/masked, tested non-masked/masked; "
                "partial fine-tuning (residual head over frozen SFace), ten splits",
    configure=configure_table1, run=run_table1))

register_experiment(Experiment(
    name=CH.experiment("table1_mobilefacenet"), chapter=CH.folder,
    description="Table I with the paper's network: MobileFaceNet distilled from SFace on identities disjoint from "
                "every stand-in, frozen, + residual head (partial fine-tuning)",
    configure=configure_table1_mobilefacenet, run=run_table1))

__all__ = ["CasiaStandIn", "casia_standin_embeddings", "configure_table1", "far_label", "flat_cells", "head_embed", "identify",
           "pair_pools",
           "summarise_splits", "train_head"]
