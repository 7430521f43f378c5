"""Chapter 2 (SqueezeFacePoseNet): training subsets, model inputs, pose-protocol scoring, experiments."""

import numpy as np
import pytest
import torch

from facelab.data.pose_protocol import build_protocol, count_table
from facelab.data.subsets import matched_subsets
from facelab.eval.pose_verification import DET_FAR_GRID, score_pairs, summarize_scores, template_descriptors
from facelab.train.inputs import MEAN, STD, ModelInput, to_model_input


def _pool():
    # 3 identities with many images, 12 with 2-3
    pool = {f"deep{i}": [f"deep{i}/{j}" for j in range(12 - i)] for i in range(3)}
    pool.update({f"wide{i:02d}": [f"wide{i:02d}/{j}" for j in range(2 + i % 2)] for i in range(12)})
    return pool


def test_matched_subsets_equal_size_disjoint_and_shaped():
    subs = matched_subsets(_pool(), few=2, deep_min=10, n_images=20)
    n_wide = sum(len(v) for v in subs.wide.values())
    n_deep = sum(len(v) for v in subs.deep.values())
    assert n_wide == n_deep == 20
    assert not set(subs.wide) & set(subs.deep)
    assert all(len(v) <= 2 for v in subs.wide.values())
    assert len(subs.wide) == 10 and len(subs.deep) == 2  # 12 + 11 -> cut at 20
    assert list(subs.deep) == ["deep0", "deep1"]
    assert subs == matched_subsets(_pool(), few=2, deep_min=10, n_images=20)


def test_matched_subsets_largest_and_errors():
    subs = matched_subsets(_pool(), few=2, deep_min=10)
    assert subs.n_images == 24  # wide: 12 identities x 2; deep: 12 + 11 + 10 >= 24
    with pytest.raises(ValueError, match="at most 24"):
        matched_subsets(_pool(), few=2, deep_min=10, n_images=25)
    with pytest.raises(ValueError, match="few < deep_min"):
        matched_subsets(_pool(), few=10, deep_min=10)


def test_model_input_resizes_and_normalises():
    x = torch.full((2, 3, 112, 112), 0.75)
    y = to_model_input(x, 113)
    assert y.shape == (2, 3, 113, 113)
    assert torch.allclose(y, torch.full_like(y, (0.75 - MEAN) / STD), atol=1e-5)
    assert to_model_input(x, 224).shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="expected images"):
        to_model_input(torch.zeros(3, 112, 112), 113)
    ds = ModelInput([(x[0], 4)], 113)
    img, label = ds[0]
    assert img.shape == (3, 113, 113) and label == 4 and len(ds) == 1


def test_score_pairs_against_direct_formulas():
    rng = np.random.default_rng(0)
    t = rng.random((5, 7))
    pairs = np.array([[0, 1], [2, 3], [4, 0]])
    chi = score_pairs(t, pairs, "chi2")
    for s, (a, b) in zip(chi, pairs):
        assert s == pytest.approx(-np.sum((t[a] - t[b]) ** 2 / (t[a] + t[b])))
    cos = score_pairs(t, pairs, "cosine")
    for s, (a, b) in zip(cos, pairs):
        assert s == pytest.approx(t[a] @ t[b] / np.linalg.norm(t[a]) / np.linalg.norm(t[b]))
    with pytest.raises(ValueError, match="unknown score"):
        score_pairs(t, pairs, "euclid")


def test_summarize_scores_eer_and_det():
    genuine = np.array([True] * 4 + [False] * 4)
    perfect = summarize_scores(np.array([5, 6, 7, 8, 1, 2, 3, 4.0]), genuine)
    assert perfect.eer == 0 and perfect.n_genuine == 4 and len(perfect.det_frr) == len(DET_FAR_GRID)
    # one genuine below one impostor: EER 1/4
    s = summarize_scores(np.array([5, 6, 7, 2.5, 1, 2, 3, 4.0]), genuine)
    assert s.eer == pytest.approx(0.25)
    assert s.eer_se == pytest.approx(np.sqrt(0.25 * 0.75 / 4))
    with pytest.raises(ValueError, match="genuine and impostor"):
        summarize_scores(np.ones(3), np.ones(3, bool))


