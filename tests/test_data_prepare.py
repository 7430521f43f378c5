"""Reading bad images, alignment geometry, the prepare pipeline (resume, rejects, packing), pairs
resolution, and the ``data`` command line. Bad inputs are built here, in tmp_path."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from facelab.data import align, imageio, manifest, pairs, prepare
from facelab.data.selection import ImageItem

data_root = os.environ.get("FACELAB_DATA")
needs_data = pytest.mark.skipif(not data_root, reason="set FACELAB_DATA")

LFW_SAMPLE = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
LFW_OTHER = "Abdullah_Gul/Abdullah_Gul_0001.jpg"


def _jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _pattern(h: int = 64, w: int = 64) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 30, 30)
    rgb[:, w // 2:] = (20, 180, 60)
    return rgb


# --- reading ------------------------------------------------------------------------------

def test_read_rgb_turns_every_format_into_rgb(tmp_path):
    from PIL import Image

    rgb = _pattern()
    cases = {}
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=95)
    cases["cmyk.jpg"] = buf.getvalue()
    cases["grey.png"] = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))[1].tobytes()
    rgba = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full(rgb.shape[:2], 100, np.uint8)])
    cases["alpha.png"] = cv2.imencode(".png", rgba)[1].tobytes()
    cases["deep.png"] = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)[1].tobytes()
    cases["plain.jpg"] = _jpeg(rgb)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        out = imageio.read_rgb(tmp_path / name)
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8, name
        if name != "grey.png":
            assert np.abs(out[10, 10].astype(int) - [200, 30, 30]).max() <= 6, (name, out[10, 10])
            assert np.abs(out[10, 50].astype(int) - [20, 180, 60]).max() <= 6, (name, out[10, 50])
        else:
            assert out[10, 10, 0] == out[10, 10, 1] == out[10, 10, 2]


def test_read_rgb_rejects_with_a_reason(tmp_path):
    good = _jpeg(_pattern(100, 100))
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9")
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "tiny.png").write_bytes(cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    # 7,200 x 7,200 = 51.8 MP: refused from the header, before decoding.
    (tmp_path / "huge.png").write_bytes(cv2.imencode(".png", np.zeros((7200, 7200), np.uint8))[1].tobytes())
    expected = {"truncated.jpg": "truncated", "corrupt.jpg": "unreadable", "text.jpg": "unreadable",
                "empty.jpg": "unreadable", "tiny.png": "too_small", "huge.png": "too_large", "nowhere.jpg": "missing"}
    for name, reason in expected.items():
        with pytest.raises(imageio.ImageReadError) as err:
            imageio.read_rgb(tmp_path / name)
        assert err.value.reason == reason, name
        assert name in str(err.value)


def test_header_size_reads_jpeg_and_png_without_decoding():
    assert imageio.header_size(_jpeg(_pattern(48, 80))) == (80, 48)
    assert imageio.header_size(cv2.imencode(".png", np.zeros((30, 70, 3), np.uint8))[1].tobytes()) == (70, 30)
    assert imageio.header_size(b"GIF89a....") is None


# --- geometry -----------------------------------------------------------------------------

def _blobs(shape: tuple[int, int], points: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """A black RGB image with one Gaussian blob per point, each in its own channel pattern."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3), np.float64)
    for x, y in points:
        img += 250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _centroids(img: np.ndarray, points: np.ndarray, radius: float) -> np.ndarray:
    """Intensity centroid of ``img`` around each expected point (an independent localisation)."""
    g = img[..., 0].astype(np.float64)
    yy, xx = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    out = []
    for x, y in points:
        win = ((xx - x) ** 2 + (yy - y) ** 2 <= radius**2) * g
        out.append([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])
    return np.array(out)


def test_similarity_transform_recovers_a_known_similarity():
    angle, scale, shift = np.deg2rad(23.0), 1.7, np.array([14.0, -9.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = align.ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = src @ rot.T + shift
    m = align.similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-4)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-3)
    with pytest.raises(ValueError):
        align.similarity_transform(src[:1], dst[:1])


