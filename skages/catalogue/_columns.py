"""The catalogue's data model (the paper's Table 1 columns), its text columns and checksums."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

#: Version of the catalogue layout (columns, flags, provenance keys).
CATALOGUE_FORMAT_VERSION = 2

#: Probabilities of the catalogue's interval bounds (``LogAge_Lower``, ``LogAge_Upper``):
#: the central 68 % interval.
INTERVAL_PROBABILITIES = (0.16, 0.84)


_ID_COLUMNS = ("APOGEE_ID", "TELESCOPE", "FIELD")


_FLAG_COLUMNS = ("STARFLAG", "ASPCAPFLAG")


_TRAINING_COLUMN = "IN_TRAINING"


#: What a simulated survey's rows get for the columns DR17 fills and the simulator does
#: not: APOKASC's Kepler-field stars were observed with the APO 2.5 m telescope. DR17
#: names those fields after the star's Kepler CCD module and position (``K04_083+13``),
#: which the simulator does not model, so the field says what the rows are instead.
SIMULATED_TELESCOPE = "apo25m"


SIMULATED_FIELD = "SIM_KEPLER"


def catalogue_columns(
    latent_dim: int = 5, *, ages: bool = True
) -> list[tuple[str, str | None, str]]:
    """The catalogue's columns: (name, astropy unit string or None, description).

    The paper's Table 1 (APOGEE_ID … Age_Error), plus the latent σ (``z0_Error`` …),
    the central 68 % interval of the age (``LogAge_Lower`` … ``Age_Upper``, the 16 % and
    84 % quantiles from the forest's out-of-bag residuals), the dimensionless
    ``Applicability`` score (> 1: outside the training stars), the ``SKAGES_FLAG``
    bitmask and ``IN_TRAINING`` (1 for the stars the model was trained on, whose ages
    are not independent of the model).

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
     'z1_Error', 'LogAge', 'LogAge_Error', 'Age', 'Age_Error', 'LogAge_Lower',
     'LogAge_Upper', 'Age_Lower', 'Age_Upper', 'Applicability', 'SKAGES_FLAG',
     'IN_TRAINING']
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
            ("LogAge_Lower", "dex(Gyr)", "16% quantile of LogAge (out-of-bag residuals)"),
            ("LogAge_Upper", "dex(Gyr)", "84% quantile of LogAge (out-of-bag residuals)"),
            ("Age_Lower", "Gyr", "16% quantile of Age, 10**LogAge_Lower (Gyr)"),
            ("Age_Upper", "Gyr", "84% quantile of Age, 10**LogAge_Upper (Gyr)"),
            ("Applicability", "", "distance to the training stars (>1: outside them)"),
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


def _with_source_ids(
    columns: dict[str, np.ndarray], ids: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The catalogue columns with the SDSS-V id columns (if any) placed after FIELD."""
    if not ids:
        return columns
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        out[name] = values
        if name == "FIELD":
            out.update(ids)
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
