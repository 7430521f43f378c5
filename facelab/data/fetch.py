"""Getting the raw datasets: verified, resumable downloads, or a local copy (``--from DIR``).

* :func:`download` fetches one file from a list of mirrors into ``<dest>.part``, resuming a
  partial file with an HTTP ``Range`` request (or a seek, for ``file://`` URLs), checks its
  SHA-256 (MD5 where the publisher gives no SHA-256), and only then renames it to ``dest``. A
  checksum mismatch deletes the part and tries the next mirror.
* :func:`fetch_dataset` downloads and unpacks a public dataset (LFW) into a data root; for a
  gated dataset (CFP, WIDER FACE) or one without a pinned download it raises :class:`FetchError`
  whose message says exactly how to request or obtain it.
* :func:`fetch_from` takes a local copy laid out as the official archive extracts, checks it
  (marker folder, protocol checksums, counts) and links (default) or copies it into a data root.

Every failure is a :class:`FetchError` (a :class:`facelab.paths.DataNotFoundError`), which the
CLI prints as one line; being offline is reported as such, not as a traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facelab.errors import UnknownNameError
from facelab.paths import DATASETS, DataNotFoundError, cache_root

CHUNK = 1 << 20
USER_AGENT = "facelab-fetch/0.1 (+research dataset download)"


class FetchError(DataNotFoundError):
    """A dataset or file could not be obtained; the message says why and what to do."""

    def __init__(self, message: str, dataset: str | None = None):
        FileNotFoundError.__init__(self, message)
        self.dataset = dataset


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: official URL first, then mirrors; pinned digest (SHA-256, else MD5)."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    note: str = ""


#: Public LFW files. The protocol files' SHA-256 are scikit-learn's (fetch_lfw_pairs) and equal
#: those of the local mirror; for the deep-funneled archive only an MD5 is published
#: (torchvision.datasets.LFWPeople), so that is what is checked.
LFW_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("lfw-deepfunneled.tgz",
               ("http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
                "https://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz"),
               md5="68331da3eb755a505a502b5aacb3c201", note="MD5 from torchvision's LFWPeople"),
    RemoteFile("pairs.txt", ("http://vis-www.cs.umass.edu/lfw/pairs.txt",
                             "https://ndownloader.figshare.com/files/5976006"),
               sha256="ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592"),
    RemoteFile("pairsDevTrain.txt", ("http://vis-www.cs.umass.edu/lfw/pairsDevTrain.txt",
                                     "https://ndownloader.figshare.com/files/5976012"),
               sha256="1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa"),
    RemoteFile("pairsDevTest.txt", ("http://vis-www.cs.umass.edu/lfw/pairsDevTest.txt",
                                    "https://ndownloader.figshare.com/files/5976009"),
               sha256="7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c"),
)

#: How to request the gated datasets (printed by ``fetch`` without ``--from``).
REQUEST_INSTRUCTIONS: dict[str, str] = {
    "cfp": ("CFP is distributed on request by its authors: fill in the request form on http://www.cfpw.io/ "
            "(non-commercial research use), download cfp-dataset.zip from the link they send, unzip it and run "
            "`python data_scripts/cfp.py fetch --from /path/to/cfp-dataset/..` (the folder that holds cfp-dataset/)"),
    "widerface": ("WIDER FACE is downloaded by hand after accepting its terms of use: on "
                  "http://shuoyang1213.me/WIDERFACE/ get WIDER_val.zip (Google Drive or Tencent Drive mirror) and "
                  "wider_face_split.zip, unzip them into one folder DIR (DIR/WIDER_val/images/..., put "
                  "wider_face_val_bbx_gt.txt as DIR/annotations/wider_val_subset_bbx.txt) and run "
                  "`python data_scripts/widerface.py fetch --from DIR`"),
    "aflw2000": ("AFLW2000-3D has no pinned download here: get AFLW2000-3D.zip from "
                 "http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/main.htm, unzip its .jpg/.mat files into "
                 "DATA_ROOT/aflw2000_samples/"),
    "rwmfd": ("RWMFD has no pinned download here: get RWMFD part 1 from "
              "https://github.com/X-zhangyang/Real-World-Masked-Face-Dataset and copy its folders into "
              "DATA_ROOT/rwmfd_samples/"),
}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``hashlib.file_digest``: read in blocks, never whole)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _expected(remote: RemoteFile) -> tuple[str, str] | None:
    if remote.sha256:
        return "sha256", remote.sha256.lower()
    if remote.md5:
        return "md5", remote.md5.lower()
    return None


def _download_to_part(url: str, part: Path, timeout: float, progress: bool, label: str) -> None:
    """Append the rest of ``url`` to ``part`` (Range request / seek), or restart it if the server ignores Range."""
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    if urllib.parse.urlparse(url).scheme == "file":
        src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        total = src.stat().st_size
        with open(src, "rb") as fin, open(part, "ab" if have <= total else "wb") as fout:
            fin.seek(have if have <= total else 0)
            shutil.copyfileobj(fin, fout, CHUNK)
        return
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            return  # nothing left to fetch: the part is complete (the checksum decides)
        raise
    with resp:
        resumed = have and resp.status == 206
        length = resp.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        with open(part, "ab" if resumed else "wb") as fout, \
                tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, desc=label,
                     disable=not progress, leave=False) as bar:
            while chunk := resp.read(CHUNK):
                fout.write(chunk)
                bar.update(len(chunk))


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        reason = err.reason
        if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError, socket.timeout, OSError)):
            return f"unreachable ({reason})"
        return str(reason)
    return f"{type(err).__name__}: {err}"


def download(remote: RemoteFile, dest: str | os.PathLike, *, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download ``remote`` to ``dest`` (resuming ``dest.part``), verified; return ``dest``.

    An existing ``dest`` whose digest matches is kept (no network).

    Raises:
        FetchError: every mirror failed (offline, HTTP error, checksum mismatch); one line per mirror.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = _expected(remote)
    if dest.exists() and (expected is None or file_digest(dest, expected[0]) == expected[1]):
        return dest
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for url in remote.urls:
        try:
            _download_to_part(url, part, timeout, progress, remote.name)
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {_reason(err)}")
            continue
        if expected is not None:
            got = file_digest(part, expected[0])
            if got != expected[1]:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: {expected[0].upper()} mismatch (expected {expected[1][:16]}..., "
                              f"got {got[:16]}...; the partial file was deleted)")
                continue
        os.replace(part, dest)
        return dest
    offline = all("unreachable" in e for e in errors)
    raise FetchError(f"could not download {remote.name}" + (" (no network?)" if offline else "") + ": "
                     + "; ".join(errors) + ". Rerun to resume, or download it by hand and use --from DIR")


def _extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def fetch_dataset(name: str, dest: str | os.PathLike | None = None, *, progress: bool = True,
                  timeout: float = 30.0) -> Path:
    """Download dataset ``name`` into data root ``dest`` (default ``$FACELAB_CACHE/data``); return its folder.

    Only LFW has a public, pinned download. Raises :class:`FetchError` for the others, with
    the request/download instructions.
    """
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    if name != "lfw":
        raise FetchError(f"{DATASETS[name].title}: {REQUEST_INSTRUCTIONS[name]}", name)
    root = Path(dest) if dest else cache_root() / "data"
    folder = root / DATASETS[name].folder
    downloads = folder / "downloads"
    for remote in LFW_FILES:
        if remote.name.endswith(".tgz"):
            if (folder / DATASETS[name].marker).is_dir():
                continue
            archive = download(remote, downloads / remote.name, timeout=timeout, progress=progress)
            tmp = folder / ".extracting"
            shutil.rmtree(tmp, ignore_errors=True)
            _extract(archive, tmp)
            os.replace(tmp / DATASETS[name].marker, folder / DATASETS[name].marker)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            download(remote, folder / "protocol" / remote.name, timeout=timeout, progress=progress)
    return folder


def _source_folder(name: str, src: Path) -> Path:
    info = DATASETS[name]
    for cand in (src, src / info.folder):
        if (cand / info.marker).exists() and (info.marker != "." or any(cand.iterdir())):
            return cand
    raise FetchError(f"{src} does not hold {info.title}: expected {info.marker}/ in it (or in "
                     f"{src / info.folder}); {REQUEST_INSTRUCTIONS.get(name, info.how_to_get)}", name)


def check_local_copy(name: str, folder: Path) -> dict:
    """Check a dataset folder against what the official archive holds; ``{"counts": ..., "problems": [...]}``."""
    from facelab.data.inventory import dataset_counts

    problems: list[str] = []
    if name == "lfw":
        by_name = {r.name: r for r in LFW_FILES}
        for fname in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
            path = folder / "protocol" / fname
            if not path.exists():
                problems.append(f"protocol/{fname} is missing")
            elif file_digest(path) != by_name[fname].sha256:
                problems.append(f"protocol/{fname} differs from the official file (SHA-256)")
    try:
        counts = dataset_counts(name, folder)
    except (OSError, ValueError) as err:
        counts, problems = {}, problems + [str(err)]
    return {"counts": counts, "problems": problems}


def fetch_from(name: str, src: str | os.PathLike, dest: str | os.PathLike | None = None, *,
               copy: bool = False, progress: bool = True) -> tuple[Path, dict]:
    """Put a local copy of dataset ``name`` (``src``: its folder, or a data root holding it) into data root
    ``dest`` (default ``$FACELAB_CACHE/data``), as a symlink or (``copy=True``) a resumable copy.

    Returns (the dataset folder under ``dest``, the check report). Raises :class:`FetchError` if
    ``src`` is not the dataset or ``dest`` already holds a different copy.
    """
    from tqdm.auto import tqdm

    src = Path(src).expanduser()
    if not src.is_dir():
        raise FetchError(f"--from {src}: no such folder", name)
    source = _source_folder(name, src.resolve())
    report = check_local_copy(name, source)
    target = (Path(dest) if dest else cache_root() / "data") / DATASETS[name].folder
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.resolve() == source:
        return target, report
    if not copy:
        if target.is_symlink() or target.exists():
            raise FetchError(f"{target} already exists and is not a link to {source}: remove it first", name)
        target.symlink_to(source, target_is_directory=True)
        return target, report
    files = [p for p in source.rglob("*") if p.is_file()]
    for p in tqdm(files, desc=f"copy {name}", unit="file", disable=not progress):
        out = target / p.relative_to(source)
        if out.exists() and out.stat().st_size == p.stat().st_size:
            continue  # copied by an earlier, interrupted run
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part")
        shutil.copyfile(p, tmp)
        os.replace(tmp, out)
    return target, report
