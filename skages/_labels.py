"""Label columns as they enter a catalogue: numbers (or Quantities), text ids, no duplicates.

Strings with units (``'4837.7 K'``) are parsed as astropy Quantities and converted to
the column's unit; other text in a numeric column, numeric star ids and duplicate
spectra are named, never turned silently into NaN, no-spectrum rows or a dropped row.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger("skages")

#: skages.datasets names its stars "2M-SIM-0000001", ...: no 2MASS ID begins so.
SIMULATED_ID_PREFIX = "2M-SIM-"

#: Units of the labels a catalogue reads (astropy unit strings; "" dimensionless).
LABEL_UNITS = {"teff": "K", "teff_err": "K", "logg": "dex", "fe_h": "dex", "fe_h_err": "dex"}
_MISSING = {"", "nan", "none", "null", "--", "n/a", "na", "<na>"}


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def numeric_label(values: Any, name: str, where: str) -> np.ndarray:
    """A label column as float64: numbers kept, unit strings converted, other text refused.

    Parameters
    ----------
    values : array-like
        The column (numbers, or text such as ``"4837.7"`` or ``"4837.7 K"``).
    name : str
        Column name (lower case), for messages and its unit (:data:`LABEL_UNITS`).
    where : str
        The table, for messages.

    Returns
    -------
    ndarray of float64
        NaN where the value is missing (empty, "nan", masked).

    Raises
    ------
    ValueError
        One line naming the column, if it holds text that is neither a number nor a
        quantity in a unit convertible to the column's.
    """
    import astropy.units as u

    if isinstance(values, u.Quantity):
        unit = LABEL_UNITS.get(name)
        return np.asarray(values.to_value(unit) if unit else values.value, dtype=np.float64)
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    text = pd.Series(arr.tolist(), dtype=object).map(_text)
    out = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    stripped = text.map(lambda v: "" if v is None or v is pd.NA or v is pd.NaT else str(v).strip())
    todo = np.flatnonzero(np.isnan(out) & ~stripped.str.lower().isin(_MISSING).to_numpy())
    if todo.size == 0:
        return out
    unit = LABEL_UNITS.get(name)
    for i in todo:
        item = stripped.iloc[i]
        try:
            quantity = u.Quantity(item)
            if unit == "dex" and quantity.unit == u.dex:
                value = float(quantity.value)
            elif unit:
                value = float(quantity.to_value(unit))
            elif quantity.unit == u.dimensionless_unscaled:
                value = float(quantity.value)
            else:
                raise u.UnitsError(f"{name} is dimensionless")
        except (TypeError, ValueError, u.UnitsError) as exc:
            shown = ", ".join(repr(stripped.iloc[j]) for j in todo[:3])
            raise ValueError(
                f"{where}: column {name!r} holds text that is not a number"
                + (f" in {unit}" if unit else "")
                + f" ({todo.size} row(s), e.g. {shown}): {exc}; give numbers"
                + (f" in {unit}" if unit else "")
            ) from None
        out[i] = value
    logger.info("%s: column %r: %d value(s) with units converted", where, name, todo.size)
    return out


def check_text_ids(values: Any, name: str, where: str) -> None:
    """Refuse a star-id column of numbers (e.g. APOGEE_ID read as float).

    Raises
    ------
    ValueError
        Naming the column and its type.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf" and arr.size:
        raise ValueError(
            f"{where}: column {name!r} holds numbers ({arr.dtype}), not star ids such as "
            "2M00452143+1634446: read it as text (e.g. pandas dtype=str)"
        )


def warn_duplicate_rows(keys: pd.Series, known: np.ndarray, where: str) -> np.ndarray:
    """Warn, naming them, about spectra rows that share a full key; return the mask.

    The first row of each key is the one used; the warning says so.
    """
    dup = keys.duplicated(keep=False).to_numpy() & np.asarray(known, dtype=bool)
    if dup.any():
        names = sorted(set(keys[dup].astype(str).str.replace("\x00", "/")))
        logger.warning(
            "%s: %d spectra share APOGEE_ID/TELESCOPE/FIELD with another row (%s%s); "
            "the first of each is used: remove the duplicates to choose",
            where,
            int(dup.sum()),
            ", ".join(names[:5]),
            ", ..." if len(names) > 5 else "",
        )
    return dup


def warn_ambiguous_rows(ids: pd.Series, where: str) -> None:
    """Warn, naming them, about rows left without a spectrum because their star has
    several spectra and the row gives no telescope or field to choose one."""
    if len(ids) == 0:
        return
    names = sorted(set(ids.astype(str)))
    logger.warning(
        "%s: %d rows (%s%s) are left without a spectrum: their star has several spectra "
        "and the row gives no TELESCOPE/FIELD to choose one; add those columns",
        where,
        len(ids),
        ", ".join(names[:5]),
        ", ..." if len(names) > 5 else "",
    )
