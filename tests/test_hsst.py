"""HSST (paper 003, eqs. 1-2): the moving average, the prototype queues, the losses against hand
computations, the both-directions step and the identity-disjoint sampler."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from facelab.train.hsst import (DisjointIdentityBatches, HSSTConfig, PrototypeQueue, SemiSiamese, check_disjoint,
                                cosine_loss, ema_update_, make_gallery, plain_logits, queue_logits, scaled_alpha)


class Tiny(nn.Module):
    """A small embedder with a BatchNorm (so buffers are exercised): ``[B, 3, 8, 8] -> [B, 4]``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward_features(self, x):
        return self.bn(self.conv(x)).mean(dim=(2, 3))


def _pair(seed=0):
    torch.manual_seed(seed)
    probe = Tiny()
    gallery = make_gallery(probe)
    with torch.no_grad():
        for p in probe.parameters():
            p.add_(1.0)
        probe.bn.running_mean.add_(2.0)
        probe.bn.num_batches_tracked.add_(5)
    return probe, gallery


def test_ema_formula_per_parameter():
    probe, gallery = _pair()
    before = {k: v.clone() for k, v in gallery.state_dict().items()}
    ema_update_(gallery, probe, 0.9)
    for k, v in gallery.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * probe.state_dict()[k])
        else:
            assert torch.equal(v, probe.state_dict()[k])


def test_ema_alpha_zero_copies_and_one_freezes():
    probe, gallery = _pair()
    frozen = {k: v.clone() for k, v in gallery.state_dict().items()}
    ema_update_(gallery, probe, 1.0)
    assert all(torch.equal(v, frozen[k]) for k, v in gallery.state_dict().items() if v.dtype.is_floating_point)
    ema_update_(gallery, probe, 0.0)
    assert all(torch.equal(v, probe.state_dict()[k]) for k, v in gallery.state_dict().items())
    with pytest.raises(ValueError):
        ema_update_(gallery, probe, 1.5)


def test_gallery_takes_no_gradients():
    probe, gallery = _pair()
    assert not any(p.requires_grad for p in gallery.parameters())
    model = SemiSiamese(probe, 4, HSSTConfig(queue_size=4), generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 8, 8)
    model.loss(x, x + 0.1).backward()
    assert all(p.grad is None for p in model.gallery.parameters())
    assert any(p.grad is not None for p in model.probe.parameters())


def test_scaled_alpha_keeps_the_horizon():
    assert scaled_alpha(0.999, 10_000, 10_000) == pytest.approx(0.999)
    assert scaled_alpha(0.999, 10_000, 1_000) == pytest.approx(0.99)
    assert scaled_alpha(0.999, 10_000, 5) == 0.0  # horizon shorter than a step: copy


def test_queue_positive_columns_detach_and_fifo_wrap():
    g = torch.Generator().manual_seed(0)
    q = PrototypeQueue(6, 3, generator=g)
    assert torch.allclose(q.features.norm(dim=1), torch.ones(6))
    start = q.features.clone()
    b = torch.randn(3, 3, requires_grad=True)
    protos, cols = q.with_batch(b)
    assert cols.tolist() == [0, 1, 2] and not protos.requires_grad
    torch.testing.assert_close(protos[:3], F.normalize(b.detach(), dim=1))
    assert torch.equal(protos[3:], start[3:]) and torch.equal(q.features, start)  # nothing stored yet
    q.commit([b])
    assert q.index == 3
    protos2, cols2 = q.with_batch(torch.randn(3, 3))
    assert cols2.tolist() == [3, 4, 5]
    q.commit([torch.randn(3, 3)])
    assert q.index == 0  # wrapped: the next batch overwrites the oldest rows
    _, cols3 = q.with_batch(torch.randn(3, 3))
    assert cols3.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="multiple of the batch size"):
        q.with_batch(torch.randn(4, 3))


def test_cosine_softmax_matches_eq1_by_hand():
    cos = torch.tensor([[0.8, 0.1, -0.2], [0.3, 0.5, 0.0]])
    pos = torch.tensor([0, 1])
    s = 30.0
    by_hand = np.mean([-math.log(math.exp(s * 0.8) / (math.exp(s * 0.8) + math.exp(s * 0.1) + math.exp(s * -0.2))),
                       -math.log(math.exp(s * 0.5) / (math.exp(s * 0.3) + math.exp(s * 0.5) + math.exp(0.0)))])
    assert float(cosine_loss(cos, pos, loss="softmax", scale=s)) == pytest.approx(by_hand, rel=1e-5)


