"""Scoring the pose protocol of paper 001 (:mod:`facelab.data.pose_protocol`) with descriptors.

A template's descriptor is the mean of its images' descriptors
(:func:`facelab.eval.descriptors.make_template`, raw descriptors as the paper averages them);
a comparison's score is a similarity: ``-chi2`` (the paper's χ² distance, negated) or the cosine.
Results are kept compact for JSON storage: EER, a standard error, a DET curve sampled on a fixed
FAR grid and score quantiles, instead of every score (a 500-user CFP run has ~70,000 scores
per pose combination).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from facelab.data.pose_protocol import PoseProtocol
from facelab.eval.descriptors import make_template
from facelab.eval.distances import chi2_distance, cosine_similarity

#: Scores: similarity functions of two [N, D] descriptor arrays -> [N] (higher = same person).
SCORE_FUNCTIONS = ("chi2", "cosine")
#: FAR values at which a stored DET curve is sampled (log-spaced, 1e-4 .. 1).
DET_FAR_GRID = tuple(float(v) for v in np.logspace(-4, 0, 81))
#: Pairs scored at once (bounds memory to CHUNK x D floats per side).
CHUNK = 4096


def template_descriptors(protocol: PoseProtocol, descriptors: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[T, D]`` template descriptors (mean of raw image descriptors) for ``protocol.templates``.

    Raises:
        KeyError: an image of a template has no descriptor (naming it).
    """
    rows = []
    for t in protocol.templates:
        missing = [i for i in t.images if i not in descriptors]
        if missing:
            raise KeyError(f"no descriptor for image {missing[0]} of template {t.user}/{t.pose}/{t.index}")
        rows.append(make_template(np.stack([descriptors[i] for i in t.images])))
    return np.stack(rows) if rows else np.zeros((0, 0))


def score_pairs(templates: np.ndarray, pairs: np.ndarray, score: str) -> np.ndarray:
    """Similarity of the template pairs ``pairs`` ``int[M, 2]`` -> ``float[M]`` (``-chi2`` or cosine)."""
    if score not in SCORE_FUNCTIONS:
        raise ValueError(f"unknown score {score!r}; use one of {', '.join(SCORE_FUNCTIONS)}")
    out = np.empty(len(pairs))
    for s in range(0, len(pairs), CHUNK):
        a, b = templates[pairs[s:s + CHUNK, 0]], templates[pairs[s:s + CHUNK, 1]]
        # descriptors of ReLU/GAP are >= 0; 'clip' only matters for models whose output can be negative
        out[s:s + CHUNK] = -chi2_distance(a, b, negative="clip") if score == "chi2" else cosine_similarity(a, b)
    return out


@dataclass(frozen=True)
class ScoreSummary:
    """EER (fraction), its binomial standard error, counts, the DET curve on :data:`DET_FAR_GRID`
    (FRR at each FAR) and the 5/50/95% quantiles of the genuine and impostor scores."""

    eer: float
    eer_se: float
    n_genuine: int
    n_impostor: int
    det_frr: list[float]
    genuine_quantiles: list[float]
    impostor_quantiles: list[float]

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def summarize_scores(scores: np.ndarray, genuine: np.ndarray) -> ScoreSummary:
    """EER and a sampled DET curve of ``scores`` ``[M]`` with labels ``genuine`` ``bool[M]``.

    ``eer_se = sqrt(EER (1 - EER) / min(n_genuine, n_impostor))``: the binomial error of a rate
    measured on the smaller class; it ignores that comparisons share templates, so it is a lower bound.
    """
    from facelab.eval.verification import det, eer

    scores, genuine = np.asarray(scores, float), np.asarray(genuine, bool)
    n_gen, n_imp = int(genuine.sum()), int((~genuine).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError(f"an EER needs genuine and impostor scores (got {n_gen} genuine, {n_imp} impostor)")
    e = eer(scores, genuine.astype(int)).eer
    curve = det(scores, genuine.astype(int))
    order = np.argsort(curve.far, kind="stable")
    frr = np.interp(DET_FAR_GRID, curve.far[order], curve.frr[order])
    q = (0.05, 0.5, 0.95)
    return ScoreSummary(float(e), float(np.sqrt(e * (1 - e) / min(n_gen, n_imp))), n_gen, n_imp,
                        [round(float(v), 6) for v in frr],
                        [float(v) for v in np.quantile(scores[genuine], q)],
                        [float(v) for v in np.quantile(scores[~genuine], q)])
