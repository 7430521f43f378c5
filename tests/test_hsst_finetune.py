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
