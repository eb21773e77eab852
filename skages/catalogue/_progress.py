"""The progress store: finished chunks on disk, atomic, checksummed, resumable."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from skages._atomic import atomic_path
from skages.catalogue._columns import _SPECTRA_SHA256, _content_sha256

logger = logging.getLogger("skages.catalogue")


_PROGRESS_FORMAT = "skages-catalogue-progress"


class _Progress:
    """Finished chunks on disk: one ``chunk-NNNNNN.npz`` each, atomic, with a checksum."""

    def __init__(self, folder: Path, manifest: dict, *, restart: bool) -> None:
        self.folder = folder
        self.manifest = json.loads(json.dumps(manifest))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "manifest.json"
        for tmp in folder.glob(".*.tmp"):  # a write interrupted by a kill
            tmp.unlink(missing_ok=True)
        if path.exists() and not restart:
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"{path} is unreadable ({exc}); delete {folder} or pass restart=True "
                    "(--restart)"
                ) from exc
            if stored != self.manifest:
                differ = sorted(
                    k for k in set(stored) | set(self.manifest)
                    if stored.get(k) != self.manifest.get(k)
                )  # fmt: skip
                raise ValueError(
                    f"{folder} holds chunks of another run (it differs in {differ}); rerun "
                    "with the same inputs, model, cuts and chunk size to resume, or pass "
                    "restart=True (--restart) to start again"
                )
            return
        for old in folder.glob("chunk-*.npz"):
            old.unlink()
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True))

    def _path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:06d}.npz"

    def finished(self, tasks: Sequence[tuple[int, int, int]]) -> set[int]:
        """Indices of the chunks already on disk and intact (damaged ones are removed)."""
        expect = {i: (a, b) for i, a, b in tasks}
        done = set()
        for path in sorted(self.folder.glob("chunk-*.npz")):
            try:
                index = int(path.stem.split("-")[1])
                self.read(index, expect[index])
                done.add(index)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                logger.warning("progress file %s is damaged (%s); recomputing it", path, exc)
                path.unlink(missing_ok=True)
        return done

    def write(self, task: tuple[int, int, int], columns: Mapping[str, np.ndarray]) -> None:
        index, start, stop = task
        columns = dict(columns)
        spectra_digest = columns.pop(_SPECTRA_SHA256, None)
        meta = {
            "index": index,
            "start": start,
            "stop": stop,
            "sha256": _content_sha256(columns),
            "spectra_sha256": spectra_digest,
        }
        arrays = {f"c_{k}": np.asarray(v) for k, v in columns.items()}
        order = np.asarray(list(columns), dtype=str)
        path = self._path(index)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, __meta__=np.asarray(json.dumps(meta)), __order__=order, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(self.folder)

    def read(
        self, index: int, bounds: tuple[int, int], *, with_meta: bool = False
    ) -> dict[str, np.ndarray]:
        with np.load(self._path(index), allow_pickle=False) as npz:
            meta = json.loads(str(npz["__meta__"]))
            order = [str(c) for c in npz["__order__"]]
            cols = {c: npz[f"c_{c}"] for c in order}
        start, stop = bounds
        if (meta["index"], meta["start"], meta["stop"]) != (index, start, stop):
            raise ValueError(f"holds rows {meta['start']}-{meta['stop']}, expected {start}-{stop}")
        if any(len(v) != stop - start for v in cols.values()):
            raise ValueError("wrong number of rows")
        if _content_sha256(cols) != meta["sha256"]:
            raise ValueError("checksum mismatch")
        if with_meta:
            cols["__meta__"] = meta
        return cols

    def stale(self, done: set[int], tasks: Sequence[tuple[int, int, int]], spectra_digest) -> int:
        """Remove the finished chunks whose input spectra changed since they were written.

        ``spectra_digest(bounds)`` reads a chunk's spectra again and returns their
        checksum; a chunk written without one (an older skages) counts as changed.
        Returns the number of chunks removed from ``done``.
        """
        removed = 0
        for bounds in tasks:
            index, start, stop = bounds
            if index not in done:
                continue
            stored = self.read(index, (start, stop), with_meta=True)["__meta__"]
            if stored.get("spectra_sha256") != spectra_digest(bounds):
                logger.warning(
                    "%s: the spectra of rows %d-%d changed since chunk %d was written; "
                    "recomputing it",
                    self.folder, start, stop - 1, index,
                )  # fmt: skip
                self._path(index).unlink(missing_ok=True)
                done.discard(index)
                removed += 1
        return removed

    def assemble(self, tasks: Sequence[tuple[int, int, int]]) -> dict[str, np.ndarray]:
        """All chunks in order, each checked again, into one array per column.

        Two passes (dtypes, then data into preallocated columns) so that the catalogue
        is held once, not twice, while it is assembled.
        """
        dtypes: dict[str, np.dtype] = {}
        for index, start, stop in tasks:
            for name, values in self.read(index, (start, stop)).items():
                dtypes[name] = np.result_type(dtypes.get(name, values.dtype), values.dtype)
        n = tasks[-1][2] if tasks else 0
        out = {name: np.empty(n, dtype=dtype) for name, dtype in dtypes.items()}
        for index, start, stop in tasks:
            for name, values in self.read(index, (start, stop)).items():
                out[name][start:stop] = values
        return out

    def remove(self) -> None:
        for path in self.folder.glob("*"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
