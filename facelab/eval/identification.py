"""Closed-set identification with a gallery and probes: rank-k accuracy, CMC, and the
verification rate at fixed FAR of the gallery/probe comparisons (paper 003, Section IV:
"rank-1 accuracy and verification rate at FAR=0.1%" and "VR@FAR=1%"; with the mean and
standard deviation over the 10 folds of CASIA NIR-VIS 2.0, Fig. 4).

Input: a similarity matrix ``similarity`` [P, G] (probe p against gallery entry g; higher =
more alike, e.g. :func:`facelab.eval.distances.pairwise_cosine`), identity labels of the
probes [P] and of the gallery entries [G].

Conventions:

* A gallery may hold several entries per identity (Oulu-CASIA uses every VIS image of a
  person). Identities are ranked by their *best* entry (max similarity over the entries).
* The rank of a probe is 1 + the number of other gallery identities that score at least as
  high as its own identity (``ties="pessimistic"``, default: a tie is a miss), or strictly
  higher (``ties="optimistic"``). With real-valued scores ties are rare; the choice is stated
  so that a tie never resolves by array order.
* ``CMC[k-1]`` is the fraction of probes with rank <= k; rank-1 accuracy is ``CMC[0]``.
* Closed set: every probe identity must be in the gallery (a probe without a mate cannot
  have a rank; the functions refuse instead of silently counting it as a miss).
* **VR@FAR** treats every (probe, gallery entry) cell as a verification pair: genuine when
  the identities match, impostor otherwise, and reports TAR at FAR with the conventions of
  :mod:`facelab.eval.verification` (default: nearest ROC point with FAR <= target; a target
  below 1/N_impostor is NaN, flagged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facelab.eval.verification import (
    DEFAULT_FAR_TARGETS,
    TarAtFar,
    tar_at_far,
)

TIE_RULES = ("pessimistic", "optimistic")


def _check(similarity: Any, probe_ids: Any, gallery_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(similarity, dtype=float)
    p, g = np.asarray(probe_ids), np.asarray(gallery_ids)
    if s.ndim != 2 or s.shape != (p.size, g.size):
        raise ValueError(f"similarity must be [P, G] = [{p.size}, {g.size}] for {p.size} probes and "
                         f"{g.size} gallery entries (got {s.shape})")
    if not np.all(np.isfinite(s)):
        raise ValueError("similarity contains NaN or infinite values")
    return s, p, g


def probe_ranks(similarity: Any, probe_ids: Any, gallery_ids: Any, *, ties: str = "pessimistic") -> np.ndarray:
    """Rank (1 = best) of each probe's own identity among the gallery identities -> [P] int."""
    if ties not in TIE_RULES:
        raise ValueError(f"unknown tie rule {ties!r}; use one of {', '.join(TIE_RULES)}")
    s, p, g = _check(similarity, probe_ids, gallery_ids)
    identities, column = np.unique(g, return_inverse=True)
    missing = ~np.isin(p, identities)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} probe(s) have no mate in the gallery (e.g. identity "
                         f"{p[missing][0]!r}); closed-set identification needs every probe identity in the gallery")
    # Best entry per gallery identity: [P, I].
    per_identity = np.full((s.shape[0], identities.size), -np.inf)
    np.maximum.at(per_identity, (slice(None), column), s)
    own = per_identity[np.arange(p.size), np.searchsorted(identities, p)]
    if ties == "pessimistic":
        beaten_by = (per_identity >= own[:, None]).sum(axis=1) - 1  # minus the own identity
    else:
        beaten_by = (per_identity > own[:, None]).sum(axis=1)
    return beaten_by + 1


def cmc(similarity: Any, probe_ids: Any, gallery_ids: Any, *, max_rank: int | None = None,
        ties: str = "pessimistic") -> np.ndarray:
    """Cumulative match characteristic: ``cmc[k-1]`` = fraction of probes with rank <= k.

    Length ``max_rank`` (default: the number of gallery identities).
    """
    ranks = probe_ranks(similarity, probe_ids, gallery_ids, ties=ties)
    n_identities = np.unique(np.asarray(gallery_ids)).size
    k = n_identities if max_rank is None else int(max_rank)
    if k < 1:
        raise ValueError("max_rank must be at least 1")
    return np.array([(ranks <= r).mean() for r in range(1, k + 1)])


def rank_accuracy(similarity: Any, probe_ids: Any, gallery_ids: Any, rank: int = 1, *,
                  ties: str = "pessimistic") -> float:
    """Fraction of probes whose identity is within the top ``rank`` gallery identities."""
    return float((probe_ranks(similarity, probe_ids, gallery_ids, ties=ties) <= rank).mean())


def verification_rate(similarity: Any, probe_ids: Any, gallery_ids: Any,
                      far_targets: Sequence[float] = DEFAULT_FAR_TARGETS, *,
                      method: str = "nearest_below") -> list[TarAtFar]:
    """VR (= TAR) at each FAR target over all (probe, gallery entry) pairs."""
    s, p, g = _check(similarity, probe_ids, gallery_ids)
    labels = (p[:, None] == g[None, :]).astype(int)
    return tar_at_far(s.ravel(), labels.ravel(), far_targets, method=method)


@dataclass(frozen=True)
class IdentificationReport:
    """Rank-k accuracies, the CMC and VR@FAR of one gallery/probe experiment."""

    n_probes: int
    n_gallery: int
    n_identities: int
    rank_accuracy: dict[int, float]
    cmc: np.ndarray
    verification_rate: list[TarAtFar]
    ties: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_probes": self.n_probes, "n_gallery_entries": self.n_gallery, "n_gallery_identities": self.n_identities,
            "rank_accuracy": {str(k): v for k, v in self.rank_accuracy.items()},
            "cmc": [float(x) for x in self.cmc],
            "verification_rate": [t.as_dict() for t in self.verification_rate],
            "conventions": f"identities ranked by their best gallery entry; ties count as {self.ties}; "
                           "VR over every (probe, gallery entry) pair",
        }


def identification_report(similarity: Any, probe_ids: Any, gallery_ids: Any, *,
                          ranks: Sequence[int] = (1, 5, 10),
                          far_targets: Sequence[float] = (1e-3, 1e-2),
                          tar_method: str = "nearest_below", ties: str = "pessimistic") -> IdentificationReport:
    """Rank-k accuracy for each of ``ranks``, the full CMC and VR at each FAR target."""
    s, p, g = _check(similarity, probe_ids, gallery_ids)
    r = probe_ranks(s, p, g, ties=ties)
    n_id = int(np.unique(g).size)
    curve = np.array([(r <= k).mean() for k in range(1, n_id + 1)])
    return IdentificationReport(
        n_probes=int(p.size), n_gallery=int(g.size), n_identities=n_id,
        rank_accuracy={int(k): float((r <= k).mean()) for k in ranks},
        cmc=curve, verification_rate=verification_rate(s, p, g, far_targets, method=tar_method), ties=ties,
    )