def test_aligned_landmarks_land_on_the_template():
    # Landmarks of a face rotated by 15 degrees and scaled by 2.2 inside a 300x300 image.
    angle, scale = np.deg2rad(15.0), 2.2
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lms = (align.ARCFACE_TEMPLATE_112 - 56) @ rot.T + 150
    image = _blobs((300, 300), lms, sigma=3.0)
    crop, m = align.align_face(image, lms)
    assert crop.shape == (112, 112, 3)
    np.testing.assert_allclose(align.warp_points(lms, m), align.ARCFACE_TEMPLATE_112, atol=1e-3)
    # Independently: the blobs' centroids in the crop sit on the template.
    found = _centroids(crop, align.ARCFACE_TEMPLATE_112, radius=4)
    np.testing.assert_allclose(found, align.ARCFACE_TEMPLATE_112, atol=0.35)


@pytest.mark.parametrize("side", [60.0, 240.0])
def test_loose_crop_matrix_matches_the_pixels(side):
    box = np.array([90.0, 80.0, 90 + side * 0.6, 80 + side * 0.7])
    w, h = box[2] - box[0], box[3] - box[1]
    pts = box[:2] + np.array([[0.2, 0.3], [0.8, 0.35], [0.5, 0.9]]) * [w, h]
    image = _blobs((400, 420), pts, sigma=max(1.5, side / 40))
    crop, m = align.loose_crop(image, box, scale=1.4, size=128)
    expected = align.warp_points(pts, m)
    found = _centroids(crop, expected, radius=max(3, 128 / side * 4))
    np.testing.assert_allclose(found, expected, atol=0.3)


def test_loose_crop_pads_outside_the_image():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop, m = align.loose_crop(image, np.array([-30.0, -30.0, 30.0, 30.0]), scale=1.0, size=60)
    assert crop[:20, :20].max() == 0 and crop[-10:, -10:].min() == 200
    np.testing.assert_allclose(align.warp_points(np.array([[0.0, 0.0]]), m), [[30.0, 30.0]], atol=1e-9)


# --- the pipeline on built datasets --------------------------------------------------------

@pytest.fixture(scope="module")
def detector():
    from facelab.data.detect import load_mtcnn

    return load_mtcnn("cpu")


def _item(name: str, ident: str = "X") -> ImageItem:
    return ImageItem("lfw", f"lfw/lfw-deepfunneled/{name}", name, ident, ident.replace("_", " "), "", "none")


@pytest.fixture
def bad_dataset(tmp_path, monkeypatch):
    """A data root holding an LFW-like folder with good, odd and broken images; FACELAB_CACHE in tmp."""
    from PIL import Image

    root = tmp_path / "data"
    src = os.path.join(data_root, "lfw", "lfw-deepfunneled")
    face = imageio.read_rgb(os.path.join(src, LFW_SAMPLE))
    other = imageio.read_rgb(os.path.join(src, LFW_OTHER))
    d = root / "lfw" / "lfw-deepfunneled" / "P"
    d.mkdir(parents=True)
    (d / "face.jpg").write_bytes(_jpeg(face))
    (d / "grey.jpg").write_bytes(cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2GRAY))[1].tobytes())
    Image.fromarray(face).convert("CMYK").save(d / "cmyk.jpg", "JPEG", quality=95)
    rgba = np.dstack([cv2.cvtColor(face, cv2.COLOR_RGB2BGR), np.full(face.shape[:2], 255, np.uint8)])
    (d / "alpha.png").write_bytes(cv2.imencode(".png", rgba)[1].tobytes())
    big = np.full((420, 420, 3), 128, np.uint8)
    big[85:335, 85:335] = face  # the subject, centred
    big[5:130, 290:415] = cv2.resize(other, (125, 125), interpolation=cv2.INTER_AREA)  # a bystander
    (d / "several.jpg").write_bytes(_jpeg(big))
    (d / "blank.jpg").write_bytes(_jpeg(np.full((200, 200, 3), 90, np.uint8)))
    (d / "tiny.jpg").write_bytes(_jpeg(cv2.resize(face, (20, 20))))
    (d / "huge.png").write_bytes(cv2.imencode(".png", np.zeros((7200, 7200), np.uint8))[1].tobytes())
    good = _jpeg(face)
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000) + b"\xff\xd9")
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path / "cache"))
    expected = {"face.jpg": "ok", "grey.jpg": "ok", "cmyk.jpg": "ok", "alpha.png": "ok", "several.jpg": "ok",
                "blank.jpg": "no_face", "tiny.jpg": "too_small", "huge.png": "too_large",
                "truncated.jpg": "truncated", "corrupt.jpg": "unreadable", "missing.jpg": "missing"}
    items = [_item(f"P/{n}", "P") for n in expected]
    return root, items, expected


