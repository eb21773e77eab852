"""One run per output: an exclusive lock file beside the output, held for the whole run.

``output_lock(path)`` creates ``<path>.lock`` and takes an exclusive, non-blocking
``fcntl.flock`` on it (POSIX). The file records the holder's PID, host, start time and
command line. A second run on the same output fails at once with an
:class:`OutputInUseError` that names the running process. The operating system drops
the lock when its holder exits, however it exits (``kill -9`` included), so a lock
left by a dead run is simply taken over. Where ``fcntl`` is missing (Windows) the lock
file is created exclusively instead, and a file whose PID is no longer alive on this
host is taken over. Locks on network file systems are only as good as their ``flock``.

Taking the lock also removes the temporaries that killed runs left beside the output
(``.<name>.*.tmp``, :func:`skages._atomic.atomic_path`'s names): with the lock held, no
live run can be writing them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputInUseError(OSError):
    """Another running process holds the lock of this output."""

    def __str__(self) -> str:  # the message alone, without "[Errno 16]"
        return str(self.strerror or super().__str__())


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _holder_text(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    command = info.get("command") or "?"
    return (
        f"PID {info.get('pid')} on {info.get('host', '?')} (started "
        f"{info.get('started_utc', '?')}: {command})"
    )


def _my_info() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        }
    )


def _in_use(path: Path, lock: Path) -> OutputInUseError:
    return OutputInUseError(
        errno.EBUSY,
        f"{path} is in use by another skages run: {_holder_text(lock)}; wait for it to "
        f"finish or stop it (its lock file: {lock})",
    )


def _acquire_flock(path: Path, lock: Path) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _in_use(path, lock) from None
            raise
        # the holder we waited for may have removed the file between our open and flock:
        # then we hold a lock on a deleted file; try again on the current one
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def _acquire_exclusive_file(path: Path, lock: Path) -> int:  # pragma: no cover - Windows
    for _ in range(2):
        try:
            return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                info = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                info = {}
            stale = (
                info.get("host") == socket.gethostname()
                and isinstance(info.get("pid"), int)
                and not _pid_alive(info["pid"])
            )
            if not stale:
                raise _in_use(path, lock) from None
            lock.unlink(missing_ok=True)  # left by a dead run: take it over
    raise _in_use(path, lock)


def remove_orphan_temporaries(path: str | os.PathLike, folders: Iterable[Path] = ()) -> int:
    """Remove the temporaries of killed writes of ``path`` and inside ``folders``.

    Call only while holding ``path``'s lock. Returns the number of files removed.
    """
    path = Path(path)
    removed = 0
    candidates = list(path.parent.glob(f".{path.name}.*tmp")) if path.parent.is_dir() else []
    for folder in folders:
        if Path(folder).is_dir():
            candidates += list(Path(folder).rglob(".*.tmp"))
    for tmp in candidates:
        if tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, folders: Iterable[Path] = ()) -> Iterator[Path]:
    """Hold the exclusive lock of an output for the duration of a run.

    Parameters
    ----------
    path : path-like
        The output (file or folder); the lock file is ``<path>.lock``.
    folders : iterable of path-like
        Working folders of the run (e.g. a progress folder) whose orphaned ``.*.tmp``
        files are removed with those beside ``path``.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    OutputInUseError
        At once, if another live process holds the lock; the message names it.
    """
    path = Path(path)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    acquire = _acquire_flock if fcntl is not None else _acquire_exclusive_file
    fd = acquire(path, lock)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _my_info().encode())
        os.fsync(fd)
        removed = remove_orphan_temporaries(path, folders)
        if removed:
            import logging

            logging.getLogger("skages").info(
                "removed %d temporary file(s) left by an interrupted run on %s", removed, path
            )
        yield lock
    finally:
        # unlink while still holding the lock, so that a waiting run that opened the old
        # file notices (samestat) and retries on a fresh one
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