def test_margins_touch_the_positive_logit_only():
    cos = torch.tensor([[0.6, 0.2, 0.1]])
    pos = torch.tensor([0])
    s = 10.0

    def ce(target):
        z = torch.tensor([[target, 0.2, 0.1]]) * s
        return float(F.cross_entropy(z, pos))

    assert float(cosine_loss(cos, pos, loss="am", scale=s, margin=0.35)) == pytest.approx(ce(0.6 - 0.35), rel=1e-5)
    assert float(cosine_loss(cos, pos, loss="arc", scale=s, margin=0.5)) == pytest.approx(
        ce(math.cos(math.acos(0.6) + 0.5)), rel=1e-5)
    # triplet: hinge on the hardest negative
    assert float(cosine_loss(cos, pos, loss="triplet", margin=0.3)) == pytest.approx(max(0, 0.3 + 0.2 - 0.6), abs=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        cosine_loss(cos, pos, loss="focal")


def test_eq2_both_directions_on_a_tiny_example():
    """The step's loss equals the mean of L(I_N, I_V) against the VIS queue and L(I_V, I_N) against the NIR
    queue, recomputed here from the two networks and the queues' contents."""
    torch.manual_seed(1)
    probe = Tiny()
    model = SemiSiamese(probe, 4, HSSTConfig(queue_size=4, alpha=0.5), generator=torch.Generator().manual_seed(0))
    vis_q, nir_q = model.queues["vis"].features.clone(), model.queues["nir"].features.clone()
    nir, vis = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    loss = model.loss(nir, vis)
    model.probe.train()
    pn, pv = probe.forward_features(nir), probe.forward_features(vis)
    model.gallery.eval()
    with torch.no_grad():
        gn, gv = model.gallery.forward_features(nir), model.gallery.forward_features(vis)

    def one(p, g, queue):
        protos = queue.clone()
        protos[:2] = F.normalize(g, dim=1)
        cos = F.normalize(p, dim=1) @ protos.T
        return F.cross_entropy(30.0 * cos, torch.tensor([0, 1]))

    expected = 0.5 * (one(pn, gv, vis_q) + one(pv, gn, nir_q))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # after the step each queue holds its own modality's gallery features
    model.after_step()
    torch.testing.assert_close(model.queues["vis"].features[:2], F.normalize(gv, dim=1))
    torch.testing.assert_close(model.queues["nir"].features[:2], F.normalize(gn, dim=1))
    assert model.queues["vis"].index == model.queues["nir"].index == 2


def test_shared_queue_keeps_the_two_directions_apart():
    torch.manual_seed(2)
    model = SemiSiamese(Tiny(), 4, HSSTConfig(queue_size=4, shared_queue=True), generator=torch.Generator().manual_seed(0))
    assert model.queues["vis"] is model.queues["nir"]
    start = model.queues["vis"].features.clone()
    nir, vis = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    model.loss(nir, vis)
    with torch.no_grad():  # the gallery's features of this step (before after_step moves it)
        gv, gn = model.gallery.forward_features(vis), model.gallery.forward_features(nir)
    # the second direction's prototypes: the queue as it was, with its own batch after the first's slot
    protos, cols = model.queues["nir"].with_batch(gn, offset=2)
    assert cols.tolist() == [2, 3] and torch.equal(protos[:2], start[:2])
    model.after_step()
    q = model.queues["vis"]
    assert q.index == 0  # both batches written: 2 + 2 rows of a 4-row queue
    torch.testing.assert_close(q.features[:2], F.normalize(gv, dim=1))
    torch.testing.assert_close(q.features[2:], F.normalize(gn, dim=1))


def test_single_direction_ablations():
    torch.manual_seed(3)
    model = SemiSiamese(Tiny(), 4, HSSTConfig(queue_size=4, directions="nir_probe"), generator=torch.Generator().manual_seed(0))
    nir, vis = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    model.loss(nir, vis)
    model.after_step()
    assert model.queues["vis"].index == 2 and model.queues["nir"].index == 0  # only the VIS queue was used
    with pytest.raises(ValueError, match="directions"):
        SemiSiamese(Tiny(), 4, HSSTConfig(directions="sideways"))


def test_deployed_probe_is_the_plain_network():
    torch.manual_seed(4)
    plain = Tiny()
    model = SemiSiamese(Tiny(), 4, HSSTConfig(queue_size=4))
    assert sum(p.numel() for p in model.probe.parameters()) == sum(p.numel() for p in plain.parameters())
    assert [n for n, _ in model.probe.named_parameters()] == [n for n, _ in plain.named_parameters()]


def test_plain_logits_use_the_batch_as_prototypes():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    cos, pos = plain_logits(a, b)
    torch.testing.assert_close(cos, queue_logits(a, b))
    assert pos.tolist() == [0, 1, 2]


def test_sampler_is_identity_disjoint_from_the_queue():
    batches = list(DisjointIdentityBatches(40, batch_size=4, queue_size=16, steps=50, seed=0))
    assert len(batches) == 50 and all(len(b) == 4 for b in batches)
    assert check_disjoint(batches, queue_batches=3)
    assert not check_disjoint([np.array([1, 2]), np.array([2, 3])], queue_batches=1)
    with pytest.raises(ValueError, match="more training identities"):
        DisjointIdentityBatches(18, batch_size=4, queue_size=16, steps=1)
