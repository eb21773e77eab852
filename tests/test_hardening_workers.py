"""Worker processes do not outlive a killed command (issue 23, item 10)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only"
)


def _alive(procs):
    alive = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_sigkill_of_simulate_with_two_jobs_leaves_no_worker(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "skages.cli", "-q", "simulate", "--n-stars", "20000",
           "--n-jobs", "2", "--no-psd", "--output", str(tmp_path / "s.h5")]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    parent = psutil.Process(proc.pid)
    children = []
    try:
        deadline = time.monotonic() + 60
        workers = []
        while time.monotonic() < deadline and proc.poll() is None:
            children = parent.children(recursive=True)
            workers = [c for c in children if "loky" in " ".join(_cmdline(c))]
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        assert len(workers) >= 2, (proc.poll(), proc.stderr.read() if proc.poll() else "")
        time.sleep(0.5)  # the workers have run their initializer and are simulating
        children = parent.children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [(p.pid, _cmdline(p)[-3:]) for p in _alive(children)]
        assert not left, f"still running 10 s after the parent's SIGKILL: {left}"
    finally:
        if proc.poll() is None:
            children = parent.children(recursive=True)
        for p in _alive(children):  # do not leave them running when the test fails
            p.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []
