"""Chapter 3 helpers (facelab.experiments.stn_alignment) on tiny synthetic inputs."""

import numpy as np
import torch

from facelab.experiments import get_experiment
from facelab.experiments.stn_alignment import (
    TRANSFORMS,
    choose_setting,
)
from facelab.experiments.stn_alignment_report import apply_matrices, ordering_claims
from facelab.models.stn import STNFaceNet
from facelab.results import Result


def test_choose_setting_follows_the_papers_reasoning():
    # Table 2 of the paper: setting 5 is best, setting 3 is 0.5% worse with fewer parameters.
    mse = {1: 0.005213, 2: 0.004795, 3: 0.004659, 4: 0.005169, 5: 0.004635}
    params = {1: 330_000, 2: 180_000, 3: 175_000, 4: 2_100_000, 5: 1_140_000}
    assert choose_setting(mse, params, tolerance=0.01) == 3
    assert choose_setting(mse, params, tolerance=0.0) == 5


def test_every_profile_configures_every_experiment():
    for name in ["stn_alignment.localization_mse"] + [f"stn_alignment.recognition_{t}" for t in TRANSFORMS]:
        exp = get_experiment(name)
        for profile in ("smoke", "small", "full"):
            cfg = exp.configure(profile)
            if hasattr(cfg, "output_size"):
                assert cfg.output_size % 16 == 0 and cfg.output_size <= cfg.input_size
                assert cfg.transform in name


def test_apply_matrices_reproduces_the_transformer_output():
    torch.manual_seed(0)
    model = STNFaceNet(transform="affine", input_size=40, output_size=32).eval()
    with torch.no_grad():  # a non-trivial prediction
        model.stn.localization.fc_out.bias.copy_(torch.tensor([0.7, 0.1, 0.05, -0.1, 0.75, -0.02]))
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        direct = model.align(x)
        m = model.stn.matrix(x).numpy()
    ours = apply_matrices(images, m, 32)
    np.testing.assert_allclose(ours.astype(float), (direct.clamp(0, 1) * 255).permute(0, 2, 3, 1).numpy(), atol=1.0)


def test_loose_crops_train_as_zero_to_one_pixels_with_flips():
    """Chapter 3's training input: PackedFaces over packed loose crops, [0, 1] pixels (no normalisation:
    the transformer samples zeros outside the crop), flipped with probability one."""
    from facelab.data.augment import FlipJitter
    from facelab.train.inputs import PackedFaces

    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    x, y = PackedFaces(images, [0, 1], [0, 1], size=4, augment=FlipJitter(1.0, 0), normalize=False)[1]
    assert y == 1 and x.shape == (3, 4, 4)
    np.testing.assert_allclose(x.numpy(), np.flip(images[1].transpose(2, 0, 1), 2) / 255.0, rtol=1e-6)
    x0, _ = PackedFaces(images, [0, 1], [0, 1], size=4, normalize=False)[1]
    np.testing.assert_allclose(x0.numpy(), images[1].transpose(2, 0, 1) / 255.0, rtol=1e-6)


