"""Training speed levers (facelab.train.speed, TrainStep), the batched data path and their numerics."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from facelab.data.augment import FlipJitter, flip_shift_batch, hflip, shift
from facelab.data.datasets import AlignedFaces
from facelab.train import speed as speed_mod
from facelab.train.inputs import Batch, ModelInput, PackedFaces
from facelab.train.loop import TrainConfig, TrainStep, checkpoint_key, fit, make_optimizer
from facelab.train.speed import Speed, bf16_support, cpu_flags, torch_threads

XEON = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16\n"
EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\n"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture
def native_bf16(monkeypatch):
    """Make bf16 count as native here: CPUs without it emulate bf16 with the same rounding, so the
    numerics tests run everywhere (only slower)."""
    monkeypatch.setattr(speed_mod, "cpu_flags", lambda cpuinfo=None: frozenset({"amx_bf16"}))


class TinyBN(nn.Module):
    """Conv -> BatchNorm -> ReLU -> pool -> linear: the layers whose dtypes autocast treats differently."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, classes)

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def tiny(seed: int = 0) -> TinyBN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyBN()


def toy_batch(n: int = 16, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 5


def fake_prepared(n: int = 24, seed: int = 0):
    crops = np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
    return SimpleNamespace(manifest=pd.DataFrame({"identity": [f"id{i % 4}" for i in range(n)]}), aligned=crops)


# ----------------------------------------------------------------------------- CPU detection, levers


def test_cpu_flags_and_bf16_support_from_cpuinfo():
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= cpu_flags(XEON)
    assert cpu_flags(ARM) == {"fp", "asimd", "sve"} and cpu_flags("") == frozenset()
    ok, why = bf16_support("cpu", XEON)
    assert ok and "amx_bf16" in why
    ok, why = bf16_support("cpu", EPYC)
    assert not ok and "stays float32" in why


def test_speed_label_resolve_and_fallback(monkeypatch):
    assert Speed().label == "fp32" and Speed(channels_last=True, autocast_bf16=True).label == "bf16+channels_last"
    monkeypatch.setattr(speed_mod, "cpu_flags", lambda cpuinfo=None: frozenset({"avx2"}))
    r = Speed(autocast_bf16=True, threads=1).resolve()
    assert r["autocast_bf16"] and not r["bf16_used"] and "neither amx_bf16 nor avx512_bf16" in r["bf16_reason"]
    assert r["threads"] == 1
    with pytest.raises(ValueError, match="threads"):
        Speed(threads=0).check()


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------- the batched data path


def test_flip_shift_batch_equals_per_image_opencv():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 10, 12, 3), dtype=np.uint8)
    flip = np.array([0, 1, 0, 1, 1, 0], bool)
    dx, dy = np.array([0, 3, -4, 11, -2, 1]), np.array([0, -1, 4, 2, -9, 0])
    out = flip_shift_batch(images, flip, dx, dy)
    for k in range(len(images)):
        ref = hflip(images[k]) if flip[k] else images[k]
        ref = shift(ref, int(dx[k]), int(dy[k]))  # cv2.warpAffine, nearest, replicated border
        np.testing.assert_array_equal(out[k], ref)
    assert cv2 is not None
    with pytest.raises(ValueError, match="one flip"):
        flip_shift_batch(images, flip[:2], dx, dy)


@pytest.mark.parametrize("size,augment", [(113, FlipJitter(0.5, 4)), (112, FlipJitter(0.5, 4)), (40, None)])
def test_packed_faces_equal_the_per_sample_path(size, augment):
    prepared = fake_prepared()
    rows = [5, 3, 17, 0, 9, 21, 2, 11]
    faces = AlignedFaces(prepared, rows, augment=augment, seed=7)
    faces.set_epoch(3)
    per_sample = ModelInput(faces, size)
    packed = PackedFaces.from_faces(faces, size)
    batch = packed.__getitems__([6, 1, 4, 0])
    assert isinstance(batch, Batch) and batch.images.shape == (4, 3, size, size)
    assert batch.images.is_contiguous()
    expected = torch.stack([per_sample[i][0] for i in (6, 1, 4, 0)])
    assert torch.equal(batch.images, expected)  # bit for bit, not just close
    assert batch.labels.tolist() == [int(faces.labels[i]) for i in (6, 1, 4, 0)]
    faces.set_epoch(4)  # the epoch is shared with the faces it was built from
    assert packed.epoch == 4 and torch.equal(packed[0][0], per_sample[0][0])
    packed.set_epoch(3)
    assert faces.epoch == 3
    # a sample's augmentation does not depend on the batch it is in
    assert torch.equal(packed.__getitems__([4, 7]).images[0], batch.images[2])
    assert torch.equal(packed[1][0], batch.images[1])