@needs_data
def test_process_image_outcomes(bad_dataset, detector, tmp_path):
    root, items, expected = bad_dataset
    cfg = prepare.PrepareConfig()
    out = tmp_path / "out"
    rows = {it.rel.split("/")[1]: prepare.process_image(detector, it, root / "lfw" / "lfw-deepfunneled" / it.rel,
                                                        out, cfg) for it in items}
    for name, outcome in expected.items():
        row = rows[name]
        assert (row["status"] if outcome == "ok" else row["reason"]) == outcome, (name, row)
    several = rows["several.jpg"]
    assert several["n_faces"] >= 2
    # The chosen face is the centred subject, not the bystander in the corner.
    cx, cy = (several["x1"] + several["x2"]) / 2, (several["y1"] + several["y2"]) / 2
    assert abs(cx - 210) < 30 and abs(cy - 210) < 40
    face = rows["face.jpg"]
    assert face["align_rms"] < 5 and face["score"] > 0.9
    aligned = imageio.read_rgb(out / face["aligned"])
    loose = imageio.read_rgb(out / face["loose"])
    assert aligned.shape == (112, 112, 3) and loose.shape == (128, 128, 3)
    lm = np.array([face[c] for c in manifest.LOOSE_LANDMARK_COLUMNS]).reshape(5, 2)
    assert ((lm > 0) & (lm < 128)).all()
    # Same input, same row (deterministic).
    again = prepare.process_image(detector, items[0], root / "lfw" / "lfw-deepfunneled" / items[0].rel, out, cfg)
    assert again == face


@needs_data
def test_prepare_items_resumes_packs_and_reports(bad_dataset):
    root, items, expected = bad_dataset
    # An interrupted first run: only the first 4 images got done.
    first = prepare.prepare_items("lfw", "smoke", items[:4], data_root=root, workers=1, progress=False)
    assert first["processed_this_run"] == 4
    journal = prepare.prepared_dir("lfw") / prepare.JOURNAL
    with journal.open("a") as f:
        f.write('{"path": "lfw/lfw-deepfunneled/P/blank.jpg", "sta')  # a torn line, as after a crash
    s = prepare.prepare_items("lfw", "smoke", items, data_root=root, workers=1, progress=False)
    assert s["processed_this_run"] == len(items) - 4
    assert s["images"] == len(items) and s["accepted"] == 5 and s["rejected"] == 6
    assert s["reasons"] == {"missing": 1, "unreadable": 1, "truncated": 1, "too_small": 1, "too_large": 1,
                            "no_face": 1, "bad_landmarks": 0, "error": 0}
    ps = manifest.load_prepared("lfw", "smoke")
    assert list(ps.manifest.columns) == list(manifest.COLUMNS)
    assert len(ps) == 5 and ps.aligned.shape == (5, 112, 112, 3)
    for i, row in ps.manifest.iterrows():
        assert np.array_equal(ps.aligned[i], imageio.read_rgb(ps.folder / row["aligned"]))
    assert set(ps.rejected["reason"]) == {r for r in expected.values() if r != "ok"}
    # A re-run redoes only the read failures (a file may have been fixed) and nothing else.
    again = prepare.prepare_items("lfw", "smoke", items, data_root=root, workers=1, progress=False)
    assert again["processed_this_run"] == 3 and again["accepted"] == 5
    shutil.copy(root / "lfw/lfw-deepfunneled/P/face.jpg", root / "lfw/lfw-deepfunneled/P/missing.jpg")
    fixed = prepare.prepare_items("lfw", "smoke", items, data_root=root, workers=1, progress=False)
    assert fixed["accepted"] == 6 and fixed["reasons"]["missing"] == 0
    assert manifest.load_prepared("lfw", "smoke").aligned.shape[0] == 6


def test_load_prepared_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path))
    with pytest.raises(manifest.NotPreparedError, match="python -m facelab data prepare --profile small --datasets cfp"):
        manifest.load_prepared("cfp", "small")


