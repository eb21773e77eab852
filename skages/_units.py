"""Units and plausibility of physical inputs (private).

Every public function that takes a physical quantity passes it through :func:`_to_value`:
an :class:`astropy.units.Quantity` is converted to the function's unit (a wrong dimension
is an error naming the argument), anything else is taken to be in that unit already. The
``_check_*`` helpers then catch plain numbers that are implausible in that unit, with a
message naming the likely mistake. astropy is imported only when a Quantity is given (a
Quantity cannot exist without it).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Plausible effective temperatures of the stars skages models, K.
TEFF_RANGE = (2500.0, 10000.0)
#: Longest plausible light-curve baseline, days (Kepler: ~1,470 d).
MAX_BASELINE_DAYS = 1e5
#: Median continuum-normalised flux outside this range means "not normalised".
NORMALISED_MEDIAN_RANGE = (0.25, 2.0)
#: Fewer pixels than this (per row) are too few to judge a spectrum or a PSD.
MIN_PIXELS_TO_JUDGE = 100


def _is_quantity(x: Any) -> bool:
    units = sys.modules.get("astropy.units")
    return units is not None and isinstance(x, units.Quantity)


def _to_value(x: Any, unit: str, name: str, *, dtype: Any = float, interval: bool = False) -> Any:
    """``x`` as a float array (or None) in ``unit``.

    Parameters
    ----------
    x : array-like, astropy Quantity, or None
        Plain numbers are taken to be in ``unit`` already; a Quantity is converted (for
        temperatures with :func:`astropy.units.temperature`, so °C works).
    unit : str
        Target unit, as astropy spells it (``"uHz"``, ``"d"``, ``"K"``, ``"dex"``, ``""``).
    name : str
        Argument name, for the error message.
    dtype : numpy dtype or None
        Of the result (None keeps the input's).
    interval : bool
        ``x`` is a difference (an uncertainty): temperatures are converted by scale
        only (1 °C of error is 1 K).

    Returns
    -------
    ndarray of ``dtype`` (0-d for a scalar), or None when ``x`` is None.

    Raises
    ------
    ValueError
        When ``x`` is a Quantity of another dimension.
    """
    if x is None:
        return None
    if not _is_quantity(x) and isinstance(x, (list, tuple)) and any(map(_is_quantity, x)):
        import astropy.units as u

        try:
            x = u.Quantity(x)
        except (u.UnitsError, TypeError) as exc:
            raise ValueError(f"{name}: cannot combine the units of its elements ({exc})") from None
    if _is_quantity(x):
        import astropy.units as u

        target = u.Unit(unit)
        try:
            if interval and x.unit in (u.deg_C, u.K) and target == u.K:
                return np.asarray(x.value, dtype=dtype)
            if interval:
                return np.asarray(x.to_value(target), dtype=dtype)
            return np.asarray(x.to_value(target, equivalencies=u.temperature()), dtype=dtype)
        except u.UnitsError:
            wanted = "dimensionless" if target == u.dimensionless_unscaled else f"in {unit}"
            physical = getattr(target, "physical_type", "")
            raise ValueError(
                f"{name} must be {wanted}"
                + (f" ({physical})" if physical and physical != "dimensionless" else "")
                + f"; got a Quantity in {x.unit}"
            ) from None
    return np.asarray(x, dtype=dtype)


def _check_teff(teff: np.ndarray, name: str = "teff") -> np.ndarray:
    """Refuse finite Teff values outside :data:`TEFF_RANGE` (K), naming the likely mistake."""
    t = np.asarray(teff, dtype=float)
    finite = t[np.isfinite(t)]
    lo, hi = TEFF_RANGE
    bad = finite[(finite < lo) | (finite > hi)]
    if bad.size:
        if np.any(np.isin(bad, (-9999.0, -999.0, 9999.0))):
            hint = "-9999 is a missing-value sentinel: use NaN for unknown Teff"
        elif np.all((bad > 3.0) & (bad < 4.1)):
            hint = "these look like log10(Teff): give Teff in kelvin"
        else:
            hint = "give Teff in kelvin (°C + 273.15), or a Quantity with its unit"
        raise ValueError(
            f"{name} has {bad.size} value(s) outside the plausible {lo:,.0f}-{hi:,.0f} K "
            f"(e.g. {bad[0]:g}); {hint}"
        )
    return t


def _check_baseline(time: np.ndarray, where: str = "") -> None:
    """Refuse light curves whose time span is implausibly long for days."""
    baseline = float(time[-1] - time[0])
    if baseline > MAX_BASELINE_DAYS:
        raise ValueError(
            f"the light curve{where} spans {baseline:.4g} time units, over "
            f"{MAX_BASELINE_DAYS:.0e} days: is time in seconds? Give days "
            "(seconds / 86400) or a Quantity with its unit"
        )


def _check_normalised(X: np.ndarray, name: str = "X", *, offset: int = 0) -> None:
    """Refuse spectra whose median flux is far from 1 (not continuum normalised).

    The median of each row is taken over every 8th pixel (a cheap, still robust
    estimate; NaN pixels left out). Rows of fewer than :data:`MIN_PIXELS_TO_JUDGE`
    pixels, and rows with no finite pixel, are not judged. ``offset`` is added to the
    row numbers in the message.
    """
    if X.ndim != 2 or X.shape[1] < MIN_PIXELS_TO_JUDGE or X.shape[0] == 0:
        return
    lo, hi = NORMALISED_MEDIAN_RANGE
    # a sort puts NaN last; the middle finite value is the (lower) median: much cheaper
    # than numpy.nanmedian, which loops over the rows of an array holding NaN
    sample = np.sort(X[:, ::8], axis=1)
    n_finite = np.count_nonzero(~np.isnan(sample), axis=1)
    median = sample[np.arange(len(sample)), np.maximum(n_finite - 1, 0) // 2].astype(float)
    median[n_finite == 0] = np.nan
    bad = np.flatnonzero(np.isfinite(median) & ((median < lo) | (median > hi)))
    if bad.size:
        rows = (bad + offset)[:5].tolist()
        raise ValueError(
            f"{name} does not look continuum normalised: row(s) {rows}"
            f"{' ...' if bad.size > 5 else ''} have median flux "
            f"{median[bad[0]]:.4g}, far from 1 (expected {lo}-{hi}). Normalise the "
            "spectra first (skages.spectra.continuum_normalize); values above 2 would "
            "otherwise be clipped to 1"
        )


def _finite_sample(psd: np.ndarray, size: int = 1_000_000) -> np.ndarray:
    """The finite values of ``psd``, thinned evenly to about ``size`` (deterministic)."""
    flat = psd.reshape(-1)
    if flat.size > 2 * size:
        flat = flat[:: flat.size // size]
    return flat[np.isfinite(flat)]


def _psd_spread(psd: np.ndarray) -> float:
    """Robust spread (1.4826 × median absolute deviation) of the finite PSD pixels."""
    values = _finite_sample(psd)
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _check_log_psd(psd: np.ndarray, name: str = "psd", *, train_spread: float | None = None):
    """Refuse a linear PSD, or (given the training spread) a log10 one, where ln is expected.

    A natural-log PSD of background-divided power scatters around 0, so many of its
    pixels are negative. Its exponential, linear power, is never negative, has a median
    near 1 (the background it was divided by) and a long tail of modes: the PSD is
    taken for linear when no pixel is negative, the median is within 0.3-3 and the
    99th percentile is over twice the median (about 4 for skages' PSDs exponentiated).
    With ``train_spread`` (the :func:`_psd_spread` of the training PSDs), a PSD whose
    spread is 1/ln(10) of it (within ±30 %) is taken for log10. PSDs of fewer than
    :data:`MIN_PIXELS_TO_JUDGE` pixels are not judged.
    """
    if psd.ndim != 2 or psd.shape[1] < MIN_PIXELS_TO_JUDGE:
        return
    finite = _finite_sample(psd)
    if finite.size == 0:
        return
    median, high = np.percentile(finite, [50, 99])
    if not (psd < 0).any() and 0.3 <= median <= 3 and high > 2 * median:
        raise ValueError(
            f"{name} looks like linear power, not the natural-log PSD: no pixel is negative, "
            f"the median is {median:.3g} and the 99th percentile {high:.3g}. Pass "
            f"numpy.log({name}) (skages.seismology.lightcurve_to_psd returns the natural log)"
        )
    if train_spread is not None and np.isfinite(train_spread) and train_spread > 0:
        ratio = _psd_spread(psd) / train_spread
        if abs(ratio * np.log(10) - 1) < 0.3:
            raise ValueError(
                f"{name} looks like a log10 PSD: its spread is {ratio:.2f} of the training "
                f"PSDs' (1/ln 10 = 0.43), and the model expects the natural log. Pass "
                f"{name} * numpy.log(10)"
            )
