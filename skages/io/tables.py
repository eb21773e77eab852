"""Catalogue tables and cross-matches: APOKASC-2, and training samples joined by id.

Catalogues come back as :class:`astropy.table.Table` with lower-case snake-case column
names, physical units on the columns (logarithmic quantities carry astropy ``dex``
units, e.g. ``log_age`` in ``dex(Gyr)`` = log10(Gyr)) and NaN where a value is missing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


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
        from skages._data import bundled_path

        path = bundled_path("APOKASC2_Table5.txt.gz")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"APOKASC-2 file not found: {path}")
    try:
        df = pd.read_csv(path, sep="\t", dtype={"2MASS": str, "ES": str, "Note": str})
    except Exception as exc:  # bad text, a truncated or damaged .gz (EOFError, zlib, ...)
        raise ValueError(
            f"{path} is not a readable tab-separated APOKASC-2 Table 5: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
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
