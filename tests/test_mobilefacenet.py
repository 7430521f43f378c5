"""MobileFaceNet against Chen et al. 2018, Table 1: layer shapes, parameters, multiply-adds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facelab import create_model
from facelab.bench.complexity import count_flops, count_parameters
from facelab.models.mobilefacenet import Bottleneck

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Table 1, typed in from the paper: the input of each row (side, channels) and its operator's output
# channels; and the totals under the table.
TABLE1_INPUT = {
    "conv1": (112, 3), "dwconv1": (56, 64), "bottleneck1": (56, 64), "bottleneck2": (28, 64),
    "bottleneck3": (14, 128), "bottleneck4": (14, 128), "bottleneck5": (7, 128), "conv2": (7, 128),
    "head": (7, 512),
}
PAPER_PARAMS = 0.99e6
PAPER_MADDS = 221e6


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("mobilefacenet").eval()


def test_layer_inputs_follow_table1(model):
    seen = {}
    layers = dict(model.features.named_children(), head=model.head)
    hooks = [mod.register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(
        name, (args[0].shape[-1], args[0].shape[1]))) for name, mod in layers.items()]
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 112, 112))
    for h in hooks:
        h.remove()
    assert seen == TABLE1_INPUT
    assert out.shape == (1, 128)
    assert [len(getattr(model.features, f"bottleneck{i}")) for i in range(1, 6)] == [5, 1, 6, 1, 2]  # the n column


def test_parameters_and_madds_against_the_paper(model):
    params = count_parameters(model)
    madds = count_flops(model) / 2  # FlopCounterMode counts 2 FLOPs per multiply-add
    # 221.0M: FlopCounterMode counts convolutions and matrix products, which is what MAdds count.
    assert madds == pytest.approx(PAPER_MADDS, rel=0.005)
    # 1,003,136 = 976,000 conv weights + 19,584 batch-norm + 7,552 PReLU: 1.3% above "0.99M"
    # (the paper does not say what it counts; conv + batch-norm = 995,584).
    assert params == 1_003_136
    assert params == pytest.approx(PAPER_PARAMS, rel=0.015)
    prelu = sum(p.numel() for n, p in model.named_parameters() if "prelu" in n)
    bn = sum(p.numel() for n, p in model.named_parameters() if ".bn." in n or ".norm." in n)
    assert (prelu, bn) == (7_552, 19_584)


def test_shortcuts_only_where_mobilenetv2_puts_them(model):
    blocks = [b for b in model.modules() if isinstance(b, Bottleneck)]
    assert len(blocks) == 15
    # A shortcut wherever stride is 1 and the width is kept: not in the first repeat of rows 1, 2 and 4
    # (stride 2); row 3 keeps 128 channels at stride 1, so even its first repeat has one.
    assert [b.use_shortcut for b in blocks] == [False, True, True, True, True, False, True, True, True, True, True,
                                                True, False, True, True]


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    m = create_model("mobilefacenet", num_classes=3).train()
    x = torch.randn(4, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    F.cross_entropy(m(x), torch.tensor([0, 1, 2, 0])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
