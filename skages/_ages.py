"""Plausibility of stellar ages where they enter skages: Gyr (or log10 Gyr) expected.

Ages in Myr or years, or their logarithms, are recognised from the column name
(``age_myr``, ``Age_Myr``, ``log_age_yr``, ``logAge_yr``, ...), from an astropy unit,
or from the values (a median age above 50 cannot be Gyr), and converted with a logged
message; values that stay outside 0 < age < 20 Gyr are refused with an error naming the
column.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

logger = logging.getLogger("skages")

#: Largest plausible age, Gyr (the Universe is 13.8 Gyr old; seismic ages scatter beyond).
MAX_AGE_GYR = 20.0

_NAME = re.compile(
    r"^(?P<log>log(?:10)?[_ ]?)?(?:age|t)(?:[_ \[(]*(?P<unit>gyr|myr|yr|years?)[\])]?)?$",
    re.IGNORECASE,
)
_SCALE = {"gyr": 1.0, "myr": 1e-3, "yr": 1e-9, "year": 1e-9, "years": 1e-9}


def age_column_unit(name: str) -> tuple[bool, str | None] | None:
    """(is logarithmic, unit named in it or None) for an age-like column name, else None."""
    found = _NAME.match(str(name).strip().lstrip("\x00"))
    if not found or (found.group("unit") is None and name.lower().lstrip("\x00") == "t"):
        return None
    unit = found.group("unit")
    return bool(found.group("log")), None if unit is None else unit.lower()


def _say(where: str, column: str, what: str) -> None:
    logger.warning("%s: column %r %s", where, column, what)


def ages_in_gyr(
    values: Any, *, column: str, where: str, log: bool, unit: str | None = None
) -> tuple[np.ndarray, float]:
    """Ages (or log10 ages) converted to Gyr (log10 Gyr) and checked for plausibility.

    Parameters
    ----------
    values : array-like
        Ages, or log10 ages when ``log``; an astropy Quantity of time is converted.
    column : str
        Column name, for messages (and for a unit in the name, e.g. ``Age_Myr``).
    where : str
        The table, for messages.
    log : bool
        Whether ``values`` are log10 ages.
    unit : {"gyr", "myr", "yr"}, optional
        The unit when known; otherwise read from the column name, else from the values.

    Returns
    -------
    values : ndarray of float
        Gyr, or log10 Gyr when ``log``.
    scale : float
        The factor applied to the ages (1.0 if none; for log ages, 10**offset), for
        their uncertainty and bound columns.

    Raises
    ------
    ValueError
        Naming the column, when ages stay outside 0 < age < 20 Gyr.
    """
    import astropy.units as u

    if isinstance(values, u.Quantity) and not log:
        if values.unit.physical_type == "time":
            values = values.to_value(u.Gyr)
            unit = "gyr"
        else:
            raise ValueError(f"{where}: column {column!r} has unit {values.unit}, not a time")
    arr = np.asarray(values, dtype=float)
    if unit is None:
        named = age_column_unit(column)
        unit = named[1] if named else None
        if unit is not None and unit != "gyr":
            _say(where, column, f"is in {unit} (from its name): converted to Gyr")
    scale = _SCALE[unit] if unit is not None else None
    finite = arr[np.isfinite(arr)]
    median = float(np.median(finite)) if finite.size else np.nan
    if scale is None and finite.size:
        if log and median > 5.0:
            scale, unit = 1e-9, "yr"
            _say(where, column, f"looks like log10 of years (median {median:.2f}): -9 applied")
        elif log and median > 1.7:
            scale, unit = 1e-3, "myr"
            _say(where, column, f"looks like log10 of Myr (median {median:.2f}): -3 applied")
        elif not log and median > 1e5:
            scale, unit = 1e-9, "yr"
            _say(where, column, f"looks like years (median {median:.3g}): converted to Gyr")
        elif not log and median > 50.0:
            scale, unit = 1e-3, "myr"
            _say(where, column, f"looks like Myr (median {median:.3g}): converted to Gyr")
    if scale is not None and scale != 1.0:
        arr = arr + np.log10(scale) if log else arr * scale
    gyr = 10.0**arr if log else arr
    bad = np.isfinite(gyr) & ((gyr <= 0) | (gyr >= MAX_AGE_GYR))
    if np.any(bad):
        shown = ", ".join(f"{v:.4g}" for v in np.asarray(values, dtype=float)[bad][:3])
        raise ValueError(
            f"{where}: column {column!r} has {int(bad.sum())} age(s) outside 0 < age < "
            f"{MAX_AGE_GYR:g} Gyr after reading it as {'log10 ' if log else ''}"
            f"{(unit or 'gyr').replace('gyr', 'Gyr')} (e.g. {shown}); give the column its "
            "unit (e.g. name it age_myr or log_age_yr, or an astropy unit) or drop those rows"
        )
    return arr, 1.0 if scale is None else float(scale)


def training_log_ages(values: Any, *, where: str, column: str = "log_age") -> np.ndarray:
    """log10 ages in Gyr for training, from values given directly (not a named table).

    An astropy Quantity of time (Gyr, Myr, yr) or of log time (``u.dex(u.yr)``) is
    converted to log10 Gyr. Plain numbers carry no unit: values that look like log10 of
    years (median above 5) or of Myr (median above 1.7) are refused, not guessed, and
    ages outside 0 < age < 20 Gyr too.

    Parameters
    ----------
    values : array-like or astropy Quantity
        log10 ages in Gyr (NaN: no age), or a Quantity of age or log age.
    where : str
        The function or file, for messages.
    column : str, default="log_age"
        The name the values were given under, for messages.

    Returns
    -------
    ndarray of float
        log10 age / Gyr.

    Raises
    ------
    ValueError
        Naming ``where`` and ``column``, what the values look like and what is expected.
    """
    import astropy.units as u

    if isinstance(values, u.Quantity):
        if isinstance(values, u.FunctionQuantity):
            values = values.physical
        if values.unit.physical_type == "time":
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.log10(values.to_value(u.Gyr))
        elif values.unit.physical_type == "dimensionless":
            values = values.to_value(u.dimensionless_unscaled)
        else:
            raise ValueError(
                f"{where}: {column} has unit {values.unit}, not an age; expected log10 of "
                "the age in Gyr, or an astropy Quantity of age (u.Gyr, u.Myr, u.yr)"
            )
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    median = float(np.median(finite)) if finite.size else np.nan
    for limit, what, shift, unit in ((5.0, "years", 9, "u.yr"), (1.7, "Myr", 3, "u.Myr")):
        if median > limit:
            raise ValueError(
                f"{where}: {column} looks like log10 of the age in {what} (median "
                f"{median:.2f}), but log10 of the age in Gyr is expected (0.6 for 4 Gyr): "
                f"subtract {shift}, or give an astropy Quantity of age (e.g. ages * {unit})"
            )
    arr, _ = ages_in_gyr(arr, column=column, where=where, log=True, unit="gyr")
    return arr
