"""The skages HDF5 survey collection: a resumable chunked writer and a chunked reader.

Survey collections (:class:`SurveyWriter`, :class:`SurveyReader`) are HDF5 files with
per-star arrays and a table of labels (pandas DataFrame on read); the layout is
documented in :class:`SurveyWriter` and in ``docs/user_guide/apogee.rst``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from numbers import Integral
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from skages._atomic import WriteError, describe_write_error
from skages._version import __version__
from skages.spectra import N_PIXELS, N_PIXELS_APSTAR, apogee_wavelength

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------
# HDF5 survey collections
# --------------------------------------------------------------------------------------

#: Version of the survey collection layout written by this skages.
SURVEY_FORMAT_VERSION = 1
_FORMAT_NAME = "skages-survey"
# standard per-star arrays: name -> (stored dtype, required width or None, unit)
_STANDARD_ARRAYS: dict[str, tuple[str, int | str | None, str]] = {
    "spectra": ("float32", N_PIXELS, ""),
    "spectra_err": ("float32", N_PIXELS, ""),
    "bitmask": ("int32", N_PIXELS, ""),
    "raw_flux": ("float32", N_PIXELS_APSTAR, ""),
    "psd": ("float32", "frequency", ""),
    "psd_weight": ("float32", "frequency", ""),
}
_GRIDS = ("frequency", "wavelength")
_LABELS = "labels"
_CHECKSUMS = "checksums"  # group: rows (n_appends, 2) int64, digest (n_appends,) bytes
#: Space asked for beyond a chunk's raw size before it is written: HDF5 metadata, and
#: compressed chunks that grow (noise compresses badly).
_SPACE_MARGIN = 1.1, 1 << 20


def _open_hdf5(path: Path, mode: str):
    """Open an HDF5 file; writers run without a chunk cache so that errors surface at once.

    (A test replaces this function to inject write failures.)
    """
    import h5py

    if mode == "r":
        return h5py.File(path, "r")
    return h5py.File(path, mode, rdcc_nbytes=0)


def _chunk_digest(arrays: Mapping[str, np.ndarray], cols: Mapping[str, np.ndarray]) -> bytes:
    """Checksum of one append: every array and label column, in their stored types."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        h.update(b"a/" + name.encode() + b"\0")
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    for name in sorted(cols):
        values = np.asarray(cols[name])
        h.update(b"l/" + name.encode() + b"\0")
        if values.dtype.kind == "O":
            h.update("\x1f".join(map(str, values)).encode("utf-8", "surrogatepass"))
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest().encode()


def _stored_rows(h5: Any, start: int, stop: int) -> tuple[dict, dict]:
    """The arrays and label columns of rows [start, stop) as stored (for checksums)."""
    import h5py

    arrays = {
        k: v[start:stop] for k, v in h5.items() if isinstance(v, h5py.Dataset) and k not in _GRIDS
    }
    group = h5[_LABELS]
    cols = {}
    for name in json.loads(group.attrs.get("columns", "[]")):
        ds = group[name]
        cols[name] = (ds.asstr() if ds.dtype.kind == "O" else ds)[start:stop]
    return arrays, cols


def _verify_checksums(h5: Any, path: Path, n_stars: int | None = None) -> int:
    """Re-read every committed append of an open survey file and compare its checksum.

    Returns the number of rows verified. Raises ValueError naming the file and the rows
    if a chunk differs from what was written, or if rows have no checksum.
    Files written before checksums existed (no ``checksums`` group) pass unchecked.
    """
    group = h5.get(_CHECKSUMS)
    n = int(h5.attrs["n_stars"]) if n_stars is None else int(n_stars)
    if group is None:
        return 0
    rows = np.asarray(group["rows"][()], dtype=np.int64).reshape(-1, 2)
    digests = group["digest"][()]
    covered = int(group.attrs.get("from_row", 0))
    for (a, b), digest in zip(rows, digests, strict=False):
        if b > n:
            break
        if a != covered:
            raise ValueError(
                f"{path} is damaged: its checksums skip rows {covered}-{a}; write it again"
            )
        if _chunk_digest(*_stored_rows(h5, int(a), int(b))) != bytes(digest):
            raise ValueError(
                f"{path} is damaged: rows {a}-{b} differ from what was written (checksum "
                "mismatch; e.g. a write lost on a full disk); write it again"
            )
        covered = int(b)
    if covered != n:
        raise ValueError(
            f"{path} is damaged: it records {n} stars but only rows 0-{covered} have "
            "checksums; write it again"
        )
    return covered


