"""Downloads (on a local HTTP server and file:// URLs): checksums, resume, mirrors, offline; local copies."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from facelab.data import fetch

data_root = os.environ.get("FACELAB_DATA")
needs_data = pytest.mark.skipif(not data_root, reason="set FACELAB_DATA")

PAYLOAD = bytes(range(256)) * 4000  # 1 MB


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /good (Range supported), /norange (Range ignored), /bad (other bytes), /gone (404)."""

    log: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        rng = self.headers.get("Range")
        type(self).log.append((self.path, rng))
        if self.path == "/gone":
            self.send_error(404)
            return
        body = PAYLOAD[::-1] if self.path == "/bad" else PAYLOAD
        if rng and self.path != "/norange":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_keeps_a_good_file(server, tmp_path):
    dest = tmp_path / "f.bin"
    fetch.download(fetch.RemoteFile("f.bin", (f"{server}/good",), sha256=SHA), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    _Handler.log.clear()
    fetch.download(fetch.RemoteFile("f.bin", (f"{server}/good",), sha256=SHA), dest, progress=False)
    assert _Handler.log == []  # verified on disk: no request at all


def test_download_resumes_with_a_range_request(server, tmp_path):
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:300_000])  # an interrupted earlier download
    _Handler.log.clear()
    fetch.download(fetch.RemoteFile("f.bin", (f"{server}/good",), sha256=SHA), dest, progress=False)
    assert _Handler.log == [("/good", "bytes=300000-")]
    assert dest.read_bytes() == PAYLOAD


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    fetch.download(fetch.RemoteFile("f.bin", (f"{server}/norange",), sha256=SHA), tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_complete_part_gets_416_and_is_verified(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    fetch.download(fetch.RemoteFile("f.bin", (f"{server}/good",), sha256=SHA), tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_part_and_tries_the_next_mirror(server, tmp_path):
    remote = fetch.RemoteFile("f.bin", (f"{server}/bad", f"{server}/gone", f"{server}/good"), sha256=SHA)
    _Handler.log.clear()
    fetch.download(remote, tmp_path / "f.bin", progress=False)
    assert [p for p, _ in _Handler.log] == ["/bad", "/gone", "/good"]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD
    with pytest.raises(fetch.FetchError) as err:
        fetch.download(fetch.RemoteFile("g.bin", (f"{server}/bad",), sha256=SHA), tmp_path / "g.bin", progress=False)
    msg = str(err.value)
    assert "SHA256 mismatch" in msg and "\n" not in msg
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()


def test_md5_pinned_files_are_checked_too(server, tmp_path):
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    fetch.download(fetch.RemoteFile("f.bin", (f"{server}/good",), md5=md5), tmp_path / "f.bin", progress=False)
    with pytest.raises(fetch.FetchError, match="MD5 mismatch"):
        fetch.download(fetch.RemoteFile("h.bin", (f"{server}/bad",), md5=md5), tmp_path / "h.bin", progress=False)


def test_offline_is_one_line(tmp_path):
    # Port 9 on 127.0.0.1 (discard) refuses connections here, like a machine without network.
    remote = fetch.RemoteFile("f.bin", ("http://127.0.0.1:9/f.bin",), sha256=SHA)
    with pytest.raises(fetch.FetchError) as err:
        fetch.download(remote, tmp_path / "f.bin", progress=False, timeout=5)
    msg = str(err.value)
    assert "no network?" in msg and "unreachable" in msg and "\n" not in msg


def test_file_urls_resume_by_seeking(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:12345])
    fetch.download(fetch.RemoteFile("f.bin", (src.as_uri(),), sha256=SHA), tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_fetch_dataset_explains_gated_datasets(tmp_path):
    with pytest.raises(fetch.FetchError, match="cfpw.io"):
        fetch.fetch_dataset("cfp", tmp_path)
    with pytest.raises(fetch.FetchError, match="shuoyang1213.me/WIDERFACE"):
        fetch.fetch_dataset("widerface", tmp_path)
    with pytest.raises(KeyError):
        fetch.fetch_dataset("imagenet", tmp_path)


def test_fetch_lfw_from_a_local_server(server, tmp_path, monkeypatch):
    """The whole LFW fetch (archive + protocol files, unpacking) against local URLs and digests."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"\xff\xd8fake\xff\xd9"
        info = tarfile.TarInfo("lfw-deepfunneled/A_B/A_B_0001.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "src" / "lfw-deepfunneled.tgz"
    archive.parent.mkdir()
    archive.write_bytes(buf.getvalue())
    pairs = tmp_path / "src" / "pairs.txt"
    pairs.write_text("1\t1\nA_B\t1\t1\nA_B\t1\tA_B\t1\n")
    files = tuple(fetch.RemoteFile(f.name, (f"{server}/gone", (tmp_path / "src" / f.name).as_uri()),
                                   sha256=hashlib.sha256((tmp_path / "src" / f.name).read_bytes()).hexdigest())
                  for f in (archive, pairs))
    monkeypatch.setattr(fetch, "LFW_FILES", files)
    folder = fetch.fetch_dataset("lfw", tmp_path / "root", progress=False)
    assert (folder / "lfw-deepfunneled" / "A_B" / "A_B_0001.jpg").read_bytes() == data
    assert (folder / "protocol" / "pairs.txt").exists()
    assert fetch.fetch_dataset("lfw", tmp_path / "root", progress=False) == folder  # idempotent


def test_fetch_from_rejects_a_wrong_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(fetch.FetchError, match="does not hold"):
        fetch.fetch_from("cfp", tmp_path / "empty", tmp_path / "root")
    with pytest.raises(fetch.FetchError, match="no such folder"):
        fetch.fetch_from("lfw", tmp_path / "nowhere", tmp_path / "root")


def test_fetch_from_copies_resumably_and_reports_problems(tmp_path):
    src = tmp_path / "mine" / "lfw"
    (src / "lfw-deepfunneled" / "A_B").mkdir(parents=True)
    (src / "lfw-deepfunneled" / "A_B" / "A_B_0001.jpg").write_bytes(b"x")
    (src / "protocol").mkdir()
    (src / "protocol" / "pairs.txt").write_text("1\t1\nA_B\t1\t1\nA_B\t1\tA_B\t1\n")
    target, report = fetch.fetch_from("lfw", tmp_path / "mine", tmp_path / "root", copy=True, progress=False)
    assert (target / "lfw-deepfunneled" / "A_B" / "A_B_0001.jpg").read_bytes() == b"x"
    assert report["counts"]["images"] == 1 and report["counts"]["pairs_view2"] == 2
    assert any("pairs.txt differs" in p for p in report["problems"])
    assert any("pairsDevTrain.txt is missing" in p for p in report["problems"])
    fetch.fetch_from("lfw", tmp_path / "mine", tmp_path / "root", copy=True, progress=False)  # resumable/idempotent


@needs_data
def test_fetch_from_links_the_real_mirror(tmp_path):
    target, report = fetch.fetch_from("lfw", os.path.join(data_root, "lfw"), tmp_path / "root", progress=False)
    assert target.is_symlink() and report["problems"] == []
    assert report["counts"]["images"] == 13233 and report["counts"]["pairs_view2"] == 6000
    again, _ = fetch.fetch_from("lfw", data_root, tmp_path / "root", progress=False)
    assert again == target