def test_manifest_roundtrip(tmp_path):
    row = {c: "" for c in manifest.COLUMNS}
    row.update(path="cfp/cfp-dataset/Data/Images/001/frontal/01.jpg", identity="001", status="ok", packed_index=0,
               x1=1.25, score=float("nan"))
    path = manifest.write_manifest(tmp_path / "m.csv", [row])
    df = manifest.read_manifest(path)
    assert df.loc[0, "identity"] == "001" and df.loc[0, "x1"] == 1.25 and np.isnan(df.loc[0, "score"])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a facelab manifest"):
        manifest.read_manifest(tmp_path / "bad.csv")


def _fake_prepared(paths_ok, rejected):
    m = pd.DataFrame({"path": paths_ok, "identity": ["a"] * len(paths_ok), "status": "ok",
                      "packed_index": range(len(paths_ok))})
    r = pd.DataFrame({"path": list(rejected), "reason": list(rejected.values()), "status": "rejected"})
    return manifest.PreparedSet("lfw", "smoke", m, r, np.zeros((len(paths_ok), 112, 112, 3), np.uint8), None, {})


def test_resolve_pairs_counts_what_it_drops():
    from facelab.data.lfw import LFWPair

    p = pairs.protocol_path
    prepared = _fake_prepared([p("lfw", "A/A_0001.jpg"), p("lfw", "A/A_0002.jpg"), p("lfw", "B/B_0001.jpg")],
                              {p("lfw", "C/C_0001.jpg"): "no_face", p("lfw", "D/D_0001.jpg"): "missing"})
    proto = [LFWPair(0, "A", 1, "A", 2), LFWPair(0, "A", 1, "B", 1), LFWPair(1, "C", 1, "A", 2),
             LFWPair(1, "A", 1, "D", 1), LFWPair(1, "E", 1, "E", 2)]
    res = pairs.resolve_pairs(prepared, proto)
    assert len(res) == 2 and res.index1.tolist() == [0, 0] and res.index2.tolist() == [1, 2]
    assert res.same.tolist() == [True, False] and res.pair_index.tolist() == [0, 1]
    assert res.dropped == {"rejected:no_face": 1, "rejected:missing": 1, "not_prepared": 1}
    assert len(res) + sum(res.dropped.values()) == res.n_protocol


# --- command line -------------------------------------------------------------------------

def _run(argv, capsys):
    from facelab.data import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc = cli.run_guarded(args.func, args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_with_a_data_root_that_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACELAB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path / "cache"))
    rc, out, _ = _run(["data", "status"], capsys)
    assert rc == 0 and out.count("NOT FOUND") == 5 and "cfpw.io" in out
    rc, _, err = _run(["data", "prepare", "--profile", "smoke", "--datasets", "lfw"], capsys)
    assert rc == 2 and err.startswith("error: Labeled Faces in the Wild") and "Traceback" not in err
    rc, out, err = _run(["data", "prepare", "--profile", "smoke"], capsys)
    assert rc == 0 and err.count("not found, skipped") == 3
    rc, _, err = _run(["data", "prepare", "--datasets", "aflw2000"], capsys)
    assert rc == 2 and "cannot prepare aflw2000" in err
    rc, _, err = _run(["data", "fetch", "cfp"], capsys)
    assert rc == 2 and "request form" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        _run(["data", "prepare", "--profile", "huge"], capsys)


@needs_data
def test_cli_status_reports_the_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path / "cache"))
    rc, out, _ = _run(["data", "status", "--data-root", data_root], capsys)
    assert rc == 0
    assert "13,233 images, 5,749 identities" in out and "View 2 6,000 pairs" in out
    assert "7,000 images" in out and "500 identities" in out and "FP 7,000 pairs" in out
    assert "19 images, 519 faces" in out
    rc, out, _ = _run(["data", "status", "--data-root", data_root, "--json"], capsys)
    entries = {e["name"]: e for e in json.loads(out)}
    assert entries["lfw"]["counts"]["identities"] == 5749 and entries["cfp"]["counts"]["pairs_FP"] == 7000


def test_data_group_is_in_the_facelab_command_line():
    pytest.importorskip("facelab.bookbuild", reason="facelab.bookbuild is not on this branch")
    from facelab.cli import build_parser

    args = build_parser().parse_args(["data", "status"])
    assert args.func.__name__ == "cmd_status"