def _labels_to_columns(labels: Any) -> tuple[dict[str, np.ndarray], dict[str, str], set[str]]:
    """Columns (name -> 1-D array), units (name -> str) and categorical column names."""
    units: dict[str, str] = {}
    categorical: set[str] = set()
    if isinstance(labels, pd.DataFrame):
        cols = {}
        for name in labels.columns:
            s = labels[name]
            if isinstance(s.dtype, pd.CategoricalDtype):
                categorical.add(str(name))
            if (
                isinstance(s.dtype, pd.CategoricalDtype)
                or s.dtype == object
                or pd.api.types.is_string_dtype(s.dtype)
            ):
                s = s.astype(object).map(lambda v: v.decode() if isinstance(v, bytes) else v)
                cols[str(name)] = s.where(s.notna(), "").astype(str).to_numpy(dtype=object)
            elif pd.api.types.is_bool_dtype(s.dtype):
                cols[str(name)] = s.to_numpy(dtype=bool)
            elif pd.api.types.is_integer_dtype(s.dtype) and s.hasnans:
                cols[str(name)] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            elif pd.api.types.is_numeric_dtype(s.dtype):
                dtype = getattr(s.dtype, "numpy_dtype", s.dtype)  # pandas nullable dtypes
                if dtype.kind == "f":
                    cols[str(name)] = s.to_numpy(dtype=dtype, na_value=np.nan)
                else:
                    cols[str(name)] = s.to_numpy(dtype=dtype)
            else:
                raise TypeError(
                    f"labels column {name!r} has dtype {s.dtype}; a survey file stores numbers, "
                    "booleans and strings"
                )
        return cols, units, categorical
    if hasattr(labels, "colnames"):  # astropy Table
        cols = {}
        for name in labels.colnames:
            column = labels[name]
            unit = getattr(column, "unit", None)
            if unit is not None:
                units[name] = unit.to_string()
            values = np.asarray(getattr(column, "value", column))
            if np.ma.isMaskedArray(column):
                values = np.ma.filled(column, np.nan if values.dtype.kind == "f" else 0)
            cols[name] = values
        return _labels_to_columns(pd.DataFrame(cols))[0], units, categorical
    if isinstance(labels, Mapping):
        return _labels_to_columns(pd.DataFrame({k: np.asarray(v) for k, v in labels.items()}))
    raise TypeError(
        "labels must be a pandas DataFrame, an astropy Table or a mapping of column -> "
        f"1-D array; got {type(labels).__name__}"
    )


def _storage_dtype(values: np.ndarray, name: str):
    import h5py

    kind = values.dtype.kind
    if kind == "O" or kind in "SU":
        return h5py.string_dtype("utf-8")
    if kind == "b":
        return np.dtype(bool)
    if kind in "iu":
        return np.dtype(np.int64) if kind == "i" or values.dtype.itemsize < 8 else values.dtype
    if kind == "f":
        return np.dtype(np.float64) if values.dtype.itemsize > 4 else np.dtype(np.float32)
    raise TypeError(f"labels column {name!r}: cannot store dtype {values.dtype}")