def test_packed_faces_draws_change_with_the_epoch_and_reject_bad_input():
    packed = PackedFaces(fake_prepared().aligned, range(24), np.zeros(24), size=112, augment=FlipJitter(1.0, 4))
    a = packed.__getitems__(list(range(8))).images
    packed.set_epoch(1)
    assert not torch.equal(a, packed.__getitems__(list(range(8))).images)
    with pytest.raises(ValueError, match="uint8"):
        PackedFaces(np.zeros((2, 8, 8, 3), np.float32), [0], [0], size=8)
    with pytest.raises(ValueError, match="rows must lie"):
        PackedFaces(np.zeros((2, 8, 8, 3), np.uint8), [2], [0], size=8)


class TinyFace(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten())
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.drop(self.body(x)))


def test_packed_faces_under_a_subset_give_whole_batches():
    faces = AlignedFaces(fake_prepared(), augment=FlipJitter(0.5, 4), seed=1)
    subset = torch.utils.data.Subset(PackedFaces.from_faces(faces, 32), list(range(10)))
    history = fit(TinyFace(len(faces.classes)), subset, TrainConfig(epochs=1, batch_size=4), progress=False)
    assert history.speed["data_path"] == "batched"


def test_fit_on_packed_faces_equals_fit_on_the_per_sample_path():
    prepared = fake_prepared()
    faces = AlignedFaces(prepared, augment=FlipJitter(0.5, 4), seed=2)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05)
    out = {}
    for name, data in (("per-sample", ModelInput(faces, 24)), ("batched", PackedFaces.from_faces(faces, 24))):
        torch.manual_seed(0)
        model = TinyFace(len(faces.classes))
        history = fit(model, data, cfg, seed=4, progress=False)
        assert history.speed["data_path"] == name and len(history.data_seconds) == 2
        out[name] = (history.train_loss, [p.detach().clone() for p in model.parameters()])
    assert out["batched"][0] == out["per-sample"][0]
    for p, q in zip(out["batched"][1], out["per-sample"][1]):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------- numerics of the levers


def _one_step(speed: Speed, x, y):
    model = tiny()
    before = [p.detach().clone() for p in model.parameters()]
    step = TrainStep(model, make_optimizer({"": model}, TrainConfig(epochs=1, lr=0.1, weight_decay=0.0)),
                     speed=speed)
    loss, correct = step(x, y)
    step.restore()
    return model, loss, correct, [p.detach() - b for p, b in zip(model.parameters(), before)]


def test_bf16_step_matches_fp32_within_tolerance(native_bf16):
    """One SGD step under bf16 autocast vs float32 on the same batch.

    Tolerances: the loss agrees to 1e-2 (relative); the whole parameter update (all tensors
    concatenated) to 15% of its norm, and each tensor's update points the same way (cosine >=
    0.99) unless its float32 update is ~0 (the conv biases in front of batch norm, whose gradient
    is zero in exact arithmetic). bf16 keeps 8 mantissa bits (rounding 2^-9 ~ 0.2% per product),
    and batch norm's backward subtracts the batch mean of the gradient, which amplifies the
    relative error: this model measured ~7% on the update, 1e-5 on the loss."""
    x, y = toy_batch()
    _, loss32, _, upd32 = _one_step(Speed(), x, y)
    model, loss16, _, upd16 = _one_step(Speed(autocast_bf16=True), x, y)
    assert loss16.dtype == torch.float32  # the loss is computed on float32 logits
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert abs(loss16.item() - loss32.item()) <= 1e-2 * abs(loss32.item())
    flat16, flat32 = torch.cat([u.flatten() for u in upd16]), torch.cat([u.flatten() for u in upd32])
    assert (flat16 - flat32).norm() <= 0.15 * flat32.norm()
    largest = max(u.norm() for u in upd32)
    for a, b in zip(upd16, upd32):
        if b.norm() > 1e-3 * largest:
            assert nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) >= 0.99
    # and it is really bf16: the two steps are not bit-identical
    assert not torch.equal(flat16, flat32)


