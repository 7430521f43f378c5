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
