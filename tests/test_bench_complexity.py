"""Complexity: parameters, fp32 size, FLOPs/MACs and the per-layer table, against closed forms
(including the formulas of paper 000's Table 1) and paper 001's Table 2."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from facelab import tables
from facelab.bench import complexity

torch.set_num_threads(1)


def tiny_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


def test_summary_matches_hand_count():
    info = complexity.summarize(tiny_net(), (3, 16, 16), name="tiny")
    conv_macs = 16 * 16 * 8 * (3 * 3 * 3)  # output pixels x output channels x kernel volume
    linear_macs = 8 * 4
    assert info.macs == conv_macs + linear_macs
    assert info.flops == 2 * info.macs  # FlopCounterMode counts 2 FLOPs per multiply-add
    assert info.params == (3 * 3 * 3 * 8 + 8) + (8 + 8) + (8 * 4 + 4)
    # fp32 state dict: parameters + BN running mean/var as float32, num_batches_tracked as int64.
    assert info.size_bytes == 4 * (info.params + 8 + 8) + 8
    assert info.size_mb == info.size_bytes / 1e6
    assert info.embedding_size == 4 and info.output_shape == (4,)
    assert info.input_shape == (3, 16, 16)


def test_shared_weights_count_once():
    lin = nn.Linear(10, 10, bias=False)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    assert complexity.count_parameters(model) == 100
    assert complexity.fp32_state_dict_bytes(model) == 400
    assert complexity.count_flops(model, (10,)) == 2 * 2 * 100  # the layer runs twice


def _formula(cell: dict, **env: int) -> int:
    # The paper-values formulas are arithmetic in these names only.
    return eval(cell["formula"], {"__builtins__": {}}, env)  # noqa: S307


@pytest.mark.parametrize("n,c_in,c_out,side", [(3, 8, 16, 10), (5, 4, 6, 7)])
def test_counts_equal_paper_000_table1_formulas(n, c_in, c_out, side):
    cells = tables.cells("000")
    env = dict(n=n, N_in=c_in, N_out=c_out, H=side, W=side)
    standard = nn.Conv2d(c_in, c_out, n, padding=n // 2, bias=False)
    separable = nn.Sequential(nn.Conv2d(c_in, c_in, n, padding=n // 2, groups=c_in, bias=False),
                              nn.Conv2d(c_in, c_out, 1, bias=False))
    for model, row in ((standard, "standard"), (separable, "depthwise_separable")):
        assert complexity.count_parameters(model) == _formula(cells[f"table1.{row}.parameters"], **env)
        assert complexity.count_flops(model, (c_in, side, side)) // 2 == _formula(cells[f"table1.{row}.computation"], **env)


def test_batch_scales_flops():
    m = tiny_net()
    assert complexity.count_flops(m, (3, 16, 16), batch=3) == 3 * complexity.count_flops(m, (3, 16, 16))


def test_eval_mode_is_restored_and_rng_untouched():
    m = tiny_net().train()
    m[1].eval()  # a mixed state must come back exactly
    state = torch.random.get_rng_state()
    complexity.summarize(m, (3, 8, 8))
    complexity.layer_summary(m, (3, 8, 8))
    assert m.training and m[0].training and not m[1].training
    assert torch.equal(state, torch.random.get_rng_state())


def test_input_shape_from_attribute_or_error():
    m = tiny_net()
    with pytest.raises(ValueError, match="input_shape"):
        complexity.summarize(m)
    m.input_shape = (3, 12, 12)
    assert complexity.summarize(m).input_shape == (3, 12, 12)
    with pytest.raises(ValueError, match="positive"):
        complexity.resolve_input_shape(m, (3, 0, 12))


def test_layer_summary_leaves_and_unknown_names():
    rows = complexity.layer_summary(tiny_net(), (3, 16, 16))
    assert [r.type for r in rows] == ["Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert rows[0].output_shape == (8, 16, 16) and rows[0].paper_shape == "16²×8"
    assert rows[0].flops == 2 * 16 * 16 * 8 * 27 and rows[-1].flops == 2 * 32
    assert sum(r.params for r in rows) == complexity.count_parameters(tiny_net())
    with pytest.raises(KeyError, match="no module named nope"):
        complexity.layer_summary(tiny_net(), (3, 16, 16), names=["nope"])


def test_paper_shape():
    assert complexity.paper_shape((64, 113, 113)) == "113²×64"
    assert complexity.paper_shape((1000, 1, 1)) == "1²×1000"
    assert complexity.paper_shape((3, 4, 5)) == "4×5×3"
    assert complexity.paper_shape((128,)) == "128"
    assert complexity.paper_shape(None) == "-"


def table2_like_net() -> nn.Module:
    """Paper 001's Table 2 layer list built from torchvision's Fire module (a test fixture, not the
    chapter's model): conv1 3x3/1 with 64 filters, 3x3/2 max-pools, fire widths as printed."""
    from torchvision.models.squeezenet import Fire

    layers = OrderedDict(conv1=nn.Conv2d(3, 64, 3, padding=1), relu1=nn.ReLU(), maxpool1=nn.MaxPool2d(3, 2),
                         fire2=Fire(64, 16, 64, 64), fire3=Fire(128, 16, 64, 64), fire4=Fire(128, 32, 128, 128),
                         maxpool4=nn.MaxPool2d(3, 2), fire5=Fire(256, 32, 128, 128), fire6=Fire(256, 48, 192, 192),
                         fire7=Fire(384, 48, 192, 192), fire8=Fire(384, 64, 256, 256), maxpool8=nn.MaxPool2d(3, 2),
                         fire9=Fire(512, 64, 256, 256), dropout9=nn.Dropout(0.5), conv10=nn.Conv2d(512, 1000, 1),
                         relu10=nn.ReLU(), averagepool10=nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(layers)


def test_layer_table_regenerates_paper_001_table2_sizes():
    cells = tables.cells("001")
    layers = [k.split(".")[1] for k in cells if k.startswith("table2.") and k.endswith(".output_side")]
    net = table2_like_net()
    present = [n for n in layers if n in dict(net.named_children())]
    assert present[0] == "conv1" and "averagepool10" in present
    rows = {r.name: r for r in complexity.layer_summary(net, (3, 113, 113), names=present)}
    for name in present:
        c, h, w = rows[name].output_shape
        assert h == w == cells[f"table2.{name}.output_side"]["value"], name
        assert c == cells[f"table2.{name}.output_channels"]["value"], name
        if f"table2.{name}.squeeze1x1" in cells:
            fire = dict(net.named_children())[name]
            assert fire.squeeze.out_channels == cells[f"table2.{name}.squeeze1x1"]["value"]
            assert fire.expand1x1.out_channels == cells[f"table2.{name}.expand1x1"]["value"]
            assert fire.expand3x3.out_channels == cells[f"table2.{name}.expand3x3"]["value"]
    df = complexity.layer_table(net, (3, 113, 113), depth=1)
    assert df.iloc[0]["output size"] == "113²×3"
    assert df.set_index("layer").loc["maxpool8", "output size"] == "13²×512"
    assert int(df["params"].sum()) == complexity.count_parameters(net)