def test_the_transform_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = STNFaceNet(transform="projective", input_size=40, output_size=32).train()
    x = torch.rand(2, 3, 40, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        aligned = model.align(x)
        emb = model.forward_features(x)
    assert aligned.dtype == torch.float32 and emb.dtype == torch.bfloat16  # the recognizer runs in bf16


def test_table1_is_read_off_the_model():
    from facelab.experiments import RunContext
    from facelab.experiments.stn_alignment import ArchitectureConfig, run_architecture
    from facelab.models.stn import RecognitionResNet

    metrics, _, _ = run_architecture(ArchitectureConfig(input_sizes=(32,)), RunContext())
    m = metrics["32"]
    assert [m[s]["filters"] for s in ("conv1", "conv2", "conv3", "conv4")] == [64, 128, 256, 512]
    assert [m[s]["residual_units"] for s in ("conv1", "conv2", "conv3", "conv4")] == [2, 4, 8, 2]
    assert m["conv4"]["output"] == [512, 2, 2] and m["head"]["embedding_size"] == 512
    assert m["total"]["parameters"] == sum(p.numel() for p in RecognitionResNet(input_size=32).parameters())
    assert m["total"]["gflops"] > 0


def _fake(transform, per_fold_acc):
    # 10 folds x 10 pairs; the first `k` pairs of each fold are correct, so accuracy is exact.
    score, label, fold = [], [], []
    for f, acc in enumerate(per_fold_acc):
        for i in range(10):
            same = i % 2 == 0
            right = i < round(acc * 10)
            score.append((1.0 if same else 0.0) if right else (0.0 if same else 1.0))
            label.append(int(same))
            fold.append(f)
    return Result(chapter="03", experiment=f"x_{transform}", profile="smoke", seed=0, config={}, metrics={},
                  arrays={"score": score, "label": label, "fold": fold}, provenance={})


def test_ordering_claims_use_the_fold_spread():
    good = _fake("similarity", [1.0] * 10)
    bad = _fake("identity", [0.5] * 10)
    rows = {c.claim: c.verdict for c in ordering_claims({"identity": bad, "similarity": good})}
    assert rows["LFW: similarity beats identity"] == "reproduced"
    rows = {c.claim: c.verdict for c in ordering_claims({"identity": good, "similarity": bad})}
    assert rows["LFW: similarity beats identity"] == "not reproduced"
    noisy = _fake("affine", [1.0, 0.6] * 5)
    rows = {c.claim: c.verdict for c in ordering_claims({"identity": _fake("identity", [0.8] * 10), "affine": noisy})}
    assert rows["LFW: affine beats identity"] == "not resolved"


def test_robustness_claims_compare_accuracy_drops():
    from facelab.experiments.stn_alignment_report import robustness_claims

    ident = _fake("identity", [1.0] * 10)
    ident.arrays["perturbed_score"] = _fake("identity", [0.5] * 10).arrays["score"]
    learned = _fake("affine", [1.0] * 10)
    learned.arrays["perturbed_score"] = _fake("affine", [0.9] * 10).arrays["score"]
    (claim,) = robustness_claims({"identity": ident, "affine": learned})
    assert claim.verdict == "reproduced"
    (claim,) = robustness_claims({"identity": learned, "affine": ident})
    assert claim.verdict == "not reproduced"


def test_sampling_inside_detects_a_collapsed_transformer():
    from facelab.experiments.stn_alignment_report import sampling_inside

    ok = Result(chapter="03", experiment="x", profile="smoke", seed=0, config={"output_size": 16}, metrics={},
                arrays={"matrix_clean": [np.diag([0.8, 0.8, 1.0]).tolist()]}, provenance={})
    assert sampling_inside(ok) == 1.0
    off = np.eye(3)
    off[0, 2] = 5.0  # shifted far right of the crop
    ok.arrays["matrix_clean"] = [off.tolist()]
    assert sampling_inside(ok) == 0.0


def test_initial_gradient_norms_show_why_the_localization_net_is_clipped():
    from facelab.experiments.stn_alignment_report import initial_gradient_norms
    from facelab.train.grad_clip import clip_grad_norm_per_tensor

    cfg = get_experiment("stn_alignment.recognition_affine").configure("smoke")
    norms = initial_gradient_norms(cfg, n_classes=20, batch=8)
    assert set(norms) == {"localization output layer", "localization (all)", "recognizer"}
    assert all(np.isfinite(v) and v > 0 for v in norms.values())
    # with ArcFace's scale the localization output layer gets a gradient far above its weights (~0)
    assert norms["localization output layer"] > 100
    # the clip used by run_recognition brings every localization tensor to at most its bound
    torch.manual_seed(0)
    model = STNFaceNet(transform="affine", input_size=cfg.input_size, output_size=cfg.output_size)
    clip_grad_norm_per_tensor(model.stn, cfg.stn_grad_clip)
    model.train()
    (1e4 * model.forward_features(torch.rand(4, 3, cfg.input_size, cfg.input_size)).sum()).backward()
    assert max(p.grad.norm().item() for p in model.stn.parameters() if p.grad is not None) <= cfg.stn_grad_clip * 1.0001


def test_score_precision_notes_flag_rounding_that_changes_accuracy():
    from facelab.experiments.stn_alignment_report import score_precision_notes

    r = _fake("affine", [1.0, 0.6] * 5)
    r.arrays["perturbed_score"] = list(r.arrays["score"])
    r.metrics = {"lfw_accuracy": 0.8, "perturbed_lfw_accuracy": 0.8}
    assert score_precision_notes({"affine": r}) == []  # the stored scores give the run's accuracy
    r.metrics["lfw_accuracy"] = 0.83  # as if the unrounded scores had separated three more pairs
    (note,) = score_precision_notes({"affine": r})
    assert "affine, LFW" in note and "83.00%" in note and "80.00%" in note


def test_scores_are_stored_at_float32_precision():
    from facelab.experiments.stn_alignment import _f32

    a = np.array([0.9999961, 0.99999, -0.5, 1e-9, 0.123456789])
    stored = _f32(a)
    assert np.array_equal(np.asarray(stored, np.float32), a.astype(np.float32))
    assert stored[0] != stored[1]  # 5-decimal rounding would have made these equal


def test_run_times_count_training_from_the_history_after_a_resume():
    from types import SimpleNamespace

    from facelab.experiments.stn_alignment_report import run_times

    history = {"seconds": [100.0, 110.0], "images_per_s": [40.0, 38.0], "train_loss": [40.0, 30.0],
               "train_acc": [0.0, 0.0]}
    r = Result(chapter="03", experiment="x", profile="small", seed=0, config={"output_size": 16},
               metrics={"train_seconds": 2.0, "eval_seconds": 50.0, "history": history, "parameters": 10,
                        "localization_parameters": 0},
               arrays={"matrix_clean": [np.diag([0.8, 0.8, 1.0]).tolist()], "score": [0.1, 0.9]}, provenance={})
    row = run_times({"identity": SimpleNamespace(result=r)}).iloc[0]
    assert row["train s"] == 210.0 and row["this run s"] == 52.0 and row["epochs"] == 2