def test_templates_average_descriptors_and_protocol_counts():
    layout = {f"u{u}": {"frontal": [f"u{u}/f{i}" for i in range(10)], "profile": [f"u{u}/p{i}" for i in range(4)]}
              for u in range(6)}
    rng = np.random.default_rng(1)
    desc = {img: rng.random(4) for u in layout.values() for imgs in u.values() for img in imgs}
    proto = build_protocol(layout, "frontal", "profile", 5)
    t = template_descriptors(proto, desc)
    first = proto.templates[0]
    assert np.allclose(t[0], np.mean([desc[i] for i in first.images], axis=0))
    # profile templates of 5 images fall back to 2 images (4 < 2 x 5)
    assert {len(x.images) for x in proto.templates if x.pose == "profile"} == {2}
    from facelab.experiments.squeezefaceposenet import evaluate_pose_protocol

    eer, extra, examples = evaluate_pose_protocol(desc, layout)
    table = {(r["images_per_template"], r["pose_a"], r["pose_b"]): r
             for r in count_table(layout, ("frontal", "profile"))}
    for key, counts in extra["counts"].items():
        k, combo = int(key[1]), key.split("_")[1]
        pose = {"f": "frontal", "p": "profile"}
        row = table[(k, pose[combo[0]], pose[combo[1]])]
        assert (counts["genuine"], counts["impostor"]) == (row["genuine"], row["impostor"])
        assert 0 <= eer["chi2"][key] <= 1 and 0 <= eer["cosine"][key] <= 1
    assert set(examples) == {"t1_ff", "t1_pp", "t1_fp"}
    del desc["u0/f0"]
    with pytest.raises(KeyError, match="u0/f0"):
        template_descriptors(build_protocol(layout, "frontal", "frontal", 1), desc)


def test_experiments_registered_and_configured_per_profile():
    from facelab.experiments import get_experiment
    from facelab.experiments.squeezefaceposenet import ALL_MODELS

    for profile in ("smoke", "small", "full"):
        assert get_experiment("squeezefaceposenet.complexity_latency").configure(profile).threads
        for m in ALL_MODELS:
            cfg = get_experiment(f"squeezefaceposenet.train.{m}").configure(profile)
            assert cfg.model == m and cfg.epochs >= 1
        for s in ("wide", "deep", "wide_then_deep"):
            cfg = get_experiment(f"squeezefaceposenet.data.{s}").configure(profile)
            assert cfg.subset == s and (cfg.finetune_epochs > 0) == (s == "wide_then_deep")
    with pytest.raises(ValueError, match="unknown profile"):
        get_experiment("squeezefaceposenet.train.resnet50").configure("huge")


def _fake_train_result(shift: float, name: str = "squeezefaceposenet.train.squeezefaceposenet"):
    """A Result shaped like run_train's, from synthetic descriptors whose genuine pairs are closer by ``shift``."""
    from facelab.experiments.squeezefaceposenet import evaluate_pose_protocol
    from facelab.results import Result

    rng = np.random.default_rng(2)
    layout = {f"u{u:02d}": {"frontal": [f"u{u:02d}/f{i}" for i in range(10)],
                            "profile": [f"u{u:02d}/p{i}" for i in range(4)]} for u in range(12)}
    centres = rng.random((12, 16))
    desc = {img: np.abs(shift * centres[u] + rng.random(16)) for u, (user, poses) in enumerate(layout.items())
            for imgs in poses.values() for img in imgs}
    eer, extra, examples = evaluate_pose_protocol(desc, layout)
    from facelab.eval.pose_verification import DET_FAR_GRID

    metrics = {"eer": eer, "counts": extra["counts"], "cfp_users": 12, "seconds": 60.0,
               "stages": {"all": {"train_images": 10, "identities": 2, "val_images": 0,
                                  "history": {"train_loss": [1.0], "train_acc": [0.5], "val_loss": [1.1],
                                              "val_acc": [0.4], "lr": [0.01], "seconds": [3.0],
                                              "images_per_s": [3.3]}}}}
    arrays = {"summaries": extra["summaries"], "examples": examples, "det_far_grid": list(DET_FAR_GRID)}
    return Result(chapter="02", experiment=name, profile="smoke", seed=0, config={}, metrics=metrics,
                  arrays=arrays, provenance={"wall_time_s": 60.0})


def test_report_tables_curves_and_claims():
    from facelab.experiments import squeezefaceposenet_report as report

    good, bad = _fake_train_result(3.0), _fake_train_result(0.2)
    frame = report.runs_frame({"squeezefaceposenet": good, "squeezefaceposenet_dwc": bad})
    assert list(frame["run"]) == ["SqueezeFacePoseNet", "+DWC"]
    assert "cos EER 1 img F-P %" in frame and frame.loc[0, "train images"] == 10
    assert frame.loc[0, "cos EER 1 img F-F %"] == pytest.approx(100 * good.metrics["eer"]["cosine"]["t1_ff"], abs=0.01)
    curves = report.det_curves(good)
    assert len(curves) == 6 and all(len(f) == len(r) for f, r in curves.values())
    assert len(report.history_frame(good)) == 1
    checks = report.claims({"squeezefaceposenet": good, "squeezefaceposenet_dwc": bad}, {"wide": bad, "deep": good})
    by_claim = {c.claim: c.verdict for c in checks}
    dwc = next(k for k in by_claim if k.startswith("DWC costs"))
    assert by_claim[dwc] == "reproduced"  # the separable-by-3 model beats the nearly random one
    deep = next(k for k in by_claim if k.startswith("many images"))
    assert by_claim[deep] == "reproduced"