def test_autocast_keeps_batch_norm_statistics_float32(native_bf16):
    """What CPU autocast does to a conv -> BN block: batch_norm is on neither of CPU autocast's
    lists, so it runs on the conv's bf16 output; its weights and running statistics stay float32
    and its batch statistics are accumulated in float32 (they equal float32 batch norm's on the
    same values to ~1e-7); only its output is rounded to bf16, which the next conv would do anyway."""
    model = tiny()
    reference = tiny().body[1].train()
    with speed_mod.autocast("cpu", True):
        conv_out = model.body[0](toy_batch()[0])
        bn_out = model.body[1](conv_out)
    assert conv_out.dtype == torch.bfloat16 and bn_out.dtype == torch.bfloat16
    assert model.body[1].running_mean.dtype == torch.float32 and model.body[1].weight.dtype == torch.float32
    reference(conv_out.float())
    torch.testing.assert_close(model.body[1].running_mean, reference.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.body[1].running_var, reference.running_var, rtol=1e-5, atol=1e-6)


def test_channels_last_step_matches_fp32_and_the_model_is_given_back_contiguous():
    x, y = toy_batch()
    _, loss_a, _, upd_a = _one_step(Speed(), x, y)
    model, loss_b, _, upd_b = _one_step(Speed(channels_last=True), x, y)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    for a, b in zip(upd_a, upd_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert all(p.is_contiguous() for p in model.parameters())


@pytest.mark.parametrize("levers", [Speed(), Speed(channels_last=True), Speed(autocast_bf16=True),
                                    Speed(autocast_bf16=True, channels_last=True)], ids=lambda s: s.label)
def test_same_config_twice_same_weights(levers, native_bf16):
    x, y = toy_batch(24)
    data = torch.utils.data.TensorDataset(x, y)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, speed=levers)
    runs = []
    for _ in range(2):
        model = tiny()
        history = fit(model, data, cfg, seed=5, progress=False)
        runs.append((history.train_loss, [p.detach().clone() for p in model.parameters()]))
        assert history.speed["label"] == levers.label
        assert history.speed["bf16_used"] == levers.autocast_bf16
        assert history.as_record()["speed"] == history.speed and "speed" not in history.as_dict()
        assert all(isinstance(v, list) for v in history.as_dict().values())
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1]):
        assert torch.equal(p, q)


def test_fit_with_a_head_runs_the_head_in_float32(native_bf16):
    from facelab.losses.margin import ArcFaceHead

    x, y = toy_batch(16)
    seen = []

    class Spy(ArcFaceHead):
        def forward(self, emb, labels):
            seen.append(emb.dtype)
            return super().forward(emb, labels)

    head = Spy(16, 5)
    fit(tiny(), torch.utils.data.TensorDataset(x, y), TrainConfig(epochs=1, batch_size=8,
                                                                  speed=Speed(autocast_bf16=True)),
        head=head, progress=False)
    assert seen and all(d == torch.float32 for d in seen)


def test_checkpoint_key_ignores_default_levers_and_threads():
    from facelab.results import config_hash
    import dataclasses

    cfg = TrainConfig(epochs=2)
    legacy = dataclasses.asdict(cfg)
    legacy.pop("speed")
    # the key of a run with every lever off is the key written before the levers existed
    assert checkpoint_key(cfg, seed=1, n_train=10) == config_hash({"config": legacy, "seed": 1, "n_train": 10})
    assert checkpoint_key(TrainConfig(epochs=2, speed=Speed(threads=1)), seed=1, n_train=10) == \
        checkpoint_key(cfg, seed=1, n_train=10)
    assert checkpoint_key(TrainConfig(epochs=2, speed=Speed(autocast_bf16=True)), seed=1, n_train=10) != \
        checkpoint_key(cfg, seed=1, n_train=10)
