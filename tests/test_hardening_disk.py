"""Full disks and damaged unfinished files: survey writers and ``skages simulate``.

A real small file system (a tmpfs, mounted when the tests run as root) and a
fault-injecting file object under h5py, which always runs.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import skages.io.survey as survey_module
from skages._atomic import WriteError, atomic_path
from skages.cli import main
from skages.datasets import make_apokasc, write_apokasc
from skages.io import SurveyReader, read_survey

REPO = Path(__file__).resolve().parents[1]


class _FullDisk(io.RawIOBase):
    """A file that takes ``budget`` bytes, then fails as a full disk does (ENOSPC).

    With ``lie=True`` it reports writes past the budget as done and drops them, as a
    disk that loses writes silently.
    """

    def __init__(self, path: Path, mode: str, budget: int, lie: bool = False) -> None:
        self._f = open(path, {"w": "w+b", "r+": "r+b"}[mode])  # noqa: SIM115
        self.budget, self.lie = budget, lie

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, *args):
        return self._f.seek(*args)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        return self._f.readinto(buffer)

    def truncate(self, size=None):
        return self._f.truncate(size)

    def flush(self) -> None:
        self._f.flush()

    def write(self, data) -> int:
        if self._f.tell() + len(data) > self.budget:
            if self.lie:
                self._f.seek(len(data), os.SEEK_CUR)
                return len(data)
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._f.write(data)


def _fill_disk_at(monkeypatch, budget: int, lie: bool = False) -> None:
    real = survey_module._open_hdf5

    def opener(path, mode):
        if mode == "r":
            return real(path, mode)
        return h5py.File(_FullDisk(path, mode, budget, lie), mode, rdcc_nbytes=0)

    monkeypatch.setattr(survey_module, "_open_hdf5", opener)


def _assert_same_survey(path: Path, reference) -> None:
    got = read_survey(path)
    for name in ("spectra", "spectra_err", "bitmask"):
        np.testing.assert_array_equal(got[name], reference[name])
    want = reference.labels
    pd.testing.assert_frame_equal(
        got.labels.reset_index(drop=True),
        want.reset_index(drop=True),
        check_dtype=False,
        check_categorical=False,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference():
    return make_apokasc(300, psd=False, random_state=1)


@pytest.mark.parametrize("budget", [60_000, 2_500_000, 5_500_000])
def test_a_full_disk_mid_write_is_one_clean_error_and_resumes_exactly(
    tmp_path, monkeypatch, reference, budget
):
    out = tmp_path / "s.h5"
    _fill_disk_at(monkeypatch, budget)
    with pytest.raises(WriteError) as info:
        write_apokasc(out, 300, chunk_size=50, psd=False, random_state=1)
    message = str(info.value)
    assert "[Errno" not in message and "No space left on device" in message
    assert "s.h5.partial" in message and "stars written before are kept" in message
    assert info.value.errno == errno.ENOSPC
    assert not out.exists()
    monkeypatch.undo()  # space freed
    write_apokasc(out, 300, chunk_size=50, psd=False, random_state=1, resume=True)
    _assert_same_survey(out, reference)


def test_a_lost_write_never_reaches_the_final_name(tmp_path, monkeypatch):
    out = tmp_path / "s.h5"
    _fill_disk_at(monkeypatch, 2_500_000, lie=True)
    # caught where a chunk is read back (HDF5's filters), else by the checksums at close
    with pytest.raises((WriteError, ValueError), match=r"s\.h5\.partial"):
        write_apokasc(out, 300, chunk_size=50, psd=False, random_state=1)
    assert not out.exists()


def test_a_full_disk_while_creating_the_file_leaves_nothing(tmp_path, monkeypatch, reference):
    out = tmp_path / "s.h5"
    _fill_disk_at(monkeypatch, 3_000)
    with pytest.raises(WriteError, match="No space left on device"):
        write_apokasc(out, 300, chunk_size=50, psd=False, random_state=1)
    assert not out.exists() and not (tmp_path / "s.h5.partial").exists()


def _interrupted_partial(tmp_path: Path, monkeypatch) -> Path:
    _fill_disk_at(monkeypatch, 5_500_000)
    with pytest.raises(WriteError):
        write_apokasc(tmp_path / "s.h5", 300, chunk_size=50, psd=False, random_state=1)
    monkeypatch.undo()
    return tmp_path / "s.h5.partial"


def _flip_a_spectrum_byte(partial: Path) -> None:
    with h5py.File(partial, "r") as h5:
        offset = h5["spectra"].id.get_chunk_info(0).byte_offset
    with open(partial, "r+b") as f:
        f.seek(offset + 200)
        byte = f.read(1)
        f.seek(offset + 200)
        f.write(bytes([byte[0] ^ 0xFF]))


def _cut_the_tail(partial: Path) -> None:
    with open(partial, "r+b") as f:
        f.truncate(partial.stat().st_size // 3)


@pytest.mark.parametrize("damage", [_flip_a_spectrum_byte, _cut_the_tail])
def test_a_damaged_partial_is_refused_and_never_truncated(tmp_path, monkeypatch, capsys, damage):
    partial = _interrupted_partial(tmp_path, monkeypatch)
    damage(partial)
    before = _digest(partial)
    argv = ["-q", "simulate", "--n-stars", "300", "--chunk-size", "50", "--no-psd",
            "--seed", "1", "-o", str(tmp_path / "s.h5")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "s.h5.partial" in err and "damaged" in err and "--restart" in err
    assert "Traceback" not in err and "[Errno" not in err
    assert _digest(partial) == before  # left exactly as it was
    assert main([*argv, "--restart"]) == 0
    with SurveyReader(tmp_path / "s.h5") as survey:
        assert survey.n_stars == 300


def _mount_tmpfs(folder: Path, size: str) -> None:
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real small file system needs root on Linux (mount -t tmpfs)")
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_simulate_on_a_real_full_disk_then_resumes_exactly(tmp_path):
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    _mount_tmpfs(mount, "30m")
    try:
        out = mount / "sim.h5"
        command = [sys.executable, "-m", "skages.cli", "-q", "simulate", "--n-stars", "1000",
                   "--chunk-size", "100", "--no-psd", "-o", str(out)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert first.returncode == 1, first.stderr  # not a segfault (139), not "written"
        assert "written" not in first.stdout
        lines = [line for line in first.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1, first.stderr
        assert "sim.h5.partial" in lines[0] and "space" in lines[0]
        assert "[Errno" not in lines[0] and "Traceback" not in first.stderr
        assert not out.exists()
        subprocess.run(["mount", "-o", "remount,size=100m", str(mount)], check=True)
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert second.returncode == 0, second.stderr
        _assert_same_survey(out, make_apokasc(1000, psd=False, random_state=0))
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_atomic_path_full_disk_message_has_no_errno_noise(tmp_path):
    target = tmp_path / "ages.fits"
    with pytest.raises(WriteError) as info, atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == f"could not write {target}: No space left on device"
    with pytest.raises(WriteError) as info, atomic_path(target):
        raise OSError("disk quota exceeded somewhere")
    assert str(info.value) == f"could not write {target}: disk quota exceeded somewhere"
    # a writer (astropy's FITS) that reports the full disk without an errno: said once
    with pytest.raises(WriteError) as info, atomic_path(target):
        raise OSError("[Errno 28] No space left on device")
    assert str(info.value) == f"could not write {target}: No space left on device"
    assert info.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())
