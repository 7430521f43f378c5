"""Chapter 1's before/after test of the normalizer: profile faces against each identity's frontal reference,
checked on tiny examples whose cosines are known in closed form."""

import numpy as np
import pytest

from facelab.experiments.lefv_normalization import (configure_normalizer, configure_normalizer_mobilefacenet,
                                                    reference_frontals, reference_similarity)


def test_reference_frontals_picks_each_identitys_first_frontal():
    identity = np.array(["b", "a", "a", "b", "c", "a", "b"])
    is_profile = np.array([True, False, True, False, True, False, True])
    profile, references, column = reference_frontals(identity, is_profile)
    # "c" has no frontal photo: its profile face has no reference and is left out
    assert profile.tolist() == [0, 2, 6]
    assert references.tolist() == [1, 3]  # a's first frontal (row 1), b's (row 3), sorted by identity
    assert identity[references[column]].tolist() == identity[profile].tolist()


def test_reference_similarity_in_closed_form():
    # two references on the axes; face 0 (identity 0) at 60 degrees from its reference, normalized onto it;
    # face 1 (identity 1) on its reference, normalized to 90 degrees away from it
    refs = np.array([[1.0, 0.0], [0.0, 1.0]])
    before = np.array([[0.5, np.sqrt(3) / 2], [0.0, 3.0]])  # scale does not matter
    after = np.array([[2.0, 0.0], [1.0, 0.0]])
    out = reference_similarity(before, after, refs, np.array([0, 1]), far=0.5)
    assert out["n_faces"] == 2 and out["n_references"] == 2 and out["impostor_pairs"] == 2
    assert out["to_reference_before"]["mean"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["to_reference_after"]["mean"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["self"]["mean"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["share_closer_after"] == 0.5
    # impostor cosines before: face 0 vs ref 1 = sqrt(3)/2, face 1 vs ref 0 = 0; their median is the threshold
    assert out["threshold"] == pytest.approx(np.sqrt(3) / 4)
    assert out["match_rate_before"] == 1.0 and out["match_rate_after"] == 0.5


def test_the_two_experts_share_data_schedule_and_judge():
    for profile in ("smoke", "small"):
        a, b = configure_normalizer(profile), configure_normalizer_mobilefacenet(profile)
        assert a.expert == "sface" and a.expert_training is None
        assert b.expert == "mobilefacenet" and b.expert_training.network == "mobilefacenet"
        assert (a.steps, a.batch_size, a.train_folds, a.judge) == (b.steps, b.batch_size, b.train_folds, b.judge)


def test_reference_similarity_rank1_and_false_matches():
    refs = np.eye(3)
    before = np.array([[1.0, 0.2, 0.0], [0.0, 0.1, 1.0], [0.1, 0.0, 1.0]])  # faces of identities 0, 1, 2
    column = np.array([0, 1, 2])
    # face 1 is nearest to reference 2 before; a generic face (the same vector for all) after
    generic = np.tile([1.0, 1.0, 1.0], (3, 1))
    out = reference_similarity(before, generic, refs, column, far=0.5)
    assert out["rank1_before"] == pytest.approx(2 / 3)
    # argmax of a tie is the first reference: only face 0 is "right", by accident; the cosine to every
    # reference rises for faces 1 and 2, and so do the false matches
    assert out["rank1_after"] == pytest.approx(1 / 3)
    assert out["false_match_rate_after"] > out["false_match_rate_before"]
    d = np.array([0.0, 0.0, -1.0])  # per-face change in rank-1 hits
    assert out["rank1_change_se"] == pytest.approx(d.std() / np.sqrt(3))


def test_reference_similarity_refuses_bad_shapes():
    with pytest.raises(ValueError, match="must be"):
        reference_similarity(np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="column"):
        reference_similarity(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)), np.array([0, 2]))
    with pytest.raises(ValueError, match="two references"):
        reference_similarity(np.ones((1, 3)), np.ones((1, 3)), np.ones((1, 3)), np.array([0]))


def test_build_normalizer_refuses_an_unknown_or_mismatched_expert():
    from dataclasses import replace

    from facelab.experiments import RunContext
    from facelab.experiments.lefv_normalization import build_normalizer

    ctx = RunContext(data_root=None, seed=0)
    small = configure_normalizer_mobilefacenet("smoke")
    with pytest.raises(ValueError, match="expert must be"):
        build_normalizer(replace(small, expert="vgg"), ctx)
    with pytest.raises(ValueError, match="distils"):
        build_normalizer(replace(small, expert_training=replace(small.expert_training, network="lefv_recognizer")), ctx)


def test_sface_path_draws_the_decoder_as_before():
    # the expert's shape probe must not consume random numbers: the SFace normalizer's decoder is the one a
    # seeded Decoder() gives right after a seeded SFaceNet()
    import torch

    from facelab.models.lefv_normalizer import Decoder, LEFVNormalizer
    from facelab.models.sface import SFaceNet

    torch.manual_seed(5)
    SFaceNet()
    expected = Decoder().state_dict()
    torch.manual_seed(5)
    got = LEFVNormalizer(SFaceNet()).decoder.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


class _Result:
    def __init__(self, metrics):
        self.metrics = metrics


def _before_after(rank1_before, rank1_after, se):
    return {"n_faces": 100, "n_references": 50, "rank1_before": rank1_before, "rank1_after": rank1_after,
            "rank1_change_se": se, "to_reference_before": {"mean": 0.5}, "to_reference_after": {"mean": 0.4},
            "self": {"mean": 0.3}, "match_rate_before": 0.9, "match_rate_after": 0.5, "false_match_rate_after": 0.01}


def test_the_dlib_claim_reads_rank1_with_its_paired_spread():
    from facelab.experiments.lefv_report import before_after_frame, normalization_claims

    fold = [{"fold": f, "tar": {"0.01": 0.5}} for f in (6, 7)]
    base = {"expert": "sface (pretrained, frozen)", "identity_preservation": {},
            "table4": {"all_normalized": {"per_fold": fold}, "original": {"per_fold": fold}}}
    worse = _Result(base | {"before_after": {"dlib": _before_after(0.8, 0.5, 0.05)}})
    mfn = _Result(base | {"expert": "mobilefacenet (distilled from SFace here, frozen)",
                          "before_after": {"dlib": _before_after(0.50, 0.52, 0.05)}})
    claims = normalization_claims(worse, mfn)
    dlib = [c for c in claims if "dlib" in c.claim]
    assert [c.verdict for c in dlib] == ["not reproduced", "not resolved"]  # -30 +- 5, then +2 +- 5
    assert "expert MobileFaceNet" in dlib[1].claim
    frame = before_after_frame(worse, mfn)
    assert list(frame["rank-1 after"]) == ["50.0%", "52.0%"]
    old = _Result(base | {"before_after": {"dlib": {"n_faces": 1}}})  # a result from before the rank-1 view
    assert isinstance(before_after_frame(old), str)
