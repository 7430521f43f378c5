"""End-to-end fine-tuning (facelab.train.hsst_finetune): plain and HSST train the whole network, reproducibly,
return the deployed probe-net alone, and refuse data they cannot sample from."""

import numpy as np
import pytest
import torch
from torch import nn

from facelab.train.hsst_finetune import FineTuneConfig, fine_tune


class TinyNet(nn.Module):
    """``[B, 3, 112, 112] -> [B, 8]``: a conv, BatchNorm and a linear layer (BatchNorm: the train/eval split matters)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 5, stride=8), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(16, 8)

    def forward_features(self, x):
        return self.fc(self.body(x).flatten(1))


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    n_ids = 12
    vis = rng.integers(0, 256, (2 * n_ids, 112, 112, 3), dtype=np.uint8)
    nir = rng.integers(0, 256, (2 * n_ids, 112, 112, 3), dtype=np.uint8)
    by_id = [np.array([2 * k, 2 * k + 1]) for k in range(n_ids)]
    return vis, nir, by_id


CONFIG = FineTuneConfig(steps=3, batch_size=2, queue_size=4, alpha=0.5, lr=0.1, milestones=(2,), log_every=1)


def _run(method, pairs, seed=0, config=CONFIG):
    vis, nir, by_id = pairs
    torch.manual_seed(1)
    net = TinyNet()
    before = [p.detach().clone() for p in net.parameters()]
    out, curve = fine_tune(method, net, vis, nir, by_id, by_id, config, seed=seed)
    return before, out, curve


@pytest.mark.parametrize("method", ["plain", "hsst"])
def test_the_whole_network_trains_and_is_returned_alone(pairs, method):
    before, net, curve = _run(method, pairs)
    assert isinstance(net, TinyNet) and not net.training  # the deployed probe-net, in eval mode
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in TinyNet().parameters())
    assert len(curve) == CONFIG.steps and all(np.isfinite(curve))
    moved = [not torch.equal(a, b) for a, b in zip(before, net.parameters())]
    assert all(moved)  # every layer is fine-tuned, not a head only


@pytest.mark.parametrize("method", ["plain", "hsst"])
def test_same_seed_same_network(pairs, method):
    _, a, ca = _run(method, pairs, seed=3)
    _, b, cb = _run(method, pairs, seed=3)
    assert ca == cb
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    _, c, _ = _run(method, pairs, seed=4)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_bad_inputs_are_refused(pairs):
    vis, nir, by_id = pairs
    with pytest.raises(ValueError, match="method"):
        fine_tune("siamese", TinyNet(), vis, nir, by_id, by_id, CONFIG, seed=0)
    with pytest.raises(ValueError, match="at least one VIS and one NIR"):
        fine_tune("plain", TinyNet(), vis, nir, by_id[:-1] + [np.array([], int)], by_id, CONFIG, seed=0)
    with pytest.raises(ValueError, match="cannot fill a batch"):
        fine_tune("plain", TinyNet(), vis, nir, by_id[:1], by_id[:1], CONFIG, seed=0)
    with pytest.raises(ValueError, match="more training identities than queue"):  # 12 ids, queue 12 + batch 4
        fine_tune("hsst", TinyNet(), vis, nir, by_id, by_id, FineTuneConfig(steps=1, batch_size=4, queue_size=12),
                  seed=0)


class NoBatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 5, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(16, 8)

    def forward_features(self, x):
        return self.fc(self.body(x).flatten(1))


def test_joint_step_equals_semisiamese_without_batchnorm():
    # the one difference from SemiSiamese is the joint probe pass, which only BatchNorm can tell apart
    import copy

    from facelab.train.hsst import HSSTConfig, SemiSiamese
    from facelab.train.hsst_finetune import JointHSST

    torch.manual_seed(0)
    net = NoBatchNormNet()
    nir, vis = torch.randn(2, 3, 112, 112), torch.randn(2, 3, 112, 112)
    a = SemiSiamese(copy.deepcopy(net), 8, HSSTConfig(queue_size=4, alpha=0.5), generator=torch.Generator().manual_seed(1))
    b = JointHSST(copy.deepcopy(net), 8, queue_size=4, alpha=0.5, scale=30.0, loss="softmax",
                  generator=torch.Generator().manual_seed(1))
    for _ in range(3):  # three steps: the queues fill and wrap, the gallery moves
        la, lb = a.loss(nir, vis), b.loss(nir, vis)
        torch.testing.assert_close(la, lb)
        a.after_step(), b.after_step()
        for q in ("vis", "nir"):
            torch.testing.assert_close(a.queues[q].features, b.queues[q].features)
        nir, vis = vis + 0.1, nir - 0.1


def test_the_probe_sees_both_modalities_in_one_batch(pairs):
    vis, nir, by_id = pairs
    torch.manual_seed(1)
    net = TinyNet()
    seen = []
    net.body[1].register_forward_hook(lambda m, i, o: seen.append((m.training, i[0].shape[0])))
    fine_tune("hsst", net, vis, nir, by_id, by_id, CONFIG, seed=0)
    trained = [n for training, n in seen if training]
    assert trained and set(trained) == {2 * CONFIG.batch_size}  # [NIR; VIS] together, in training mode


def test_the_returned_network_is_the_probe_not_the_gallery(pairs):
    # alpha = 1 freezes the gallery-net at the start: the returned network must still have moved
    before, net, _ = _run("hsst", pairs, config=FineTuneConfig(steps=2, batch_size=2, queue_size=4, alpha=1.0, lr=0.1))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_imprinted_classifier_is_each_identitys_mean_feature(pairs):
    from facelab.train.hsst_finetune import _batch, _Features, _imprint

    vis, nir, by_id = pairs
    torch.manual_seed(0)
    feats = _Features(NoBatchNormNet(), "cpu", False)
    w = _imprint(feats, vis, nir, by_id[:2], by_id[:2], "cpu", False)
    with torch.no_grad():
        f = torch.nn.functional.normalize(feats.forward_features(torch.cat([_batch(vis, by_id[1], "cpu", False),
                                                                            _batch(nir, by_id[1], "cpu", False)])), dim=1)
    torch.testing.assert_close(w[1], torch.nn.functional.normalize(f.mean(0), dim=0))
    assert w.shape == (2, 8)


def test_the_in_batch_triplet_is_refused(pairs):
    vis, nir, by_id = pairs
    with pytest.raises(ValueError, match="loss must be"):
        fine_tune("plain", TinyNet(), vis, nir, by_id, by_id, FineTuneConfig(steps=1, batch_size=2, loss="triplet"),
                  seed=0)


def test_rank1_hits_agree_with_the_identification_report():
    from facelab.eval.identification import identification_report
    from facelab.experiments.nirvis_masked_hsst_end_to_end import rank1_hits

    rng = np.random.default_rng(0)
    g_ids = np.array(["a", "b", "c", "d"])
    gallery = rng.normal(size=(4, 8))
    p_ids = rng.choice(g_ids, size=50)
    probes = gallery[np.searchsorted(g_ids, p_ids)] + rng.normal(scale=1.5, size=(50, 8))
    hits = rank1_hits(gallery, probes, g_ids, p_ids)
    rep = identification_report(probes @ gallery.T, p_ids, g_ids, ranks=(1,), far_targets=(0.1,))
    assert hits.dtype == bool and 0 < hits.mean() < 1
    assert hits.mean() == pytest.approx(rep.rank_accuracy[1])


def test_paired_rank1_change_in_closed_form():
    from facelab.experiments.nirvis_masked_hsst_end_to_end import paired_rank1_change

    a = np.array([1, 1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 0, 1, 0, 1], bool)
    out = paired_rank1_change(a, b)
    d = np.array([0, 1, 1, -1, 0, 0], float)  # per-probe changes from b to a
    assert out["diff"] == pytest.approx(100 * d.mean())
    assert out["se"] == pytest.approx(100 * d.std() / np.sqrt(6))
    assert (out["a_only"], out["b_only"], out["n"]) == (2, 1, 6)
    assert paired_rank1_change(a, a)["se"] == 0 and paired_rank1_change(a, a)["diff"] == 0
    with pytest.raises(ValueError, match="same length"):
        paired_rank1_change(a, b[:5])
