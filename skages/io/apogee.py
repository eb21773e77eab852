"""Readers of APOGEE files: apStar and aspcapStar spectra (one or many) and allStar.

Single spectra (:func:`read_apstar`, :func:`read_aspcapstar`) come back as an
:class:`ApogeeSpectrum`: plain NumPy arrays on the 8575-pixel apStar grid plus the
star's header information. Many spectra (:func:`read_apogee_spectra`) come back
stacked in a :class:`~sklearn.utils.Bunch`. :func:`read_allstar` returns an
:class:`astropy.table.Table` with lower-case column names and units.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.utils import Bunch

from skages.spectra import N_PIXELS_APSTAR, apogee_wavelength

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------
# FITS helpers
# --------------------------------------------------------------------------------------

#: TELESCOP values of APOGEE spectra (2.5-m at APO and LCO, 1-m at APO).
_APOGEE_TELESCOPES = {"apo25m", "lco25m", "apo1m"}


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


@_names_the_file("apStar")
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
        If it is not FITS, is damaged or truncated, comes from another survey (e.g. a
        Kepler light curve), lacks the flux / uncertainty / bitmask HDUs, has the wrong
        pixel count, or is an aspcapStar file. The message names the file.
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


@_names_the_file("aspcapStar")
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
        If it is not FITS, is damaged or truncated, comes from another survey, lacks
        HDUs 1-3, has the wrong pixel count, or is an apStar file. The message names the
        file.
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


@_names_the_file("APOGEE spectrum")
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
        except Exception as exc:  # the readers name the file; anything else, too
            if on_error == "raise":
                raise
            out.errors[i] = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
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
