"""Distillation: the mimic loss against its closed form, flip-aware targets, and a student that learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from facelab.data.augment import FlipJitter
from facelab.train.distill import Mimic, MimicHead, agreement, decision_agreement, mimic_loss, pool_centre, relational_loss
from facelab.train.inputs import PackedFaces
from facelab.train.loop import Regression, TrainConfig, fit


def test_mimic_loss_is_half_of_uniface_eq3():
    """Uniface eq. 3 is ||s/|s| - t/|t| ||^2 = 2 (1 - cos); the mimic loss is its batch mean, halved."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 16, generator=g) * 3, torch.randn(6, 16, generator=g)
    eq3 = ((s / s.norm(dim=1, keepdim=True) - t / t.norm(dim=1, keepdim=True)) ** 2).sum(1)
    assert mimic_loss(s, t).item() == pytest.approx(0.5 * eq3.mean().item(), rel=1e-6)
    assert mimic_loss(t * 5, t).item() == pytest.approx(0.0, abs=1e-6)  # the scale does not matter
    assert mimic_loss(-t, t).item() == pytest.approx(2.0, rel=1e-6)


def test_relational_loss_sees_only_pairwise_structure():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(5, 8, generator=g)
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=g))[0]
    assert relational_loss(t @ rotation, t).item() == pytest.approx(0.0, abs=1e-6)  # same similarities
    mean_only = t.mean(0, keepdim=True).expand_as(t)  # every face mapped to the mean
    s, tn = nn.functional.normalize(mean_only, dim=1), nn.functional.normalize(t, dim=1)
    expected = ((s @ s.T - tn @ tn.T)[~torch.eye(5, dtype=torch.bool)] ** 2).mean()
    assert relational_loss(mean_only, t).item() == pytest.approx(expected.item(), rel=1e-6)
    assert relational_loss(t[:1], t[:1]).item() == 0.0


def test_centring_removes_the_shortcut_of_the_mean():
    """Predicting the pool's mean embedding scores well on raw targets that share a common part,
    and no better than chance once the targets are centred."""
    g = torch.Generator().manual_seed(2)
    common = torch.randn(1, 32, generator=g) * 3
    targets = nn.functional.normalize(common + torch.randn(200, 32, generator=g), dim=1)
    mean = targets.mean(0, keepdim=True).expand_as(targets)
    raw = Mimic()(mean, targets)[0].item()
    centred = Mimic(centre=pool_centre(targets.numpy()))(mean - targets.mean(0), targets)[0].item()
    assert raw < 0.2 and centred > 0.9


def test_mimic_head_projects_only_when_the_sizes_differ():
    assert isinstance(MimicHead(128, 128).proj, nn.Identity)
    head = MimicHead(512, 128)
    assert head(torch.zeros(3, 512)).shape == (3, 128) and head.proj.bias is None


def test_a_normalised_head_hands_on_descriptors_that_barely_vary():
    """A descriptor that varies by 1e-2 around a large common value (a cosine of ~1 between any two
    faces): batch-norm first standardises it (its eps, 1e-5, is well below that variance of 1e-4)."""
    g = torch.Generator().manual_seed(0)
    x = 50.0 + 1e-2 * torch.randn(16, 8, generator=g)
    head = MimicHead(8, 4, norm=True).train()
    z = head.norm(x)
    assert torch.allclose(z.mean(0), torch.zeros(8), atol=1e-3) and (z.std(0) > 0.5).all()
    assert head(x).shape == (16, 4) and isinstance(MimicHead(8, 8, norm=True).proj, nn.Linear)


def test_a_flipped_sample_gets_its_mirrors_target():
    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    targets = np.stack([np.full((6, 4), 1.0), np.full((6, 4), -1.0)], axis=1).astype(np.float32)
    targets[:, :, 0] = np.arange(6)[:, None]  # which sample
    augment = FlipJitter(flip_p=0.5, max_shift=0)
    data = PackedFaces(images, np.arange(6), targets, size=16, augment=augment, seed=3)
    batch = data.__getitems__(list(range(6)))
    flip, _, _ = augment.draw_batch(3, 0, np.arange(6))
    assert flip.any() and not flip.all()
    for i in range(6):
        assert batch.labels[i, 0] == i and batch.labels[i, 1] == (-1.0 if flip[i] else 1.0)
        expected = images[i, :, ::-1] if flip[i] else images[i]
        got = ((batch.images[i].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).round()
        np.testing.assert_allclose(got, expected, atol=1)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                  nn.Flatten(), nn.Linear(128, 24))

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.body(x)


