"""Survey-scale age catalogues: streaming, resumable inference, locally or on Dask.

:func:`predict_catalogue` runs a fitted age model (the Pipeline of
:func:`skages.pipeline.fit_age_model`) over a whole survey in chunks of stars and writes
the catalogue of Leung et al. (2023, Table 1): one row per row of the input table, with
the star's identity and APOGEE flags, its latent coordinates, and its age.

* **Inputs.** Spectra come from a skages HDF5 survey collection
  (:class:`skages.io.SurveyWriter`) or from a folder of apStar / aspcapStar files
  (continuum-normalised here with :func:`skages.spectra.continuum_normalize`). Labels
  (log g, SNREV, Teff, [Fe/H] and their errors, telescope, field, flags) come from the
  survey's own label table or from an APOGEE allStar file matched by APOGEE_ID; given an
  allStar file, the catalogue is row-matched to it.
* **Applicability cuts** (:class:`CatalogueCuts`, the paper's by default): latent
  coordinates only for 1.5 < log g < 3.6 and SNREV > 30; ages only where also
  log g >= 2.5 and Teff, [Fe/H] exist. Everything else is NaN, with the reason in the
  ``SKAGES_FLAG`` bitmask (:class:`CatalogueFlag`).
* **Nothing lost.** Every finished chunk is written to a progress folder beside the
  output, atomically and with a SHA-256 checksum. A run that dies (even ``kill -9``)
  resumes from its finished chunks, verifying each, with no row recomputed, lost or
  duplicated. The catalogue is written to a temporary file, read back and checked (row
  count, content checksum, FITS CHECKSUM/DATASUM), then renamed into place.
* **One run per output.** The run holds ``<output>.lock`` (:mod:`skages._lock`): a second
  run on the same output fails at once, naming the first; a finished output is never
  replaced without ``overwrite``. A run's identity includes checksums of the label table
  and of the spectra of every chunk it reuses, not only file sizes and times.
* **Bad rows never stop a survey**: missing or unreadable spectra, NaN spectra, missing
  labels become NaN rows with a flag, counted in the log.
* **Scale.** Memory is set by ``chunk_size``, not by the survey; reading the next chunk
  overlaps with the model's work on the current one. With ``scheduler=`` the chunks run
  as dask.distributed tasks (each reads its own chunk from the file path), and the
  driver stores their results with the same progress machinery: the output equals the
  single-process run.

Results depend on ``chunk_size`` at the level of the forest's Monte-Carlo noise (the
forest draws its input perturbations per call), so the chunk size is part of a run's
identity and is recorded in the output.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from skages._atomic import atomic_path
from skages._version import __version__
from skages.io.apogee import _match_rows, read_normalized_spectra
from skages.io.apogee import _scan_spectrum_folder as _scan_folder

__all__ = [
    "CATALOGUE_FORMAT_VERSION",
    "CatalogueCuts",
    "CatalogueFlag",
    "catalogue_columns",
    "dask_client",
    "predict_catalogue",
    "read_catalogue",
]

logger = logging.getLogger(__name__)

#: Version of the catalogue layout (columns, flags, provenance keys).
CATALOGUE_FORMAT_VERSION = 1
_PROGRESS_FORMAT = "skages-catalogue-progress"
_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_ID_COLUMNS = ("APOGEE_ID", "TELESCOPE", "FIELD")
_FLAG_COLUMNS = ("STARFLAG", "ASPCAPFLAG")
_TRAINING_COLUMN = "IN_TRAINING"

#: What a simulated survey's rows get for the columns DR17 fills and the simulator does
#: not: APOKASC's Kepler-field stars were observed with the APO 2.5 m telescope. DR17
#: names those fields after the star's Kepler CCD module and position (``K04_083+13``),
#: which the simulator does not model, so the field says what the rows are instead.
SIMULATED_TELESCOPE = "apo25m"
SIMULATED_FIELD = "SIM_KEPLER"
_CUT_LABELS = ("logg", "snrev")


class CatalogueFlag(enum.IntFlag):
    """Bits of the catalogue's ``SKAGES_FLAG`` column: why a row has no latent or no age.

    A row with ``SKAGES_FLAG == 0`` has latent coordinates and an age.
    """

    #: No spectrum for this star: not in the survey file or the folder.
    NO_SPECTRUM = 1
    #: Spectrum unusable: unreadable file, continuum fit failed, infinite values, or
    #: fewer finite pixels than ``CatalogueCuts.min_finite_fraction``.
    BAD_SPECTRUM = 2
    #: log g or SNREV missing, so the applicability cuts cannot be applied.
    NO_CUT_LABELS = 4
    #: Outside the latent cuts (log g or SNREV): no latent, no age.
    LATENT_CUT = 8
    #: Outside the age cut (log g too low): latent only.
    AGE_CUT = 16
    #: Teff, [Fe/H] (or another label the model needs) or their errors missing or
    #: negative: latent only.
    NO_MODEL_LABELS = 32
    #: The model raised an error on this row (logged).
    MODEL_FAILED = 64


_FLAG_HELP = {
    CatalogueFlag.NO_SPECTRUM: "no spectrum for this star",
    CatalogueFlag.BAD_SPECTRUM: "spectrum unreadable or unusable",
    CatalogueFlag.NO_CUT_LABELS: "log g or SNREV missing",
    CatalogueFlag.LATENT_CUT: "outside the latent cuts (log g, SNREV)",
    CatalogueFlag.AGE_CUT: "outside the age cut (log g)",
    CatalogueFlag.NO_MODEL_LABELS: "Teff/[Fe/H] or their errors missing",
    CatalogueFlag.MODEL_FAILED: "the model failed on this row",
}


# --------------------------------------------------------------------------- the cuts


@dataclass(frozen=True)
class CatalogueCuts:
    """Where the age model applies (Leung et al. 2023, §5): the applicability cuts.

    Every bound may be None to switch it off.

    Parameters
    ----------
    latent_logg_min, latent_logg_max : float or None, default=1.5 and 3.6
        Latent coordinates only for ``latent_logg_min < log g < latent_logg_max``
        (log g in dex(cm s⁻²)).
    latent_snr_min : float or None, default=30
        Latent coordinates only for ``SNREV > latent_snr_min``.
    age_logg_min : float or None, default=2.5
        Ages only where also ``log g >= age_logg_min`` (and the labels the model needs,
        Teff in K and [Fe/H] in dex with their errors, exist).
    min_finite_fraction : float, default=0.5
        A spectrum with fewer finite (unmasked) pixels than this fraction is unusable.

    Examples
    --------
    >>> from skages.catalogue import CatalogueCuts
    >>> CatalogueCuts().latent_logg_min, CatalogueCuts().age_logg_min
    (1.5, 2.5)
    >>> cuts = CatalogueCuts.from_strings(["latent_snr_min=50", "age_logg_min=none"])
    >>> cuts.latent_snr_min, cuts.age_logg_min is None
    (50.0, True)
    """

    latent_logg_min: float | None = 1.5
    latent_logg_max: float | None = 3.6
    latent_snr_min: float | None = 30.0
    age_logg_min: float | None = 2.5
    min_finite_fraction: float = 0.5

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name != "min_finite_fraction":
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
                raise ValueError(f"cut {f.name} must be a number or None; got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if not 0.0 <= self.min_finite_fraction <= 1.0:
            raise ValueError(
                f"cut min_finite_fraction must be in [0, 1]; got {self.min_finite_fraction}"
            )
        lo, hi = self.latent_logg_min, self.latent_logg_max
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"cut latent_logg_min ({lo}) must be below latent_logg_max ({hi})")

    @classmethod
    def none(cls) -> CatalogueCuts:
        """No cuts: latent and ages for every usable spectrum with the model's labels."""
        return cls(None, None, None, None, 0.0)

    def to_dict(self) -> dict[str, float | None]:
        """The cuts as a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_strings(cls, items: Sequence[str], base: CatalogueCuts | None = None):
        """Cuts from ``"name=value"`` strings (``value`` a number or ``none``).

        Parameters
        ----------
        items : sequence of str
            E.g. ``["latent_snr_min=50", "age_logg_min=none"]``.
        base : CatalogueCuts, optional
            Cuts to start from; the paper's by default.

        Returns
        -------
        CatalogueCuts
        """
        values = (base or cls()).to_dict()
        for item in items:
            name, sep, text = str(item).partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in values:
                raise ValueError(
                    f"cut {item!r} must be NAME=VALUE with NAME among {sorted(values)}"
                )
            text = text.strip()
            if text.lower() in ("none", "off", ""):
                values[name] = None if name != "min_finite_fraction" else 0.0
                continue
            try:
                values[name] = float(text)
            except ValueError:
                raise ValueError(f"cut {name} must be a number or 'none'; got {text!r}") from None
        return cls(**values)

    def _masks(self, logg: np.ndarray, snr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(needs cut labels and has them, passes the latent cuts)."""
        logg_cuts = (self.latent_logg_min, self.latent_logg_max, self.age_logg_min)
        have = np.ones(logg.shape, dtype=bool)
        if any(v is not None for v in logg_cuts):
            have &= np.isfinite(logg)
        if self.latent_snr_min is not None:
            have &= np.isfinite(snr)
        latent = have.copy()
        with np.errstate(invalid="ignore"):
            if self.latent_logg_min is not None:
                latent &= logg > self.latent_logg_min
            if self.latent_logg_max is not None:
                latent &= logg < self.latent_logg_max
            if self.latent_snr_min is not None:
                latent &= snr > self.latent_snr_min
        return have, latent

    def _age(self, logg: np.ndarray) -> np.ndarray:
        if self.age_logg_min is None:
            return np.ones(logg.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            return logg >= self.age_logg_min


# ----------------------------------------------------------------------- the data model


def catalogue_columns(
    latent_dim: int = 5, *, ages: bool = True
) -> list[tuple[str, str | None, str]]:
    """The catalogue's columns: (name, astropy unit string or None, description).

    The paper's Table 1 (APOGEE_ID … Age_Error), plus the latent σ (``z0_Error`` …),
    the ``SKAGES_FLAG`` bitmask and ``IN_TRAINING`` (1 for the stars the model was
    trained on, whose ages are not independent of the model).

    Parameters
    ----------
    latent_dim : int, default=5
        Dimension of the model's latent space.
    ages : bool, default=True
        Include the age columns (``LogAge`` … ``Age_Error``); False gives the
        latent-only catalogue of ``skages encode``.

    Returns
    -------
    list of tuple

    Examples
    --------
    >>> from skages.catalogue import catalogue_columns
    >>> [name for name, unit, _ in catalogue_columns(2)]  # doctest: +NORMALIZE_WHITESPACE
    ['APOGEE_ID', 'TELESCOPE', 'FIELD', 'STARFLAG', 'ASPCAPFLAG', 'z0', 'z1', 'z0_Error',
     'z1_Error', 'LogAge', 'LogAge_Error', 'Age', 'Age_Error', 'SKAGES_FLAG', 'IN_TRAINING']
    """
    cols: list[tuple[str, str | None, str]] = [
        ("APOGEE_ID", None, "APOGEE (2MASS-style) star identifier"),
        ("TELESCOPE", None, "telescope of the spectrum (apo25m, lco25m, apo1m)"),
        ("FIELD", None, "APOGEE field"),
        ("STARFLAG", None, "APOGEE STARFLAG bitmask, from the input table (0 if absent)"),
        ("ASPCAPFLAG", None, "APOGEE ASPCAPFLAG bitmask, from the input table (0 if absent)"),
    ]
    for k in range(latent_dim):
        cols.append((f"z{k}", "", f"latent coordinate {k} (posterior mean)"))
    for k in range(latent_dim):
        cols.append((f"z{k}_Error", "", f"latent coordinate {k}: posterior 1-sigma"))
    if ages:
        cols += [
            ("LogAge", "dex(Gyr)", "log10 of the age in Gyr"),
            ("LogAge_Error", "dex", "1-sigma uncertainty of LogAge (dex)"),
            ("Age", "Gyr", "age, 10**LogAge (Gyr)"),
            ("Age_Error", "Gyr", "1-sigma of Age, ln(10) Age LogAge_Error (Gyr)"),
        ]
    cols += [
        ("SKAGES_FLAG", None, "why latent or age is NaN (bits: see FLAGn keywords)"),
        (_TRAINING_COLUMN, None, "1: the model was trained on this star (see INTRAIN)"),
    ]
    return cols


def _empty_columns(n: int, latent_dim: int, ages: bool = True) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, _, _ in catalogue_columns(latent_dim, ages=ages):
        if name in _ID_COLUMNS:
            out[name] = np.full(n, "", dtype="U1")
        elif name in (*_FLAG_COLUMNS, "SKAGES_FLAG", _TRAINING_COLUMN):
            out[name] = np.zeros(n, dtype=np.int64)
        else:
            out[name] = np.full(n, np.nan)
    return out


def _content_sha256(columns: Mapping[str, np.ndarray]) -> str:
    """A checksum of a table's content, independent of the file format."""
    digest = hashlib.sha256()
    for name, values in columns.items():
        digest.update(name.encode() + b"\x00")
        arr = np.asarray(values)
        if arr.dtype.kind in "US" or arr.dtype == object:
            text = "\x1f".join("" if v is None else str(v) for v in arr.tolist())
            digest.update(text.encode("utf-8"))
        elif arr.dtype.kind == "f":
            f = arr.astype("<f8")
            f[np.isnan(f)] = np.nan  # one NaN bit pattern
            digest.update(f.tobytes())
        else:
            digest.update(arr.astype("<i8").tobytes())
        digest.update(b"\x1e")
    return digest.hexdigest()


#: Key of a chunk's result under which the checksum of its input spectra travels.
_SPECTRA_SHA256 = "__spectra_sha256__"


def _spectra_sha256(spectra: np.ndarray, flags: np.ndarray) -> str:
    """Checksum of a chunk's spectra as read (float32, NaN-masked) and their read flags."""
    digest = hashlib.sha256()
    arr = np.ascontiguousarray(spectra, dtype="<f4")
    digest.update(str(arr.shape).encode())
    digest.update(memoryview(arr).cast("B"))
    digest.update(np.ascontiguousarray(flags, dtype="<i8").tobytes())
    return digest.hexdigest()


def _rows_sha256(rows: pd.DataFrame, locator: np.ndarray) -> str:
    """Checksum of the catalogue rows' labels and of where each row's spectrum is."""
    columns = {str(c): rows[c].to_numpy() for c in rows.columns}
    columns["__locator__"] = np.asarray(locator)
    return _content_sha256(columns)


# ------------------------------------------------------------------------- the model


class _Predictor:
    """The pieces of a fitted age Pipeline that the catalogue calls, checked once.

    Calling the encoder and the forest directly (rather than the Pipeline on a
    7518-column DataFrame) skips building that frame for every chunk, which costs as
    much as reading the spectra; the features are the same, column for column.
    """

    def __init__(self, model: Any) -> None:
        from sklearn.frozen import FrozenEstimator
        from sklearn.pipeline import Pipeline
        from sklearn.utils.validation import check_is_fitted

        from skages.encoder import SpectrumToPSDEncoder

        help_ = (
            "model must be the fitted age Pipeline of skages.pipeline.fit_age_model / "
            "make_age_pipeline (steps 'features' with an 'encoder', and 'forest')"
        )
        if isinstance(model, SpectrumToPSDEncoder):  # latent-only catalogue
            check_is_fitted(model, "net_")
            self.model = self.encoder = model
            self.forest = None
            self.feature_names = self.latent_names = []
            self.label_names = []
            self.latent_dim = int(model.latent_dim)
            self.n_pixels = int(model.n_features_in_)
            if not model.output_std:
                raise TypeError("the encoder of a latent catalogue needs output_std=True")
            return
        if not isinstance(model, Pipeline) or "features" not in model.named_steps:
            raise TypeError(f"{help_}; got {type(model).__name__}")
        features = model.named_steps["features"]
        check_is_fitted(model[-1])
        encoder = getattr(features, "named_transformers_", {}).get("encoder")
        if isinstance(encoder, FrozenEstimator):
            encoder = encoder.estimator
        if not isinstance(encoder, SpectrumToPSDEncoder):
            raise TypeError(f"{help_}; its 'features' step has no fitted encoder")
        forest = model[-1]
        names = list(getattr(forest, "feature_names_in_", []))
        latent = [f"encoder__{n}" for n in encoder.get_feature_names_out()]
        if not encoder.output_std or not set(latent) <= set(names):
            raise TypeError(f"{help_}; the forest does not read the encoder's latent σ")
        labels = [n.removeprefix("passthrough__") for n in names if n not in latent]
        if any(n.startswith(("encoder__", "features__")) for n in labels):
            raise TypeError(f"{help_}; unexpected forest inputs {labels}")
        self.model = model
        self.encoder = encoder
        self.forest = forest
        self.feature_names = names
        self.latent_names = latent
        self.label_names = labels
        self.latent_dim = int(encoder.latent_dim)
        self.n_pixels = int(encoder.n_features_in_)

    def latent(self, spectra: np.ndarray) -> np.ndarray:
        """(n, 2 * latent_dim) float32: latent means then σ.

        The spectra go in as an array: scikit-learn's checks of a 7514-column DataFrame
        cost ~60 ms a call (per-column dtype checks), 10 % of a 1024-star chunk. Their
        width was checked against the encoder's when they were read.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "X does not have valid feature names")
            return np.asarray(self.encoder.transform(spectra))  # a DataFrame under set_output

    def ages(self, latent: np.ndarray, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """log10 age (log10 Gyr) and its 1σ from latent outputs and labels."""
        data = {n: latent[:, k] for k, n in enumerate(self.latent_names)}
        for name in self.label_names:
            data[f"passthrough__{name}"] = labels[name].to_numpy(dtype=np.float64)
        frame = pd.DataFrame({n: data[n] for n in self.feature_names})
        mean, std = self.forest.predict(frame, return_std=True)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def _model_id(model: Any, path: Path | None) -> dict[str, Any]:
    if path is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return {"model": path.name, "model_sha256": digest.hexdigest()}
    import joblib

    return {"model": type(model).__name__, "model_sha256": "joblib:" + joblib.hash(model)}


def _encoder_class() -> type:
    from skages.encoder import SpectrumToPSDEncoder

    return SpectrumToPSDEncoder


def _load(model: Any, trusted: Sequence[str] | None = None) -> tuple[Any, Path | None, dict]:
    if isinstance(model, (str, os.PathLike)):
        from skages.persistence import load_model

        path = Path(model)
        if path.is_dir():  # an astroNN model folder
            from skages.io.astronn import WEIGHTS_FILE

            fitted = _encoder_class().from_astronn(path, output_std=True)
            return fitted, path / WEIGHTS_FILE, {"source": "astroNN folder"}
        trust = trusted if trusted is None or isinstance(trusted, bool) else list(trusted)
        fitted, meta = load_model(path, trusted=trust)
        return fitted, path, meta
    return model, None, {}


# ------------------------------------------------------------------------- the inputs


def _str_array(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8", errors="replace")
    arr = np.asarray([_as_text(v) for v in arr.tolist()])
    arr = np.char.strip(arr.astype(str)) if arr.size else np.zeros(0, dtype="U1")
    return arr.astype(f"U{max(1, arr.dtype.itemsize // 4)}")


def _as_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


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
    from skages._labels import check_text_ids, numeric_label

    for name in _ID_COLUMNS:
        key = name.lower()
        if key == "apogee_id" and key in cols:
            check_text_ids(get(key), name, what)
        out[name] = _str_array(get(key)) if key in cols else np.full(n, "", dtype="U1")
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
    from skages.io import SurveyReader, read_allstar

    spectra_path = Path(spectra)
    describe: dict[str, Any] = {"spectra": str(spectra_path.resolve())}
    label_table = None
    if labels is not None:
        if isinstance(labels, (str, os.PathLike)):
            labels_path = Path(labels)
            extra = [n for n in needed if n not in ("teff", "teff_err", "fe_h", "fe_h_err")]
            extra = [n for n in extra if n not in ("logg", "snrev")]
            label_table = read_allstar(labels_path, columns=[n.upper() for n in extra])
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
                        "snr", "snrev"}]  # fmt: skip
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
            cols = [c for c in ("apogee_id", "telescope", "field") if c in reader.label_columns]
            ids = reader.read_labels(columns=cols)
            spec = pd.DataFrame({c.upper(): _str_array(ids[c]) for c in cols})
            for c in ("TELESCOPE", "FIELD"):
                if c not in spec:
                    spec[c] = ""
            locator = _match_rows(rows, spec, str(spectra_path))
    return rows, locator, _Source("hdf5", str(spectra_path.resolve()), bad_pixel_fill), describe


#: The simulator's star identifiers begin so (``2M-SIM-0000001``): no 2MASS ID does.
_SIMULATED_ID_PREFIX = "2M-SIM-"


def _is_simulated(metadata: Mapping[str, Any] | None, ids: Any) -> bool:
    """Whether a survey is skages' simulation: its writer or its star identifiers say so."""
    if str((metadata or {}).get("generator", "")).startswith("skages.datasets"):
        return True
    ids = pd.Series(np.asarray(ids, dtype=str))
    return bool(len(ids)) and bool(ids.str.startswith(_SIMULATED_ID_PREFIX).all())


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


# ---------------------------------------------------------------- one chunk of stars


def _predict_chunk(model: Any, source: _Source, task: _Task, cuts: CatalogueCuts) -> dict:
    """The catalogue rows of one chunk (runs in the driver or on a Dask worker)."""
    predictor = model if isinstance(model, _Predictor) else _Predictor(model)
    labels = task.labels
    n = len(labels)
    has_ages = predictor.forest is not None
    cols = _empty_columns(n, predictor.latent_dim, ages=has_ages)
    for name in _ID_COLUMNS:
        cols[name] = _str_array(labels[name].to_numpy())
    for name in _FLAG_COLUMNS:
        cols[name] = labels[name].to_numpy(dtype=np.int64)
    if _TRAINING_COLUMN in labels:
        cols[_TRAINING_COLUMN] = labels[_TRAINING_COLUMN].to_numpy(dtype=np.int64)
    spectra, flags, spectra_digest = source.read_with_digest(task.locator, predictor.n_pixels)
    flags = flags.copy()

    usable = flags == 0
    finite = np.isfinite(spectra)
    with np.errstate(invalid="ignore"):
        inf = np.isinf(spectra).any(axis=1)
    fraction = finite.mean(axis=1) if spectra.shape[1] else np.zeros(n)
    bad = usable & (inf | (fraction < max(cuts.min_finite_fraction, 1e-12)))
    flags[bad] |= CatalogueFlag.BAD_SPECTRUM
    usable &= ~bad

    logg = labels["logg"].to_numpy() if "logg" in labels else np.full(n, np.nan)
    snr = labels["snrev"].to_numpy() if "snrev" in labels else np.full(n, np.nan)
    have_cut_labels, in_latent = cuts._masks(logg, snr)
    flags[usable & ~have_cut_labels] |= CatalogueFlag.NO_CUT_LABELS
    flags[usable & have_cut_labels & ~in_latent] |= CatalogueFlag.LATENT_CUT
    latent_rows = usable & in_latent

    model_labels = labels[predictor.label_names].to_numpy(dtype=np.float64)
    errors = [n.endswith(("_err", "_std")) for n in predictor.label_names]
    with np.errstate(invalid="ignore"):
        ok_labels = np.isfinite(model_labels).all(axis=1) & ~(model_labels[:, errors] < 0).any(
            axis=1
        )
    in_age = cuts._age(logg) if has_ages else np.zeros(n, dtype=bool)
    flags[latent_rows & ~in_age & has_ages] |= CatalogueFlag.AGE_CUT
    flags[latent_rows & in_age & ~ok_labels] |= CatalogueFlag.NO_MODEL_LABELS
    age_rows = latent_rows & in_age & ok_labels

    d = predictor.latent_dim
    idx = np.flatnonzero(latent_rows)
    if idx.size:
        latent, failed = _guarded(predictor.latent, spectra[idx], what="encoder", task=task)
        flags[idx[failed]] |= CatalogueFlag.MODEL_FAILED
        for k in range(d):
            cols[f"z{k}"][idx] = latent[:, k]
            cols[f"z{k}_Error"][idx] = latent[:, d + k]
        age_rows &= ~np.isin(np.arange(n), idx[failed])
        pos = np.searchsorted(idx, np.flatnonzero(age_rows))
        if pos.size:
            sub = labels.iloc[np.flatnonzero(age_rows)]

            def forest(rows: np.ndarray) -> np.ndarray:
                return np.column_stack(predictor.ages(latent[pos][rows], sub.iloc[rows]))

            res, failed_age = _guarded(forest, np.arange(pos.size), what="forest", task=task)
            where = np.flatnonzero(age_rows)
            flags[where[failed_age]] |= CatalogueFlag.MODEL_FAILED
            cols["LogAge"][where] = res[:, 0]
            cols["LogAge_Error"][where] = res[:, 1]
    if has_ages:
        cols["Age"] = 10.0 ** cols["LogAge"]
        cols["Age_Error"] = np.log(10.0) * cols["Age"] * cols["LogAge_Error"]
    cols["SKAGES_FLAG"] = flags
    cols[_SPECTRA_SHA256] = spectra_digest  # stored in the chunk's metadata, not a column
    return cols


def _guarded(fn, rows: np.ndarray, *, what: str, task: _Task) -> tuple[np.ndarray, np.ndarray]:
    """``fn(rows)``; if it raises, retry row by row: NaN and a failure mark where it fails."""
    try:
        out = np.asarray(fn(rows), dtype=np.float64)
        return out, np.zeros(len(rows), dtype=bool)
    except (ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
        logger.warning(
            "chunk %d (rows %d-%d): the %s failed (%s); retrying row by row",
            task.index,
            task.start,
            task.stop - 1,
            what,
            exc,
        )
    parts, failed = [], np.zeros(len(rows), dtype=bool)
    for i in range(len(rows)):
        try:
            parts.append(np.asarray(fn(rows[i : i + 1]), dtype=np.float64))
        except (ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
            failed[i] = True
            parts.append(None)
            logger.warning("row %d: the %s failed: %s", task.start + i, what, exc)
    width = next((p.shape[1] for p in parts if p is not None), 1)
    out = np.vstack([p if p is not None else np.full((1, width), np.nan) for p in parts])
    return out, failed


def _predict_chunk_task(model: Any, source: _Source, task: _Task, cuts: CatalogueCuts) -> dict:
    """Dask task: one chunk, with the worker's thread count left to Dask."""
    return _predict_chunk(model, source, task, cuts)


# ------------------------------------------------------------------ progress folder


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


# ------------------------------------------------------------------- running chunks


def _run_local(predictor, source, todo, make_task, cuts, progress, bar) -> None:
    """Chunks in this process; the next chunk's spectra are read while this one runs."""
    if not todo:
        return

    def read(task: _Task) -> tuple[np.ndarray, np.ndarray, str]:
        return source.read_with_digest(task.locator, predictor.n_pixels)

    class _Preread:  # a source that hands out the spectra read ahead
        def __init__(self, data):
            self.data = data

        def read_with_digest(self, locator, n_pixels):
            return self.data

    following = iter(todo)
    with ThreadPoolExecutor(1, thread_name_prefix="skages-read") as pool:
        task: _Task | None = make_task(next(following))
        ahead = pool.submit(read, task)
        while task is not None:
            data = ahead.result()
            bounds = next(following, None)
            next_task = None if bounds is None else make_task(bounds)
            if next_task is not None:
                ahead = pool.submit(read, next_task)
            cols = _predict_chunk(predictor, _Preread(data), task, cuts)
            progress.write((task.index, task.start, task.stop), cols)
            bar.update(task.stop - task.start)
            task = next_task


def _run_dask(model, source, todo, make_task, cuts, progress, bar, client) -> None:
    """Chunks as dask.distributed tasks; results stored by the driver as they arrive."""
    from dask.distributed import as_completed

    if not todo:
        return
    n_slots = max(1, sum(client.nthreads().values()))
    model_future = client.scatter(model, broadcast=True, hash=False)
    queue = iter(todo)
    by_key: dict[str, _Task] = {}

    def submit(bounds: tuple[int, int, int]):
        task = make_task(bounds)
        fut = client.submit(
            _predict_chunk_task,
            model_future,
            source,
            task,
            cuts,
            pure=False,
            key=f"skages-chunk-{task.index}-{os.getpid()}-{time.monotonic_ns()}",
        )
        by_key[fut.key] = task
        return fut

    running = as_completed([submit(b) for b in itertools.islice(queue, 2 * n_slots)])
    for fut in running:
        task = by_key.pop(fut.key)
        try:
            cols = fut.result()
        except (OSError, ValueError) as exc:
            kind = OSError if isinstance(exc, OSError) else ValueError
            raise kind(
                f"chunk {task.index} failed on a Dask worker: {exc} (do the workers see "
                f"{source.path} at the same path?)"
            ) from exc
        fut.release()
        progress.write((task.index, task.start, task.stop), cols)
        bar.update(task.stop - task.start)
        following = next(queue, None)
        if following is not None:
            running.add(submit(following))


@contextlib.contextmanager
def dask_client(
    scheduler: Any = "local", *, n_workers: int | None = None, threads_per_worker: int = 1
) -> Iterator[Any]:
    """A dask.distributed Client: on an existing scheduler, or on a fresh LocalCluster.

    Parameters
    ----------
    scheduler : str, Client or "local", default="local"
        ``"local"`` (or True) starts a :class:`dask.distributed.LocalCluster` of worker
        processes on this machine (loopback only) and closes it on exit; a string such as
        ``"tcp://10.0.0.5:8786"`` connects to a running scheduler (e.g. one started by
        dask-jobqueue on a Slurm cluster); a Client is used as it is.
    n_workers : int, optional
        Worker processes of a LocalCluster (default: one per core).
    threads_per_worker : int, default=1
        Threads per LocalCluster worker.

    Yields
    ------
    dask.distributed.Client
    """
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - dask is a test dependency
        raise ImportError(
            "running on Dask needs dask.distributed: pip install 'skages[dask]'"
        ) from exc
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is True or scheduler == "local":
        chatty = logging.getLogger("distributed")
        level = chatty.level
        if not logger.isEnabledFor(logging.DEBUG):
            chatty.setLevel(logging.WARNING)  # the cluster's start/stop INFO chatter
        try:
            with _local_client(n_workers, threads_per_worker) as client:
                yield client
        finally:
            chatty.setLevel(level)
        return
    if not isinstance(scheduler, str):
        raise TypeError(
            f"scheduler must be 'local', an address string or a Client; got {scheduler!r}"
        )
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise OSError(f"could not connect to the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _local_client(n_workers: int | None, threads_per_worker: int) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.WARNING,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# ----------------------------------------------------------------------- the output


def _output_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("fits", "csv", "parquet"):
            raise ValueError(f"format must be 'fits', 'csv' or 'parquet'; got {fmt!r}")
        return fmt
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"cannot tell the catalogue format of {path} from its extension; use .fits, "
            ".csv or .parquet, or pass format="
        ) from None


_FITS_KEYS = {
    "skages_version": ("SKAGESV", "skages version that wrote this catalogue"),
    "catalogue_format": ("CATFMT", "skages catalogue format version"),
    "date": ("DATE", "UTC date of writing"),
    "model": ("MODEL", "age model file"),
    "model_sha256": ("MODELSHA", "SHA-256 of the model file"),
    "model_created": ("MODELDAT", "UTC creation date of the model"),
    "model_skages_version": ("MODELVER", "skages version that trained the model"),
    "spectra": ("SPECTRA", "spectra read"),
    "labels": ("LABELS", "label table read (allStar)"),
    "chunk_size": ("CHUNKSZ", "stars per chunk (forest MC draws depend on it)"),
    "n_rows": ("NROWS", "rows"),
    "n_latent": ("NLATENT", "rows with latent coordinates"),
    "n_ages": ("NAGES", "rows with ages"),
    "latent_logg_min": ("LGLATMIN", "latent: log g > this (dex)"),
    "latent_logg_max": ("LGLATMAX", "latent: log g < this (dex)"),
    "latent_snr_min": ("SNRLAT", "latent: SNREV > this"),
    "age_logg_min": ("LGAGEMIN", "ages: log g >= this (dex)"),
    "min_finite_fraction": ("MINFINIT", "usable spectrum: finite pixel fraction >= this"),
    "content_sha256": ("CATSHA", "SHA-256 of the table content (skages)"),
    "simulated": ("SIMULATD", "rows are simulated stars, not APOGEE data"),
    "training_rows": ("INTRAIN", "IN_TRAINING = 1 marks"),
}

#: The FITS COMMENT that a catalogue of a simulated survey carries.
_SIMULATED_NOTE = (
    "These rows are simulated stars (skages.datasets), not APOGEE observations. "
    f"TELESCOPE is {SIMULATED_TELESCOPE!r}, as DR17 lists APOKASC's Kepler-field stars; "
    f"FIELD is {SIMULATED_FIELD!r}, since the simulator gives no Kepler field; STARFLAG "
    "and ASPCAPFLAG are 0, as the simulator flags no star."
)


def _provenance(model_info, describe, cuts, chunk_size, counts) -> dict[str, Any]:
    prov = {
        "skages_version": __version__,
        "catalogue_format": CATALOGUE_FORMAT_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_info["model"],
        "model_sha256": model_info["model_sha256"],
        "model_created": model_info.get("model_created", ""),
        "model_skages_version": model_info.get("model_skages_version", ""),
        "spectra": describe["spectra"],
        "labels": describe.get("labels", ""),
        "chunk_size": int(chunk_size),
        **counts,
    }
    if describe.get("simulated"):
        prov["simulated"] = True
    for key, value in cuts.to_dict().items():
        prov[key] = "none" if value is None else value
    for bit in CatalogueFlag:
        prov[f"flag_{bit.name.lower()}"] = f"{int(bit)}: {_FLAG_HELP[bit]}"
    return prov


def _table(
    columns: Mapping[str, np.ndarray], latent_dim: int, provenance: Mapping, ages: bool = True
):
    from astropy.table import Table

    spec = catalogue_columns(latent_dim, ages=ages)
    table = Table(
        [columns[name] for name, _, _ in spec], names=[n for n, _, _ in spec], copy=False
    )
    for name, unit, description in spec:
        if unit is not None:
            table[name].unit = unit
        table[name].description = description
    table.meta.update(provenance)
    return table


def _write_fits(table, path: Path) -> None:
    from astropy.io import fits

    plain = table.copy(copy_data=False)
    for name in plain.colnames:
        unit = plain[name].unit
        if unit is not None and "dex" in str(unit):  # FITS has no dex: unit goes in TCOMM
            plain[name].unit = None
    plain.meta.clear()
    hdu = fits.table_to_hdu(plain)
    for i, name in enumerate(table.colnames, start=1):
        comment = table[name].description or ""
        unit = table[name].unit
        if unit is not None and "dex" in str(unit):
            comment = f"[{unit}] {comment}"
        hdu.header[f"TCOMM{i}"] = comment[:68]
    for key, value in table.meta.items():
        if key.startswith("flag_"):
            continue
        card, comment = _FITS_KEYS[key]
        hdu.header[card] = (value, comment)
    for i, bit in enumerate(CatalogueFlag):
        hdu.header[f"FLAG{i}"] = (bit.name, f"{int(bit)}: {_FLAG_HELP[bit]}"[:47])
    if table.meta.get("simulated"):
        hdu.header.add_comment(_SIMULATED_NOTE)
    for card in _unit_comments(table):
        hdu.header.add_comment(card)
    hdu.header["EXTNAME"] = "AGES" if "LogAge" in table.colnames else "LATENT"
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = f"skages {__version__}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long strings: CONTINUE
        fits.HDUList([primary, hdu]).writeto(path, checksum=True)


def _unit_comments(table) -> list[str]:
    """astropy's serialised-column COMMENT cards, which carry the dex units.

    FITS has no dex, so ``LogAge`` (dex(Gyr)) and ``LogAge_Error`` (dex) can have no
    TUNIT that other readers understand (a TUNIT of ``dex(Gyr)`` even breaks astropy's
    reader). astropy writes such units, and the column descriptions, into COMMENT
    cards that ``Table.read`` turns back into units; the table's first zero rows
    written to memory give those cards (their content does not depend on the rows).
    """
    import io

    from astropy.io import fits
    from astropy.table import QTable

    empty = QTable(table[:0], copy=True)
    empty.meta.clear()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the unit dex could not be saved in FITS"
        empty.write(buffer, format="fits")
    buffer.seek(0)
    with fits.open(buffer) as hdul:
        header = hdul[1].header
        return [str(c) for c in header["COMMENT"]] if "COMMENT" in header else []


def _write(table, path: Path, fmt: str) -> None:
    if fmt == "fits":
        _write_fits(table, path)
    elif fmt == "parquet":
        table.write(path, format="parquet")
    else:
        frame = table.to_pandas()
        frame.to_csv(path, index=False, na_rep="NaN", float_format=None)


def _sidecar(table) -> dict[str, Any]:
    return {
        "columns": [
            {"name": n, "unit": str(table[n].unit or ""), "description": table[n].description}
            for n in table.colnames
        ],
        "meta": dict(table.meta),
    }


def read_catalogue(path: str | os.PathLike, format: str | None = None):
    """Read a catalogue written by :func:`predict_catalogue`, with its units.

    Parameters
    ----------
    path : path-like
        A ``.fits``, ``.csv`` or ``.parquet`` catalogue.
    format : {"fits", "csv", "parquet"}, optional
        Overrides the extension.

    Returns
    -------
    astropy.table.Table
        The catalogue; ``LogAge`` in dex(Gyr), ``LogAge_Error`` in dex, ``Age`` and
        ``Age_Error`` in Gyr; ``meta`` holds the provenance (lower-case keys).
    """
    import astropy.units as u
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalogue not found: {path}")
    fmt = _output_format(path, format)
    if fmt == "fits":
        from astropy.io import fits

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, checksum=True) as hdul:
                ext = "AGES" if "AGES" in hdul else "LATENT"
                if ext not in hdul:
                    raise ValueError(
                        f"{path} is not a skages catalogue (no AGES or LATENT extension)"
                    )
                header = hdul[ext].header
                table = Table(hdul[ext].data, copy=True)
        damaged = [str(w.message) for w in caught if "sum" in str(w.message).lower()]
        if damaged:
            raise OSError(f"{path} is damaged: {damaged[0]}")
        for key, (card, _) in _FITS_KEYS.items():
            if card in header:
                table.meta[key] = header[card]
        for i, bit in enumerate(CatalogueFlag):
            if f"FLAG{i}" in header:
                table.meta[f"flag_{bit.name.lower()}"] = f"{int(bit)}: {_FLAG_HELP[bit]}"
    elif fmt == "parquet":
        table = Table.read(path, format="parquet")
    else:
        sidecar = path.with_name(path.name + ".json")
        info = json.loads(sidecar.read_text()) if sidecar.is_file() else {"columns": []}
        strings = {c: str for c in (*_ID_COLUMNS,)}
        frame = pd.read_csv(
            path,
            dtype=strings,
            keep_default_na=False,
            na_values=["NaN"],
            float_precision="round_trip",
        )
        for c in _ID_COLUMNS:
            if c in frame:
                frame[c] = frame[c].fillna("")
        table = Table.from_pandas(frame)
        for col in info["columns"]:
            if col["name"] in table.colnames:
                table[col["name"]].description = col["description"]
        table.meta.update(info.get("meta", {}))
    latent_dim = sum(1 for n in table.colnames if re.fullmatch(r"z\d+", n))
    ages = "LogAge" in table.colnames
    for name, unit, description in catalogue_columns(latent_dim, ages=ages):
        if name not in table.colnames:
            raise ValueError(f"{path} is not a skages catalogue: no column {name!r}")
        if unit is not None:
            table[name].unit = u.Unit(unit)
        table[name].description = description
        if table[name].dtype.kind in "SO":
            table[name] = table[name].astype(str)
    return table


def _verify(path: Path, fmt: str, columns: Mapping[str, np.ndarray], checksum: str) -> None:
    """Read the written catalogue back; raise if rows or content differ."""
    table = read_catalogue(path, fmt)
    n = len(next(iter(columns.values())))
    if len(table) != n:
        raise OSError(f"{path}: wrote {n} rows but {len(table)} read back")
    got = {name: np.asarray(table[name]) for name in columns}
    if _content_sha256(got) != checksum:
        bad = [
            name for name in columns
            if _content_sha256({name: got[name]}) != _content_sha256({name: columns[name]})
        ]  # fmt: skip
        raise OSError(f"{path}: the columns {bad} read back differ from what was written")


# -------------------------------------------------------------------------- the driver


def predict_catalogue(
    model: Any,
    spectra: str | os.PathLike,
    output: str | os.PathLike,
    *,
    labels: Any = None,
    chunk_size: int = 1024,
    format: str | None = None,
    cuts: CatalogueCuts | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    bad_pixel_fill: float = float("nan"),
    latent_only: bool = False,
    overwrite: bool = False,
    restart: bool = False,
    keep_progress: bool = False,
    progress_dir: str | os.PathLike | None = None,
    trusted: Sequence[str] | None = None,
    verbose: int = 0,
) -> Bunch:
    """Write the age catalogue of a survey, streaming in chunks and resumable.

    Parameters
    ----------
    model : Pipeline, SpectrumToPSDEncoder or path-like
        The fitted age model (:func:`skages.pipeline.fit_age_model`), a file written by
        :func:`skages.persistence.save_model`, or, for a latent-only catalogue, a fitted
        encoder or an astroNN model folder (read with
        :meth:`~skages.encoder.SpectrumToPSDEncoder.from_astronn`).
    spectra : path-like
        A skages HDF5 survey collection with a ``spectra`` array (continuum-normalised,
        7514 pixels), or a folder of apStar / aspcapStar files (searched recursively;
        APOGEE_ID, telescope and field from the file names and the DR17
        ``<telescope>/<field>/`` folders, else from the headers), which are
        continuum-normalised here.
    output : path-like
        The catalogue: ``.fits``, ``.csv`` (with a ``.csv.json`` sidecar holding units and
        provenance) or ``.parquet``.
    labels : path-like, astropy Table or DataFrame, optional
        An APOGEE allStar table (``read_allstar``'s columns). The catalogue then has one
        row per row of this table, in its order, matched to the spectra by APOGEE_ID
        (and telescope and field where known). Without it, the HDF5 survey's own label
        table is used (a folder of files needs it), with ``snr`` standing in for SNREV.
    chunk_size : int, default=1024
        Stars per chunk: sets the memory (about 75 kB per star on top of the model) and
        the granularity of resuming.
    format : {"fits", "csv", "parquet"}, optional
        Overrides the extension of ``output``.
    cuts : CatalogueCuts, optional
        Applicability cuts; the paper's by default, :meth:`CatalogueCuts.none` for none.
    scheduler : None, "local", str or dask.distributed.Client, optional
        None runs in this process. ``"local"`` starts a Dask LocalCluster of
        ``n_workers`` processes; an address (``"tcp://host:8786"``) or a Client uses an
        existing Dask cluster, whose workers must see ``spectra`` at the same path.
    n_workers : int, optional
        Workers of a LocalCluster.
    bad_pixel_fill : float, default=NaN
        For spectrum files: normalised flux of pixels with a bad APOGEE_PIXMASK bit
        (NaN = masked, skages' convention and the simulator's).
    latent_only : bool, default=False
        Write the latent columns only (``z0`` … and ``z0_Error`` …, no age columns, the
        FITS extension ``LATENT``), from the model's encoder; implied when ``model`` is
        an encoder or an astroNN folder. Age cuts and labels are then not needed.
    overwrite : bool, default=False
        Replace an existing ``output``.
    restart : bool, default=False
        Discard the chunks of an earlier, different run in the progress folder.
    keep_progress : bool, default=False
        Keep the progress folder after success (it is removed by default).
    progress_dir : path-like, optional
        Where finished chunks are kept; default ``<output>.progress`` beside the output.
    trusted : bool or sequence of str, optional
        As for :func:`skages.persistence.load_model`: True to load a ``.joblib``
        (pickle) model file, which runs any code it holds; for a ``.skops`` file, extra
        type names to trust.
    verbose : int, default=0
        Progress bar on stderr when > 0.

    Returns
    -------
    sklearn.utils.Bunch
        ``path`` (the catalogue), ``n_rows``, ``n_latent``, ``n_ages``, ``flag_counts``
        (flag name -> rows), ``n_chunks``, ``n_chunks_resumed``, ``seconds``.

    Raises
    ------
    FileExistsError
        If ``output`` exists and ``overwrite`` is False.
    skages._lock.OutputInUseError
        At once, if another run holds the lock of ``output`` (``<output>.lock``); the
        message names that process.
    ValueError
        For inputs that cannot be used (named in the message), or a progress folder of a
        different run (without ``restart``).
    OSError
        If a file cannot be written (e.g. a full disk); the message names the file.
    """
    t0 = time.perf_counter()
    output = Path(output)
    fmt = _output_format(output, format)
    if not isinstance(chunk_size, Integral) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    cuts = CatalogueCuts() if cuts is None else cuts
    if not isinstance(cuts, CatalogueCuts):
        raise TypeError(f"cuts must be a CatalogueCuts; got {type(cuts).__name__}")
    folder = Path(progress_dir) if progress_dir else output.with_name(output.name + ".progress")
    from skages._lock import output_lock

    # one run per output: the lock covers the catalogue and its progress folder (which has
    # a lock of its own when it is elsewhere)
    with (
        output_lock(output, folders=[folder]),
        output_lock(folder) if progress_dir else contextlib.nullcontext(),
    ):
        if output.exists() and not overwrite:  # finished while we waited to start
            raise FileExistsError(
                f"{output} exists; pass overwrite=True (--overwrite) to replace it"
            )
        return _predict_catalogue_locked(
            model, spectra, output, fmt, folder, t0,
            labels=labels, chunk_size=chunk_size, cuts=cuts, scheduler=scheduler,
            n_workers=n_workers, bad_pixel_fill=bad_pixel_fill, restart=restart,
            keep_progress=keep_progress, verbose=verbose, trusted=trusted,
            latent_only=latent_only,
        )  # fmt: skip


def _predict_catalogue_locked(
    model, spectra, output, fmt, folder, t0, *, labels, chunk_size, cuts, scheduler,
    n_workers, bad_pixel_fill, restart, keep_progress, verbose, trusted, latent_only,
) -> Bunch:  # fmt: skip
    """:func:`predict_catalogue` once the output's lock is held."""
    from tqdm.auto import tqdm

    fitted, model_path, model_meta = _load(model, trusted)
    if latent_only and not isinstance(fitted, _encoder_class()):
        fitted = _Predictor(fitted).encoder
    if isinstance(fitted, _encoder_class()) and not fitted.output_std:
        fitted = copy.copy(fitted).set_params(output_std=True)  # the σ columns
    predictor = _Predictor(fitted)
    has_ages = predictor.forest is not None
    model_info = _model_id(fitted, model_path)
    model_info["model_created"] = model_meta.get("created_utc", "")
    model_info["model_skages_version"] = model_meta.get("skages_version", "")
    needed = [*_CUT_LABELS, *predictor.label_names]
    rows, locator, source, describe = _prepare_inputs(spectra, labels, needed, bad_pixel_fill)
    n_rows = len(rows)
    if n_rows == 0:
        raise ValueError(f"no rows to predict: {describe.get('labels') or spectra} is empty")
    in_training, training_rows = _training_rows(model_meta, spectra, labels, n_rows)
    rows[_TRAINING_COLUMN] = in_training.astype(np.int64)

    bounds = [
        (i, a, min(a + chunk_size, n_rows)) for i, a in enumerate(range(0, n_rows, chunk_size))
    ]
    keep = [*_ID_COLUMNS, *_FLAG_COLUMNS, _TRAINING_COLUMN, *needed]
    rows = rows[keep]
    manifest = {
        "format": _PROGRESS_FORMAT,
        "skages_version": __version__,
        "model_sha256": model_info["model_sha256"],
        "inputs": describe,
        # content, not only size and mtime: a table edited in place is another run
        "rows_sha256": _rows_sha256(rows, locator),
        "n_rows": n_rows,
        "chunk_size": int(chunk_size),
        "cuts": cuts.to_dict(),
        "bad_pixel_fill": None if math.isnan(bad_pixel_fill) else bad_pixel_fill,
        "latent_dim": predictor.latent_dim,
        "ages": has_ages,
        "labels_needed": needed,
    }
    progress = _Progress(folder, manifest, restart=restart)
    done = progress.finished(bounds)
    if done:
        # the spectra of every reused chunk are read again and compared with the checksum
        # stored when the chunk was written: a survey edited in place is recomputed
        progress.stale(
            done,
            bounds,
            lambda b: source.read_with_digest(locator[b[1] : b[2]], predictor.n_pixels)[2],
        )
    if done:
        logger.info(
            "resuming from %s: %d of %d chunks already done", folder, len(done), len(bounds)
        )

    def make_task(bounds: tuple[int, int, int]) -> _Task:
        i, a, b = bounds
        return _Task(i, a, b, rows.iloc[a:b].reset_index(drop=True), locator[a:b])

    todo = [t for t in bounds if t[0] not in done]
    rows_done = sum(b - a for i, a, b in bounds if i in done)
    logger.info(
        "predicting %d rows in %d chunks of %d (%d to do) from %s",
        n_rows, len(bounds), chunk_size, len(todo), describe["spectra"],
    )  # fmt: skip
    with tqdm(
        total=n_rows, initial=rows_done, unit="star", desc="catalogue", disable=not verbose
    ) as bar:
        if scheduler is None:
            _run_local(predictor, source, todo, make_task, cuts, progress, bar)
        else:
            with dask_client(scheduler, n_workers=n_workers) as client:
                _run_dask(fitted, source, todo, make_task, cuts, progress, bar, client)

    # assemble in order (each chunk verified again), write atomically, read back, rename
    rows = locator = None  # the label table is no longer needed
    columns = progress.assemble(bounds)
    if len(columns["SKAGES_FLAG"]) != n_rows:
        raise OSError(f"{folder}: chunks hold {len(columns['SKAGES_FLAG'])} rows, not {n_rows}")
    flags = columns["SKAGES_FLAG"]
    counts = {
        "n_rows": n_rows,
        "n_latent": int(np.isfinite(columns["z0"]).sum()) if predictor.latent_dim else 0,
        "n_ages": int(np.isfinite(columns["LogAge"]).sum()) if has_ages else 0,
    }
    flag_counts = {bit.name: int(((flags & int(bit)) != 0).sum()) for bit in CatalogueFlag}
    checksum = _content_sha256(columns)
    provenance = _provenance(model_info, describe, cuts, chunk_size, counts)
    provenance["training_rows"] = training_rows
    provenance["content_sha256"] = checksum
    table = _table(columns, predictor.latent_dim, provenance, ages=has_ages)
    with atomic_path(output) as tmp:
        if fmt == "csv":
            sidecar = output.with_name(output.name + ".json")
            with atomic_path(sidecar) as tmp_side:
                tmp_side.write_text(json.dumps(_sidecar(table), indent=1))
        _write(table, tmp, fmt)
        _verify(tmp, fmt, columns, checksum)
    logger.info(
        "%d rows: %d with latent coordinates, %d with ages; flagged %s",
        n_rows, counts["n_latent"], counts["n_ages"],
        {k: v for k, v in flag_counts.items() if v},
    )  # fmt: skip
    bad = flag_counts["NO_SPECTRUM"] + flag_counts["BAD_SPECTRUM"] + flag_counts["MODEL_FAILED"]
    if bad:
        logger.warning(
            "%d rows without a usable spectrum or with a model failure (NaN, flagged): "
            "NO_SPECTRUM %d, BAD_SPECTRUM %d, MODEL_FAILED %d",
            bad, flag_counts["NO_SPECTRUM"], flag_counts["BAD_SPECTRUM"],
            flag_counts["MODEL_FAILED"],
        )  # fmt: skip
    if not keep_progress:
        progress.remove()
    return Bunch(
        path=output,
        n_rows=n_rows,
        n_latent=counts["n_latent"],
        n_ages=counts["n_ages"],
        flag_counts=flag_counts,
        n_chunks=len(bounds),
        n_chunks_resumed=len(done),
        seconds=time.perf_counter() - t0,
        checksum=checksum,
    )
