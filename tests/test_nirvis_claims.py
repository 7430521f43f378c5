"""Chapter 4's claim checks on hand-made results: the verdict follows the numbers and the spread named."""

from types import SimpleNamespace

import pytest

from facelab.experiments import nirvis_masked_hsst_report as report


def _e2e(rank1: dict, se: float, n_splits: int = 1):
    """A result of ``nirvis_masked_hsst.end_to_end``'s shape: ``rank1[key][test]`` (fraction) per split."""
    row = {k: {tm: {"rank1": v} for tm, v in cells.items()} for k, cells in rank1.items()}
    row["paired_rank1"] = {f"{a}-{b}": {tm: {"se": se} for tm in ("non_masked", "masked")}
                           for a, b in (("hsst.masked", "plain.masked"), ("plain.masked", "pretrained"))}
    return SimpleNamespace(metrics={"per_split": [row] * n_splits})


RANK1 = {"pretrained": {"non_masked": 0.60, "masked": 0.30}, "plain.masked": {"non_masked": 0.70, "masked": 0.50},
         "hsst.masked": {"non_masked": 0.71, "masked": 0.55}}


def test_one_split_uses_the_paired_per_probe_se():
    claims = report.end_to_end_claims(_e2e(RANK1, se=2.0))
    assert [c.verdict for c in claims] == ["reproduced", "not resolved", "reproduced"]  # +20, +1 (< 2), +5 points
    assert all("per-probe" in c.claim for c in claims) and len({c.claim for c in claims}) == 3
    worse = dict(RANK1, **{"hsst.masked": {"non_masked": 0.60, "masked": 0.40}})
    assert [c.verdict for c in report.end_to_end_claims(_e2e(worse, se=2.0))][1:] == ["not reproduced"] * 2


def test_several_splits_use_the_sd_over_splits():
    claims = report.end_to_end_claims(_e2e(RANK1, se=50.0, n_splits=3))  # identical splits: SD 0, SE ignored
    assert [c.verdict for c in claims] == ["reproduced"] * 3
    assert not any("per-probe" in c.claim for c in claims)


def test_not_run_and_labels():
    assert report.end_to_end_claims(None)[0].verdict == "not resolved"
    assert report.table1_claims(None, backbone="X")[0].claim.endswith("[X backbone]")


if __name__ == "__main__":
    pytest.main([__file__])
