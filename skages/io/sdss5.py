"""Readers of SDSS-V (DR19) files: Astra's mwmStar / mwmVisit spectra and the summary
tables astraAllStarASPCAP and allStar-1.3 as label tables.

DR19 keeps the reduction pipeline's apStar files (``apred`` 1.x, read by
:func:`skages.io.read_apstar` unchanged) and adds Astra's per-star files:

* ``mwmStar-0.6.0-{sdss_id}.fits``: HDU 3 (APOGEE/APO) and HDU 4 (APOGEE/LCO) are binary
  tables of one row (or none) holding the coadded spectrum on the 8575-pixel apStar grid:
  ``flux`` (1e-17 erg s⁻¹ cm⁻² Å⁻¹), ``ivar``, ``pixel_flags`` (APOGEE_PIXMASK bits),
  ``continuum`` (Astra's NMF fit);
* ``mwmVisit-0.6.0-{sdss_id}.fits``: the same HDUs with one row per visit.

:func:`read_labels` reads the label table given to ``skages predict --labels``: a DR17
allStar (:func:`skages.io.read_allstar`), Astra's ``astraAllStarASPCAP`` or the DR19
reduction summary ``allStar-1.3``, in the DR17 allStar's column names and units
(:data:`ASTRA_ASPCAP_COLUMN_MAP`, :data:`ALLSTAR13_COLUMN_MAP`), with ``sdss_id`` and
``gaia_dr3_source_id`` beside ``apogee_id`` and one row per star.

The layouts follow the SDSS data model (``sdss/datamodel``, products ``mwmStar``,
``mwmVisit``, ``apStar``, ``astraAllStarASPCAP``, ``allStar``, section DR19). The formats
are recognised from the files' content (primary-header keywords and HDU structure).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from skages.io._apogee_common import (
    _SENTINEL,
    ALLSTAR_COLUMNS,
    ApogeeSpectrum,
    _as_str_array,
    _fits_open,
    _header_value,
    _names_the_file,
    _native,
    read_allstar,
)
from skages.spectra import N_PIXELS_APSTAR, pixmask_from_astra_flags

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: mwmStar / mwmVisit HDUs holding APOGEE spectra, by observatory.
MWM_APOGEE_HDUS: dict[str, int] = {"apo": 3, "lco": 4}
_BOSS_HDUS = (1, 2)

#: DR17 ASPCAPFLAG bit ``STAR_BAD``: set in ``aspcapflag`` where Astra's ``flag_bad`` is.
ASPCAPFLAG_STAR_BAD = 23

#: astraAllStarASPCAP (HDU 2) column -> DR17 allStar column (lower case) of the same quantity.
ASTRA_ASPCAP_COLUMN_MAP: dict[str, str] = {
    "telescope": "telescope",
    "teff": "teff",
    "e_teff": "teff_err",
    "logg": "logg",
    "e_logg": "logg_err",
    "fe_h": "fe_h",
    "e_fe_h": "fe_h_err",
    "m_h_atm": "m_h",
    "e_m_h_atm": "m_h_err",
    "alpha_m_atm": "alpha_m",
    "e_alpha_m_atm": "alpha_m_err",
    "snr": "snrev",
    "spectrum_flags": "starflag",
}

#: DR19 allStar-1.3 (the reduction's summary, HDU 1) column -> DR17 allStar column. Its
#: Teff, log g and [Fe/H] are the Doppler (RV-fit) values, not ASPCAP's; it has no [α/M].
ALLSTAR13_COLUMN_MAP: dict[str, str] = {
    "telescope": "telescope",
    "rv_teff": "teff",
    "rv_tefferr": "teff_err",
    "rv_logg": "logg",
    "rv_loggerr": "logg_err",
    "rv_feh": "fe_h",
    "rv_feherr": "fe_h_err",
    "snr": "snrev",
    "starflag": "starflag",
}

#: Units of the mapped columns (DR17 allStar's; M_H as FE_H).
_UNITS = {k.lower(): v for k, v in ALLSTAR_COLUMNS.items() if v is not None} | {
    "m_h": "dex",
    "m_h_err": "dex",
}

#: Catalogue columns of the SDSS-V identifiers a DR19 label table carries (int64, -1 if
#: unknown; dimensionless): name -> description.
SOURCE_ID_COLUMNS: dict[str, str] = {
    "SDSS_ID": "SDSS-V identifier (sdss_id) from the label table, -1 if unknown",
    "GAIA_DR3_SOURCE_ID": "Gaia DR3 source_id from the label table, -1 if unknown",
}

#: Label-table formats :func:`read_labels` knows.
LABEL_FORMATS = ("allStar-dr17", "astraAllStarASPCAP", "allStar-1.3")
_RELEASE_RANK = {"sdss5": 0, "dr17": 1}
_TELESCOPE_RANK = {"apo25m": 0, "lco25m": 1, "apo1m": 2}


# --------------------------------------------------------------------------------------
# mwmStar / mwmVisit
# --------------------------------------------------------------------------------------


def mwm_kind(hdul: Any) -> str | None:
    """``"mwmStar"``, ``"mwmVisit"`` or None, from an open FITS file's content.

    An Astra spectrum file has ``V_ASTRA`` and ``SDSS_ID`` in its primary header and
    binary tables in HDUs 1-4 (BOSS/APO, BOSS/LCO, APOGEE/APO, APOGEE/LCO); a visit file's
    APOGEE tables have an ``mjd`` column.
    """
    header = hdul[0].header
    if "V_ASTRA" not in header or "SDSS_ID" not in header:
        return None
    for index in MWM_APOGEE_HDUS.values():
        if index < len(hdul) and getattr(hdul[index], "columns", None) is not None:
            names = {n.lower() for n in hdul[index].columns.names}
            if "model_flux" in names:  # an Astra pipeline's per-star output, not spectra
                return None
            if "flux" in names:
                return "mwmVisit" if "mjd" in names else "mwmStar"
    if "PIPELINE" in header:
        return None  # an Astra summary table
    return "mwmStar"  # no APOGEE table at all: the reader says what is missing


def _rows(hdul: Any, index: int) -> int:
    if index >= len(hdul) or getattr(hdul[index], "columns", None) is None:
        return 0
    return int(hdul[index].header.get("NAXIS2", 0) or 0)


def _column(table: Any, name: str) -> str | None:
    upper = {n.lower(): n for n in table.columns.names}
    return upper.get(name)


def _scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip()
    return value.item() if hasattr(value, "item") else value


def _positive_int(value: Any) -> int | None:
    try:
        out = int(value)
    except (TypeError, ValueError):
        return None
    return out if out > 0 else None


def _choose_hdu(hdul: Any, path: Path, observatory: str, kind: str) -> tuple[int, str]:
    if observatory not in ("auto", *MWM_APOGEE_HDUS):
        raise ValueError(f"observatory must be 'auto', 'apo' or 'lco'; got {observatory!r}")
    have = {obs: idx for obs, idx in MWM_APOGEE_HDUS.items() if _rows(hdul, idx) > 0}
    if observatory != "auto":
        if observatory not in have:
            raise ValueError(
                f"{path}: its APOGEE/{observatory.upper()} HDU "
                f"{MWM_APOGEE_HDUS[observatory]} is empty (no APOGEE spectrum from "
                f"{observatory.upper()}); APOGEE spectra here: {sorted(have) or 'none'}"
            )
        return have[observatory], observatory
    if not have:
        boss = [i for i in _BOSS_HDUS if _rows(hdul, i) > 0]
        what = (
            f"a BOSS-only {kind} (BOSS spectra in HDU {', '.join(map(str, boss))})"
            if boss
            else f"an {kind} without spectra"
        )
        raise ValueError(
            f"{path} is {what}: its APOGEE HDUs 3 (APO) and 4 (LCO) are empty, so there is "
            "no APOGEE spectrum to date"
        )
    if len(have) == 1:
        obs = next(iter(have))
        return have[obs], obs

    # both observatories: the spectrum with the higher S/N (APO on a tie)
    def snr(idx: int) -> float:
        col = _column(hdul[idx], "snr")
        if col is None:
            return -np.inf
        values = np.asarray(hdul[idx].data[col], dtype=float)
        return float(np.nanmax(values)) if np.isfinite(values).any() else -np.inf

    obs = max(have, key=lambda o: (snr(have[o]), o == "apo"))
    return have[obs], obs


def _mwm_spectrum(path: Path, observatory: str, want: str, row: int | None) -> ApogeeSpectrum:
    with _fits_open(path, want) as hdul:
        kind = mwm_kind(hdul)
        if kind is None:
            raise ValueError(
                f"{path} is not an SDSS-V Astra {want} file: no V_ASTRA / SDSS_ID in its "
                "primary header"
            )
        if kind != want:
            reader = "read_mwmvisit" if kind == "mwmVisit" else "read_mwmstar"
            raise ValueError(f"{path} is an {kind} file, not {want} (use {reader})")
        if len(hdul) < 5:
            raise ValueError(
                f"{path} is not a complete {want} file: it has {len(hdul)} HDU(s); expected "
                "BOSS/APO, BOSS/LCO, APOGEE/APO and APOGEE/LCO tables in HDUs 1-4"
            )
        header = hdul[0].header
        index, obs = _choose_hdu(hdul, path, observatory, want)
        table = hdul[index]
        n_rows = _rows(hdul, index)
        if row is None:
            row = 0
        if not 0 <= row < n_rows:
            raise ValueError(
                f"visit must be a visit number from 0 to {n_rows - 1} for {path} "
                f"(HDU {index}); got {row}"
            )
        missing = [c for c in ("flux", "ivar", "pixel_flags") if _column(table, c) is None]
        if missing:
            raise ValueError(f"{path}: HDU {index} ({table.name}) has no column(s) {missing}")
        crval = _header_value(table.header, "CRVAL", "CRVAL1")
        cdelt = _header_value(table.header, "CDELT", "CDELT1")
        if (crval is not None and cdelt is not None) and not (
            np.isclose(float(crval), 4.179) and np.isclose(float(cdelt), 6e-6)
        ):
            raise ValueError(
                f"{path}: HDU {index} wavelength grid CRVAL={crval}, CDELT={cdelt} is not the "
                "APOGEE apStar grid (log10 λ/Å = 4.179 + 6e-6 · i)"
            )
        data = table.data
        arrays = {}
        for name in ("flux", "ivar", "pixel_flags", "continuum"):
            col = _column(table, name)
            if col is None:
                continue
            value = np.asarray(data[col][row]).ravel()
            if value.size != N_PIXELS_APSTAR:
                raise ValueError(
                    f"{path}: HDU {index} ({table.name}) column {name!r} has {value.size} "
                    f"pixels; an APOGEE {want} spectrum has {N_PIXELS_APSTAR} (apStar grid)"
                )
            arrays[name] = value
        try:
            bitmask = pixmask_from_astra_flags(arrays["pixel_flags"])
        except ValueError as exc:
            raise ValueError(f"{path}: HDU {index}: {exc}") from exc
        flux = _native(arrays["flux"], np.float64)
        ivar = _native(arrays["ivar"], np.float64)
        good = np.isfinite(ivar) & (ivar > 0) & np.isfinite(flux)
        with np.errstate(divide="ignore"):
            err = np.where(good, 1.0 / np.sqrt(np.where(good, ivar, 1.0)), np.inf)
        flux = np.where(good, flux, np.nan)  # ivar 0: masked
        sdss_id = None
        col = _column(table, "sdss_id")
        if col is not None:
            sdss_id = _positive_int(_scalar(data[col][row]))
        sdss_id = sdss_id or _positive_int(_header_value(header, "SDSS_ID"))
        if sdss_id is None:
            raise ValueError(
                f"{path}: no sdss_id (neither the SDSS_ID header keyword nor the sdss_id "
                f"column of HDU {index} holds a positive identifier)"
            )

        def text(name: str) -> str | None:
            c = _column(table, name)
            return (_scalar(data[c][row]) or None) if c is not None else None

        apogee_id = _header_value(header, "APOGEEID", "APOGEE_ID") or text("obj") or ""
        snr_col = _column(table, "snr")
        snr = float(_scalar(data[snr_col][row])) if snr_col is not None else float("nan")
        n_visits = _column(table, "n_visits")
        continuum = arrays.get("continuum")
        return ApogeeSpectrum(
            flux=flux.astype(np.float32),
            flux_err=err.astype(np.float32),
            bitmask=bitmask,
            apogee_id=str(apogee_id),
            telescope=text("telescope") or ("apo25m" if obs == "apo" else "lco25m"),
            field=text("field"),
            snr=snr,
            n_visits=int(_scalar(data[n_visits][row])) if n_visits is not None else None,
            kind=want,
            path=path,
            header=header.copy(),
            continuum=None if continuum is None else _native(continuum, np.float32),
            sdss_id=sdss_id,
            gaia_dr3_source_id=_positive_int(_header_value(header, "GAIA3_ID")),
        )


@_names_the_file("mwmStar")
def read_mwmstar(
    path: PathLike, *, observatory: Literal["auto", "apo", "lco"] = "auto"
) -> ApogeeSpectrum:
    """Read the APOGEE spectrum of an SDSS-V (DR19) Astra ``mwmStar`` file.

    Parameters
    ----------
    path : str or path-like
        An ``mwmStar-*.fits`` file: HDU 3 APOGEE/APO and HDU 4 APOGEE/LCO, binary
        tables of one row (or none) with 8575-pixel ``flux``, ``ivar``, ``pixel_flags``.
    observatory : {"auto", "apo", "lco"}, default="auto"
        Which APOGEE HDU: ``"auto"`` takes the one that holds a spectrum, or, when both
        do, the one with the higher ``snr`` (APO on a tie).

    Returns
    -------
    ApogeeSpectrum
        ``flux`` in 1e-17 erg s⁻¹ cm⁻² Å⁻¹ (NaN where ``ivar`` is 0 or not finite),
        ``flux_err`` = ``ivar``^-1/2 (inf there), ``bitmask`` the APOGEE_PIXMASK of
        :func:`skages.spectra.pixmask_from_astra_flags`, ``continuum`` Astra's NMF
        continuum (same unit as ``flux``; not the paper's normalisation), ``sdss_id``,
        ``gaia_dr3_source_id``, ``apogee_id`` (the ``APOGEEID`` header keyword, else the
        row's ``obj``), ``telescope`` and ``snr`` of the row, ``kind="mwmStar"``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not an Astra mwmStar file (no ``V_ASTRA`` / ``SDSS_ID``; an mwmVisit),
        holds no APOGEE spectrum (both APOGEE HDUs empty: a BOSS-only star), a column has
        another pixel count than 8575, ``pixel_flags`` is not an APOGEE_PIXMASK, or the
        star has no ``sdss_id``. The message names the file.
    """
    return _mwm_spectrum(Path(path), observatory, "mwmStar", None)


@_names_the_file("mwmVisit")
def read_mwmvisit(
    path: PathLike, *, visit: int = 0, observatory: Literal["auto", "apo", "lco"] = "auto"
) -> ApogeeSpectrum:
    """Read one APOGEE visit spectrum of an SDSS-V (DR19) Astra ``mwmVisit`` file.

    Parameters
    ----------
    path : str or path-like
        An ``mwmVisit-*.fits`` file: HDUs 3 (APOGEE/APO) and 4 (APOGEE/LCO) hold one row
        per visit, resampled onto the 8575-pixel apStar grid.
    visit : int, default=0
        Row (0-based) of the chosen HDU.
    observatory : {"auto", "apo", "lco"}, default="auto"
        As for :func:`read_mwmstar` (``"auto"``, both present: the HDU whose best visit
        has the higher ``snr``).

    Returns
    -------
    ApogeeSpectrum
        As :func:`read_mwmstar`, with ``kind="mwmVisit"`` and the visit's ``field``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        As :func:`read_mwmstar`, and if ``visit`` is out of range.
    """
    if isinstance(visit, bool) or not isinstance(visit, (int, np.integer)):
        raise ValueError(f"visit must be an int; got {visit!r}")
    return _mwm_spectrum(Path(path), observatory, "mwmVisit", int(visit))


# --------------------------------------------------------------------------------------
# Label tables: DR17 allStar, astraAllStarASPCAP, allStar-1.3
# --------------------------------------------------------------------------------------


def _detect_label_format(hdul: Any, path: Path) -> tuple[str, int]:
    apogee_like = None
    for index in range(1, len(hdul)):
        cols = getattr(hdul[index], "columns", None)
        if cols is None:
            continue
        names = {n.lower() for n in cols.names}
        if {"sdss_id", "m_h_atm", "alpha_m_atm", "result_flags"} <= names:
            if hdul[index].header.get("INSTRMNT", "APOGEE").strip().upper() == "BOSS":
                continue  # astraAllStarASPCAP's HDU 1: BOSS spectra
            return "astraAllStarASPCAP", index
        if {"apogee_id", "rv_teff", "sdss_id"} <= names and "aspcapflag" not in names:
            return "allStar-1.3", index
        if {"apogee_id", "teff", "aspcapflag"} <= names:
            return "allStar-dr17", index
        if "apogee_id" in names and apogee_like is None:
            apogee_like = index
    if apogee_like is not None:  # read_allstar names the DR17 columns it lacks
        return "allStar-dr17", apogee_like
    raise ValueError(
        f"{path} is not a label table skages reads: no HDU with the columns of a DR17 allStar "
        "(APOGEE_ID, TEFF, ASPCAPFLAG), an astraAllStarASPCAP (sdss_id, m_h_atm, "
        "alpha_m_atm, result_flags) or a DR19 allStar-1.3 (apogee_id, rv_teff, sdss_id)"
    )


def _float(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64)
    return np.where(out <= _SENTINEL + 0.5, np.nan, out)


def _ids(values: Any) -> np.ndarray:
    """Identifiers as int64, -1 where absent (0, negative or not a number)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "SU":
        text = _as_str_array(arr)
        out = np.full(text.size, -1, dtype=np.int64)
        for i, t in enumerate(text):
            out[i] = int(t) if t.isdigit() else -1
        arr = out
    elif arr.dtype.kind == "f":
        arr = np.where(np.isfinite(arr), arr, -1).astype(np.int64)
    arr = arr.astype(np.int64)
    return np.where(arr > 0, arr, -1)


def one_row_per_star(table: Any) -> np.ndarray:
    """Rows to keep so that each ``sdss_id`` appears once, in the table's order.

    Rule (a star has one row per release and telescope in astraAllStarASPCAP): keep the
    row with the highest ``snrev`` (NaN lowest); on a tie, release ``sdss5`` before
    ``dr17``, then telescope ``apo25m``, ``lco25m``, ``apo1m``, then the first in the file.
    Rows without an ``sdss_id`` (-1) are all kept.

    Parameters
    ----------
    table : astropy.table.Table
        With ``sdss_id`` (int, -1 unknown), ``snrev`` and optionally ``release`` and
        ``telescope``.

    Returns
    -------
    ndarray of int
        Increasing row indices.
    """
    import pandas as pd

    n = len(table)
    frame = pd.DataFrame(
        {
            "id": np.asarray(table["sdss_id"], dtype=np.int64),
            "snr": -np.nan_to_num(np.asarray(table["snrev"], dtype=float), nan=-np.inf),
            "release": [
                _RELEASE_RANK.get(str(r).lower(), 9)
                for r in (table["release"] if "release" in table.colnames else [""] * n)
            ],
            "telescope": [
                _TELESCOPE_RANK.get(str(t).lower(), 9)
                for t in (table["telescope"] if "telescope" in table.colnames else [""] * n)
            ],
            "row": np.arange(n),
        }
    )
    known = frame[frame["id"] > 0].sort_values(["id", "snr", "release", "telescope", "row"])
    best = known.drop_duplicates("id", keep="first")["row"].to_numpy()
    unknown = frame.loc[frame["id"] <= 0, "row"].to_numpy()
    return np.sort(np.concatenate([best, unknown]))


def _read_mapped(
    hdul: Any,
    index: int,
    path: Path,
    fmt: str,
    columns: Sequence[str] | None,
    one_per_star: bool,
):
    from astropy.table import Table

    hdu = hdul[index]
    data = hdu.data
    lower = {n.lower(): n for n in hdu.columns.names}
    mapping = ASTRA_ASPCAP_COLUMN_MAP if fmt == "astraAllStarASPCAP" else ALLSTAR13_COLUMN_MAP
    needed = ["sdss_id", *mapping]
    if fmt == "astraAllStarASPCAP":
        needed += ["sdss4_apogee_id", "obj", "flag_bad", "result_flags"]
    else:
        needed += ["apogee_id"]
    missing = [c for c in needed if c not in lower]
    if missing:
        raise ValueError(
            f"{path} ({fmt}, HDU {index}) lacks required column(s) {missing}; it has "
            f"{list(hdu.columns.names)[:12]} ..."
        )
    n = len(data)
    table = Table()
    if fmt == "astraAllStarASPCAP":
        dr17_id = _as_str_array(data[lower["sdss4_apogee_id"]])
        obj = _as_str_array(data[lower["obj"]])
        table["apogee_id"] = np.where(dr17_id != "", dr17_id, obj)
    else:
        table["apogee_id"] = _as_str_array(data[lower["apogee_id"]])
    table["telescope"] = _as_str_array(data[lower["telescope"]])
    table["field"] = np.full(n, "", dtype="U1")  # SDSS-V spectra have no APOGEE field
    for source, target in mapping.items():
        if target == "telescope":
            continue
        values = np.asarray(data[lower[source]])
        if target in ("starflag",):
            table[target] = values.astype(np.int64)
        else:
            table[target] = _float(values)
        if target in _UNITS:
            table[target].unit = _UNITS[target]
    if fmt == "astraAllStarASPCAP":
        bad = np.asarray(data[lower["flag_bad"]]).astype(bool)
        table["aspcapflag"] = np.where(bad, np.int64(1) << ASPCAPFLAG_STAR_BAD, 0)
        table["result_flags"] = np.asarray(data[lower["result_flags"]]).astype(np.int64)
        table["flag_bad"] = bad
        if "flag_warn" in lower:
            table["flag_warn"] = np.asarray(data[lower["flag_warn"]]).astype(bool)
        if "release" in lower:
            table["release"] = _as_str_array(data[lower["release"]])
    else:
        table["aspcapflag"] = np.zeros(n, dtype=np.int64)
        if "alpha_m" not in table.colnames:
            table["alpha_m"] = np.full(n, np.nan)
            table["alpha_m"].unit = "dex"
            table["alpha_m_err"] = np.full(n, np.nan)
            table["alpha_m_err"].unit = "dex"
    table["sdss_id"] = _ids(data[lower["sdss_id"]])
    gaia = lower.get("gaia_dr3_source_id") or lower.get("gaia_sourceid")
    table["gaia_dr3_source_id"] = (
        _ids(data[gaia]) if gaia is not None else np.full(n, -1, dtype=np.int64)
    )
    for name in columns or []:
        key = name.lower()
        if key in table.colnames:
            continue
        if key not in lower:
            raise ValueError(f"columns: {path} has no column {name!r}")
        values = np.asarray(data[lower[key]])
        table[key] = (
            _as_str_array(values)
            if values.dtype.kind in "SU"
            else values.astype(values.dtype.newbyteorder("="))
        )
    n_missing = int((table["sdss_id"] < 0).sum())
    if n_missing:
        logger.warning(
            "%s: %d row(s) have no sdss_id; they are matched to spectra by APOGEE id only",
            path,
            n_missing,
        )
    if one_per_star:
        keep = one_row_per_star(table)
        if keep.size < n:
            logger.info(
                "%s: %d rows -> %d stars (one row per sdss_id: highest S/N, then sdss5, "
                "then apo25m)",
                path,
                n,
                keep.size,
            )
            table = table[keep]
    if fmt == "allStar-1.3":
        logger.warning(
            "%s is the DR19 reduction summary: its Teff, log g and [Fe/H] are the Doppler "
            "(RV-fit) values, not ASPCAP's, and it has no [alpha/M]",
            path,
        )
    return table


@_names_the_file("label table")
def read_labels(
    path: PathLike,
    *,
    columns: Sequence[str] | None = None,
    one_per_star: bool = True,
):
    """Read a label table for ``skages predict --labels``: DR17 allStar or DR19 summaries.

    The format is recognised from the columns (not the name): a DR17 allStar (read by
    :func:`skages.io.read_allstar`), Astra's ``astraAllStarASPCAP`` (its APOGEE HDU) or
    the DR19 reduction summary ``allStar-1.3``. DR19 columns are renamed to the DR17
    allStar's (:data:`ASTRA_ASPCAP_COLUMN_MAP`, :data:`ALLSTAR13_COLUMN_MAP`) with their
    units. An uncompressed file is read through a memory map (only the needed columns are
    loaded); a ``.fits.gz`` is decompressed in memory (gunzip a 1.5 M-row
    astraAllStarASPCAP first).

    Parameters
    ----------
    path : str or path-like
        The label table (FITS).
    columns : sequence of str, optional
        Extra columns to keep, by their name in the file.
    one_per_star : bool, default=True
        DR19 tables: keep one row per ``sdss_id`` (:func:`one_row_per_star`).

    Returns
    -------
    astropy.table.Table
        ``apogee_id`` (DR19: ``sdss4_apogee_id``, else ``obj``), ``telescope``, ``field``
        (``""`` for DR19), ``teff``, ``teff_err`` (K), ``logg``, ``logg_err`` (dex),
        ``fe_h``, ``fe_h_err``, ``alpha_m``, ``alpha_m_err`` (dex), ``snrev``,
        ``starflag``, ``aspcapflag``; DR19 tables add ``sdss_id`` and
        ``gaia_dr3_source_id`` (int64, -1 where unknown), astraAllStarASPCAP also
        ``m_h``, ``m_h_err`` (dex), ``release``, ``result_flags``, ``flag_bad``,
        ``flag_warn``. Rows in the file's order. ``meta["format"]`` is one of
        :data:`LABEL_FORMATS`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not FITS, is damaged, is none of the known formats, or lacks a required
        column. The message names the file.
    """
    path = Path(path)
    if path.suffix.lower() == ".gz":
        logger.info("%s is compressed: it is read into memory (gunzip it for a memory map)", path)
    with _fits_open(path, "label table") as hdul:
        fmt, index = _detect_label_format(hdul, path)
        if fmt != "allStar-dr17":
            table = _read_mapped(hdul, index, path, fmt, columns, one_per_star)
    if fmt == "allStar-dr17":
        table = read_allstar(path, columns=columns, hdu=index)
    table.meta["format"] = fmt
    table.meta["source"] = str(path)
    return table
