"""The template protocol and TAR at FAR (facelab.eval.templates)."""

from __future__ import annotations

import numpy as np
import pytest

from facelab.eval.templates import build_templates, evaluate_templates, fold_scores, tar_at_far, template_descriptors


def test_cfp_shaped_protocol_gives_the_stated_counts():
    # 500 identities x 14 images, 10 folds of 50 identities: 1,050 genuine and 60,025 impostor per fold
    ids = [f"id{k:03d}" for k in range(500) for _ in range(14)]
    folds = {f"id{k:03d}": k // 50 for k in range(500)}
    t = build_templates(ids, folds)
    assert len(t) == 3500 and all(len(m) == 2 for m in t.members)
    rng = np.random.default_rng(0)
    desc = template_descriptors(rng.normal(size=(len(ids), 8)), t)
    g, i = fold_scores(desc, t, 3)
    assert (len(g), len(i)) == (1050, 60025)
    # every image is in exactly one template
    assert sorted(np.concatenate(t.members).tolist()) == list(range(len(ids)))


def test_tar_at_far_hand_computed():
    genuine = np.array([0.9, 0.8, 0.7, 0.2])
    impostor = np.array([0.75, 0.5, 0.4, 0.3, 0.1, 0.05, 0.0, -0.1, -0.2, -0.3])
    # FAR <= 0.1 allows the threshold just above 0.5 (one impostor of ten accepted at 0.75): TAR 3/4
    # FAR = 0: threshold above 0.75: TAR 2/4
    out = tar_at_far(genuine, impostor, (0.0, 0.1, 0.5))
    assert out[0.0] == 0.5 and out[0.1] == 0.75
    assert out[0.5] == 1.0  # at 0.2, four impostors of ten (0.4 <= 0.5) and every genuine pass
    assert tar_at_far(genuine, impostor, (1.0,))[1.0] == 1.0


def test_perfect_embeddings_accept_everything_at_any_far():
    ids = [f"p{k}" for k in range(20) for _ in range(4)]
    folds = {f"p{k}": k % 2 for k in range(20)}
    t = build_templates(ids, folds, templates_per_identity=2)
    emb = np.eye(20)[[k for k in range(20) for _ in range(4)]]
    out = evaluate_templates(emb, t)
    assert out["tar_far_1e-3"]["mean"] == 1.0 and out["n_folds"] == 2
    assert out["per_fold"][0]["genuine"] == 10


def test_identities_with_too_few_images_are_left_out():
    ids = ["a"] * 14 + ["b"] * 5
    t = build_templates(ids, {"a": 0, "b": 0})
    assert set(t.identity.tolist()) == {"a"}


def test_a_fold_with_one_identity_is_skipped_and_named():
    ids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    t = build_templates(ids, {"a": 0, "b": 0, "c": 1}, templates_per_identity=2)
    out = evaluate_templates(np.random.default_rng(0).normal(size=(12, 4)), t)
    assert out["skipped_folds"] == [1] and out["n_folds"] == 1
    with pytest.raises(ValueError, match="genuine and impostor"):
        tar_at_far(np.array([0.5]), np.array([]))
