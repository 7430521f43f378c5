"""A template-based 1:1 verification protocol on identity-disjoint folds, and TAR at fixed FAR.

IJB-A (LEFV's Table 4) compares *templates* (sets of images of one subject) and reports the true accept
rate (TAR) at false accept rates (FAR) of 0.1%, 1% and 10%, mean ± SD over its ten splits. LFW's and
CFP's pair lists hold 300-350 impostor pairs per fold, too few to measure a TAR at FAR = 0.1%. This
module builds an all-pairs template protocol instead (:func:`build_templates`): within each
identity-disjoint fold, every identity's images are split into ``templates_per_identity`` templates of
``images_per_template`` images (a seeded shuffle); every pair of templates in the fold is compared,
genuine when both are of one identity. With CFP (50 identities per fold, 14 images each, 7 two-image
templates) that is 50 × 21 = 1,050 genuine and 60,025 impostor comparisons per fold.

A template's descriptor is the mean of its images' L2-normalised embeddings; comparisons are cosine.
TAR at FAR ``f`` (:func:`tar_at_far`) is read off :func:`sklearn.metrics.roc_curve`: the highest true
positive rate at a threshold whose false positive rate is at most ``f``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FARS = (1e-3, 1e-2, 1e-1)


def far_key(far: float) -> str:
    """``1e-3 -> "tar_far_1e-3"``: a result key without a dot (result paths are dotted)."""
    return "tar_far_" + f"{far:.0e}".replace("e-0", "e-").replace("e+0", "e")


@dataclass(frozen=True)
class Templates:
    """``members[t]``: image indices of template ``t``; ``identity[t]``, ``fold[t]`` of each template."""

    members: tuple[np.ndarray, ...]
    identity: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.members)


def build_templates(image_identity: Sequence[str], identity_fold: dict[str, int], *, images_per_template: int = 2,
                    templates_per_identity: int = 7, seed: int = 0) -> Templates:
    """Templates of ``images_per_template`` images per identity (images in ``image_identity`` order,
    shuffled per identity with ``default_rng([seed, k])``); identities without a fold, or with fewer than
    ``images_per_template * templates_per_identity`` images, are left out (their templates would not be
    comparable)."""
    ids = np.asarray(image_identity)
    need = images_per_template * templates_per_identity
    members, identity, fold = [], [], []
    for k, name in enumerate(sorted(set(ids.tolist()))):
        if name not in identity_fold:
            continue
        rows = np.flatnonzero(ids == name)
        if len(rows) < need:
            continue
        rows = np.random.default_rng([seed, k]).permutation(rows)[:need]
        for t in range(templates_per_identity):
            members.append(np.sort(rows[t * images_per_template:(t + 1) * images_per_template]))
            identity.append(name)
            fold.append(identity_fold[name])
    return Templates(tuple(members), np.asarray(identity), np.asarray(fold, np.int64))


def template_descriptors(embeddings: np.ndarray, templates: Templates) -> np.ndarray:
    """``float64[T, D]``: the L2-normalised mean of each template's L2-normalised embeddings."""
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    d = np.stack([e[m].mean(axis=0) for m in templates.members])
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def fold_scores(descriptors: np.ndarray, templates: Templates, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)`` cosine scores of every pair of templates within ``fold``."""
    sel = np.flatnonzero(templates.fold == fold)
    d = descriptors[sel]
    s = d @ d.T
    iu = np.triu_indices(len(sel), k=1)
    same = templates.identity[sel][:, None] == templates.identity[sel][None, :]
    return s[iu][same[iu]], s[iu][~same[iu]]


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, fars: Sequence[float] = FARS) -> dict[float, float]:
    """``{far: TAR}``: the highest TPR over thresholds whose FPR is at most ``far``
    (:func:`sklearn.metrics.roc_curve` on genuine = positive)."""
    from sklearn.metrics import roc_curve

    if not len(genuine) or not len(impostor):
        raise ValueError(f"TAR at FAR needs genuine and impostor scores (got {len(genuine)} and {len(impostor)})")
    y = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    fpr, tpr, _ = roc_curve(y, np.r_[genuine, impostor], drop_intermediate=False)
    return {f: float(tpr[fpr <= f].max()) for f in fars}


def evaluate_templates(embeddings: np.ndarray, templates: Templates, fars: Sequence[float] = FARS) -> dict:
    """Per fold TAR at each FAR and the counts; mean and SD (ddof = 0) over folds. A fold without a genuine
    or without an impostor comparison (too few identities, e.g. at the smoke profile) is listed in
    ``skipped_folds`` and left out of the mean."""
    desc = template_descriptors(embeddings, templates)
    folds = sorted(set(templates.fold.tolist()))
    per_fold, skipped = [], []
    for f in folds:
        g, i = fold_scores(desc, templates, f)
        if not len(g) or not len(i):
            skipped.append(f)
            continue
        per_fold.append({"fold": f, "genuine": len(g), "impostor": len(i),
                         "tar": {str(far): v for far, v in tar_at_far(g, i, fars).items()}})
    if not per_fold:
        raise ValueError("no fold has both genuine and impostor comparisons: the protocol needs at least two "
                         "identities with enough images in a fold")
    out = {"per_fold": per_fold, "n_templates": len(templates), "n_folds": len(per_fold), "skipped_folds": skipped}
    for far in fars:
        v = np.array([p["tar"][str(far)] for p in per_fold])
        out[far_key(far)] = {"mean": float(v.mean()), "sd": float(v.std())}
    return out
