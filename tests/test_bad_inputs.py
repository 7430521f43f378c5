"""A sweep of bad and odd image files through ``data prepare`` and the ``data detect|align`` commands.

Every file gets a named outcome (the table ``SWEEP``), never a traceback, and a re-run of prepare
that meets the bad files loses nothing that was already prepared.
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest

from facelab import cli
from facelab.data import imageio
from facelab.data.manifest import load_prepared, read_manifest
from lfw_tree import build_lfw_root

FACE = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"

#: file -> (how it is made, outcome everywhere: "ok" or the rejection reason)
SWEEP = {
    "empty.jpg": ("a 0-byte file", "unreadable"),
    "truncated.jpg": ("the first third of a face JPEG", "truncated"),
    "alpha.png": ("a face as RGBA PNG, alpha 0-255 across the image (dropped)", "ok"),
    "deep16.png": ("a face as 16-bit RGB PNG (scaled to 8 bits)", "ok"),
    "cmyk.jpg": ("a face as CMYK JPEG (Pillow)", "ok"),
    "one_pixel.png": ("a 1x1 PNG", "too_small"),
    "wide_20000px.jpg": ("a 20,000 x 400 JPEG with the face in it", "too_large"),
    "text.jpg": ("a text file named .jpg", "unreadable"),
}


def _files(face: np.ndarray) -> dict[str, bytes]:
    from PIL import Image

    bgr = cv2.cvtColor(face, cv2.COLOR_RGB2BGR)
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    alpha = np.tile(np.linspace(0, 255, face.shape[1]).astype(np.uint8), (face.shape[0], 1))
    cmyk = io.BytesIO()
    Image.fromarray(face).convert("CMYK").save(cmyk, "JPEG", quality=95)
    wide = np.full((400, 20_000, 3), 128, np.uint8)
    wide[75:325, 9_875:10_125] = bgr
    return {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "alpha.png": cv2.imencode(".png", np.dstack([bgr, alpha]))[1].tobytes(),
        "deep16.png": cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes(),
        "cmyk.jpg": cmyk.getvalue(),
        "one_pixel.png": cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(),
        "wide_20000px.jpg": cv2.imencode(".jpg", wide, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(),
        "text.jpg": b"this is not an image\n",
    }


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, real_data_root):
    face = imageio.read_rgb(real_data_root / "lfw" / "lfw-deepfunneled" / FACE)
    folder = tmp_path_factory.mktemp("bad-images")
    files = _files(face)
    assert set(files) == set(SWEEP)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, files


def _main(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "Traceback" not in out.out
    return rc, out.out, out.err


def test_the_decoder_outcomes(bad_files, real_data_root):
    folder, _ = bad_files
    face = imageio.read_rgb(real_data_root / "lfw" / "lfw-deepfunneled" / FACE)
    for name, (_, outcome) in SWEEP.items():
        if outcome == "ok":
            img = imageio.read_rgb(folder / name)
            assert img.shape == face.shape and img.dtype == np.uint8, name
            # 16-bit and alpha give back the face exactly; CMYK went through a lossy JPEG encoding again.
            tolerance = {"deep16.png": 0, "alpha.png": 0, "cmyk.jpg": 6}[name]
            assert np.abs(img.astype(int) - face).mean() <= tolerance, name
        else:
            with pytest.raises(imageio.ImageReadError) as err:
                imageio.read_rgb(folder / name)
            assert err.value.reason == outcome, (name, err.value)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_detect_names_every_outcome(bad_files, capsys, as_json):
    folder, _ = bad_files
    paths = [str(folder / n) for n in SWEEP]
    rc, out, _ = _main(["data", "detect", *paths, *(["--json"] if as_json else [])], capsys)
    assert rc == 1  # some images were rejected
    lines = out.strip().splitlines()
    assert len(lines) == len(SWEEP)
    for line, (name, (_, outcome)) in zip(lines, SWEEP.items()):
        if as_json:
            rec = json.loads(line)
            assert rec["image"].endswith(name)
            assert (rec["status"] if outcome == "ok" else rec["reason"]) == outcome, (name, rec)
            if outcome == "ok":
                face = rec["faces"][rec["subject"]]
                assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.9
        else:
            expected = ": 1 face: subject box" if outcome == "ok" else f": rejected ({outcome}"
            assert expected in line, (name, line)


def test_align_names_every_outcome_and_writes_the_good_crops(bad_files, tmp_path, capsys):
    folder, _ = bad_files
    rc, out, _ = _main(["data", "align", *[str(folder / n) for n in SWEEP], "--out", str(tmp_path / "crops")], capsys)
    assert rc == 1
    lines = dict(zip(SWEEP, out.strip().splitlines()))
    for name, (_, outcome) in SWEEP.items():
        crop = tmp_path / "crops" / (name.rsplit(".", 1)[0] + ".png")
        if outcome == "ok":
            assert ": aligned -> " in lines[name]
            assert imageio.read_rgb(crop).shape == (112, 112, 3)
        else:
            assert f": rejected ({outcome}" in lines[name], lines[name]
            assert not crop.exists()
    # All good: exit 0. Usage errors: exit 2 with one line.
    assert _main(["data", "align", str(folder / "alpha.png"), "--out", str(tmp_path / "c2")], capsys)[0] == 0
    rc, _, err = _main(["data", "align", str(folder / "cmyk.jpg"), str(tmp_path / "x" / "cmyk.png"),
                        "--out", str(tmp_path / "c3")], capsys)
    assert rc == 2 and err.startswith("error: several images would be written as cmyk.png")


def test_prepare_names_every_outcome_and_keeps_what_was_prepared(bad_files, tmp_path, monkeypatch, capsys,
                                                                 real_data_root):
    _, files = bad_files
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    prepare = ["data", "prepare", "--profile", "smoke", "--datasets", "lfw", "--data-root", str(root),
               "--workers", "1", "--no-progress"]
    good = build_lfw_root(root, real_data_root, folds=1)
    rc, out, _ = _main(prepare, capsys)
    assert rc == 0 and f"{len(good)} of {len(good)} images accepted" in out
    before = load_prepared("lfw", "smoke")
    rows_before = before.manifest.set_index("path")
    crops_before = {p: np.array(before.aligned[i]) for i, p in enumerate(before.manifest["path"])}

    # The same dataset with the sweep's files added as one more fold, each under its own identity:
    # LFW's layout names every file Name/Name_0001.jpg, so the PNGs are PNG bytes behind a .jpg name
    # (the decoder goes by the contents).
    ident = {name: "Bad_" + name.split(".")[0].title().replace("_", "") for name in SWEEP}
    extra = {f"{ident[n]}/{ident[n]}_0001.jpg": data for n, data in files.items()}
    build_lfw_root(root, real_data_root, folds=1, extra=extra)
    rc, out, _ = _main(prepare, capsys)
    assert rc == 0, out
    assert f"{len(SWEEP)} processed, {len(good):,} already done" in out  # nothing prepared was redone
    manifest = read_manifest(tmp_path / "cache" / "prepared" / "lfw" / "manifest-smoke.csv").set_index("identity")
    for name, (_, outcome) in SWEEP.items():
        row = manifest.loc[ident[name]]
        assert (row["status"] if outcome == "ok" else row["reason"]) == outcome, (name, row["reason"])
    after = load_prepared("lfw", "smoke")
    rows_after = after.manifest.set_index("path")
    for path, crop in crops_before.items():  # every image prepared before is still there, unchanged
        assert np.array_equal(after.aligned[int(rows_after.loc[path, "packed_index"])], crop), path
        assert (after.folder / rows_after.loc[path, "aligned"]).exists()
        cols = [c for c in rows_before.columns if c != "packed_index"]
        assert rows_after.loc[path, cols].equals(rows_before.loc[path, cols]), path
    reasons = after.summary["reasons"]
    assert reasons["unreadable"] == 2 and reasons["truncated"] == 1 and reasons["too_small"] == 1
    assert reasons["too_large"] == 1 and after.summary["accepted"] == len(good) + 3