def test_a_student_learns_to_mimic_a_teacher():
    """The teacher is a fixed random function of the image; the student, trained with the mimic loss
    through a projection (24 -> 12), ends close to it on its training images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 16, 16, 3), dtype=np.uint8)
    w = rng.normal(size=(4 * 4 * 3, 12))

    def teacher(x):  # a fixed random linear function of the 4x4 mean-colour grid
        grid = x.reshape(len(x), 4, 4, 4, 4, 3).astype(np.float64).mean(axis=(2, 4)) / 255 - 0.5
        return grid.reshape(len(x), -1) @ w

    targets = np.stack([teacher(images), teacher(images[:, :, ::-1])], axis=1)
    targets /= np.linalg.norm(targets, axis=2, keepdims=True)
    data = PackedFaces(images, np.arange(96), targets.astype(np.float32), size=16, augment=FlipJitter(0.5, 0), seed=0)
    torch.manual_seed(0)
    model, head = Tiny(), MimicHead(24, 12)
    history = fit(model, data, TrainConfig(epochs=30, batch_size=16, lr=1e-2, optimizer="adamw", weight_decay=0.0,
                                           patience=100), head=head, objective=Mimic(), progress=False)
    assert history.metric == "cosine to the teacher"
    assert history.train_acc[-1] > 0.8 and history.train_acc[-1] > history.train_acc[0] + 0.3
    with torch.no_grad():
        model.eval()
        batch = data.__getitems__(list(range(96)))  # the last epoch's views, with their targets
        student = head(model.forward_features(batch.images)).numpy()
    assert agreement(student, batch.labels.numpy())["cosine_mean"] > 0.8


def test_regression_with_adam_through_fit():
    """fit with the Regression objective and Adam learns a linear target (chapter 3's landmark regression)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    targets = (images.reshape(64, -1, 3).mean(1) / 255).astype(np.float32)  # mean colour
    data = PackedFaces(images, np.arange(64), targets, size=16)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    history = fit(model, data, TrainConfig(epochs=30, batch_size=16, lr=0.05, optimizer="adam", weight_decay=0.0,
                                           patience=100), objective=Regression(), progress=False)
    assert history.metric == "mse" and history.train_loss[-1] < 0.1 * history.train_loss[0]


def test_decision_agreement_counts_pairs_decided_alike():
    rng = np.random.default_rng(0)
    labels = np.tile([1, 0], 50)
    folds = np.repeat(np.arange(1, 11), 10)
    teacher = labels + rng.normal(0, 0.3, 100)
    assert decision_agreement(teacher, teacher, labels, folds) == 1.0
    assert 0.3 < decision_agreement(rng.normal(size=100), teacher, labels, folds) < 0.8


def test_centred_agreement_sees_a_student_of_centred_targets():
    # a teacher whose embeddings share a large common component; a student that learned the centred
    # targets exactly: raw cosine low, centred cosine 1
    rng = np.random.default_rng(0)
    common = np.zeros(16)
    common[0] = 10.0
    teacher = common + rng.normal(size=(200, 16))
    student = teacher - teacher.mean(axis=0)
    a = agreement(student, teacher)
    assert a["centred_cosine_mean"] > 0.999
    assert a["cosine_mean"] < 0.5
    # an unrelated student agrees with nobody, either way
    b = agreement(rng.normal(size=(200, 16)), teacher)
    assert abs(b["centred_cosine_mean"]) < 0.1


def test_embed_crops_views_match_the_flip_sum_and_fp32():
    import torch

    from facelab.train.distill import embed_crops, embed_crops_views
    from facelab.train.speed import Speed

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8 * 30 * 30, 6)

        def forward_features(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    net = Net()
    crops = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    fp32 = Speed()
    plain, summed = embed_crops_views(net, crops, size=32, speed=fp32, batch_size=2)
    assert plain.shape == summed.shape == (5, 6)
    np.testing.assert_allclose(np.linalg.norm(summed, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_crops(net, crops, size=32, flip_sum=False, speed=fp32), plain, atol=1e-6)
    # the flip sum is the sum of the crop's and its mirror's raw embeddings, normalised
    mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    raw = lambda c: embed_crops_views(net, c, size=32, speed=fp32, mirror=False)[0]  # noqa: E731
    _, summed_m = embed_crops_views(net, mirrored, size=32, speed=fp32)
    np.testing.assert_allclose(summed, summed_m, atol=1e-5)  # symmetric in the two views
    assert raw(crops).shape == (5, 6)
    # the default evaluation levers (bf16 where the CPU has it, channels_last) stay close to fp32
    fast, fast_sum = embed_crops_views(net, crops, size=32)
    assert (fast * plain).sum(1).min() > 0.99 and (fast_sum * summed).sum(1).min() > 0.99
    assert net.conv.weight.is_contiguous()  # the memory format is restored
