"""Readers of real survey files and the skages HDF5 survey collection format.

Choices made here, once for the whole module:

* Single spectra (:func:`read_apstar`, :func:`read_aspcapstar`) come back as an
  :class:`ApogeeSpectrum`: plain NumPy arrays on the 8575-pixel apStar grid plus
  the star's header information. Many spectra (:func:`read_apogee_spectra`) come
  back stacked in a :class:`~sklearn.utils.Bunch`.
* Catalogues (:func:`read_allstar`, :func:`read_apokasc2`) come back as
  :class:`astropy.table.Table` with lower-case snake-case column names, physical
  units on the columns (logarithmic quantities carry astropy ``dex`` units,
  e.g. ``log_age`` in ``dex(Gyr)`` = log10(Gyr)) and NaN where a value is missing.
  ``table.to_pandas()`` gives a DataFrame.
* Survey collections (:class:`SurveyWriter`, :class:`SurveyReader`) are HDF5
  files with per-star arrays and a table of labels (pandas DataFrame on read);
  the layout is documented in :class:`SurveyWriter` and in
  ``docs/user_guide/apogee.rst``.

Bad input raises a ``ValueError`` (or ``FileNotFoundError`` / ``TypeError``)
whose message names the file or argument, what was expected and what was found.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from numbers import Integral
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from skages._version import __version__
from skages.spectra import N_PIXELS, N_PIXELS_APSTAR, apogee_wavelength

__all__ = [
    "ALLSTAR_COLUMNS",
    "SURVEY_FORMAT_VERSION",
    "ApogeeSpectrum",
    "SurveyReader",
    "SurveyWriter",
    "crossmatch_training_sample",
    "read_allstar",
    "read_apogee_spectra",
    "read_apokasc2",
    "read_apstar",
    "read_aspcapstar",
    "read_survey",
    "write_survey",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------
# FITS helpers
# --------------------------------------------------------------------------------------

#: TELESCOP values of APOGEE spectra (2.5-m at APO and LCO, 1-m at APO).
_APOGEE_TELESCOPES = {"apo25m", "lco25m", "apo1m"}


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


def _check_not_other_survey(path: Path, header: Any, what: str) -> None:
    telescope = _header_value(header, "TELESCOP")
    mission = _header_value(header, "MISSION", "INSTRUME")
    if telescope is not None and str(telescope).lower() not in _APOGEE_TELESCOPES:
        raise ValueError(
            f"{path} is not an APOGEE {what} file: its TELESCOP is {telescope!r} "
            f"(APOGEE files come from {sorted(_APOGEE_TELESCOPES)})"
        )
    if mission is not None and "apogee" not in str(mission).lower():
        raise ValueError(
            f"{path} is not an APOGEE {what} file: its MISSION/INSTRUME is {mission!r}"
        )


def _image(hdul: Any, index: int, path: Path, what: str, role: str) -> np.ndarray:
    hdu = hdul[index]
    if not hdu.is_image or hdu.data is None:
        raise ValueError(
            f"{path} is not an APOGEE {what} file: HDU {index} should be the {role} image, "
            f"found {type(hdu).__name__} with no image data"
        )
    data = np.asarray(hdu.data)
    if data.shape[-1] != N_PIXELS_APSTAR:
        raise ValueError(
            f"{path}: HDU {index} ({role}) has {data.shape[-1]} pixels per row (shape "
            f"{data.shape}); an APOGEE {what} file has {N_PIXELS_APSTAR} (apStar grid)"
        )
    return data


def _check_wavelength_keywords(path: Path, header: Any, what: str) -> None:
    crval = _header_value(header, "CRVAL1")
    cdelt = _header_value(header, "CDELT1")
    if (crval is not None and cdelt is not None) and not (
        np.isclose(float(crval), 4.179) and np.isclose(float(cdelt), 6e-6)
    ):
        raise ValueError(
            f"{path}: wavelength grid CRVAL1={crval}, CDELT1={cdelt} is not the APOGEE "
            f"{what} grid (log10 λ/Å = 4.179 + 6e-6 · i)"
        )


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
    kind : {"apStar", "aspcapStar"}
        File type read.
    path : pathlib.Path
        File read.
    header : astropy.io.fits.Header
        The primary header.
    model : ndarray of float32, shape (8575,), or None
        aspcapStar best-fitting synthetic spectrum (normalised); None for apStar.
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

    @property
    def wavelength(self) -> np.ndarray:
        """Vacuum wavelength (Å) of the 8575 pixels."""
        return apogee_wavelength(gap_removed=False)


def _apogee_id(path: Path, header: Any, table: Any, what: str) -> str:
    value = _header_value(header, "APOGEE_ID", "OBJID", "OBJ", "OBJECT")
    if value is None and table is not None and "APOGEE_ID" in table.columns.names:
        value = table["APOGEE_ID"][0]
        value = value.decode() if isinstance(value, bytes) else str(value)
        value = value.strip() or None
    if value is None:
        raise ValueError(
            f"{path} is not an APOGEE {what} file: no APOGEE_ID / OBJID in its headers"
        )
    return str(value)


def _select_row(data: np.ndarray, visit: Any, n_visits: int | None, path: Path) -> np.ndarray:
    if data.ndim == 1:
        rows = data[None, :]
    elif data.ndim == 2:
        rows = data
    else:
        raise ValueError(f"{path}: expected 1-D or 2-D spectra, found shape {data.shape}")
    n_rows = rows.shape[0]
    if visit == "combined":
        return rows[0]
    if visit == "global":
        return rows[1 if n_rows > 1 else 0]
    if isinstance(visit, Integral) and not isinstance(visit, bool):
        n_ind = n_rows - 2 if n_rows > 2 else 1
        if n_visits is not None and n_rows > 2:
            n_ind = min(n_ind, n_visits)
        if not 0 <= visit < n_ind:
            raise ValueError(
                f"visit must be 'combined', 'global' or a visit number from 0 to {n_ind - 1} "
                f"for {path}; got {visit}"
            )
        return rows[visit + 2] if n_rows > 2 else rows[0]
    raise ValueError(f"visit must be 'combined', 'global' or an int; got {visit!r}")


def _native(arr: np.ndarray, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("="))


def read_apstar(
    path: PathLike, *, visit: Literal["combined", "global"] | int = "combined"
) -> ApogeeSpectrum:
    """Read an APOGEE apStar file (combined and per-visit spectra of one star).

    Parameters
    ----------
    path : str or path-like
        An ``apStar-*.fits`` file: HDU 1 flux, 2 uncertainty, 3 APOGEE_PIXMASK on
        the 8575-pixel apStar grid, one row per spectrum.
    visit : {"combined", "global"} or int, default="combined"
        Which spectrum: the pixel-weighted combination (row 0), the globally
        weighted combination (row 1), or visit ``k`` (0-based; row ``k + 2``).
        A single-visit file has one row, which serves all three.

    Returns
    -------
    ApogeeSpectrum
        ``flux`` and ``flux_err`` in 1e-17 erg s⁻¹ cm⁻² Å⁻¹, ``bitmask`` int32.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, comes from another survey (e.g. a Kepler light
        curve), lacks the flux / uncertainty / bitmask HDUs, has the wrong pixel
        count, or is an aspcapStar file.
    """
    path = Path(path)
    with _fits_open(path, "apStar") as hdul:
        header = hdul[0].header
        _check_not_other_survey(path, header, "apStar")
        if len(hdul) < 4:
            raise ValueError(
                f"{path} is not an APOGEE apStar file: it has {len(hdul)} HDU(s); expected flux, "
                "uncertainty and bitmask images in HDUs 1-3"
            )
        flux = _image(hdul, 1, path, "apStar", "flux")
        err = _image(hdul, 2, path, "apStar", "uncertainty")
        mask = _image(hdul, 3, path, "apStar", "bitmask")
        if mask.dtype.kind not in "iu":
            raise ValueError(
                f"{path}: HDU 3 holds {mask.dtype} values, not an integer bitmask; this looks "
                "like an aspcapStar file (use read_aspcapstar)"
            )
        if not (flux.shape == err.shape == mask.shape):
            raise ValueError(
                f"{path}: flux, uncertainty and bitmask HDUs differ in shape: "
                f"{flux.shape}, {err.shape}, {mask.shape}"
            )
        _check_wavelength_keywords(path, hdul[1].header, "apStar")
        n_visits = _header_value(header, "NVISITS")
        n_visits = int(n_visits) if n_visits is not None else None
        if mask.dtype.kind == "i" and mask.dtype.itemsize < 4:
            mask = mask.view(mask.dtype.str.replace("i", "u"))  # bit 15 stays bit 15
        snr = _header_value(header, "SNR")
        return ApogeeSpectrum(
            flux=_native(_select_row(flux, visit, n_visits, path), np.float32),
            flux_err=_native(_select_row(err, visit, n_visits, path), np.float32),
            bitmask=_native(_select_row(mask, visit, n_visits, path), np.int32),
            apogee_id=_apogee_id(path, header, None, "apStar"),
            telescope=_header_value(header, "TELESCOP"),
            field=_header_value(header, "FIELD"),
            snr=float(snr) if snr is not None else float("nan"),
            n_visits=n_visits,
            kind="apStar",
            path=path,
            header=header.copy(),
        )


def read_aspcapstar(path: PathLike) -> ApogeeSpectrum:
    """Read an APOGEE aspcapStar file (ASPCAP's normalised spectrum of one star).

    Parameters
    ----------
    path : str or path-like
        An ``aspcapStar-*.fits`` file: HDU 1 normalised flux, 2 uncertainty, 3
        best-fitting model on the 8575-pixel apStar grid; HDU 4 the ASPCAP table.

    Returns
    -------
    ApogeeSpectrum
        Dimensionless ``flux``, ``flux_err`` and ``model``; ``bitmask`` is None.
        ``telescope`` comes from the header or the ASPCAP table (None if neither has it).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, comes from another survey, lacks HDUs 1-3, has the
        wrong pixel count, or is an apStar file.
    """
    path = Path(path)
    with _fits_open(path, "aspcapStar") as hdul:
        header = hdul[0].header
        _check_not_other_survey(path, header, "aspcapStar")
        if len(hdul) < 4:
            raise ValueError(
                f"{path} is not an APOGEE aspcapStar file: it has {len(hdul)} HDU(s); expected "
                "flux, uncertainty and model images in HDUs 1-3 and the ASPCAP table in HDU 4"
            )
        flux = _image(hdul, 1, path, "aspcapStar", "flux")
        err = _image(hdul, 2, path, "aspcapStar", "uncertainty")
        model = _image(hdul, 3, path, "aspcapStar", "model")
        if model.dtype.kind in "iu":
            raise ValueError(
                f"{path}: HDU 3 is an integer array (a bitmask), not a model spectrum; this looks "
                "like an apStar file (use read_apstar)"
            )
        if flux.ndim != 1 or flux.shape != err.shape:
            raise ValueError(
                f"{path}: an aspcapStar file holds one spectrum; found flux {flux.shape}, "
                f"uncertainty {err.shape}"
            )
        _check_wavelength_keywords(path, hdul[1].header, "aspcapStar")
        table = hdul[4].data if len(hdul) > 4 and hdul[4].is_image is False else None
        telescope = _header_value(header, "TELESCOP")
        if telescope is None and table is not None and "TELESCOPE" in table.columns.names:
            value = table["TELESCOPE"][0]
            telescope = (
                value.decode() if isinstance(value, bytes) else str(value)
            ).strip() or None
        n_visits = _header_value(header, "NVISITS")
        snr = _header_value(header, "SNR")
        return ApogeeSpectrum(
            flux=_native(flux, np.float32),
            flux_err=_native(err, np.float32),
            bitmask=None,
            apogee_id=_apogee_id(path, header, table, "aspcapStar"),
            telescope=telescope,
            field=_header_value(header, "FIELD"),
            snr=float(snr) if snr is not None else float("nan"),
            n_visits=int(n_visits) if n_visits is not None else None,
            kind="aspcapStar",
            path=path,
            header=header.copy(),
            model=_native(model, np.float32),
        )


def _detect_kind(path: Path) -> str:
    with _fits_open(path, "APOGEE spectrum") as hdul:
        if len(hdul) > 3 and hdul[3].is_image and hdul[3].data is not None:
            return "apStar" if hdul[3].data.dtype.kind in "iu" else "aspcapStar"
    raise ValueError(
        f"{path} is neither an apStar nor an aspcapStar file: it has no image in HDU 3"
    )


def read_apogee_spectra(
    paths: Iterable[PathLike],
    *,
    kind: Literal["auto", "apStar", "aspcapStar"] = "auto",
    visit: Literal["combined", "global"] | int = "combined",
    on_error: Literal["raise", "nan"] = "raise",
    verbose: bool = False,
) -> Bunch:
    """Read many apStar / aspcapStar files into stacked arrays.

    Parameters
    ----------
    paths : iterable of str or path-like
        Files to read, in the order of the output rows.
    kind : {"auto", "apStar", "aspcapStar"}, default="auto"
        File type; ``"auto"`` decides per file (HDU 3 integer = apStar).
    visit : {"combined", "global"} or int, default="combined"
        apStar row to read (see :func:`read_apstar`).
    on_error : {"raise", "nan"}, default="raise"
        An unreadable or invalid file raises, or (``"nan"``) gives a row of NaN
        flux, an empty id and an entry in ``errors`` (logged as a warning).
    verbose : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    Bunch
        ``flux``, ``flux_err`` float32 (n_files, 8575) in each file's unit;
        ``bitmask`` int32 (n_files, 8575), zero where the file has none
        (aspcapStar, failed files); ``apogee_id``, ``telescope``, ``field``
        (object arrays of str, ``""`` if unknown), ``snr`` float (n_files,),
        ``kind`` (object array), ``paths`` (list of Path), ``errors`` (dict
        row -> message of the files that failed).
    """
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan'; got {on_error!r}")
    if kind not in ("auto", "apStar", "aspcapStar"):
        raise ValueError(f"kind must be 'auto', 'apStar' or 'aspcapStar'; got {kind!r}")
    from tqdm.auto import tqdm

    paths = [Path(p) for p in paths]
    n = len(paths)
    out = Bunch(
        flux=np.full((n, N_PIXELS_APSTAR), np.nan, dtype=np.float32),
        flux_err=np.full((n, N_PIXELS_APSTAR), np.nan, dtype=np.float32),
        bitmask=np.zeros((n, N_PIXELS_APSTAR), dtype=np.int32),
        apogee_id=np.full(n, "", dtype=object),
        telescope=np.full(n, "", dtype=object),
        field=np.full(n, "", dtype=object),
        snr=np.full(n, np.nan),
        kind=np.full(n, "", dtype=object),
        paths=paths,
        errors={},
    )
    for i, path in enumerate(tqdm(paths, disable=not verbose, desc="spectra", unit="file")):
        try:
            this_kind = _detect_kind(path) if kind == "auto" else kind
            spec = (
                read_apstar(path, visit=visit) if this_kind == "apStar" else read_aspcapstar(path)
            )
        except (OSError, ValueError) as exc:
            if on_error == "raise":
                raise
            out.errors[i] = str(exc)
            logger.warning("could not read %s: %s", path, exc)
            continue
        out.flux[i] = spec.flux
        out.flux_err[i] = spec.flux_err
        if spec.bitmask is not None:
            out.bitmask[i] = spec.bitmask
        out.apogee_id[i] = spec.apogee_id
        out.telescope[i] = spec.telescope or ""
        out.field[i] = spec.field or ""
        out.snr[i] = spec.snr
        out.kind[i] = spec.kind
    if out.errors:
        logger.warning("%d of %d spectrum files could not be read", len(out.errors), n)
    return out


# --------------------------------------------------------------------------------------
# Catalogues: allStar, APOKASC-2
# --------------------------------------------------------------------------------------

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
        If it is not FITS, HDU ``hdu`` is not a table, or required columns are missing.
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


# column in the APOKASC-2 file -> (column in skages, unit)
_APOKASC2_VALUES = {
    "KIC": ("kic", None),
    "2MASS": ("apogee_id", None),
    "Teff": ("teff", "K"),
    "S Teff": ("teff_err", "K"),
    "FeH": ("fe_h", "dex"),
    "S FeH": ("fe_h_err", "dex"),
    "Afe": ("alpha_fe", "dex"),
    "S Afe": ("alpha_fe_err", "dex"),
    "Nmax": ("numax", "uHz"),
    "Dnu": ("dnu", "uHz"),
    "Fdnu": ("fdnu", None),
    "S Fdnu": ("fdnu_err", None),
    "M(cor)": ("mass", "solMass"),
    "R(cor)": ("radius", "solRad"),
    "Logg(seis)": ("logg_seis", "dex(cm / s2)"),
    "S Gran": ("logg_seis_err", "dex"),
    "S Gsys": ("logg_seis_err_sys", "dex"),
    "<Rho>": ("rho", None),
    "Log Age": ("log_age", "dex(Gyr)"),
    "Av": ("av", "mag"),
    "S Av": ("av_err", "mag"),
}
# fractional uncertainty columns -> (value column, skages name)
_APOKASC2_FRACTIONAL = {
    "S Nmax": ("numax", "numax_err"),
    "S Dnu": ("dnu", "dnu_err"),
    "S Mran": ("mass", "mass_err"),
    "S Msys": ("mass", "mass_err_sys"),
    "S Rran": ("radius", "radius_err"),
    "S Rsys": ("radius", "radius_err_sys"),
    "S Rrhoran": ("rho", "rho_err"),
    "S Rhosys": ("rho", "rho_err_sys"),
}


def read_apokasc2(path: PathLike | None = None):
    """Read the APOKASC-2 catalogue (Pinsonneault et al. 2018, ApJS 239, 32, Table 5).

    Parameters
    ----------
    path : str or path-like, optional
        The tab-separated ``APOKASC2_Table5.txt`` (or ``.gz``). Default: the copy
        bundled with skages.

    Returns
    -------
    astropy.table.Table
        6,676 Kepler giants, one row per star, with columns

        - ``kic`` (int), ``apogee_id`` (str, 2MASS id = APOGEE_ID);
        - ``teff``, ``teff_err`` (K); ``fe_h``, ``fe_h_err``, ``alpha_fe``,
          ``alpha_fe_err`` (dex; APOGEE DR14);
        - ``numax``, ``numax_err``, ``dnu``, ``dnu_err`` (µHz) — the file gives
          *fractional* uncertainties of νmax and Δν (and of mass, radius and
          density); they are converted here to absolute ones
          (``numax_err = S_Nmax × numax``);
        - ``evstate`` (``"RGB"``, ``"RC"``, ``"AMB"``, ``"REJECT"``, ``"BAD_TEFF"``)
          and ``evstate_spectroscopic`` (bool: the state is the spectroscopic
          "(S)" classification, not the seismic one);
        - ``fdnu``, ``fdnu_err`` (Δν correction factor); ``mass``, ``mass_err``,
          ``mass_err_sys`` (M☉); ``radius``, ``radius_err``, ``radius_err_sys`` (R☉);
          ``logg_seis`` (dex(cm s⁻²)), ``logg_seis_err``, ``logg_seis_err_sys``
          (dex); ``rho``, ``rho_err``, ``rho_err_sys`` (mean density, solar units);
        - ``log_age`` in log10(Gyr) (the file's log10(Myr) minus 3),
          ``log_age_err_upper``, ``log_age_err_lower`` (both positive, dex) and
          their mean ``log_age_err``; ``age`` (Gyr) = 10**log_age;
        - ``av``, ``av_err`` (mag); ``note`` (str, ``""`` for none).

        The file's -1 (missing) becomes NaN; for [Fe/H], [α/Fe] and the lower age
        error, which can be negative, only when the paired uncertainty is -1 too.
        Age uncertainties of ±99 (unconstrained, 2 stars) become NaN.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file lacks APOKASC-2 Table 5 columns.
    """
    import astropy.units as u
    from astropy.table import Table

    if path is None:
        from skages.datasets import bundled_path

        path = bundled_path("APOKASC2_Table5.txt.gz")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"APOKASC-2 file not found: {path}")
    try:
        df = pd.read_csv(path, sep="\t", dtype={"2MASS": str, "ES": str, "Note": str})
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path} is not the tab-separated APOKASC-2 Table 5: {exc}") from exc
    needed = [*_APOKASC2_VALUES, *_APOKASC2_FRACTIONAL, "ES", "S LogageP", "S LogageM", "Note"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"{path} is not APOKASC-2 Table 5: missing column(s) {missing} "
            f"(found {list(df.columns)[:10]} ...)"
        )

    def col(name: str) -> np.ndarray:
        return df[name].to_numpy(dtype=float)

    def missing_as_nan(values: np.ndarray, sentinel_too: np.ndarray | None = None) -> np.ndarray:
        gone = values == -1 if sentinel_too is None else (values == -1) & (sentinel_too == -1)
        return np.where(gone, np.nan, values)

    out: dict[str, np.ndarray] = {}
    signed = {"FeH": "S FeH", "Afe": "S Afe"}
    for src, (name, _) in _APOKASC2_VALUES.items():
        if name in ("kic", "apogee_id"):
            continue
        values = col(src)
        out[name] = missing_as_nan(values, col(signed[src]) if src in signed else None)
    for src, (value_name, name) in _APOKASC2_FRACTIONAL.items():
        out[name] = missing_as_nan(col(src)) * out[value_name]
    out["log_age"] = out["log_age"] - 3.0
    upper = missing_as_nan(col("S LogageP"))
    lower = -missing_as_nan(col("S LogageM"), col("S LogageP"))
    unconstrained = (np.abs(upper) >= 99) | (np.abs(lower) >= 99)
    upper[unconstrained] = np.nan
    lower[unconstrained] = np.nan

    state = df["ES"].fillna("").astype(str).str.strip()
    table = Table()
    table["kic"] = df["KIC"].to_numpy(dtype=np.int64)
    table["apogee_id"] = df["2MASS"].fillna("").astype(str).str.strip().to_numpy(dtype=str)
    for name in ("teff", "teff_err", "fe_h", "fe_h_err", "alpha_fe", "alpha_fe_err"):
        table[name] = out[name]
    for name in ("numax", "numax_err", "dnu", "dnu_err"):
        table[name] = out[name]
    table["evstate"] = (
        state.str.replace("(S)", "", regex=False)
        .str.strip()
        .str.upper()
        .str.replace(" ", "_")
        .to_numpy(dtype=str)
    )
    table["evstate_spectroscopic"] = state.str.endswith("(S)").to_numpy()
    for name in (
        "fdnu",
        "fdnu_err",
        "mass",
        "mass_err",
        "mass_err_sys",
        "radius",
        "radius_err",
        "radius_err_sys",
        "logg_seis",
        "logg_seis_err",
        "logg_seis_err_sys",
        "rho",
        "rho_err",
        "rho_err_sys",
        "log_age",
    ):
        table[name] = out[name]
    table["log_age_err_upper"] = upper
    table["log_age_err_lower"] = lower
    table["log_age_err"] = 0.5 * (upper + lower)
    table["age"] = 10.0 ** out["log_age"]
    table["av"] = out["av"]
    table["av_err"] = out["av_err"]
    note = df["Note"].fillna("").astype(str).str.strip()
    table["note"] = note.where(note != "-1", "").to_numpy(dtype=str)

    units = {name: unit for name, unit in _APOKASC2_VALUES.values() if unit}
    units.update({err: units[val] for val, err in _APOKASC2_FRACTIONAL.values() if val in units})
    units.update(log_age_err_upper="dex", log_age_err_lower="dex", log_age_err="dex", age="Gyr")
    for name, unit in units.items():
        table[name].unit = u.Unit(unit)
    table.meta["source"] = str(path)
    table.meta["ref"] = "Pinsonneault et al. (2018), ApJS 239, 32, Table 5"
    return table


# --------------------------------------------------------------------------------------
# Cross-match
# --------------------------------------------------------------------------------------


def _ids_as_str(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one id per row); got shape {arr.shape}")
    if arr.dtype.kind in "fc":
        raise TypeError(f"{name} must hold APOGEE_ID strings; got dtype {arr.dtype}")
    out = np.array(
        [
            "" if v is None else (v.decode() if isinstance(v, bytes) else str(v)).strip()
            for v in arr
        ],
        dtype=object,
    )
    blank = np.flatnonzero((out == "") | (out == "nan") | (out == "None"))
    if blank.size:
        raise ValueError(
            f"{name} has {blank.size} missing (blank) id(s), first at rows {blank[:5].tolist()}"
        )
    return out


def _ids_as_kic(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one KIC per row); got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    out = np.empty(arr.size, dtype=np.int64)
    for i, v in enumerate(arr):
        text = v.decode() if isinstance(v, bytes) else str(v)
        text = text.strip().upper().removeprefix("KIC").removeprefix("KPLR").strip()
        try:
            number = float(text)
        except ValueError:
            number = np.nan
        if not np.isfinite(number) or number != int(number) or number <= 0:
            raise ValueError(
                f"{name} must hold Kepler Input Catalogue numbers (e.g. 9145861 or 'KIC 9145861');"
                f" row {i} is {v!r}"
            )
        out[i] = int(number)
    return out


def _check_unique(ids: np.ndarray, name: str, duplicates: str) -> np.ndarray:
    """Row positions to keep (first occurrences) after the duplicate policy."""
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if np.all(counts == 1):
        return np.arange(ids.size)
    dup = ids[np.sort(first[counts > 1])]
    n_extra = int((counts - 1).sum())
    if duplicates == "raise":
        raise ValueError(
            f"{name} has {dup.size} duplicated id(s) ({n_extra} extra row(s)), e.g. "
            f"{[str(d) for d in dup[:5]]}; keep one row per star (or pass duplicates='first')"
        )
    logger.warning("%s: %d duplicated row(s) dropped (first occurrence kept)", name, n_extra)
    return np.sort(first)


def crossmatch_training_sample(
    spectra_ids: Any,
    ages: Any,
    psd_ids: Any = None,
    *,
    apogee_id_column: str = "apogee_id",
    kic_column: str = "kic",
    dropna: Sequence[str] = (),
    duplicates: Literal["raise", "first"] = "raise",
) -> Bunch:
    """Match spectra, power spectra and seismic ages star by star.

    Spectra are matched to the ages table on APOGEE_ID, PSDs on KIC; the ages
    table (e.g. :func:`read_apokasc2`) holds both and links them. The result is
    the inner join: stars present in every input given. How many rows of each
    input found no partner is returned and logged.

    Parameters
    ----------
    spectra_ids : array-like of str, shape (n_spectra,)
        APOGEE_ID of each spectrum row (e.g. the ``apogee_id`` of a survey file).
    ages : astropy.table.Table or pandas.DataFrame
        One row per star with ``apogee_id_column`` and ``kic_column`` columns,
        plus labels (e.g. ``log_age``).
    psd_ids : array-like, shape (n_psd,), optional
        KIC of each PSD row (ints or strings such as ``"KIC 9145861"``). If None,
        only spectra and ages are matched.
    apogee_id_column, kic_column : str
        Column names in ``ages``.
    dropna : sequence of str, default=()
        Columns of ``ages`` that must be finite for a star to be kept (e.g.
        ``["log_age"]``); stars dropped this way are counted.
    duplicates : {"raise", "first"}, default="raise"
        A repeated id within any input raises a ValueError, or (``"first"``) keeps
        its first row and logs how many were dropped.

    Returns
    -------
    Bunch
        ``spectra_index``, ``ages_index`` and (if ``psd_ids`` given)
        ``psd_index``: int arrays of equal length, rows of each input for the
        matched stars in the order of ``spectra_ids``; ``labels``: the matched
        rows of ``ages`` as a DataFrame (index 0..n-1); ``n_matched``;
        ``n_unmatched``: dict with the number of rows of each input left out.

    Raises
    ------
    ValueError
        For a missing (blank) id, a duplicated id (with ``duplicates="raise"``),
        a missing column, or when no star matches.

    Examples
    --------
    >>> import pandas as pd
    >>> from skages.io import crossmatch_training_sample
    >>> ages = pd.DataFrame({"apogee_id": ["2MA", "2MB", "2MC"], "kic": [1, 2, 3],
    ...                      "log_age": [0.5, 0.9, 0.1]})
    >>> m = crossmatch_training_sample(["2MC", "2MX", "2MA"], ages, psd_ids=[1, 3, 7])
    >>> m.spectra_index.tolist(), m.psd_index.tolist(), m.labels["log_age"].tolist()
    ([0, 2], [1, 0], [0.1, 0.5])
    >>> m.n_unmatched
    {'spectra': 1, 'psd': 1, 'ages': 1}
    """
    if duplicates not in ("raise", "first"):
        raise ValueError(f"duplicates must be 'raise' or 'first'; got {duplicates!r}")
    if hasattr(ages, "to_pandas"):
        ages_df = ages.to_pandas()
    elif isinstance(ages, pd.DataFrame):
        ages_df = ages.reset_index(drop=True)
    else:
        raise TypeError(
            f"ages must be an astropy Table or a pandas DataFrame; got {type(ages).__name__}"
        )
    needed = [apogee_id_column] + ([kic_column] if psd_ids is not None else [])
    needed += list(dropna)
    missing = [c for c in needed if c not in ages_df.columns]
    if missing:
        raise ValueError(f"ages has no column(s) {missing}; it has {list(ages_df.columns)}")

    spec = _ids_as_str(spectra_ids, "spectra_ids")
    table_ids = _ids_as_str(ages_df[apogee_id_column].to_numpy(), f"ages[{apogee_id_column!r}]")
    keep_spec = _check_unique(spec, "spectra_ids", duplicates)
    keep_tab = _check_unique(table_ids, f"ages[{apogee_id_column!r}]", duplicates)
    if psd_ids is not None:
        psd = _ids_as_kic(psd_ids, "psd_ids")
        table_kic = _ids_as_kic(ages_df[kic_column].to_numpy(), f"ages[{kic_column!r}]")
        keep_psd = _check_unique(psd, "psd_ids", duplicates)
        keep_tab = keep_tab[
            _check_unique(table_kic[keep_tab], f"ages[{kic_column!r}]", duplicates)
        ]

    n_dropna = 0
    if dropna:
        finite = np.ones(keep_tab.size, dtype=bool)
        for name in dropna:
            values = pd.to_numeric(ages_df[name].iloc[keep_tab], errors="coerce").to_numpy(float)
            finite &= np.isfinite(values)
        n_dropna = int((~finite).sum())
        keep_tab = keep_tab[finite]

    tab_pos = pd.Series(keep_tab, index=table_ids[keep_tab])
    spec_rows = keep_spec[np.isin(spec[keep_spec], table_ids[keep_tab])]
    ages_rows = tab_pos.loc[spec[spec_rows]].to_numpy()
    result = Bunch()
    if psd_ids is not None:
        psd_pos = pd.Series(keep_psd, index=psd[keep_psd])
        has_psd = np.isin(table_kic[ages_rows], psd[keep_psd])
        spec_rows, ages_rows = spec_rows[has_psd], ages_rows[has_psd]
        result.psd_index = psd_pos.loc[table_kic[ages_rows]].to_numpy().astype(np.intp)
    n = spec_rows.size
    if n == 0:
        raise ValueError(
            "no star is common to spectra_ids, ages"
            + (" and psd_ids" if psd_ids is not None else "")
            + f" (matched on APOGEE_ID{' and KIC' if psd_ids is not None else ''}); "
            f"e.g. spectra_ids[:3] = {spec[:3].tolist()}, "
            f"ages ids[:3] = {table_ids[:3].tolist()}"
        )
    result.spectra_index = spec_rows.astype(np.intp)
    result.ages_index = ages_rows.astype(np.intp)
    result.labels = ages_df.iloc[ages_rows].reset_index(drop=True)
    result.n_matched = n
    result.n_unmatched = {"spectra": int(spec.size - n)}
    if psd_ids is not None:
        result.n_unmatched["psd"] = int(psd.size - n)
    result.n_unmatched["ages"] = int(len(ages_df) - n)
    if n_dropna:
        result.n_unmatched["ages_dropna"] = n_dropna
    logger.info("cross-match: %d stars matched; unmatched rows %s", n, result.n_unmatched)
    return result


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
        import h5py

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
        if resume and self.partial_path.exists():
            try:
                self._file = h5py.File(self.partial_path, "r+")
            except OSError as exc:
                raise ValueError(
                    f"cannot resume {self.partial_path}: the HDF5 file is damaged ({exc}); "
                    "delete it and start again"
                ) from exc
            _check_survey_attrs(self._file, self.partial_path, allow_incomplete=True)
            self._n = int(self._file.attrs["n_stars"])
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
            self._file = h5py.File(self.partial_path, "w")
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
            if frequency is not None:
                self._write_grid("frequency", frequency, "uHz")
            self._file.flush()

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
            self._create(checked, cols, {**units, **self._units}, categorical)
        else:
            self._check_schema(checked, cols)
        if k == 0:
            return
        n0, n1 = self._n, self._n + k
        for name, values in checked.items():
            ds = self._file[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = values
        group = self._file[_LABELS]
        for name, values in cols.items():
            ds = group[name]
            ds.resize(n1, axis=0)
            if ds.dtype.kind == "O":
                ds[n0:n1] = np.asarray(values, dtype=object)
            else:
                ds[n0:n1] = self._cast_label(name, values, ds.dtype)
        self._file.attrs["n_stars"] = n1
        self._file.flush()
        self._n = n1

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
        self._file.attrs["complete"] = True
        self._file.attrs["n_stars"] = self._n
        self._file.close()
        self._closed = True
        os.replace(self.partial_path, self.path)
        logger.info("wrote %d stars to %s", self._n, self.path)
        return self.path

    def abort(self) -> None:
        """Close without finishing: the partial file stays, for ``resume=True``."""
        if not self._closed:
            self._file.flush()
            self._file.close()
            self._closed = True
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
        else:
            self.abort()


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
            )
        self._file = h5py.File(self.path, "r")
        try:
            _check_survey_attrs(self._file, self.path)
        except ValueError:
            self._file.close()
            raise
        attrs = self._file.attrs
        self.n_stars = int(attrs["n_stars"])
        self.skages_version = str(attrs.get("skages_version", ""))
        self.metadata = json.loads(attrs.get("metadata", "{}"))
        self.arrays = tuple(
            k for k, v in self._file.items() if isinstance(v, h5py.Dataset) and k not in _GRIDS
        )
        self.frequency = self._file["frequency"][()] if "frequency" in self._file else None
        self.wavelength = self._file["wavelength"][()] if "wavelength" in self._file else None
        self.label_columns = list(json.loads(self._file[_LABELS].attrs["columns"]))
        self._labels: pd.DataFrame | None = None

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
