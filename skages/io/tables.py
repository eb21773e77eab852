"""Catalogue tables and cross-matches: APOKASC-2, and training samples joined by id.

Catalogues come back as :class:`astropy.table.Table` with lower-case snake-case column
names, physical units on the columns (logarithmic quantities carry astropy ``dex``
units, e.g. ``log_age`` in ``dex(Gyr)`` = log10(Gyr)) and NaN where a value is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from skages._ages import age_column_unit, ages_in_gyr
from skages._data import load_kic_2mass_crossmatch

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


# --------------------------------------------------------------------------------------
# Age tables as published, and the training sample from survey files
# --------------------------------------------------------------------------------------

#: Formats :func:`read_age_table` reads.
AGE_TABLE_FORMATS = ("auto", "apokasc2", "apokasc3", "apokasc3-calibration", "miglio2021", "table")

#: Evolutionary-state spellings -> skages' ``evstate`` ("RGB", "RC", "AGB"; "" unknown).
_STATES = {
    "RGB": "RGB",
    "1": "RGB",
    "RC": "RC",
    "2": "RC",
    "CLUMP": "RC",
    "HEB": "RC",
    "CHEB": "RC",
    "2CL": "RC",
    "RC/2CL": "RC",
    "AGB": "AGB",
}
# lower / upper age columns of Miglio et al. (2021)-style tables (Gyr): VizieR's
# b_Age / B_Age (bounds) and e_Age / E_Age (errors), case-sensitive, or these names
# (case-insensitive): side, and whether they are errors rather than bounds
_AGE_VIZIER = {"b_": ("lower", False), "B_": ("upper", False), "e_": ("lower", True),
               "E_": ("upper", True)}  # fmt: skip
_AGE_NAMED = {
    **{n: ("lower", False) for n in ("age_lower", "age_low", "age_lo", "age_min", "age_16")},
    **{n: ("upper", False) for n in ("age_upper", "age_up", "age_hi", "age_max", "age_84")},
    "age_err_lower": ("lower", True),
    "age_err_upper": ("upper", True),
}


def _age_bound_columns(table) -> dict[str, tuple[str, bool]]:
    """side -> (column, is an error) of the lower / upper age columns found."""
    found: dict[str, tuple[str, bool]] = {}
    for c in table.colnames:
        key = c[1:] if c.startswith("\x00") else c
        if key[:2] in _AGE_VIZIER and key[2:].lower() == "age":
            side, is_error = _AGE_VIZIER[key[:2]]
        elif key.lower() in _AGE_NAMED:
            side, is_error = _AGE_NAMED[key.lower()]
        else:
            continue
        if side not in found or c.startswith("\x00"):  # a mapped column wins
            found[side] = (c, is_error)
    return found


# other columns: accepted spellings (case-insensitive) -> skages name
_ALIASES = {
    "kic": ("kic", "kic_id", "kepler_int", "kicid", "kepid", "kepler_id"),
    "apogee_id": ("apogee_id", "2mass_id", "2mass", "tmass_id", "apogeeid"),
    "log_age": ("log_age", "logage", "lage"),
    "log_age_err": ("log_age_err", "e_log_age", "logage_err", "e_logage"),
    "age": ("age", "age_gyr"),
    "age_err": ("age_err", "s_age", "sig_age"),
    "numax": ("numax", "nu_max", "numax_wtcor", "nmax"),
    "evstate": ("evstate", "evol_state", "es_ast", "es", "state", "phase", "evo_state"),
    "teff": ("teff",),
    "teff_err": ("teff_err", "s_teff", "e_teff"),
    "fe_h": ("fe_h", "[fe/h]", "feh"),
    "fe_h_err": ("fe_h_err", "s_[fe/h]", "e_[fe/h]", "e_feh", "feh_err"),
    "mass": ("mass", "m"),
    "mass_err": ("mass_err", "s_mass", "e_mass", "e_m"),
}


def _normalise_states(values: Any) -> np.ndarray:
    out = []
    for v in np.asarray(values, dtype=object):
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            out.append("")
            continue
        text = (v.decode() if isinstance(v, bytes) else str(v)).strip().upper()
        text = text.removesuffix(".0").replace("(S)", "").strip()
        out.append(_STATES.get(text, ""))
    return np.asarray(out, dtype=str)


def _read_any_table(path: Path):
    from astropy.table import Table

    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz")):
            return Table.from_pandas(pd.read_csv(path))
        if name.endswith((".txt", ".txt.gz", ".tsv", ".tsv.gz")):
            return Table.from_pandas(pd.read_csv(path, sep=None, engine="python"))
        return Table.read(path)
    except Exception as exc:  # astropy and pandas raise many kinds for unreadable tables
        raise ValueError(f"cannot read the table {path}: {exc}") from exc


def _sniff_format(table) -> str:
    lower = {c.lower().lstrip("\x00") for c in table.colnames}
    if {"evol_state", "mass", "kic"} <= lower and not ({"age", "log_age", "logage"} & lower):
        return "apokasc3"
    if {"kic_id", "2mass_id", "es_ast"} <= lower:
        return "apokasc3-calibration"
    if "age" in lower and _age_bound_columns(table):
        return "miglio2021"
    return "table"


def read_age_table(
    source: Any,
    *,
    format: str = "auto",
    columns: dict[str, str] | None = None,
    age_bounds: Literal["auto", "values", "errors"] = "auto",
    require: Sequence[str] = ("log_age",),
):
    """Read an age (or νmax) table as published, into skages' column names.

    Formats:

    - ``"apokasc2"``: APOKASC-2 Table 5 (:func:`read_apokasc2`);
    - ``"apokasc3"``: APOKASC-3 (Pinsonneault et al. 2025) Table 4, the Gold sample
      (``KIC``, ``Evol_State``, ``Mass`` ...). It has masses but **no ages**: reading it
      with the default ``require=("log_age",)`` raises; it serves for states and masses;
    - ``"apokasc3-calibration"``: the preliminary APOKASC-3 calibration table
      (``KIC_ID``, ``2MASS_ID``, ``ES_AST`` 1 RGB / 2 RC, ``NUMAX_WTCOR``); no ages either;
    - ``"miglio2021"``: Miglio et al. (2021)-style ages in Gyr with lower and upper
      bounds (``b_Age`` / ``B_Age``, ``age_lower`` / ``age_upper``, ``age_16`` /
      ``age_84``, ...) or errors (``e_Age`` / ``E_Age``, ``age_err_lower`` /
      ``age_err_upper``): ``log_age = log10(age)``, ``log_age_err_lower/upper`` the
      distances to the log bounds, ``log_age_err`` their mean;
    - ``"table"``: any FITS / ECSV / CSV / VOTable with (after ``columns``) ``kic`` or
      ``apogee_id``, and ``log_age`` (log10 Gyr) or ``age`` (Gyr, with optional
      ``age_err``).

    ``"auto"`` (default) tells them apart by their columns (a name starting with
    ``apokasc2`` or a ``.txt`` file is APOKASC-2). Common spellings are recognised
    (``KIC``, ``KEPLER_INT``, ``2MASS_ID``, ``Evol_State``, ``Teff``, ``[Fe/H]``, ...).
    The evolutionary state becomes ``evstate``: ``"RGB"``, ``"RC"`` (also RC/HeB/clump,
    state 2), ``"AGB"``, or ``""`` when unknown.

    Parameters
    ----------
    source : path-like, astropy.table.Table or pandas.DataFrame
        The table.
    format : str, default="auto"
        One of :data:`AGE_TABLE_FORMATS`.
    columns : dict of str to str, optional
        Column mapping ``{skages name: name in the table}`` applied first, e.g.
        ``{"kic": "KIC", "age": "Age_Gyr", "age_lower": "Age_16", "age_upper": "Age_84"}``.
    age_bounds : {"auto", "values", "errors"}, default="auto"
        Whether Miglio-style lower / upper columns are ages (bounds) or distances
        (errors); ``"auto"``: ``e_``/``E_``/``*_err_*`` are errors, others bounds.
    require : sequence of str, default=("log_age",)
        Columns the result must have (besides ``kic`` or ``apogee_id``).

    Returns
    -------
    astropy.table.Table
        Columns among ``kic`` (int64, 0 = unknown), ``apogee_id`` (str, "" unknown),
        ``log_age`` (dex(Gyr)), ``log_age_err``, ``log_age_err_lower``,
        ``log_age_err_upper`` (dex), ``age`` (Gyr), ``numax`` (µHz), ``evstate``,
        ``teff``, ``teff_err`` (K), ``fe_h``, ``fe_h_err`` (dex), ``mass``, ``mass_err``
        (M☉), then any other column of the table under its lower-case name.
        ``meta["format"]`` says which format was read.

    Raises
    ------
    ValueError
        One line naming the table and what is missing (e.g. the APOKASC-3 Gold table
        has no ages), or an unknown format.
    """
    import astropy.units as u
    from astropy.table import Table

    if format not in AGE_TABLE_FORMATS:
        raise ValueError(f"format must be one of {AGE_TABLE_FORMATS}; got {format!r}")
    if age_bounds not in ("auto", "values", "errors"):
        raise ValueError(f"age_bounds must be 'auto', 'values' or 'errors'; got {age_bounds!r}")
    path = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ages table not found: {path}")
        name = path.name.lower()
        if format == "apokasc2" or (
            format == "auto"
            and (name.startswith("apokasc2") or name.endswith((".txt", ".txt.gz")))
        ):
            try:
                table = read_apokasc2(path)
            except ValueError:
                if format == "apokasc2":
                    raise
                table = None
            if table is not None:
                table.meta["format"] = "apokasc2"
                return _check_required(table, require, path, "apokasc2")
        table = _read_any_table(path)
    elif isinstance(source, pd.DataFrame):
        table = Table.from_pandas(source)
    elif hasattr(source, "colnames"):
        table = Table(source, copy=True)
    else:
        raise TypeError(
            f"the ages table must be a path, an astropy Table or a DataFrame; "
            f"got {type(source).__name__}"
        )
    where = str(path) if path is not None else "the ages table"
    original = {f"\x00{k}": v for k, v in (columns or {}).items()}

    def name_of(col: Any) -> str:  # the name in the user's table, for messages and units
        return str(original.get(col.name, col.name))

    if columns:
        missing = [c for c in columns.values() if c not in table.colnames]
        if missing:
            raise ValueError(
                f"{where} has no column(s) {missing} named in the column mapping; it has "
                f"{table.colnames[:25]}"
            )
        table.rename_columns(list(columns.values()), [f"\x00{k}" for k in columns])
    fmt = _sniff_format(table) if format == "auto" else format
    out = Table()
    used: set[str] = set()

    def take(std: str) -> Any:
        if f"\x00{std}" in table.colnames:
            used.add(f"\x00{std}")
            return table[f"\x00{std}"]
        by_lower = {c.lower(): c for c in table.colnames if not c.startswith("\x00")}
        for alias in _ALIASES.get(std, (std,)):
            if alias in by_lower and by_lower[alias] not in used:
                used.add(by_lower[alias])
                return table[by_lower[alias]]
        return None

    kic, ids = take("kic"), take("apogee_id")
    if kic is None and ids is None:
        raise ValueError(
            f"{where} ({fmt}) has no star id: it needs a kic (KIC, KEPLER_INT) or an "
            f"apogee_id (2MASS_ID) column; it has {table.colnames[:25]}"
        )
    n = len(table)
    if kic is not None:
        values = pd.to_numeric(pd.Series(np.asarray(kic, dtype=object)).astype(str).str.upper()
                               .str.replace("KIC", "").str.replace("KPLR", "").str.strip(),
                               errors="coerce")  # fmt: skip
        out["kic"] = values.fillna(0).to_numpy().astype(np.int64)
    else:
        out["kic"] = np.zeros(n, dtype=np.int64)
    if ids is not None:
        text = [("" if v is None else (v.decode() if isinstance(v, bytes) else str(v))).strip()
                for v in np.ma.filled(np.asarray(ids, dtype=object), "")]  # fmt: skip
        out["apogee_id"] = np.asarray(
            ["" if t in ("nan", "None", "--") else t for t in text], dtype=str
        )
    else:
        out["apogee_id"] = np.full(n, "", dtype="<U1")

    def floats(col: Any, unit: Any = None) -> np.ndarray:
        if unit is not None and getattr(col, "unit", None) is not None:
            try:
                return np.asarray(u.Quantity(col).to_value(unit), dtype=float)
            except u.UnitConversionError as exc:
                raise ValueError(f"{where}: column {col.name!r}: {exc}") from None
        return pd.to_numeric(pd.Series(np.ma.filled(np.asarray(col, dtype=object), np.nan)),
                             errors="coerce").to_numpy(float)  # fmt: skip

    log_age, age = take("log_age"), take("age")
    if log_age is None and age is None:  # Age_Myr, log_age_yr, ...: unit in the name
        for c in table.colnames:
            named = None if c in used else age_column_unit(c)
            if named is not None and named[1] is not None:
                used.add(c)
                log_age, age = (table[c], None) if named[0] else (None, table[c])
                break
    if log_age is not None:
        unit = getattr(log_age, "unit", None)
        values = floats(log_age)
        if isinstance(unit, u.LogUnit) and unit.physical_unit != u.dimensionless_unscaled:
            values = np.asarray(u.Dex(values, unit).to_value(u.dex(u.Gyr)))
            values, _ = ages_in_gyr(
                values, column=name_of(log_age), where=where, log=True, unit="gyr"
            )
        else:
            values, _ = ages_in_gyr(values, column=name_of(log_age), where=where, log=True)
        out["log_age"] = values
        err = take("log_age_err")
        if err is not None:
            out["log_age_err"] = floats(err)
    elif age is not None:
        has_unit = getattr(age, "unit", None) is not None
        values, scale = ages_in_gyr(
            floats(age, u.Gyr), column=name_of(age), where=where, log=False,
            unit="gyr" if has_unit else None,
        )  # fmt: skip

        def in_gyr(col: Any) -> np.ndarray:  # bounds and errors share the age's unit
            return floats(col, u.Gyr) * (1.0 if getattr(col, "unit", None) else scale)

        with np.errstate(invalid="ignore", divide="ignore"):
            out["log_age"] = np.where(
                values > 0, np.log10(np.where(values > 0, values, 1)), np.nan
            )
        out["age"] = values
        bounds = {}
        for side, (col, auto_error) in _age_bound_columns(table).items():
            is_error = auto_error if age_bounds == "auto" else age_bounds == "errors"
            bounds[side] = (in_gyr(table[col]), is_error)
            used.add(col)
        if bounds:
            if set(bounds) != {"lower", "upper"}:
                raise ValueError(
                    f"{where}: found only the {list(bounds)} age bound; give both lower and "
                    "upper (e.g. b_Age and B_Age, or e_Age and E_Age)"
                )
            (lo, lo_err), (hi, hi_err) = bounds["lower"], bounds["upper"]
            lo_age = values - lo if lo_err else lo
            hi_age = values + hi if hi_err else hi
            with np.errstate(invalid="ignore", divide="ignore"):
                lower = out["log_age"] - np.log10(np.where(lo_age > 0, lo_age, np.nan))
                upper = np.log10(np.where(hi_age > 0, hi_age, np.nan)) - out["log_age"]
            if np.any(lower < 0) or np.any(upper < 0):
                raise ValueError(
                    f"{where}: some age bounds lie on the wrong side of the age (lower > age "
                    "or upper < age); are they errors rather than bounds (age_bounds='errors')?"
                )
            out["log_age_err_lower"] = lower
            out["log_age_err_upper"] = upper
            out["log_age_err"] = 0.5 * (lower + upper)
            fmt = "miglio2021" if format == "auto" else fmt
        else:
            err = take("age_err")
            if err is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["log_age_err"] = in_gyr(err) / (values * np.log(10))
    for std, unit in (
        ("numax", u.uHz),
        ("teff", u.K),
        ("teff_err", u.K),
        ("fe_h", None),
        ("fe_h_err", None),
        ("mass", u.solMass),
        ("mass_err", u.solMass),
    ):
        col = take(std)
        if col is not None:
            out[std] = floats(col, unit)
    state = take("evstate")
    if state is not None:
        out["evstate"] = _normalise_states(np.ma.filled(np.asarray(state, dtype=object), ""))
    for c in table.colnames:  # everything else, under its own (lower-case) name
        if c not in used and not c.startswith("\x00") and c.lower() not in out.colnames:
            out[c.lower()] = table[c]
    units = {"log_age": u.dex(u.Gyr), "log_age_err": u.dex, "log_age_err_lower": u.dex,
             "log_age_err_upper": u.dex, "age": u.Gyr, "numax": u.uHz, "teff": u.K,
             "teff_err": u.K, "fe_h": u.dex, "fe_h_err": u.dex, "mass": u.solMass,
             "mass_err": u.solMass}  # fmt: skip
    for name, unit in units.items():
        if name in out.colnames:
            out[name].unit = unit
    out.meta["format"] = fmt
    if path is not None:
        out.meta["source"] = str(path)
    return _check_required(out, require, where, fmt)


def _check_required(table, require: Sequence[str], where: Any, fmt: str):
    missing = [c for c in require if c not in table.colnames]
    if missing:
        note = (
            " (the APOKASC-3 Gold table gives masses, not ages: use an age table such as "
            "APOKASC-2 Table 5, or derive ages and pass them with a column mapping)"
            if fmt.startswith("apokasc3") and "log_age" in missing
            else ""
        )
        if "log_age" in missing and not note:
            note = (
                " (ages: a log_age column in log10 Gyr, or age in Gyr; a column of another "
                "name maps with columns={'age': NAME} (skages train: --ages-column "
                "age=NAME); Myr and years are recognised from names such as age_myr)"
            )
        raise ValueError(
            f"{where} ({fmt} format) has no {missing} column(s){note}; it has "
            f"{table.colnames[:25]}"
        )
    return table


def add_crossmatch_ids(table, crossmatch: Any = None) -> Bunch:
    """Fill missing KIC / APOGEE_ID of an age table from the KIC <-> 2MASS cross-match.

    Parameters
    ----------
    table : astropy.table.Table
        From :func:`read_age_table` (``kic`` 0 and ``apogee_id`` "" mean unknown).
    crossmatch : (kic, apogee_id) arrays, optional
        Default: the bundled APOGEE cross-match of 23,363 Kepler targets
        (:func:`skages._data.load_kic_2mass_crossmatch`).

    Returns
    -------
    Bunch
        ``table`` (a copy with ``kic`` and ``apogee_id`` completed), ``n_filled_kic``,
        ``n_filled_apogee_id`` (rows completed), ``n_conflicts`` (rows whose two ids
        disagree with the cross-match; kept as given, logged).
    """
    if crossmatch is None:
        crossmatch = load_kic_2mass_crossmatch()
    xkic, xid = (
        np.asarray(crossmatch[0], dtype=np.int64),
        np.asarray(crossmatch[1], dtype=object),
    )
    table = table.copy()
    kic = np.asarray(table["kic"], dtype=np.int64).copy()
    ids = np.asarray(table["apogee_id"], dtype=object).copy()
    by_kic = pd.Series(xid, index=xkic)
    by_id = pd.Series(xkic, index=xid)
    need_id = (ids == "") & (kic > 0)
    found = by_kic.reindex(kic[need_id]).to_numpy()
    ok = pd.notna(found)
    rows = np.flatnonzero(need_id)[ok]
    ids[rows] = found[ok]
    need_kic = (kic <= 0) & (ids != "")
    found_k = by_id.reindex(ids[need_kic]).to_numpy()
    ok_k = pd.notna(found_k)
    rows_k = np.flatnonzero(need_kic)[ok_k]
    kic[rows_k] = found_k[ok_k].astype(np.int64)
    both = (kic > 0) & (ids != "") & ~np.isin(np.arange(kic.size), np.concatenate([rows, rows_k]))
    expect = by_kic.reindex(kic[both]).to_numpy()
    conflict = pd.notna(expect) & (expect != ids[both])
    if conflict.any():
        logger.warning(
            "%d row(s) of the ages table pair a KIC with another APOGEE_ID than the "
            "cross-match, e.g. KIC %d: %s (cross-match: %s); kept as given",
            int(conflict.sum()),
            int(kic[both][conflict][0]),
            ids[both][conflict][0],
            expect[conflict][0],
        )
    table["kic"] = kic
    table["apogee_id"] = np.asarray(ids, dtype=str)
    return Bunch(
        table=table,
        n_filled_kic=int(rows_k.size),
        n_filled_apogee_id=int(rows.size),
        n_conflicts=int(conflict.sum()),
    )


@dataclass(frozen=True)
class TrainingCuts:
    """The sample cuts of Leung et al. (2023) for the training stars, as options.

    Parameters
    ----------
    numax_min, numax_max : float or None, default=4.0, 250.0
        Keep 4 < νmax < 250 µHz (the PSD grid reaches 2-270 µHz; the oscillation
        envelope must lie inside it). νmax from the ages table, else the PSD survey's
        ``numax_est``. None: no bound.
    states : tuple of str or None, default=("RGB", "RC")
        Keep stars whose evolutionary state (``evstate``) is one of these: the state
        must be known. None: no state cut. Applied only when the table has a state.
    require_spectrum : bool, default=True
        Drop stars whose spectrum row is flagged (``spectrum_flag`` != 0) or all NaN.
    require_psd : bool, default=True
        Drop stars whose PSD row is flagged ``NO_DATA`` or all NaN.
    """

    numax_min: float | None = 4.0
    numax_max: float | None = 250.0
    states: tuple[str, ...] | None = ("RGB", "RC")
    require_spectrum: bool = True
    require_psd: bool = True

    @classmethod
    def none(cls) -> TrainingCuts:
        """No cut at all (only the cross-match)."""
        return cls(None, None, None, False, False)

    def to_dict(self) -> dict[str, Any]:
        """The settings, JSON-ready."""
        out = dataclasses.asdict(self)
        out["states"] = None if self.states is None else list(self.states)
        return out


def training_sample(
    spectra: PathLike,
    psd: PathLike,
    ages: Any,
    *,
    cuts: TrainingCuts | None = None,
    max_stars: int | None = None,
    crossmatch: Any = None,
) -> Bunch:
    """The paper's training sample from a spectra survey, a PSD survey and an age table.

    The age table (:func:`read_age_table`, or a path to one) may hold only KIC or only
    APOGEE_ID: the other id comes from the KIC <-> 2MASS cross-match
    (:func:`add_crossmatch_ids`). Stars are then matched to the spectra on APOGEE_ID
    and to the PSDs on KIC, and the cuts applied, counting every star each step
    removes.

    Parameters
    ----------
    spectra : path-like
        HDF5 survey with ``spectra`` and an ``apogee_id`` label (``skages spectra``).
    psd : path-like
        HDF5 survey with ``psd`` and a ``kic`` label (``skages psd``).
    ages : path-like, astropy.table.Table or pandas.DataFrame
        The age table; a path or DataFrame goes through :func:`read_age_table`.
    cuts : TrainingCuts, optional
        Default: ``TrainingCuts()`` (the paper's).
    max_stars : int, optional
        Keep the first ``max_stars`` stars (in age-table order) after the cuts.
    crossmatch : (kic, apogee_id) arrays, optional
        Instead of the bundled cross-match.

    Returns
    -------
    Bunch
        ``spectra`` (n, 7514), ``psd`` (n, 2092), ``psd_weight`` ((n, 2092) or None),
        ``labels`` (DataFrame: the age table's columns, then ``teff``, ``fe_h`` and
        errors from the spectra survey where it has them), ``summary`` (dict: rows
        read, then how many stars each failed match and each cut removed, in order,
        and ``n_kept``), ``cuts``.

    Raises
    ------
    ValueError
        For surveys without the needed arrays / ids, or when no star is left (naming
        the step that removed the last ones).
    """
    from skages.io.survey import SurveyReader

    cuts = TrainingCuts() if cuts is None else cuts
    if not hasattr(ages, "colnames"):
        ages = read_age_table(ages)
    filled = add_crossmatch_ids(ages, crossmatch)
    frame = filled.table.to_pandas() if hasattr(filled.table, "to_pandas") else filled.table
    frame = frame.reset_index(drop=True)
    summary: dict[str, Any] = {"ages_rows": len(frame)}
    if filled.n_filled_apogee_id or filled.n_filled_kic:
        summary["ids_from_crossmatch"] = filled.n_filled_apogee_id + filled.n_filled_kic
    keep = np.ones(len(frame), dtype=bool)

    def step(name: str, ok: np.ndarray) -> None:
        nonlocal keep
        removed = int((keep & ~ok).sum())
        summary[name] = removed
        keep &= ok
        if not keep.any():
            raise ValueError(
                f"no training star is left after '{name}' (removed {removed}); "
                f"counts so far: {summary}"
            )

    step("removed_no_apogee_id", (frame["apogee_id"].astype(str) != "").to_numpy())
    step("removed_no_kic", (frame["kic"].to_numpy() > 0))
    dup = frame["apogee_id"].duplicated() | frame["kic"].duplicated()
    step("removed_duplicate", ~dup.to_numpy())

    with SurveyReader(spectra) as spec, SurveyReader(psd) as psd_file:
        for reader, array, key in ((spec, "spectra", "apogee_id"), (psd_file, "psd", "kic")):
            if array not in reader.arrays or key not in reader.label_columns:
                raise ValueError(
                    f"{reader.path} needs a {array!r} array and a {key!r} label column "
                    f"(it has arrays {list(reader.arrays)}, labels {reader.label_columns[:12]})"
                )
        spec_cols = [c for c in ("apogee_id", "spectrum_flag") if c in spec.label_columns]
        spec_labels = spec.read_labels(columns=spec_cols)
        spec_key = spec_labels["apogee_id"].astype(str).str.strip().to_numpy()
        spec_ids = pd.Series(np.arange(len(spec_labels)), index=spec_key)
        spec_ids = spec_ids[~spec_ids.index.duplicated(keep="first")]
        psd_cols = [c for c in ("kic", "psd_flag", "numax_est") if c in psd_file.label_columns]
        psd_labels = psd_file.read_labels(columns=psd_cols)
        psd_kic = _ids_as_kic(psd_labels["kic"].to_numpy(), f"{psd_file.path} kic")
        psd_rows = pd.Series(np.arange(psd_kic.size), index=psd_kic)
        psd_rows = psd_rows[~psd_rows.index.duplicated(keep="first")]

        spec_index = spec_ids.reindex(frame["apogee_id"].astype(str).to_numpy()).to_numpy()
        step("removed_no_spectrum", pd.notna(spec_index))
        psd_index = psd_rows.reindex(frame["kic"].to_numpy()).to_numpy()
        step("removed_no_psd", pd.notna(psd_index))
        spec_index = np.where(pd.notna(spec_index), spec_index, -1).astype(np.int64)
        psd_index = np.where(pd.notna(psd_index), psd_index, -1).astype(np.int64)

        if cuts.require_spectrum and "spectrum_flag" in spec_labels:
            flag = spec_labels["spectrum_flag"].to_numpy()[np.maximum(spec_index, 0)]
            step("removed_bad_spectrum", flag == 0)
        if cuts.require_psd and "psd_flag" in psd_labels:
            flag = psd_labels["psd_flag"].to_numpy()[np.maximum(psd_index, 0)]
            step("removed_bad_psd", (flag & 2) == 0)  # LightCurveFlag.NO_DATA
        if cuts.numax_min is not None or cuts.numax_max is not None:
            if "numax" in frame:
                nu = pd.to_numeric(frame["numax"], errors="coerce").to_numpy(float)
                summary["numax_from"] = "ages table"
            elif "numax_est" in psd_labels:
                nu = psd_labels["numax_est"].to_numpy(float)[np.maximum(psd_index, 0)]
                summary["numax_from"] = "PSD survey numax_est"
            else:
                nu = None
                summary["numax_from"] = "none: numax cut not applied"
            if nu is not None:
                lo = -np.inf if cuts.numax_min is None else cuts.numax_min
                hi = np.inf if cuts.numax_max is None else cuts.numax_max
                with np.errstate(invalid="ignore"):
                    step("removed_numax_range", (nu > lo) & (nu < hi))
        if cuts.states is not None:
            if "evstate" in frame:
                state = frame["evstate"].astype(str).str.strip().str.upper().to_numpy()
                step("removed_state", np.isin(state, [s.upper() for s in cuts.states]))
            else:
                summary["removed_state"] = "not applied: the ages table has no evstate"

        rows = np.flatnonzero(keep)
        if max_stars is not None:
            rows = rows[:max_stars]
            summary["removed_max_stars"] = int(keep.sum() - rows.size)
        spectra_arr = spec.read("spectra", spec_index[rows])
        psd_arr = psd_file.read("psd", psd_index[rows])
        weight = (
            psd_file.read("psd_weight", psd_index[rows])
            if "psd_weight" in psd_file.arrays
            else None
        )
        labels = frame.iloc[rows].reset_index(drop=True)
        have = [c for c in ("teff", "fe_h", "teff_err", "fe_h_err") if c in spec.label_columns]
        if have:
            extra = spec.read_labels(spec_index[rows], columns=have)
            for c in have:
                labels[c] = extra[c].to_numpy()
    if cuts.require_spectrum:
        bad = np.isnan(spectra_arr).all(axis=1)
        if bad.any():
            summary["removed_bad_spectrum"] = summary.get("removed_bad_spectrum", 0) + int(
                bad.sum()
            )
    else:
        bad = np.zeros(rows.size, dtype=bool)
    if cuts.require_psd:
        bad_psd = np.isnan(psd_arr[:, 1:]).all(axis=1) & ~bad
        if bad_psd.any():
            summary["removed_bad_psd"] = summary.get("removed_bad_psd", 0) + int(bad_psd.sum())
        bad |= bad_psd
    if bad.any():
        ok = ~bad
        spectra_arr, psd_arr, labels = spectra_arr[ok], psd_arr[ok], labels[ok]
        labels = labels.reset_index(drop=True)
        weight = None if weight is None else weight[ok]
    summary["n_kept"] = len(labels)
    if len(labels) == 0:
        raise ValueError(f"no training star is left; counts: {summary}")
    if "log_age_err" not in labels and "log_age_err_upper" in labels:
        labels["log_age_err"] = labels["log_age_err_upper"]
    logger.info("training sample: %s", summary)
    return Bunch(
        spectra=spectra_arr,
        psd=psd_arr,
        psd_weight=weight,
        labels=labels,
        summary=summary,
        cuts=cuts.to_dict(),
    )