@needs_data
def test_profile_selections_are_nested_deterministic_and_small_at_smoke():
    from facelab.data.selection import select_images

    for dataset, smoke_max in (("lfw", 200), ("cfp", 300)):
        sel = {p: [it.path for it in select_images(dataset, p, data_root)] for p in ("smoke", "small", "full")}
        assert sel["smoke"] == [it.path for it in select_images(dataset, "smoke", data_root)]
        assert 100 <= len(sel["smoke"]) <= smoke_max
        assert set(sel["smoke"]) <= set(sel["small"]) <= set(sel["full"])
        assert sel["smoke"] == sorted(sel["smoke"])
    full = select_images("cfp", "full", data_root)
    assert len(full) == 7000 and {it.pose for it in full} == {"frontal", "profile"}
    assert {it.split for it in full} == {f"fold{k:02d}" for k in range(1, 11)}
    assert len(select_images("lfw", "full", data_root)) == 13233
    with pytest.raises(ValueError, match="no face selection"):
        select_images("widerface", "smoke", data_root)


def test_detect_faces_resized_maps_back_to_the_original_pixels():
    from facelab.data.detect import detect_faces_resized

    class Fake:
        """Reports one face at fixed coordinates of whatever image it is given, and its size."""

        def detect(self, image, landmarks=True):
            self.shape = image.shape
            box = np.array([[10.0, 20.0, 50.0, 80.0, 0.9]])
            return box[:, :4], box[:, 4], np.array([[[15.0, 30.0]] * 5])

    fake = Fake()
    dets = detect_faces_resized(fake, np.zeros((600, 1000, 3), np.uint8), max_side=250)
    assert fake.shape[:2] == (150, 250)
    np.testing.assert_allclose(dets.boxes, [[40, 80, 200, 320]], rtol=1e-6)
    np.testing.assert_allclose(dets.landmarks[0, 0], [60, 120], rtol=1e-6)
    detect_faces_resized(fake, np.zeros((100, 120, 3), np.uint8), max_side=250)
    assert fake.shape[:2] == (100, 120)


def test_an_unexpected_error_is_recorded_not_fatal(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(prepare, "process_image", boom)
    monkeypatch.setitem(prepare._WORKER, "detector", object())
    monkeypatch.setitem(prepare._WORKER, "config", prepare.PrepareConfig())
    row = prepare._work((_item("P/x.jpg", "P"), str(tmp_path / "x.jpg"), str(tmp_path)))
    assert row["status"] == "rejected" and row["reason"] == "error" and "error" in prepare.RETRIED_REASONS


@needs_data
def test_a_tight_face_crop_is_detected_again_with_room_around_it(detector, tmp_path):
    """CFP's images are little more than the face; MTCNN misplaces the landmarks of a face that fills
    the image. Cut such tight crops out of LFW images (where the face has context, so the landmarks
    found on the whole image are the reference): re-detecting on the padded crop puts the landmarks
    back where they are, without it they are off."""
    from facelab.data.detect import detect_faces, select_face

    src = os.path.join(data_root, "lfw", "lfw-deepfunneled")
    names = sorted(os.listdir(src))[:28:4]
    errors = {True: [], False: []}
    for name in names:
        image = imageio.read_rgb(os.path.join(src, name, sorted(os.listdir(os.path.join(src, name)))[0]))
        dets = detect_faces(detector, image)
        i = select_face(dets, image.shape)
        if i is None:
            continue
        x1, y1, x2, y2 = dets.boxes[i]
        # a tight crop: the top half of the box's height, sides trimmed into the face
        cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, 0.45 * (x2 - x1)
        top, left = int(max(0, cy - s)), int(max(0, cx - s))
        crop = image[top:int(cy + s), left:int(cx + s)]
        path = tmp_path / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        truth = dets.landmarks[i] - np.array([left, top], np.float32)
        for padded in (True, False):
            config = prepare.PrepareConfig(tight_pad=0.5 if padded else 0.0)
            out = prepare.analyse_image(detector, path, config)
            if out.reason:
                continue
            assert out.fields["detect_padded"] == int(padded)
            found = np.array([out.fields[c] for c in manifest.LANDMARK_COLUMNS]).reshape(5, 2)
            errors[padded].append(float(np.linalg.norm(found - truth, axis=1).mean()))
    print({k: np.round(v, 1).tolist() for k, v in errors.items()})
    assert len(errors[True]) >= 5
    assert np.median(errors[True]) < 4.0 and np.median(errors[True]) < np.median(errors[False])
