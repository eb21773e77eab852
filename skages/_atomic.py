"""Atomic file writes: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise OSError(exc.errno, f"could not write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
