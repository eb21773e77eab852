"""Atomic file writes: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


class WriteError(OSError):
    """A file could not be written (full disk, lost mount, ...): one readable message.

    Its ``errno`` is kept for programs; ``str()`` is the message alone, without the
    ``[Errno 28]`` prefix of a plain :class:`OSError`.
    """

    def __str__(self) -> str:
        return str(self.strerror or (self.args[-1] if self.args else ""))


def describe_write_error(exc: BaseException) -> tuple[int | None, str]:
    """The errno and a short reason of a failed write (OSError, or h5py's RuntimeError).

    h5py reports a full disk as ``RuntimeError``/``OSError`` whose text holds
    ``errno = 28``; this recovers ``errno.ENOSPC`` and says "No space left on device".
    """
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code is None:
        found = re.search(r"errno = (\d+)", text)
        if found:
            code = int(found.group(1))
        elif "No space left" in text:
            code = errno.ENOSPC
    if code is not None and code > 0:
        return code, os.strerror(code)  # "No space left on device" for ENOSPC
    reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else "")
    return code, str(reason or type(exc).__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    A reader never sees a half-written file: either the old file (or none) or
    the complete new one. On error the temporary file is removed and the
    exception propagates, with the target's name in ``OSError`` messages such
    as a full disk.

    Parameters
    ----------
    path : path-like
        Final destination.
    overwrite : bool, default=True
        If False and ``path`` exists, raise FileExistsError before writing.
    """
    target = Path(path)
    if not overwrite and target.exists():
        raise FileExistsError(
            f"{target} exists; pass overwrite=True (or --overwrite) to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers (astropy, h5py) want to create the file themselves
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except WriteError:
        tmp_path.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        code, reason = describe_write_error(exc)
        raise WriteError(code, f"could not write {target}: {reason}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
