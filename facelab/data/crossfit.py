"""Cross-fitting over LFW View 2's folds: more training persons for a student tested on LFW.

A student tested on all of LFW View 2 may learn only from the LFW persons in no View 2 pair
(:func:`facelab.data.splits.lfw_test_pool`): about 1,500 persons with one image each, most of LFW's
13,233 images belong to test persons. View 2's ten folds are *person-disjoint* (the LFW protocol;
:func:`fold_identities` checks it on the protocol file and refuses files where it does not hold), so
the test set can be split instead: cross-fitting trains ``K`` students, student ``k`` on that pool
*plus every person of the folds outside group k*, and tests it on group ``k``'s folds only. Every
pair is scored by a student that never saw either of its persons, and each student learns from
several times more images.

What it costs and changes: ``K`` trainings instead of one; a student's verification threshold is
chosen on the other folds *of its own group* (k-fold within the group, never mixing two students'
scores), so the ten per-fold accuracies come from ``K`` different models; and the students are not
one model, which a reader of the accuracy must know (it is the mean over the ``K`` students' folds).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from facelab.errors import DataError


def fold_identities(data_root: str | os.PathLike | None = None) -> dict[int, set[str]]:
    """``{fold (0-based): LFW persons (folder names) in that View 2 fold's pairs}``.

    Raises :class:`~facelab.errors.DataError` if two folds share a person (then cross-fitting
    would train on test persons)."""
    from facelab.data import lfw

    out: dict[int, set[str]] = {}
    for p in lfw.read_pairs("view2", data_root):
        out.setdefault(p.fold, set()).update(r.split("/", 1)[0] for r in p.images())
    folds = sorted(out)
    for i, a in enumerate(folds):
        for b in folds[i + 1:]:
            shared = out[a] & out[b]
            if shared:
                raise DataError(f"LFW View 2 folds {a + 1} and {b + 1} share {len(shared)} persons (e.g. "
                                f"{sorted(shared)[0]}): this pairs.txt is not the person-disjoint LFW protocol; "
                                "use the original pairs.txt, or a student tested on all folds (lfw_test_pool)")
    return out


@dataclass(frozen=True)
class CrossfitGroup:
    """One student of a cross-fit: the View 2 folds it is tested on and the pool it learns from.

    Attributes:
        test_folds: 0-based View 2 folds whose pairs this student scores.
        pool: :class:`~facelab.data.splits.DistillationPool` with ``lfw_identities`` = the persons in no
            View 2 pair + the persons of every other fold (minus those named like an excluded CFP user).
        test_identities: the persons of ``test_folds`` (none of them is in ``pool``).
    """

    test_folds: tuple[int, ...]
    pool: object
    test_identities: frozenset[str]

    @property
    def added_identities(self) -> int:
        return self.pool.excluded["lfw_added_from_other_folds"]


def crossfit_groups(data_root: str | os.PathLike | None = None, *, groups: int = 2,
                    exclude_cfp_users: Iterable[str] = ()) -> list[CrossfitGroup]:
    """``groups`` students' pools: View 2's folds in contiguous blocks (``groups=2``: folds 1-5 and
    6-10), each block's student learning from :func:`~facelab.data.splits.lfw_test_pool` (same CFP
    part, same ``exclude_cfp_users``) plus the persons of the other blocks."""
    from facelab.data import cfp
    from facelab.data.splits import DistillationPool, find_name_overlaps, lfw_test_pool

    by_fold = fold_identities(data_root)
    folds = sorted(by_fold)
    if not 2 <= groups <= len(folds) // 2:  # a student picks its threshold on its other folds: >= 2 each
        raise ValueError(f"groups must be between 2 and {len(folds) // 2} (each student needs two of the "
                         f"{len(folds)} View 2 folds), got {groups}")
    base = lfw_test_pool(data_root, exclude_cfp_users=exclude_cfp_users)
    cfp_names = cfp.read_names(data_root)
    excluded_names = {cfp_names[u] for u in exclude_cfp_users if u in cfp_names}
    out = []
    for block in np.array_split(np.asarray(folds), groups):
        test = frozenset().union(*(by_fold[f] for f in block))
        others = set().union(*(by_fold[f] for f in folds if f not in set(block.tolist()))) - test
        clash = find_name_overlaps({i: i.replace("_", " ") for i in others}, excluded_names)
        added = sorted(others - set(clash))
        pool = DistillationPool(
            lfw_identities=sorted(set(base.lfw_identities) | set(added)), cfp_identities=list(base.cfp_identities),
            excluded={**base.excluded, "lfw_in_view2": len(test),
                      "lfw_added_from_other_folds": len(added),
                      "lfw_named_like_a_cfp_test_user": base.excluded["lfw_named_like_a_cfp_test_user"] + len(clash)})
        out.append(CrossfitGroup(tuple(int(f) for f in block), pool, test))
    return out


__all__ = ["CrossfitGroup", "crossfit_groups", "fold_identities"]