def _auto_chunk_rows(width: int, itemsize: int) -> int:
    return int(max(1, min(4096, 2**20 // max(1, width * itemsize))))


class SurveyWriter:
    """Write a skages survey collection (HDF5) chunk by chunk, atomically.

    Stars are added with :meth:`append` in chunks of any size; memory use is set
    by the chunk, not the survey. Everything is written to ``<path>.partial``,
    which becomes ``path`` (an atomic rename) when the writer is closed without
    an error. After a crash or kill, ``SurveyWriter(path, resume=True)`` reopens
    the partial file at its last completed :meth:`append`; :attr:`n_stars` says
    where to continue. (A kill *during* an append may leave an HDF5 file that
    cannot be opened; resuming then raises and the survey must be started again.)

    Layout (format version 1):

    - root attributes ``format = "skages-survey"``, ``format_version = 1``,
      ``skages_version``, ``created`` (ISO 8601, UTC), ``n_stars``, ``complete``
      (True once closed), ``metadata`` (JSON text of the ``metadata`` argument);
    - per-star arrays, datasets of shape ``(n_stars, width)``, chunked and
      compressed, with standard names ``spectra``, ``spectra_err`` (float32,
      7514 wide, continuum-normalised, dimensionless), ``bitmask`` (int32, 7514),
      ``raw_flux`` (float32, 8575), ``psd``, ``psd_weight`` (float32, as wide as
      ``frequency``; natural-log PSD); any other name is stored as given;
    - ``wavelength`` (7514,) float64, attribute ``unit = "Angstrom"``, written
      with ``spectra``; ``frequency`` (n_freq,) float64, attribute ``unit = "uHz"``,
      required with ``psd``;
    - group ``labels``: one 1-D dataset of length ``n_stars`` per column (float,
      int64, bool, or UTF-8 strings; missing strings stored as ``""``), with
      attribute ``unit`` where known; the group's ``columns`` attribute (JSON)
      keeps the column order.

    Parameters
    ----------
    path : str or path-like
        Final file name (conventionally ``*.h5``).
    frequency : array-like of shape (n_freq,), optional
        PSD frequency grid in µHz (e.g. ``skages.seismology.frequency_grid()``);
        required if ``psd`` or ``psd_weight`` are appended.
    units : mapping of str to str, optional
        Units of label columns (astropy unit strings, e.g. ``{"teff": "K"}``);
        astropy Table labels bring their own.
    metadata : mapping, optional
        JSON-serialisable provenance (simulator settings, seeds, ...).
    compression : {"gzip", "lzf", None}, default="gzip"
        HDF5 compression of the per-star arrays (gzip is readable everywhere).
    compression_opts : int, default=1
        gzip level (1 compresses noisy float spectra about as well as higher
        levels, much faster).
    overwrite : bool, default=False
        Replace an existing ``path`` (only when the new file is complete).
    resume : bool, default=False
        Continue an interrupted ``<path>.partial`` if there is one.

    Examples
    --------
    >>> import numpy as np, pandas as pd, tempfile, os
    >>> from skages.io import SurveyWriter, SurveyReader
    >>> path = os.path.join(tempfile.mkdtemp(), "survey.h5")
    >>> with SurveyWriter(path) as writer:
    ...     for start in (0, 3):
    ...         ids = [f"2M{start + i}" for i in range(3)]
    ...         writer.append(spectra=np.ones((3, 7514), np.float32),
    ...                       labels=pd.DataFrame({"apogee_id": ids, "teff": [4.5e3] * 3}))
    >>> with SurveyReader(path) as survey:
    ...     print(survey.n_stars, survey.arrays, survey.labels["apogee_id"].tolist())
    6 ('spectra',) ['2M0', '2M1', '2M2', '2M3', '2M4', '2M5']
    """

    def __init__(
        self,
        path: PathLike,
        *,
        frequency: Any = None,
        units: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        compression: Literal["gzip", "lzf"] | None = "gzip",
        compression_opts: int = 1,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:

        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        if compression not in ("gzip", "lzf", None):
            raise ValueError(f"compression must be 'gzip', 'lzf' or None; got {compression!r}")
        self._compression = compression
        self._compression_opts = compression_opts if compression == "gzip" else None
        self._units = dict(units or {})
        if self.path.exists() and not overwrite:
            raise FileExistsError(
                f"{self.path} already exists; pass overwrite=True to replace it"
                + (" (it is complete: nothing to resume)" if resume else "")
            )
        if frequency is not None:
            frequency = np.asarray(frequency, dtype=np.float64)
            if frequency.ndim != 1 or frequency.size == 0 or not np.all(np.isfinite(frequency)):
                raise ValueError(
                    f"frequency must be a finite 1-D grid in µHz; got shape {frequency.shape}"
                )
            if np.any(np.diff(frequency) <= 0):
                raise ValueError("frequency must increase strictly (bin centres in µHz)")
        self._closed = False
        self._failed = False
        # an unfinished file without a committed star has nothing to keep: start it again
        if resume and self.partial_path.exists() and _check_resumable(self.partial_path):
            # checked read-only first: HDF5 opened for writing trims a damaged file at close
            self._n = _check_resumable(self.partial_path, verify=False)
            self._file = _open_hdf5(self.partial_path, "r+")
            self._trim_checksums()
            for name in self._array_names():
                self._file[name].resize(self._n, axis=0)
            for name in self._label_names():
                self._file[_LABELS][name].resize(self._n, axis=0)
            if frequency is not None and "frequency" in self._file:
                stored = self._file["frequency"][()]
                if stored.shape != frequency.shape or not np.allclose(stored, frequency):
                    raise ValueError(
                        f"frequency differs from the grid stored in {self.partial_path}"
                    )
            if frequency is not None and "frequency" not in self._file:
                self._write_grid("frequency", frequency, "uHz")
            logger.info("resuming %s at star %d", self.partial_path, self._n)
        else:
            try:
                self._create_file(metadata, frequency)
            except Exception as exc:
                self._n, self._failed = 0, True
                if hasattr(self, "_file"):
                    self.abort()
                self.partial_path.unlink(missing_ok=True)  # no star in it yet
                raise self._write_error(exc) from exc

    def _create_file(self, metadata: Mapping[str, Any] | None, frequency: Any) -> None:
        self._file = _open_hdf5(self.partial_path, "w")
        self._n = 0
        attrs = self._file.attrs
        attrs["format"] = _FORMAT_NAME
        attrs["format_version"] = SURVEY_FORMAT_VERSION
        attrs["skages_version"] = __version__
        attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        attrs["n_stars"] = 0
        attrs["complete"] = False
        attrs["metadata"] = json.dumps(dict(metadata or {}))
        self._file.create_group(_LABELS).attrs["columns"] = "[]"
        sums = self._file.create_group(_CHECKSUMS)
        sums.create_dataset("rows", shape=(0, 2), maxshape=(None, 2), dtype=np.int64)
        sums.create_dataset("digest", shape=(0,), maxshape=(None,), dtype="S32")
        if frequency is not None:
            self._write_grid("frequency", frequency, "uHz")
        self._file.flush()

    def _trim_checksums(self) -> None:
        group = self._file.get(_CHECKSUMS)
        if group is None:  # a file of an older skages: checksums from here on
            group = self._file.create_group(_CHECKSUMS)
            group.create_dataset("rows", shape=(0, 2), maxshape=(None, 2), dtype=np.int64)
            group.create_dataset("digest", shape=(0,), maxshape=(None,), dtype="S32")
            group.attrs["from_row"] = self._n
            return
        rows = group["rows"][()]
        keep = int(np.sum(rows[:, 1] <= self._n)) if len(rows) else 0
        group["rows"].resize(keep, axis=0)
        group["digest"].resize(keep, axis=0)

    # -- schema helpers ------------------------------------------------------------
    def _array_names(self) -> list[str]:
        import h5py

        return [
            k for k, v in self._file.items() if isinstance(v, h5py.Dataset) and k not in _GRIDS
        ]

    def _label_names(self) -> list[str]:
        return json.loads(self._file[_LABELS].attrs["columns"])

    def _write_grid(self, name: str, values: np.ndarray, unit: str) -> None:
        ds = self._file.create_dataset(name, data=values)
        ds.attrs["unit"] = unit

    @property
    def n_stars(self) -> int:
        """Number of stars written so far (committed)."""
        return self._n

    def _check_array(self, name: str, values: Any) -> np.ndarray:
        arr = np.asarray(values)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_stars, width); got shape {arr.shape}")
        if name in _STANDARD_ARRAYS:
            dtype, width, _ = _STANDARD_ARRAYS[name]
            if width == "frequency":
                if "frequency" not in self._file:
                    raise ValueError(
                        f"{name} needs the frequency grid: pass frequency (µHz) to SurveyWriter"
                    )
                width = self._file["frequency"].shape[0]
            if arr.shape[1] != width:
                raise ValueError(
                    f"{name} must have {width} columns per star; got shape {arr.shape}"
                )
            if dtype == "int32" and arr.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integers (APOGEE_PIXMASK); got {arr.dtype}")
            if arr.dtype.kind == "i" and arr.dtype.itemsize < 4:
                arr = arr.view(arr.dtype.str.replace("i", "u"))
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric; got dtype {arr.dtype}")
        return arr

    def append(self, labels: Any = None, **arrays: Any) -> None:
        """Add a chunk of stars.

        The first call fixes which arrays and label columns the file holds;
        later calls must give the same ones with the same widths.

        Parameters
        ----------
        labels : pandas.DataFrame, astropy.table.Table or mapping, optional
            One row per star of this chunk (e.g. ``apogee_id``, ``kic``, ``teff``).
        **arrays : array-like of shape (n_chunk, width)
            Per-star arrays, e.g. ``spectra=..., spectra_err=..., bitmask=..., psd=...``.

        Raises
        ------
        ValueError
            For inconsistent row counts, widths, or a set of arrays / columns that
            differs from the first chunk.
        """
        if self._closed:
            raise ValueError(f"SurveyWriter for {self.path} is closed")
        if not arrays and labels is None:
            raise ValueError("append needs labels and/or per-star arrays")
        for name in arrays:
            if name in _GRIDS or name == _LABELS:
                raise ValueError(f"{name!r} is reserved in a survey file; not a per-star array")
        checked = {name: self._check_array(name, v) for name, v in arrays.items()}
        cols, units, categorical = (
            _labels_to_columns(labels) if labels is not None else ({}, {}, set())
        )
        sizes = {f"array {k}": v.shape[0] for k, v in checked.items()}
        sizes.update({f"labels column {k}": len(v) for k, v in cols.items()})
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"append: all arrays and label columns need the same rows; got {sizes}"
            )
        k = next(iter(sizes.values())) if sizes else 0
        first = self._n == 0 and not self._array_names() and not self._label_names()
        if first:
            try:
                self._create(checked, cols, {**units, **self._units}, categorical)
            except Exception as exc:
                self._failed = True
                raise self._write_error(exc) from exc
        else:
            self._check_schema(checked, cols)
        if k == 0:
            return
        group = self._file[_LABELS]
        stored_arrays = {
            name: np.asarray(values, dtype=self._file[name].dtype)
            for name, values in checked.items()
        }
        stored_cols = {
            name: (
                np.asarray(values, dtype=object)
                if group[name].dtype.kind == "O"
                else self._cast_label(name, values, group[name].dtype)
            )
            for name, values in cols.items()
        }
        self._check_space(k, stored_arrays, stored_cols)
        n0, n1 = self._n, self._n + k
        try:
            for name, values in stored_arrays.items():
                ds = self._file[name]
                ds.resize(n1, axis=0)
                ds[n0:n1] = values
            for name, values in stored_cols.items():
                ds = group[name]
                ds.resize(n1, axis=0)
                ds[n0:n1] = values
            sums = self._file[_CHECKSUMS]
            m = sums["rows"].shape[0]
            sums["rows"].resize(m + 1, axis=0)
            sums["rows"][m] = (n0, n1)
            sums["digest"].resize(m + 1, axis=0)
            sums["digest"][m] = _chunk_digest(stored_arrays, stored_cols)
            self._file.attrs["n_stars"] = n1
            self._file.flush()
        except Exception as exc:
            self._failed = True
            raise self._write_error(exc) from exc
        self._n = n1

    def _write_error(self, exc: BaseException) -> WriteError:
        code, reason = describe_write_error(exc)
        return WriteError(
            code,
            f"could not write {self.partial_path}: {reason}; the {self._n} stars written "
            "before are kept there: "
            + ("free some space and " if code == errno.ENOSPC else "")
            + "run the same command again to resume (they are checked first)",
        )

    def _check_space(self, k: int, arrays: Mapping[str, np.ndarray], cols: Mapping) -> None:
        """Refuse a chunk before writing any of it when the disk cannot take it.

        A full disk in the middle of an HDF5 write can leave the file unreadable; checked
        beforehand, the file stays whole and resumable. (Another process can still fill
        the disk in between: then the write fails, and the checksums decide on resume.)
        """
        raw = sum(v.nbytes for v in arrays.values())
        raw += sum(
            sum(len(str(x)) + 16 for x in v) if v.dtype.kind == "O" else v.nbytes
            for v in cols.values()
        )
        factor, extra = _SPACE_MARGIN
        need = int(raw * factor) + extra
        try:
            free = shutil.disk_usage(self.partial_path.parent).free
        except OSError:
            return
        if free < need:
            raise WriteError(
                errno.ENOSPC,
                f"not enough space to write {self.partial_path}: the next {k} stars need about "
                f"{need / 2**20:.0f} MiB and {free / 2**20:.0f} MiB are free; the "
                f"{self._n} stars written so far are kept there: free some space and "
                "start the same run again (it resumes)",
            )

    @staticmethod
    def _cast_label(name: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
        values = np.asarray(values)
        if values.dtype.kind == "O":
            raise TypeError(f"labels column {name!r} holds strings but the file stores {dtype}")
        if (dtype.kind in "iu" and values.dtype.kind == "f") and not np.all(
            np.isfinite(values) & (values == np.round(values))
        ):
            raise TypeError(
                f"labels column {name!r} is stored as integers but this chunk has "
                "non-integer or NaN values; make it float from the first chunk"
            )
        if dtype.kind == "b" and values.dtype.kind != "b":
            raise TypeError(f"labels column {name!r} is boolean but this chunk has {values.dtype}")
        return values.astype(dtype)

    def _create(self, arrays: dict, cols: dict, units: dict, categorical: set[str]) -> None:
        kw: dict[str, Any] = {}
        if self._compression is not None:
            kw.update(compression=self._compression, shuffle=True)
            if self._compression_opts is not None:
                kw["compression_opts"] = self._compression_opts
        for name, values in arrays.items():
            width = values.shape[1]
            rows = _auto_chunk_rows(width, values.dtype.itemsize)
            ds = self._file.create_dataset(
                name,
                shape=(0, width),
                maxshape=(None, width),
                dtype=values.dtype,
                chunks=(rows, width),
                **kw,
            )
            if name in ("spectra", "spectra_err"):
                ds.attrs["unit"] = ""
        if ("spectra" in arrays or "spectra_err" in arrays) and "wavelength" not in self._file:
            self._write_grid("wavelength", apogee_wavelength(), "Angstrom")
        group = self._file[_LABELS]
        for name, values in cols.items():
            dtype = _storage_dtype(np.asarray(values), name)
            ds = group.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(65536,), **kw
            )
            if name in units:
                ds.attrs["unit"] = units[name]
            if name in categorical:
                ds.attrs["pandas_dtype"] = "category"
        group.attrs["columns"] = json.dumps(list(cols))

    def _check_schema(self, arrays: dict, cols: dict) -> None:
        have = set(self._array_names())
        if set(arrays) != have:
            raise ValueError(
                f"append: this file holds arrays {sorted(have)}; got {sorted(arrays)}"
            )
        for name, values in arrays.items():
            width = self._file[name].shape[1]
            if values.shape[1] != width:
                raise ValueError(f"{name} has {width} columns in the file; got {values.shape[1]}")
        have_cols = self._label_names()
        if set(cols) != set(have_cols):
            raise ValueError(
                f"append: this file holds label columns {have_cols}; got {list(cols)}"
            )

    def close(self) -> Path:
        """Finish the file: mark it complete and rename it to ``path``.

        Returns
        -------
        pathlib.Path
            The final file.
        """
        if self._closed:
            return self.path
        if self._failed:
            self.abort()
            raise ValueError(f"{self.path}: an append failed; the file was not finished")
        try:
            self._file.attrs["complete"] = True
            self._file.attrs["n_stars"] = self._n
            self._file.flush()
            self._file.close()
        except Exception as exc:
            self._failed = True
            self.abort()
            raise self._write_error(exc) from exc
        self._closed = True
        # nothing at the final name unless every chunk reads back as it was written
        try:
            with _open_hdf5(self.partial_path, "r") as h5:
                _verify_checksums(h5, self.partial_path)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(
                f"{self.partial_path} does not read back ({_short(exc)}): a write was lost; "
                "it was not renamed to its final name: write it again (--restart)"
            ) from exc
        _fsync(self.partial_path)
        os.replace(self.partial_path, self.path)
        _fsync(self.path.parent)
        logger.info("wrote %d stars to %s", self._n, self.path)
        return self.path

    def abort(self, *, quiet: bool = False) -> None:
        """Close without finishing: the partial file stays, for ``resume=True``."""
        if not self._closed:
            self._closed = True
            if self._failed:  # the disk refused a write: close without raising again
                _close_quietly(self._file)
                return
            try:
                self._file.flush()
                self._file.close()
            except Exception:
                _close_quietly(self._file)
                raise
            if quiet:
                return
            logger.warning(
                "survey %s left unfinished at %d stars in %s; SurveyWriter(..., resume=True) "
                "continues it",
                self.path,
                self._n,
                self.partial_path,
            )

    def __enter__(self) -> SurveyWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # a WriteError already says where the stars are kept
            self.abort(quiet=isinstance(exc, WriteError))


def _fits_hint(path: Path) -> str:
    """A hint when a FITS table (an allStar) is given where a survey is expected."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return ""
    if head != b"SIMPLE":
        return ""
    return (
        ": it is a FITS file; an allStar table goes to --labels (labels=...), with "
        "--spectra an HDF5 survey or a folder of apStar / aspcapStar files"
    )


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk; a no-op where not supported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _close_quietly(h5: Any) -> None:
    """Close an HDF5 file whose writes failed, without HDF5's repeated error reports."""
    import gc
    import sys

    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: logger.debug(
        "while closing a failed HDF5 file: %s", unraisable.exc_value
    )
    try:
        h5.close()
    except Exception:  # the disk is still full: what is on it is judged on resume
        logger.debug("closing %s after a failed write", h5, exc_info=True)
    finally:
        gc.collect()
        sys.unraisablehook = hook


def _check_resumable(partial: Path, *, verify: bool = True) -> int:
    """Open an unfinished survey read-only and check it; return its committed star count.

    A file that cannot be opened or whose chunks do not match their checksums is refused,
    and left exactly as it is (never opened for writing, which would trim it).
    """
    try:
        h5 = _open_hdf5(partial, "r")
    except Exception as exc:
        raise ValueError(
            f"cannot resume {partial}: the HDF5 file is damaged ({_short(exc)}), e.g. by a "
            "full disk during a write; it is left as it is: delete it or start again with "
            "--restart (restart=True)"
        ) from exc
    try:
        _check_self_contained(h5, partial)
        _check_survey_attrs(h5, partial, allow_incomplete=True)
        n = int(h5.attrs["n_stars"])
        try:
            if verify:
                _verify_checksums(h5, partial, n)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"{partial} is damaged: {_short(exc)}") from exc
    except ValueError as exc:
        raise ValueError(
            f"cannot resume: {exc}; it is left as it is: delete it or start again with "
            "--restart (restart=True)"
        ) from exc
    finally:
        with contextlib.suppress(Exception):
            h5.close()
    return n


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(" (")[0]


def _check_self_contained(h5: Any, path: PathLike) -> None:
    """Refuse an HDF5 file whose data live outside it.

    External links (so also soft links that leave the file: they can only do so
    through an external link, which is refused where it stands),
    datasets with external storage (raw bytes read from another file, e.g.
    ``/etc/passwd``) and virtual datasets (mapped from other files) are refused with
    one message naming the file and the dataset. Checked before any data is read.

    Parameters
    ----------
    h5 : h5py.File
        The open file.
    path : path-like
        Its name, for the message.

    Raises
    ------
    ValueError
        Naming the file, the dataset or link, and where it points.
    """
    import h5py

    def refuse(name: str, what: str) -> None:
        raise ValueError(
            f"{path}: {name!r} {what}; skages reads only self-contained HDF5 files (no "
            "external links, external storage or virtual datasets): write the data into "
            "the file itself"
        )

    def check_link(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            refuse("/" + name, f"is an external link to {link.filename}:{link.path}")
        if isinstance(link, h5py.HardLink):
            obj = h5.get(name)
            if isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                if plist.get_layout() == h5py.h5d.VIRTUAL:
                    sources = sorted(
                        {plist.get_virtual_filename(i) for i in range(plist.get_virtual_count())}
                    )
                    refuse("/" + name, f"is a virtual dataset mapped from {sources}")
                if plist.get_external_count() > 0:
                    files = sorted(
                        {
                            plist.get_external(i)[0].decode(errors="replace")
                            for i in range(plist.get_external_count())
                        }
                    )
                    refuse("/" + name, f"is stored outside the file, in {files}")

    links: list[tuple[str, Any]] = []
    h5.visititems_links(lambda name, link: links.append((name, link)))  # raise outside h5py
    for name, link in links:
        check_link(name, link)


def _check_survey_attrs(h5: Any, path: Path, *, allow_incomplete: bool = False) -> None:
    fmt = h5.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != _FORMAT_NAME:
        raise ValueError(
            f"{path} is not a skages survey collection: its 'format' attribute is {fmt!r}, "
            f"expected {_FORMAT_NAME!r}"
        )
    version = h5.attrs.get("format_version")
    if version is None or int(version) != SURVEY_FORMAT_VERSION:
        raise ValueError(
            f"{path} has survey format version {version}; this skages ({__version__}) reads "
            f"version {SURVEY_FORMAT_VERSION}"
            + (" — upgrade skages" if version is not None and int(version) > 1 else "")
        )
    if not allow_incomplete and not bool(h5.attrs.get("complete", False)):
        raise ValueError(
            f"{path} is an unfinished survey collection ({int(h5.attrs.get('n_stars', 0))} stars "
            "written); finish it with SurveyWriter(..., resume=True)"
        )


class SurveyReader:
    """Read a skages survey collection (HDF5) whole, by rows, or chunk by chunk.

    Parameters
    ----------
    path : str or path-like
        A file written by :class:`SurveyWriter` / :func:`write_survey`.

    Attributes
    ----------
    path : pathlib.Path
    n_stars : int
    arrays : tuple of str
        Names of the per-star arrays (e.g. ``("spectra", "spectra_err", "psd")``).
    frequency : ndarray or None
        PSD frequency grid (µHz).
    wavelength : ndarray or None
        Wavelength of the spectrum pixels (Å, vacuum).
    metadata : dict
        Provenance stored by the writer.
    skages_version : str
        Version of skages that wrote the file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not HDF5, not a skages survey collection, unfinished, or of
        another format version.
    """

    def __init__(self, path: PathLike) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"survey file not found: {self.path}")
        if not h5py.is_hdf5(self.path):
            raise ValueError(
                f"{self.path} is not an HDF5 file (expected a skages survey collection)"
                + _fits_hint(self.path)
            )
        try:
            self._file = h5py.File(self.path, "r")
        except Exception as exc:  # h5py raises OSError, RuntimeError, ... for damage
            raise ValueError(
                f"{self.path} cannot be opened as HDF5 (damaged or truncated?): {exc}"
            ) from exc
        try:
            _check_self_contained(self._file, self.path)
            _check_survey_attrs(self._file, self.path)
            self._open_structure(h5py)
        except ValueError:
            self._file.close()
            raise
        except Exception as exc:  # a damaged file fails in many ways: name it once
            self._file.close()
            raise ValueError(
                f"{self.path} is not a readable skages survey collection (damaged?): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._labels: pd.DataFrame | None = None

    def _open_structure(self, h5py: Any) -> None:
        """Read the layout and check that it is whole: every array has a row per star."""
        attrs = self._file.attrs
        self.n_stars = int(attrs["n_stars"])
        self.skages_version = str(attrs.get("skages_version", ""))
        self.metadata = json.loads(attrs.get("metadata", "{}"))
        self.arrays = tuple(
            k for k, v in self._file.items() if isinstance(v, h5py.Dataset) and k not in _GRIDS
        )
        self.frequency = self._file["frequency"][()] if "frequency" in self._file else None
        self.wavelength = self._file["wavelength"][()] if "wavelength" in self._file else None
        group = self._file.get(_LABELS)
        if not isinstance(group, h5py.Group):
            raise ValueError(
                f"{self.path} has no {_LABELS!r} group: not a whole skages survey collection "
                "(write it with skages.io.SurveyWriter)"
            )
        self.label_columns = list(json.loads(group.attrs.get("columns", "[]")))
        missing = [name for name in self.label_columns if name not in group]
        if missing:
            raise ValueError(
                f"{self.path}: the label table lists column(s) {missing} that the file lacks"
            )
        short = {
            name: int(self._file[name].shape[0])
            for name in self.arrays
            if self._file[name].shape[:1] != (self.n_stars,)
        }
        short.update(
            {
                f"labels/{name}": int(group[name].shape[0])
                for name in self.label_columns
                if group[name].shape[:1] != (self.n_stars,)
            }
        )
        if short:
            rows = ", ".join(f"{name} has {n}" for name, n in short.items())
            raise ValueError(
                f"{self.path} records {self.n_stars} stars, but {rows} rows: the file is "
                "damaged or was edited; write it again"
            )

    def __len__(self) -> int:
        return self.n_stars

    def __repr__(self) -> str:
        return (
            f"SurveyReader({str(self.path)!r}: {self.n_stars} stars, arrays {list(self.arrays)}, "
            f"{len(self.label_columns)} label columns)"
        )

    @property
    def label_units(self) -> dict[str, str]:
        """Units of the label columns that have one (astropy unit strings)."""
        group = self._file[_LABELS]
        return {
            n: str(group[n].attrs["unit"]) for n in self.label_columns if "unit" in group[n].attrs
        }

    def dataset(self, name: str):
        """The h5py Dataset of a per-star array (for dask.array.from_array and the like)."""
        if name not in self.arrays:
            raise KeyError(f"{self.path} has no array {name!r}; it has {list(self.arrays)}")
        return self._file[name]

    def _rows(self, rows: Any) -> slice | np.ndarray:
        if rows is None:
            return slice(0, self.n_stars)
        if isinstance(rows, slice):
            return slice(*rows.indices(self.n_stars))
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (self.n_stars,):
                raise ValueError(
                    f"a boolean row mask needs shape ({self.n_stars},); got {idx.shape}"
                )
            return np.flatnonzero(idx)
        if idx.dtype.kind not in "iu" or idx.ndim > 1:
            raise TypeError(f"rows must be a slice, integers or a boolean mask; got {rows!r}")
        idx = np.atleast_1d(idx).astype(np.int64)
        if idx.size and (idx.min() < -self.n_stars or idx.max() >= self.n_stars):
            raise IndexError(f"rows out of range for {self.n_stars} stars")
        return np.where(idx < 0, idx + self.n_stars, idx)

    @staticmethod
    def _take(ds: Any, rows: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice):
            if rows.step not in (None, 1):
                return ds[rows.start : rows.stop][:: rows.step]
            return ds[rows]
        if rows.size == 0:
            return ds[0:0]
        order = np.argsort(rows, kind="stable")
        uniq, inverse = np.unique(rows[order], return_inverse=True)
        data = ds[uniq]  # h5py wants increasing, unique indices
        out = np.empty((rows.size, *data.shape[1:]), dtype=data.dtype)
        out[order] = data[inverse]
        return out

    def read(self, name: str, rows: Any = None) -> np.ndarray:
        """One per-star array, all stars or some rows.

        Parameters
        ----------
        name : str
            Array name, e.g. ``"spectra"``.
        rows : slice, array of int or bool, optional
            Rows to read (default all).

        Returns
        -------
        ndarray of shape (n_rows, width)
        """
        return self._take(self.dataset(name), self._rows(rows))

    def read_labels(self, rows: Any = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Label rows as a DataFrame (strings as Python str), indexed by star number."""
        rows = self._rows(rows)
        group = self._file[_LABELS]
        names = self.label_columns if columns is None else list(columns)
        data = {}
        for name in names:
            if name not in group:
                raise KeyError(f"{self.path} has no label column {name!r}")
            ds = group[name]
            values = self._take(ds.asstr() if ds.dtype.kind == "O" else ds, rows)
            if ds.attrs.get("pandas_dtype") == "category":
                values = pd.Categorical(values)
            data[name] = values
        if isinstance(rows, slice) and rows.step in (None, 1):
            index = pd.RangeIndex(rows.start, max(rows.start, rows.stop))
        else:
            index = pd.Index(np.arange(self.n_stars)[rows])
        return pd.DataFrame(data, index=index)

    @property
    def labels(self) -> pd.DataFrame:
        """All labels, one row per star (cached)."""
        if self._labels is None:
            self._labels = self.read_labels()
        return self._labels

    def labels_table(self):
        """All labels as an astropy Table with units on the columns."""
        from astropy.table import Table

        table = Table.from_pandas(self.labels.reset_index(drop=True))
        for name, unit in self.label_units.items():
            if unit:
                table[name].unit = unit
        return table

    def __getitem__(self, rows: Any) -> Bunch:
        """Some stars: a Bunch of the arrays and ``labels`` for these rows."""
        if isinstance(rows, Integral):
            rows = [rows]
        rows = self._rows(rows)
        out = Bunch(**{name: self.read(name, rows) for name in self.arrays})
        out.labels = self.read_labels(rows)
        return out

    def iter_chunks(
        self,
        chunk_size: int = 1024,
        *,
        arrays: Sequence[str] | None = None,
        labels: bool = True,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[Bunch]:
        """Iterate over consecutive chunks of stars in bounded memory.

        Parameters
        ----------
        chunk_size : int, default=1024
            Stars per chunk (the last may be shorter).
        arrays : sequence of str, optional
            Arrays to read; default all.
        labels : bool, default=True
            Also read the labels of each chunk.
        start, stop : int
            Star range to cover (e.g. to resume at a chunk boundary).

        Yields
        ------
        Bunch
            ``start``, ``stop`` (star numbers), the arrays, and ``labels`` (a
            DataFrame indexed by star number) if requested.
        """
        if not isinstance(chunk_size, Integral) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
        names = self.arrays if arrays is None else tuple(arrays)
        for name in names:
            self.dataset(name)
        stop = self.n_stars if stop is None else min(int(stop), self.n_stars)
        for a in range(int(start), stop, int(chunk_size)):
            b = min(a + int(chunk_size), stop)
            chunk = Bunch(start=a, stop=b)
            for name in names:
                chunk[name] = self._file[name][a:b]
            if labels:
                chunk.labels = self.read_labels(slice(a, b))
            yield chunk

    def close(self) -> None:
        """Close the HDF5 file."""
        self._file.close()

    def __enter__(self) -> SurveyReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_survey(
    path: PathLike,
    data: Mapping[str, Any],
    *,
    frequency: Any = None,
    units: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    chunk_size: int = 4096,
    overwrite: bool = False,
    compression: Literal["gzip", "lzf"] | None = "gzip",
) -> Path:
    """Write an in-memory survey (e.g. a ``make_apokasc`` Bunch) to a collection file.

    Parameters
    ----------
    path : str or path-like
        Output file.
    data : mapping
        ``labels`` (DataFrame / Table) and per-star 2-D arrays (``spectra``,
        ``spectra_err``, ``bitmask``, ``psd``, ...). A ``frequency`` entry is used
        as the PSD grid; ``wavelength`` and other non-per-star entries are skipped.
    frequency : array-like, optional
        PSD grid in µHz (default ``data["frequency"]`` if present).
    units, metadata, overwrite, compression
        As for :class:`SurveyWriter`.
    chunk_size : int, default=4096
        Stars written per append.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    labels = data.get("labels")
    if frequency is None:
        frequency = data.get("frequency")
    n = None if labels is None else len(labels)
    arrays = {}
    for name, value in data.items():
        if name in ("labels", *_GRIDS):
            continue
        arr = value if hasattr(value, "shape") else None
        if arr is not None and getattr(arr, "ndim", 0) == 2:
            if n is None:
                n = arr.shape[0]
            if arr.shape[0] == n:
                arrays[name] = arr
    if n is None:
        raise ValueError("data has no labels and no per-star 2-D arrays to write")
    if hasattr(labels, "iloc"):
        take = lambda lab, a, b: lab.iloc[a:b]  # noqa: E731
    else:
        take = lambda lab, a, b: lab[a:b]  # noqa: E731
    with SurveyWriter(
        path,
        frequency=frequency,
        units=units,
        metadata=metadata,
        overwrite=overwrite,
        compression=compression,
    ) as writer:
        for a in range(0, n, chunk_size):
            b = min(a + chunk_size, n)
            writer.append(
                labels=None if labels is None else take(labels, a, b),
                **{k: v[a:b] for k, v in arrays.items()},
            )
    return Path(path)


def read_survey(path: PathLike, *, rows: Any = None, arrays: Sequence[str] | None = None) -> Bunch:
    """Load a survey collection, or some of its rows and arrays, into memory.

    Parameters
    ----------
    path : str or path-like
        A survey collection file.
    rows : slice, array of int or bool, optional
        Stars to read (default all); the labels are then renumbered from 0.
    arrays : sequence of str, optional
        Per-star arrays to read (default all), e.g. ``("spectra", "psd")``: leaving out
        ``spectra_err`` and ``bitmask`` halves the memory of a simulated survey.

    Returns
    -------
    Bunch
        The per-star arrays, ``labels`` (DataFrame), ``frequency`` and
        ``wavelength`` (None if absent), ``metadata`` (dict). For big surveys use
        :class:`SurveyReader` and :meth:`SurveyReader.iter_chunks` instead.

    Raises
    ------
    KeyError
        If one of ``arrays`` is not in the file.
    """
    with SurveyReader(path) as reader:
        names = reader.arrays if arrays is None else tuple(arrays)
        missing = [name for name in names if name not in reader.arrays]
        if missing:
            raise KeyError(f"{reader.path} has no array(s) {missing}; it has {reader.arrays}")
        out = Bunch(**{name: reader.read(name, rows) for name in names})
        if rows is None:
            out.labels = reader.labels
        else:
            out.labels = reader.read_labels(rows).reset_index(drop=True)
        out.frequency = reader.frequency
        out.wavelength = reader.wavelength
        out.metadata = reader.metadata
    return out
