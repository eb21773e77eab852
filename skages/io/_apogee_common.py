"""APOGEE file primitives shared by the DR17 and the SDSS-V DR19 readers.

The FITS helpers, the :class:`ApogeeSpectrum` container and the DR17 allStar reader live
here, below both :mod:`skages.io.apogee` and :mod:`skages.io.sdss5`, so that the DR19
readers can use them while :mod:`skages.io.apogee` dispatches to the DR19 readers without
an import circle. Everything here is re-exported by :mod:`skages.io.apogee`.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from skages.spectra import apogee_wavelength

logger = logging.getLogger("skages.io.apogee")

PathLike = str | os.PathLike


def _names_the_file(what: str):
    """Make every failure of reading the file one ``ValueError`` that names the file.

    A truncated or damaged FITS file fails in many ways (astropy's ``TypeError: buffer
    is too small``, ``OSError``, ``KeyError``, ``IndexError``, zlib errors of a bad
    ``.gz``, ...); the caller sees one error type with the path. A missing file stays a
    ``FileNotFoundError``.
    """

    def decorate(read):
        @functools.wraps(read)
        def wrapper(path, *args, **kwargs):
            try:
                return read(path, *args, **kwargs)
            except (FileNotFoundError, MemoryError):
                raise
            except ValueError as exc:
                if str(path) in str(exc):
                    raise
                raise ValueError(f"{path}: {exc}") from exc
            except Exception as exc:
                raise ValueError(
                    f"{path} is not a readable {what} file (damaged or truncated?): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

        return wrapper

    return decorate


def _fits_open(path: PathLike, what: str):
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return fits.open(path, memmap=True)
    except OSError as exc:
        raise ValueError(
            f"{path} is not a readable FITS file (expected an {what} file): {exc}"
        ) from exc


def _header_value(header: Any, *keys: str) -> Any:
    """First present, non-empty header value among ``keys`` (invalid cards ignored)."""
    from astropy.io.fits.verify import VerifyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for key in keys:
            try:
                value = header.get(key)
            except (ValueError, KeyError):
                continue
            if isinstance(value, str):
                value = value.strip()
            if value not in (None, ""):
                return value
    return None


@dataclass(frozen=True, eq=False)
class ApogeeSpectrum:
    """One APOGEE spectrum on the 8575-pixel apStar grid, with its star's identity.

    Attributes
    ----------
    flux : ndarray of float32, shape (8575,)
        apStar: flux in 1e-17 erg s⁻¹ cm⁻² Å⁻¹; aspcapStar: ASPCAP's
        pseudo-continuum-normalised flux (dimensionless). Chip gaps hold 0.
    flux_err : ndarray of float32, shape (8575,)
        1-σ uncertainty of ``flux``, same unit (very large, e.g. 1e10, at bad apStar pixels).
    bitmask : ndarray of int32, shape (8575,), or None
        APOGEE_PIXMASK (apStar only; None for aspcapStar).
    apogee_id : str
        APOGEE (2MASS-style) identifier, e.g. ``"2M19535443+4424541"``.
    telescope : str or None
        ``"apo25m"``, ``"lco25m"`` or ``"apo1m"``; None if the file does not say.
    field : str or None
        APOGEE field name.
    snr : float
        Median signal-to-noise ratio per pixel from the header (NaN if absent).
    n_visits : int or None
        Number of visits combined.
    kind : {"apStar", "aspcapStar", "mwmStar", "mwmVisit"}
        File type read.
    path : pathlib.Path
        File read.
    header : astropy.io.fits.Header
        The primary header.
    model : ndarray of float32, shape (8575,), or None
        aspcapStar best-fitting synthetic spectrum (normalised); None for apStar.
    continuum : ndarray of float32, shape (8575,), or None
        SDSS-V mwmStar / mwmVisit: Astra's NMF continuum, in the unit of ``flux``
        (not the paper's normalisation); None for the other kinds.
    sdss_id : int or None
        SDSS-V identifier (mwmStar / mwmVisit); None for the DR17 kinds.
    gaia_dr3_source_id : int or None
        Gaia DR3 source id, where the file gives it (mwmStar / mwmVisit).
    """

    flux: np.ndarray
    flux_err: np.ndarray
    bitmask: np.ndarray | None
    apogee_id: str
    telescope: str | None
    field: str | None
    snr: float
    n_visits: int | None
    kind: str
    path: Path
    header: Any = field(repr=False)
    model: np.ndarray | None = field(default=None, repr=False)
    continuum: np.ndarray | None = field(default=None, repr=False)
    sdss_id: int | None = None
    gaia_dr3_source_id: int | None = None

    @property
    def wavelength(self) -> np.ndarray:
        """Vacuum wavelength (Å) of the 8575 pixels."""
        return apogee_wavelength(gap_removed=False)


def _native(arr: np.ndarray, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))


#: allStar columns :func:`read_allstar` needs, and their units (None: dimensionless / flags).
ALLSTAR_COLUMNS: dict[str, str | None] = {
    "APOGEE_ID": None,
    "TELESCOPE": None,
    "FIELD": None,
    "TEFF": "K",
    "TEFF_ERR": "K",
    "LOGG": "dex(cm / s2)",
    "LOGG_ERR": "dex",
    "FE_H": "dex",
    "FE_H_ERR": "dex",
    "ALPHA_M": "dex",
    "ALPHA_M_ERR": "dex",
    "SNREV": None,
    "STARFLAG": None,
    "ASPCAPFLAG": None,
}
_SENTINEL = -9999.0


def _as_str_array(values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8", errors="replace")
    return np.char.strip(arr.astype(str))


@_names_the_file("allStar")
def read_allstar(
    path: PathLike, *, columns: Sequence[str] | Literal["all"] | None = None, hdu: int = 1
):
    """Read an APOGEE allStar catalogue.

    Parameters
    ----------
    path : str or path-like
        An allStar FITS file (any data release with the columns below; extra
        columns are fine). Read through a memory map: only the chosen columns
        are loaded, so a multi-GB DR17 file is fine.
    columns : sequence of str or "all", optional
        Extra allStar columns to keep besides :data:`ALLSTAR_COLUMNS`.
    hdu : int, default=1
        HDU of the table.

    Returns
    -------
    astropy.table.Table
        Lower-case columns ``apogee_id``, ``telescope``, ``field`` (str),
        ``teff``, ``teff_err`` (K), ``logg`` (dex(cm s⁻²)), ``logg_err``,
        ``fe_h``, ``fe_h_err``, ``alpha_m``, ``alpha_m_err`` (dex), ``snrev``,
        ``starflag``, ``aspcapflag`` (int), then the extra columns. In
        floating-point columns APOGEE's -9999 sentinels become NaN. Row order
        is the file's, so results can be row-matched to it.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, is damaged, HDU ``hdu`` is not a table, or required columns
        are missing. The message names the file.
    """
    from astropy.table import Table

    path = Path(path)
    with _fits_open(path, "allStar") as hdul:
        if hdu >= len(hdul) or not hasattr(hdul[hdu], "columns"):
            raise ValueError(
                f"{path} is not an allStar file: HDU {hdu} is not a binary table "
                f"(the file has {len(hdul)} HDU(s))"
            )
        data = hdul[hdu].data
        names = list(hdul[hdu].columns.names)
        upper = {n.upper(): n for n in names}
        missing = [c for c in ALLSTAR_COLUMNS if c not in upper]
        if missing:
            raise ValueError(
                f"{path} is not a usable allStar file: missing required column(s) {missing} "
                f"(it has {names[:12]}{' ...' if len(names) > 12 else ''})"
            )
        if columns == "all":
            extra = [n for n in names if n.upper() not in ALLSTAR_COLUMNS]
        else:
            extra = []
            for name in columns or []:
                if name.upper() not in upper:
                    raise ValueError(f"columns: {path} has no column {name!r}")
                if name.upper() not in ALLSTAR_COLUMNS:
                    extra.append(upper[name.upper()])
        table = Table()
        for name in [upper[c] for c in ALLSTAR_COLUMNS] + extra:
            values = np.asarray(data[name])
            if values.dtype.kind in "SU":
                values = _as_str_array(values)
            elif values.dtype.kind == "f":
                values = values.astype(values.dtype.newbyteorder("="))
                values = np.where(values <= _SENTINEL + 0.5, np.nan, values)
            else:
                values = values.astype(values.dtype.newbyteorder("="))
            table[name.lower()] = values
            unit = ALLSTAR_COLUMNS.get(name.upper())
            if unit is not None:
                table[name.lower()].unit = unit
    table.meta["source"] = str(path)
    return table
