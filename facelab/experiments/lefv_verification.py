"""Chapter 1's verification protocol (Table 4's stand-in for IJB-A), registered by :mod:`facelab.experiments.lefv`.

* ``lefv.table4_references``: the two packaged recognizers (SFace and dlib's ResNet,
  :mod:`facelab.teachers`) on an all-pairs template protocol over CFP's ten identity-disjoint folds
  (:mod:`facelab.eval.templates`: per identity 7 templates of 2 images drawn from its 10 frontal and 4
  profile photos; every pair of templates in a fold compared), TAR at FAR = 0.1%, 1% and 10%, mean ±
  SD over the folds. These are the reference rows the chapter's own recognizer will sit beside. SFace
  embeds each crop and its mirror (summed, paper 002's flip feature; cached by
  :func:`facelab.teachers.targets.teacher_targets`); dlib embeds the crop alone (its cost: ~85 ms a crop here).

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


register_experiment(Experiment(
    name=CH.experiment("table4_references"), chapter=CH.folder,
    description="Table 4 stand-in: SFace and dlib on an all-pairs 2-image template protocol over CFP's 10 folds (TAR@FAR)",
    configure=configure_references, run=run_references))

__all__ = ["configure_references", "protocol_templates"]
