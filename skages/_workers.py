"""Worker processes that do not outlive the process that started them.

joblib's loky workers (and the resource trackers that watch them) are left running for
minutes when their parent is killed with SIGKILL: nothing tells them. On Linux each
worker asks the kernel, as it starts, to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``); the resource trackers then see their pipes close
and exit too. Elsewhere the workers stop after loky's idle timeout.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Loky worker initializer: SIGKILL this worker when ``parent_pid`` dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: fall back on loky's idle timeout
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _parallel(n_jobs: int | None, **kwargs: Any):
    """A :class:`joblib.Parallel` whose loky workers die with this process.

    A backend the user chose (``joblib.parallel_config``) other than loky is kept as it is.
    """
    from joblib import Parallel
    from joblib._parallel_backends import LokyBackend
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    if type(backend) is LokyBackend:
        backend = LokyBackend(initializer=_die_with_parent, initargs=(os.getpid(),))
        return Parallel(n_jobs=n_jobs, backend=backend, **kwargs)
    return Parallel(n_jobs=n_jobs, **kwargs)
