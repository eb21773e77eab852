"""The inputs: catalogue rows, row matching to allStar tables, spectrum sources, training rows."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skages._labels import SIMULATED_ID_PREFIX, check_text_ids, numeric_label
from skages.catalogue._columns import (
    _FLAG_COLUMNS,
    _ID_COLUMNS,
    SIMULATED_FIELD,
    SIMULATED_TELESCOPE,
    _spectra_sha256,
    _str_array,
)
from skages.catalogue._cuts import _CUT_LABELS, CatalogueFlag
from skages.io.apogee import _match_rows, read_normalized_spectra
from skages.io.apogee import _scan_spectrum_folder as _scan_folder
from skages.io.sdss5 import SOURCE_ID_COLUMNS
from skages.io.sdss5 import _ids as _source_ids

logger = logging.getLogger("skages.catalogue")


def _label_frame(table: Any, needed: Sequence[str], what: str) -> pd.DataFrame:
    """Rows of the catalogue: identity, flags, cut labels and model labels."""
    if hasattr(table, "colnames"):  # astropy Table
        cols = {n.lower(): table[n] for n in table.colnames if getattr(table[n], "ndim", 1) == 1}
        n = len(table)

        def get(name):
            col = cols[name]
            if np.ma.isMaskedArray(col) or getattr(col, "mask", None) is not None:
                fill = np.nan if np.asarray(col).dtype.kind == "f" else 0
                return np.ma.filled(np.ma.asarray(col), fill)
            return np.asarray(col)

    elif isinstance(table, pd.DataFrame):
        cols = {str(c).lower(): table[c] for c in table.columns}
        n = len(table)

        def get(name):
            return cols[name].to_numpy()

    else:
        raise TypeError(
            f"labels must be an allStar path, an astropy Table or a pandas DataFrame; got "
            f"{type(table).__name__}"
        )
    out = pd.DataFrame(index=pd.RangeIndex(n))
    for name in _ID_COLUMNS:
        key = name.lower()
        if key == "apogee_id" and key in cols:
            check_text_ids(get(key), name, what)
        out[name] = _str_array(get(key)) if key in cols else np.full(n, "", dtype="U1")
    for name in SOURCE_ID_COLUMNS:  # DR19 label tables (skages.io.read_labels)
        if name.lower() in cols:
            out[name] = _source_ids(get(name.lower()))
    for name in _FLAG_COLUMNS:
        key = name.lower()
        if key in cols:
            values = np.asarray(get(key))
            if values.dtype.kind == "f":
                values = np.nan_to_num(values, nan=0.0)
            out[name] = values.astype(np.int64)
        else:
            out[name] = np.zeros(n, dtype=np.int64)
    if "snrev" not in cols and "snr" in cols:
        cols["snrev"] = cols["snr"]
        logger.info("%s has no SNREV column: using its 'snr' for the S/N cut", what)
    for name in needed:
        if name not in cols:
            raise ValueError(
                f"{what} has no column {name!r}, which the "
                + ("applicability cuts need" if name in _CUT_LABELS else "age model needs")
                + f"; it has {sorted(cols)[:20]}"
            )
        out[name] = numeric_label(get(name), name, what)  # '4837.7 K' parsed, not NaN
    return out


@dataclass(frozen=True)
class _Source:
    """Where the spectra are: picklable, small, sent with every Dask task."""

    kind: str  # "hdf5" or "files"
    path: str
    bad_pixel_fill: float = float("nan")

    def read(self, locator: np.ndarray, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
        """Spectra of the rows (float32, NaN = masked) and per-row flags."""
        if self.kind == "hdf5":
            return self._read_hdf5(np.asarray(locator, dtype=np.int64), n_pixels)
        return self._read_files(np.asarray(locator, dtype=object), n_pixels)

    def read_with_digest(
        self, locator: np.ndarray, n_pixels: int
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """:meth:`read`, and a checksum of what was read (part of a chunk's identity)."""
        spectra, flags = self.read(locator, n_pixels)
        return spectra, flags, _spectra_sha256(spectra, flags)

    def _read_hdf5(self, rows: np.ndarray, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
        from skages.io import SurveyReader

        n = rows.size
        spectra = np.full((n, n_pixels), np.nan, dtype=np.float32)
        flags = np.where(rows < 0, int(CatalogueFlag.NO_SPECTRUM), 0).astype(np.int64)
        have = np.flatnonzero(rows >= 0)
        if have.size == 0:
            return spectra, flags
        with SurveyReader(self.path) as reader:
            ds = reader.dataset("spectra")
            if ds.shape[1] != n_pixels:
                raise ValueError(
                    f"{self.path}: spectra have {ds.shape[1]} pixels; the model reads {n_pixels}"
                )
            wanted = rows[have]
            order = np.argsort(wanted, kind="stable")
            sorted_rows = wanted[order]
            # contiguous runs of rows are read as slices (the common, row-matched case)
            breaks = np.flatnonzero(np.diff(sorted_rows) > 1) + 1
            for run_idx in np.split(np.arange(sorted_rows.size), breaks):
                a, b = int(sorted_rows[run_idx[0]]), int(sorted_rows[run_idx[-1]]) + 1
                dest = have[order[run_idx]]
                try:
                    block = ds[a:b]
                except OSError as exc:  # a damaged HDF5 chunk: try row by row
                    logger.warning("%s: cannot read rows %d-%d (%s)", self.path, a, b - 1, exc)
                    block = np.full((b - a, n_pixels), np.nan, dtype=np.float32)
                    for r in range(a, b):
                        try:
                            block[r - a] = ds[r]
                        except OSError:
                            flags[have[order][sorted_rows == r]] |= CatalogueFlag.BAD_SPECTRUM
                spectra[dest] = block[sorted_rows[run_idx] - a]
        return spectra, flags

    def _read_files(self, paths: np.ndarray, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
        n = paths.size
        spectra = np.full((n, n_pixels), np.nan, dtype=np.float32)
        flags = np.zeros(n, dtype=np.int64)
        empty = np.asarray([not p for p in paths.tolist()], dtype=bool)
        flags[empty] |= CatalogueFlag.NO_SPECTRUM
        have = np.flatnonzero(~empty)
        if have.size == 0:
            return spectra, flags
        data = read_normalized_spectra(paths[have].tolist(), bad_pixel_fill=self.bad_pixel_fill)
        for i in data.errors:
            flags[have[i]] |= CatalogueFlag.BAD_SPECTRUM
        if data.spectra.shape[1] != n_pixels:
            raise ValueError(
                f"normalised spectra have {data.spectra.shape[1]} pixels; the model reads "
                f"{n_pixels}"
            )
        spectra[have] = data.spectra
        return spectra, flags


@dataclass
class _Task:
    """One chunk of catalogue rows."""

    index: int
    start: int
    stop: int
    labels: pd.DataFrame
    locator: np.ndarray


def _prepare_inputs(
    spectra: Any, labels: Any, needed: Sequence[str], bad_pixel_fill: float
) -> tuple[pd.DataFrame, np.ndarray, _Source, dict[str, Any]]:
    """The catalogue rows, each row's spectrum locator, the source, and a description."""
    from skages.io import SurveyReader, read_labels

    spectra_path = Path(spectra)
    describe: dict[str, Any] = {"spectra": str(spectra_path.resolve())}
    label_table = None
    if labels is not None:
        if isinstance(labels, (str, os.PathLike)):
            labels_path = Path(labels)
            extra = [n for n in needed if n not in ("teff", "teff_err", "fe_h", "fe_h_err")]
            extra = [n for n in extra if n not in ("logg", "snrev")]
            label_table = read_labels(labels_path, columns=[n.upper() for n in extra])
            describe["labels"] = str(labels_path.resolve())
            describe["labels_stat"] = _stat(labels_path)
        else:
            label_table = labels
            describe["labels"] = f"<{type(labels).__name__} of {len(labels)} rows>"
    if spectra_path.is_dir():
        if label_table is None:
            raise ValueError(
                f"{spectra_path} is a folder of spectrum files: give the allStar table "
                "(labels=..., --labels ALLSTAR) for their log g, SNREV, Teff and [Fe/H]"
            )
        files = _scan_folder(spectra_path)
        if files.empty:
            raise ValueError(f"{spectra_path} holds no apStar*.fits or aspcapStar*.fits files")
        rows = _label_frame(label_table, needed, describe["labels"])
        match = _match_rows(rows, files, str(spectra_path))
        locator = np.where(match >= 0, files["path"].to_numpy()[np.maximum(match, 0)], "")
        describe["spectra_files"] = len(files)
        return (
            rows,
            locator.astype(object),
            _Source("files", str(spectra_path), bad_pixel_fill),
            describe,
        )
    if not spectra_path.exists():
        raise FileNotFoundError(f"spectra not found: {spectra_path}")
    with SurveyReader(spectra_path) as reader:
        if "spectra" not in reader.arrays:
            raise ValueError(
                f"{spectra_path} holds no 'spectra' array (it has {list(reader.arrays)})"
            )
        describe["spectra_stat"] = _stat(spectra_path)
        describe["spectra_n_stars"] = reader.n_stars
        if label_table is None:
            present = set(reader.label_columns)
            columns = [c for c in reader.label_columns if c.lower() in
                       {*needed, "apogee_id", "telescope", "field", "starflag", "aspcapflag",
                        "snr", "snrev", "sdss_id", "gaia_dr3_source_id"}]  # fmt: skip
            if not present:
                raise ValueError(f"{spectra_path} has no label table; give labels=ALLSTAR")
            rows = _label_frame(reader.read_labels(columns=columns), needed, str(spectra_path))
            locator = np.arange(reader.n_stars, dtype=np.int64)
            if _is_simulated(reader.metadata, rows["APOGEE_ID"]):
                describe["simulated"] = True
                for name, value in (
                    ("TELESCOPE", SIMULATED_TELESCOPE),
                    ("FIELD", SIMULATED_FIELD),
                ):
                    rows[name] = np.where(rows[name] == "", value, rows[name])
        else:
            rows = _label_frame(label_table, needed, describe["labels"])
            if "apogee_id" not in reader.label_columns:
                raise ValueError(
                    f"{spectra_path} has no apogee_id label column to match the labels on"
                )
            cols = [c for c in ("apogee_id", "telescope", "field", "sdss_id")
                    if c in reader.label_columns]  # fmt: skip
            ids = reader.read_labels(columns=cols)
            spec = pd.DataFrame({c.upper(): _str_array(ids[c]) for c in cols})
            for c in ("TELESCOPE", "FIELD"):
                if c not in spec:
                    spec[c] = ""
            locator = _match_rows(rows, spec, str(spectra_path))
    return rows, locator, _Source("hdf5", str(spectra_path.resolve()), bad_pixel_fill), describe


def _is_simulated(metadata: Mapping[str, Any] | None, ids: Any) -> bool:
    """Whether a survey is skages' simulation: its writer or its star identifiers say so."""
    if str((metadata or {}).get("generator", "")).startswith("skages.datasets"):
        return True
    ids = pd.Series(np.asarray(ids, dtype=str))
    return bool(len(ids)) and bool(ids.str.startswith(SIMULATED_ID_PREFIX).all())


def _training_rows(
    model_meta: Mapping[str, Any], spectra: Any, labels: Any, n_rows: int
) -> tuple[np.ndarray, str]:
    """Which catalogue rows the model was trained on, and how that was decided.

    The model's metadata names its training survey and, for ``skages train
    --test-size`` and the demo, its train/test split with the SHA-256 of the training
    rows (:func:`skages.evaluation.split_record`). Rows are marked only when this
    catalogue is of that same survey file and the split is reproduced.
    """
    mask = np.zeros(n_rows, dtype=bool)
    training = dict(model_meta.get("training") or {})
    source = (training.get("source") or {}).get("survey")
    if not training:
        return mask, "unknown: the model records no training stars; none marked"
    if source is None or labels is not None:
        return mask, "none marked: the model was not trained on a survey file read here"
    if Path(source).resolve() != Path(spectra).resolve():
        return mask, f"none: the model was trained on {source}, not on these spectra"
    max_stars = training.get("max_stars")
    n = n_rows if max_stars is None else min(int(max_stars), n_rows)
    split = training.get("split")
    if split:
        from skages.evaluation import held_out_split
        from skages.io import SurveyReader

        with SurveyReader(spectra) as reader:
            columns = [c for c in ("evstate", "precise_age") if c in reader.label_columns]
            survey_labels = reader.read_labels(slice(0, n), columns=columns)
        try:
            train, _ = held_out_split(training, survey_labels)
        except (ValueError, KeyError) as exc:
            return mask, f"none: the survey does not reproduce the training split ({exc})"
        mask[train] = True
        return mask, (
            f"the {len(train)} rows of the model's training split of this survey "
            "(recomputed, SHA-256 verified)"
        )
    mask[:n] = True
    return mask, f"the first {n} rows of this survey: the model was trained on all of them"


def _stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
