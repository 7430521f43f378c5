"""Cross-fitting over LFW View 2's folds (facelab.data.crossfit): every student's pool is disjoint from
its test persons, the groups cover every fold once, and a protocol whose folds share a person is refused."""

from __future__ import annotations

import os

import pytest

from facelab.data import crossfit, splits
from facelab.errors import DataError

data_root = os.environ.get("FACELAB_DATA")
needs_data = pytest.mark.skipif(not data_root, reason="set FACELAB_DATA")


def _write_protocol(root, text: str) -> None:
    (root / "lfw" / "protocol").mkdir(parents=True)
    (root / "lfw" / "lfw-deepfunneled").mkdir()  # the marker of an LFW folder (facelab.paths)
    (root / "lfw" / "protocol" / "pairs.txt").write_text(text)


def test_folds_sharing_a_person_are_refused(tmp_path):
    # fold 1 and fold 2 both hold Ann: not LFW's person-disjoint protocol
    _write_protocol(tmp_path, "2\t1\nAnn\t1\t2\nBob\t1\tCid\t1\nAnn\t2\t3\nDee\t1\tEve\t1\n")
    with pytest.raises(DataError, match="share 1 persons.*Ann"):
        crossfit.fold_identities(tmp_path)


def test_fold_identities_of_a_disjoint_protocol(tmp_path):
    _write_protocol(tmp_path, "2\t1\nAnn\t1\t2\nBob\t1\tCid\t1\nDan\t2\t3\nDee\t1\tEve\t1\n")
    assert crossfit.fold_identities(tmp_path) == {0: {"Ann", "Bob", "Cid"}, 1: {"Dan", "Dee", "Eve"}}


@needs_data
@pytest.mark.parametrize("groups", [2, 5])
def test_crossfit_pools_never_hold_their_test_persons(groups):
    by_fold = crossfit.fold_identities(data_root)
    base = splits.lfw_test_pool(data_root)
    out = crossfit.crossfit_groups(data_root, groups=groups)
    assert sorted(f for g in out for f in g.test_folds) == sorted(by_fold)  # every fold tested once
    for g in out:
        assert g.test_identities == set().union(*(by_fold[f] for f in g.test_folds))
        assert g.test_identities.isdisjoint(g.pool.lfw_identities)
        assert set(base.lfw_identities) <= set(g.pool.lfw_identities)  # the single pool, plus more
        others = set().union(*(by_fold[f] for f in by_fold if f not in g.test_folds))
        assert set(g.pool.lfw_identities) - set(base.lfw_identities) == others
        assert g.added_identities == len(others)
        assert g.pool.cfp_identities == base.cfp_identities
    with pytest.raises(ValueError, match="between 2 and 5"):
        crossfit.crossfit_groups(data_root, groups=6)


@needs_data
def test_crossfit_pool_drops_persons_named_like_an_excluded_cfp_user():
    from facelab.data import cfp

    names = cfp.read_names(data_root)
    bush = next(u for u, n in names.items() if n == "George Bush")  # an LFW View 2 person as a CFP test user
    for g in crossfit.crossfit_groups(data_root, exclude_cfp_users=[bush]):
        assert "George_W_Bush" not in g.pool.lfw_identities and bush not in g.pool.cfp_identities
