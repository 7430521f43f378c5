"""Teacher targets: computed once per prepared set and teacher, on demand, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from facelab.teachers import Teacher, l2_normalize
from facelab.teachers import targets as T


class CountingTeacher(Teacher):
    """A deterministic stand-in: the embedding of a crop is its normalised mean colour per image third."""

    name = "counting"
    embedding_dim = 9

    def __init__(self, version: str = "v1"):
        self._version, self.calls = version, 0

    @property
    def version(self) -> str:
        return self._version

    def _embed_batch(self, crops: np.ndarray) -> np.ndarray:
        self.calls += len(crops)
        c = np.asarray(crops, np.float32)
        thirds = [c[:, :, s].mean(axis=(1, 2)) for s in (slice(0, 37), slice(37, 75), slice(75, 112))]
        return np.concatenate(thirds, axis=1) + 1.0


class FakePrepared:
    def __init__(self, n: int, fingerprint: str = "fp1", seed: int = 0):
        self.aligned = np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
        self.dataset, self.profile, self.summary = "lfw", "smoke", {"fingerprint": fingerprint}

    def __len__(self) -> int:
        return len(self.aligned)


def test_targets_are_the_teachers_embeddings_of_crop_and_mirror(isolated_cache):
    prepared, teacher = FakePrepared(10), CountingTeacher()
    out = T.teacher_targets(prepared, teacher, rows=[3, 1, 3])
    assert out.shape == (3, 2, 9)
    np.testing.assert_allclose(out[0, 0], l2_normalize(teacher._embed_batch(prepared.aligned[[3]]))[0], rtol=1e-6)
    np.testing.assert_allclose(out[1, 1], l2_normalize(teacher._embed_batch(prepared.aligned[[1], :, ::-1]))[0],
                               rtol=1e-6)
    np.testing.assert_allclose(out[0], out[2])
    assert not np.allclose(out[0, 0], out[0, 1])  # the mirror's target is the mirror's embedding


def test_rows_are_computed_once_and_only_when_asked(isolated_cache):
    prepared, teacher = FakePrepared(10), CountingTeacher()
    T.teacher_targets(prepared, teacher, rows=[0, 1, 2])
    assert teacher.calls == 2 * 3  # crop and mirror
    T.teacher_targets(prepared, teacher, rows=[1, 2, 3])
    assert teacher.calls == 2 * 4  # only row 3 is new
    assert T.cached_rows(prepared, teacher) == 4
    everything = T.teacher_targets(prepared, teacher)
    assert everything.shape == (10, 2, 9) and teacher.calls == 2 * 10


def test_another_teacher_version_or_prepared_set_never_reads_the_cache(isolated_cache):
    prepared = FakePrepared(6)
    first = T.teacher_targets(prepared, CountingTeacher("v1"))
    other = CountingTeacher("v2")
    T.teacher_targets(prepared, other)
    assert other.calls == 12  # a new teacher version recomputes
    reprepared = FakePrepared(6, fingerprint="fp2", seed=1)  # same size, other crops
    again = CountingTeacher("v1")
    second = T.teacher_targets(reprepared, again)
    assert again.calls == 12 and not np.allclose(first, second)


def test_an_interrupted_fill_resumes_without_trusting_half_written_rows(isolated_cache, monkeypatch):
    prepared = FakePrepared(3 * T.CHUNK // 2)
    teacher = CountingTeacher()
    real = teacher._embed_batch
    calls = {"n": 0}

    def dies_in_the_second_chunk(crops):
        calls["n"] += 1
        if calls["n"] > 2 * (T.CHUNK // 64) + 1:  # part-way through the second chunk
            raise KeyboardInterrupt
        return real(crops)

    monkeypatch.setattr(teacher, "_embed_batch", dies_in_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        T.teacher_targets(prepared, teacher)
    assert T.cached_rows(prepared, teacher) == T.CHUNK  # the first chunk is kept, the second is not
    fresh = CountingTeacher()
    resumed = T.teacher_targets(prepared, fresh)
    assert fresh.calls == 2 * (len(prepared) - T.CHUNK)
    np.testing.assert_allclose(resumed, T.teacher_targets(FakePrepared(3 * T.CHUNK // 2), CountingTeacher("other")),
                               rtol=1e-6)


def test_rows_outside_the_set_are_refused(isolated_cache):
    with pytest.raises(ValueError, match="rows must lie in"):
        T.teacher_targets(FakePrepared(4), CountingTeacher(), rows=[4])
