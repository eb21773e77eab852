"""APOGEE pixel layout, gap removal, bitmasks and continuum normalisation.

APOGEE's combined spectra (apStar, aspcapStar files) live on 8575 pixels of a
logarithmic vacuum wavelength grid, ``log10(λ / Å) = 4.179 + 6e-6 · i``. The
three detector chips (blue, green, red) cover only parts of it; the gaps between
them carry no data. From DR13 to DR17 the chips are the apStar pixel ranges
``246:3274``, ``3585:6080`` and ``6344:8335``, which give the 7514-pixel
*gap-removed* grid that skages uses everywhere (``spectra`` arrays are
``(n_stars, 7514)``).

Continuum normalisation follows APOGEE DR17 as used by the published model of
Leung et al. (2023): in each chip, a degree-2 Chebyshev polynomial in pixel
index is fitted by inverse-variance weighted least squares to the pixels of the
DR17 continuum mask (:func:`skages.datasets.load_continuum_mask`), and the
spectrum and its uncertainties are divided by it. Pixels whose APOGEE
``PIXMASK`` has any of bits 0-7 or 12 set (bad detector pixels, cosmic rays,
saturation, ..., no sky, significant sky line) are left out of the fit and set
to flux 1 and uncertainty 1 afterwards. NaN pixels are left out of the fit and
stay NaN (NaN means masked).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.polynomial import chebyshev
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names_in, validate_data

__all__ = [
    "APOGEE_PIXMASK_BITS",
    "CHIP_RANGES",
    "DEFAULT_BAD_BITS",
    "N_PIXELS",
    "N_PIXELS_APSTAR",
    "ContinuumNormalizer",
    "add_gaps",
    "apogee_wavelength",
    "bad_pixel_mask",
    "chip_slices",
    "continuum_normalize",
    "fit_continuum",
    "pixmask_from_astra_flags",
    "remove_gaps",
]

logger = logging.getLogger(__name__)

#: Number of pixels of the apStar / aspcapStar grid.
N_PIXELS_APSTAR = 8575
#: Number of pixels of the gap-removed grid (DR13-DR17 chip ranges).
N_PIXELS = 7514
#: log10 of the wavelength (Å, vacuum) of apStar pixel 0, and the step per pixel.
LOG10_WAVELENGTH_START = 4.179
LOG10_WAVELENGTH_STEP = 6e-6
#: apStar pixel ranges ``(start, stop)`` of the three chips, DR13-DR17.
CHIP_RANGES: dict[str, tuple[int, int]] = {
    "blue": (246, 3274),
    "green": (3585, 6080),
    "red": (6344, 8335),
}
#: Names of the APOGEE_PIXMASK bits (SDSS DR17 bitmask documentation).
APOGEE_PIXMASK_BITS: dict[int, str] = {
    0: "BADPIX",
    1: "CRPIX",
    2: "SATPIX",
    3: "UNFIXABLE",
    4: "BADDARK",
    5: "BADFLAT",
    6: "BADERR",
    7: "NOSKY",
    8: "LITTROW_GHOST",
    9: "PERSIST_HIGH",
    10: "PERSIST_MED",
    11: "PERSIST_LOW",
    12: "SIG_SKYLINE",
    13: "SIG_TELLURIC",
    14: "NOT_ENOUGH_PSF",
    15: "POORSNR",
    16: "FAILFIT",
}
#: PIXMASK bits that mark a pixel as bad: 0-7 and 12 (SIG_SKYLINE), as in astroNN / DR17.
DEFAULT_BAD_BITS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 12)

#: Highest APOGEE_PIXMASK bit (FAILFIT); Astra's ``pixel_flags`` carries the same bits.
_MAX_PIXMASK_BIT = max(APOGEE_PIXMASK_BITS)


def pixmask_from_astra_flags(pixel_flags: Any) -> np.ndarray:
    """APOGEE_PIXMASK of the pixels of an SDSS-V (DR19) Astra ``mwmStar`` / ``mwmVisit`` row.

    Astra 0.6 copies the apStar ``BITMASK`` HDU of the coadd into its APOGEE
    ``pixel_flags`` column unchanged (its ``ApogeeCoaddedSpectrumInApStar`` model reads
    ``pixel_flags`` from apStar HDU 3, row 0), so the mapping is the identity on bits
    0-16 (:data:`APOGEE_PIXMASK_BITS`) and :data:`DEFAULT_BAD_BITS` mask the same
    pixels as on the DR17 path. The data model stores the column as float32, which
    holds these integers exactly (below 2**24).

    Parameters
    ----------
    pixel_flags : array-like
        Astra ``pixel_flags`` values (float or integer), any shape.

    Returns
    -------
    ndarray of int32
        The APOGEE_PIXMASK values.

    Raises
    ------
    ValueError
        If a value is NaN, negative, not a whole number, or sets a bit above 16 (not an
        APOGEE_PIXMASK: a BOSS or another pipeline's flag column).
    """
    arr = np.asarray(pixel_flags)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
        if bad.any():
            raise ValueError(
                f"pixel_flags: {int(bad.sum())} value(s) are not whole non-negative numbers "
                f"(e.g. {arr[bad].ravel()[0]!r}); Astra's APOGEE pixel_flags are bitmasks"
            )
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
        if (arr < 0).any():
            raise ValueError("pixel_flags: negative values are not a bitmask")
    else:
        raise ValueError(f"pixel_flags must be numbers; got dtype {arr.dtype}")
    if (arr >> (_MAX_PIXMASK_BIT + 1)).any():
        raise ValueError(
            f"pixel_flags set bits above {_MAX_PIXMASK_BIT} (max value {int(arr.max())}): not "
            "an APOGEE_PIXMASK (is this a BOSS spectrum?)"
        )
    return arr.astype(np.int32)


_APSTAR_KEEP = np.concatenate([np.arange(a, b) for a, b in CHIP_RANGES.values()])


def apogee_wavelength(*, gap_removed: bool = True, quantity: bool = False) -> Any:
    """Vacuum wavelengths of the APOGEE pixels.

    Parameters
    ----------
    gap_removed : bool, default=True
        If True, the 7514 pixels of the gap-removed grid; otherwise the 8575
        pixels of the apStar grid.
    quantity : bool, default=False
        If True, return an :class:`astropy.units.Quantity` in Å.

    Returns
    -------
    ndarray of shape (7514,) or (8575,), or Quantity
        Vacuum wavelength in Å, increasing, ``10**(4.179 + 6e-6 * i)`` for apStar pixel ``i``.

    Examples
    --------
    >>> from skages.spectra import apogee_wavelength
    >>> wl = apogee_wavelength()
    >>> wl.shape, round(float(wl[0]), 2), round(float(wl[-1]), 2)
    ((7514,), 15152.21, 16943.53)
    """
    index = _APSTAR_KEEP if gap_removed else np.arange(N_PIXELS_APSTAR)
    wavelength = 10.0 ** (LOG10_WAVELENGTH_START + LOG10_WAVELENGTH_STEP * index)
    if quantity:
        import astropy.units as u

        return wavelength * u.AA
    return wavelength


def chip_slices(*, gap_removed: bool = True) -> dict[str, slice]:
    """Pixel slices of the blue, green and red chips.

    Parameters
    ----------
    gap_removed : bool, default=True
        Slices into the 7514-pixel gap-removed grid if True, else into the
        8575-pixel apStar grid.

    Returns
    -------
    dict of str to slice
        Keys ``"blue"``, ``"green"``, ``"red"`` in wavelength order.

    Examples
    --------
    >>> from skages.spectra import chip_slices
    >>> chip_slices()["green"]
    slice(3028, 5523, None)
    """
    if not gap_removed:
        return {name: slice(a, b) for name, (a, b) in CHIP_RANGES.items()}
    out, start = {}, 0
    for name, (a, b) in CHIP_RANGES.items():
        out[name] = slice(start, start + b - a)
        start += b - a
    return out


def _n_pixels_error(name: str, shape: tuple[int, ...], allowed: Sequence[int]) -> ValueError:
    expected = " or ".join(str(n) for n in allowed)
    return ValueError(
        f"{name} must have {expected} pixels on its last axis (APOGEE apStar grid = "
        f"{N_PIXELS_APSTAR}, gap-removed grid = {N_PIXELS}); got shape {shape}"
    )


def remove_gaps(spectra: Any) -> np.ndarray:
    """Drop the chip-gap pixels of apStar-grid spectra.

    Parameters
    ----------
    spectra : array-like of shape (8575,) or (n_stars, 8575)
        Any per-pixel quantity on the apStar grid (flux, uncertainty, bitmask, ...).

    Returns
    -------
    ndarray of shape (7514,) or (n_stars, 7514)
        The blue, green and red chip pixels (DR13-DR17 ranges), same dtype.

    Raises
    ------
    ValueError
        If the array is not 1-D or 2-D with 8575 pixels on its last axis.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.spectra import remove_gaps
    >>> remove_gaps(np.zeros((2, 8575))).shape
    (2, 7514)
    """
    arr = np.asarray(spectra)
    if arr.ndim not in (1, 2) or arr.shape[-1] != N_PIXELS_APSTAR:
        err = _n_pixels_error("spectra", arr.shape, [N_PIXELS_APSTAR])
        if arr.ndim in (1, 2) and arr.shape[-1] == N_PIXELS:
            err.args = (err.args[0] + " (it is already gap-removed)",)
        raise err
    return arr[..., _APSTAR_KEEP]


def add_gaps(spectra: Any, fill_value: Any = np.nan) -> np.ndarray:
    """Put gap-removed spectra back on the 8575-pixel apStar grid.

    Parameters
    ----------
    spectra : array-like of shape (7514,) or (n_stars, 7514)
        Any per-pixel quantity on the gap-removed grid.
    fill_value : scalar, default=NaN
        Value of the gap pixels. With the default NaN the result is floating point.

    Returns
    -------
    ndarray of shape (8575,) or (n_stars, 8575)
    """
    arr = np.asarray(spectra)
    if arr.ndim not in (1, 2) or arr.shape[-1] != N_PIXELS:
        raise _n_pixels_error("spectra", arr.shape, [N_PIXELS])
    dtype = np.result_type(arr.dtype, np.min_scalar_type(fill_value))
    out = np.full((*arr.shape[:-1], N_PIXELS_APSTAR), fill_value, dtype=dtype)
    out[..., _APSTAR_KEEP] = arr
    return out


def _to_gap_removed(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.shape[-1] == N_PIXELS_APSTAR:
        return arr[..., _APSTAR_KEEP]
    if arr.shape[-1] == N_PIXELS:
        return arr
    raise _n_pixels_error(name, arr.shape, [N_PIXELS_APSTAR, N_PIXELS])


def _bit_value(bad_bits: Iterable[int]) -> int:
    value = 0
    for bit in bad_bits:
        if isinstance(bit, (bool, np.bool_)) or not isinstance(bit, Integral) or not 0 <= bit < 63:
            raise ValueError(f"bad_bits must be integers from 0 to 62; got {bit!r}")
        value |= 1 << int(bit)
    return value


def bad_pixel_mask(bitmask: Any, bad_bits: Iterable[int] = DEFAULT_BAD_BITS) -> np.ndarray:
    """Boolean mask of the pixels whose APOGEE PIXMASK has a bad bit set.

    Parameters
    ----------
    bitmask : array-like of int
        APOGEE_PIXMASK values, any shape. Signed 16-bit input (as stored in
        older apStar files) is read as unsigned, so bit 15 is bit 15.
    bad_bits : iterable of int, default=DEFAULT_BAD_BITS
        Bit numbers that make a pixel bad; the default is bits 0-7 and 12.

    Returns
    -------
    ndarray of bool, same shape as ``bitmask``

    Examples
    --------
    >>> from skages.spectra import bad_pixel_mask
    >>> bad_pixel_mask([0, 1, 2**8, 2**12]).tolist()
    [False, True, False, True]
    """
    arr = np.asarray(bitmask)
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"bitmask must hold integers; got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.dtype.itemsize < 8:
        arr = arr.view(arr.dtype.str.replace("i", "u"))
    return (arr.astype(np.uint64) & np.uint64(_bit_value(bad_bits))) != 0


def _check_spectra(spectra: Any, name: str = "spectra") -> np.ndarray:
    arr = np.asarray(spectra)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric; got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 4:
        arr = arr.astype(np.float32, copy=False)  # native byte order (FITS data are big-endian)
    else:
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D (n_stars, n_pixels); got shape {arr.shape}")
    return _to_gap_removed(name, arr)


def _check_companion(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D (n_stars, n_pixels); got shape {arr.shape}")
    arr = _to_gap_removed(name, arr)
    if arr.shape != shape:
        raise ValueError(
            f"{name} must match the spectra, shape {shape} after gap removal; got {arr.shape}"
        )
    return arr


def _check_continuum_mask(continuum_mask: Any, degree: int) -> np.ndarray:
    if continuum_mask is None:
        from skages._data import load_continuum_mask

        mask = load_continuum_mask()
    else:
        mask = np.asarray(continuum_mask)
        if mask.dtype != bool:
            raise TypeError(f"continuum_mask must be a boolean array; got dtype {mask.dtype}")
        if mask.ndim != 1:
            raise ValueError(f"continuum_mask must be 1-D; got shape {mask.shape}")
        mask = _to_gap_removed("continuum_mask", mask)
    for chip, sl in chip_slices().items():
        if mask[sl].sum() < degree + 1:
            raise ValueError(
                f"continuum_mask needs at least degree + 1 = {degree + 1} continuum pixels in "
                f"each chip; the {chip} chip has {int(mask[sl].sum())}"
            )
    return mask


#: Stars processed together: bounds the float64 temporaries (about 15 MB each).
_BLOCK = 256


def _fit_block(
    flux: np.ndarray,
    weight: np.ndarray | None,
    bad: np.ndarray | None,
    cont_mask: np.ndarray,
    degree: int,
    chips: Sequence[slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuum of a block of stars, all chips; weights only on continuum pixels.

    ``flux`` (b, n_pixels); ``weight`` (b, n_cont) inverse variances or None (all 1);
    ``bad`` (b, n_cont) flagged continuum pixels or None; ``chips`` the pixel ranges
    fitted separately (APOGEE's three chips of the gap-removed grid by default).
    Returns the continuum (b, n_pixels) float64, NaN for failed stars, and the failed
    flags (b,).
    """
    cont_idx = np.flatnonzero(cont_mask)
    flux_c = flux[:, cont_idx].astype(np.float64)
    usable = np.isfinite(flux_c)
    if bad is not None:
        usable &= ~bad
    w_all = usable.astype(np.float64) if weight is None else np.where(usable, weight, 0.0)
    y_all = np.where(usable, flux_c, 0.0)
    continuum = np.empty(flux.shape, dtype=np.float64)
    failed = np.zeros(flux.shape[0], dtype=bool)
    col = 0
    for sl in chip_slices().values() if chips is None else chips:
        chip_mask = cont_mask[sl]
        cols = slice(col, col + int(chip_mask.sum()))
        col = cols.stop
        x = np.linspace(-1.0, 1.0, chip_mask.size)
        vander = chebyshev.chebvander(x, degree)  # (n_chip, degree + 1)
        v = vander[chip_mask]
        w, y = w_all[:, cols], y_all[:, cols]
        chip_failed = np.count_nonzero(w, axis=1) < degree + 1
        # scale each star's weights to max 1: same solution, a better-conditioned system
        w_max = w.max(axis=1, keepdims=True)
        w = w / np.where(w_max > 0, w_max, 1.0)
        normal = np.einsum("nm,mi,mj->nij", w, v, v)
        rhs = np.einsum("nm,mi->ni", w * y, v)
        normal[chip_failed] = np.eye(degree + 1)
        rhs[chip_failed] = 0.0
        coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
        # einsum: numpy's matmul is slow for an inner dimension of 3
        np.einsum("ni,mi->nm", coef, vander, out=continuum[:, sl])
        failed |= chip_failed
    continuum[failed] = np.nan
    return continuum, failed


def _prepare(
    spectra: Any,
    spectra_err: Any,
    bitmask: Any,
    continuum_mask: Any,
    degree: Any,
    bad_bits: Iterable[int],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray, int]:
    """Validated 2-D gap-removed flux, errors, bitmask, continuum mask and degree."""
    flux = _check_spectra(spectra)
    err = _check_companion(spectra_err, "spectra_err", flux.shape)
    bits = _check_companion(bitmask, "bitmask", flux.shape)
    if not isinstance(degree, Integral) or isinstance(degree, bool) or degree < 0:
        raise ValueError(f"degree must be a non-negative integer; got {degree!r}")
    cont_mask = _check_continuum_mask(continuum_mask, int(degree))
    _bit_value(bad_bits)  # validates bad_bits
    if err is not None:
        if err.dtype.kind not in "iuf":
            raise TypeError(f"spectra_err must be numeric; got dtype {err.dtype}")
        negative = err < 0
        if np.any(negative):
            rows = np.unique(np.nonzero(np.atleast_2d(negative))[0])
            raise ValueError(
                "spectra_err must be non-negative (1-σ uncertainties); got negative values "
                f"for {rows.size} star(s), first rows {rows[:5].tolist()}"
            )
    if bits is not None:
        bad_pixel_mask(bits[..., :1], bad_bits)  # type check only
    return (
        np.atleast_2d(flux),
        None if err is None else np.atleast_2d(err),
        None if bits is None else np.atleast_2d(bits),
        cont_mask,
        int(degree),
    )


def _block_inputs(
    flux: np.ndarray,
    err: np.ndarray | None,
    bits: np.ndarray | None,
    rows: slice,
    cont_idx: np.ndarray,
    bad_bits: Iterable[int],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    weight = bad = None
    if err is not None:
        err_c = err[rows][:, cont_idx].astype(np.float64)
        with np.errstate(divide="ignore", over="ignore"):
            weight = np.where(np.isfinite(err_c) & (err_c > 0), 1.0 / err_c**2, 0.0)
    if bits is not None:
        bad = bad_pixel_mask(bits[rows][:, cont_idx], bad_bits)
    return weight, bad


def fit_continuum(
    spectra: Any,
    spectra_err: Any = None,
    bitmask: Any = None,
    *,
    continuum_mask: Any = None,
    degree: int = 2,
    bad_bits: Iterable[int] = DEFAULT_BAD_BITS,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the per-chip Chebyshev continuum of APOGEE spectra.

    Parameters
    ----------
    spectra : array-like of shape (n_stars, 8575 or 7514) or (8575 or 7514,)
        Flux on the apStar grid or the gap-removed grid (any flux unit).
    spectra_err : array-like of the same shape, optional
        1-σ flux uncertainties, same unit. The fit weights each pixel by
        ``1 / spectra_err**2``; pixels with a zero, infinite or NaN uncertainty
        are left out. If None, all pixels weigh the same.
    bitmask : array-like of int of the same shape, optional
        APOGEE_PIXMASK; pixels with any of ``bad_bits`` set are left out of the fit.
    continuum_mask : array-like of bool of shape (7514,) or (8575,), optional
        Continuum pixels. Default: the bundled APOGEE DR17 mask.
    degree : int, default=2
        Degree of the Chebyshev polynomial in each chip.
    bad_bits : iterable of int, default=DEFAULT_BAD_BITS
        PIXMASK bits that make a pixel bad.

    Returns
    -------
    continuum : ndarray of shape (n_stars, 7514) or (7514,)
        The fitted continuum (float64) on the gap-removed grid, in the unit of
        ``spectra``; NaN for a star whose fit failed.
    failed : ndarray of bool of shape (n_stars,) or ()
        True for stars with fewer than ``degree + 1`` usable continuum pixels in some chip.

    Raises
    ------
    ValueError
        For a wrong pixel count, mismatched shapes or a negative uncertainty.
    """
    one_d = np.ndim(spectra) == 1
    flux, err, bits, cont_mask, degree = _prepare(
        spectra, spectra_err, bitmask, continuum_mask, degree, bad_bits
    )
    cont_idx = np.flatnonzero(cont_mask)
    continuum = np.empty(flux.shape, dtype=np.float64)
    failed = np.zeros(flux.shape[0], dtype=bool)
    for start in range(0, flux.shape[0], _BLOCK):
        rows = slice(start, start + _BLOCK)
        weight, bad = _block_inputs(flux, err, bits, rows, cont_idx, bad_bits)
        continuum[rows], failed[rows] = _fit_block(flux[rows], weight, bad, cont_mask, degree)
    if one_d:
        return continuum[0], failed[0]
    return continuum, failed


def continuum_normalize(
    spectra: Any,
    spectra_err: Any = None,
    bitmask: Any = None,
    *,
    continuum_mask: Any = None,
    degree: int = 2,
    bad_bits: Iterable[int] = DEFAULT_BAD_BITS,
    fill_value: float = 1.0,
    on_failure: Literal["raise", "nan"] = "raise",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Continuum-normalise APOGEE spectra, as for APOGEE DR17 and Leung et al. (2023).

    In each chip a degree-``degree`` Chebyshev polynomial in pixel index is fitted
    to the continuum pixels by inverse-variance weighted least squares (NaN
    pixels, pixels with unusable uncertainties and bad pixels left out); flux
    and uncertainties are divided by it. Bad pixels (any of ``bad_bits`` set in
    ``bitmask``) are then set to ``fill_value`` in both flux and uncertainty.
    Stars are fitted together, in blocks of a few hundred (one small linear
    system per star and chip; no loop over pixels or stars).

    Parameters
    ----------
    spectra : array-like of shape (n_stars, 8575 or 7514) or (8575 or 7514,)
        Flux on the apStar grid or the gap-removed grid (any flux unit).
    spectra_err : array-like of the same shape, optional
        1-σ flux uncertainties in the unit of ``spectra``; must be non-negative.
        Zero, infinite or NaN uncertainties leave the pixel out of the fit. If
        None, the fit is unweighted.
    bitmask : array-like of int of the same shape, optional
        APOGEE_PIXMASK of each pixel.
    continuum_mask : array-like of bool of shape (7514,) or (8575,), optional
        Continuum pixels. Default: the bundled APOGEE DR17 mask
        (:func:`skages.datasets.load_continuum_mask`).
    degree : int, default=2
        Degree of the Chebyshev polynomial in each chip.
    bad_bits : iterable of int, default=DEFAULT_BAD_BITS
        PIXMASK bits that make a pixel bad (default bits 0-7 and 12).
    fill_value : float, default=1.0
        Normalised flux and uncertainty given to bad pixels.
    on_failure : {"raise", "nan"}, default="raise"
        What to do with a star that has fewer than ``degree + 1`` usable
        continuum pixels in a chip (for example an all-NaN spectrum) or whose
        fitted continuum is not positive: raise a ValueError naming the rows, or
        return NaN for its whole spectrum (what survey-scale processing wants).

    Returns
    -------
    flux : ndarray of shape (n_stars, 7514) or (7514,)
        Normalised flux (dimensionless) on the gap-removed grid; float32 if
        ``spectra`` is float32, else float64. NaN input pixels stay NaN.
    flux_err : ndarray of the same shape, or None
        Normalised uncertainties (dimensionless), None if ``spectra_err`` is None.

    Raises
    ------
    ValueError
        For a wrong pixel count, mismatched shapes, a negative uncertainty, or
        (with ``on_failure="raise"``) a star whose continuum cannot be fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.spectra import apogee_wavelength, continuum_normalize
    >>> wl = apogee_wavelength(gap_removed=False)
    >>> raw = 1e3 * (1 + 1e-5 * (wl - 16000))  # a sloped continuum, no lines
    >>> flux, flux_err = continuum_normalize(raw, np.full(8575, 10.0))
    >>> flux.shape, bool(np.allclose(flux, 1)), bool(np.allclose(flux_err, 0.01, rtol=0.02))
    ((7514,), True, True)
    """
    if on_failure not in ("raise", "nan"):
        raise ValueError(f"on_failure must be 'raise' or 'nan'; got {on_failure!r}")
    if not isinstance(fill_value, Real):
        raise TypeError(f"fill_value must be a real number; got {fill_value!r}")
    one_d = np.ndim(spectra) == 1
    flux, err, bits, cont_mask, degree = _prepare(
        spectra, spectra_err, bitmask, continuum_mask, degree, bad_bits
    )
    norm, norm_err = _normalize(
        flux, err, bits, cont_mask, degree, None, bad_bits, fill_value, on_failure
    )
    if one_d:
        return norm[0], None if norm_err is None else norm_err[0]
    return norm, norm_err


def _normalize(
    flux: np.ndarray,
    err: np.ndarray | None,
    bits: np.ndarray | None,
    cont_mask: np.ndarray,
    degree: int,
    chips: Sequence[slice] | None,
    bad_bits: Iterable[int],
    fill_value: float,
    on_failure: str,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`continuum_normalize` on validated 2-D arrays, for any chip layout."""
    cont_idx = np.flatnonzero(cont_mask)
    norm = np.empty(flux.shape, dtype=flux.dtype)
    norm_err = None if err is None else np.empty(flux.shape, dtype=flux.dtype)
    failed = np.zeros(flux.shape[0], dtype=bool)
    for start in range(0, flux.shape[0], _BLOCK):
        rows = slice(start, start + _BLOCK)
        weight, bad_c = _block_inputs(flux, err, bits, rows, cont_idx, bad_bits)
        continuum, block_failed = _fit_block(flux[rows], weight, bad_c, cont_mask, degree, chips)
        with np.errstate(invalid="ignore"):
            block_failed |= np.any(~(continuum > 0), axis=1)
        continuum[block_failed] = np.nan
        failed[rows] = block_failed
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(flux[rows], continuum, out=norm[rows], casting="unsafe")
            if err is not None:
                np.divide(err[rows], continuum, out=norm_err[rows], casting="unsafe")
        if bits is not None:
            bad = bad_pixel_mask(bits[rows], bad_bits) & ~block_failed[:, None]
            norm[rows][bad] = fill_value
            if norm_err is not None:
                norm_err[rows][bad] = fill_value
    if failed.any():
        bad_rows = np.flatnonzero(failed)
        msg = (
            f"cannot fit the continuum of {bad_rows.size} spectrum/spectra (rows "
            f"{bad_rows[:5].tolist()}{', ...' if bad_rows.size > 5 else ''}): fewer than "
            f"degree + 1 = {degree + 1} usable continuum pixels in a chip (all-NaN, all-bad or "
            "zero-error spectrum?) or a non-positive continuum"
        )
        if on_failure == "raise":
            raise ValueError(msg)
        logger.warning("%s; their normalised spectra are NaN", msg)
    return norm, norm_err


class ContinuumNormalizer(TransformerMixin, BaseEstimator):
    """Scikit-learn transformer: APOGEE gap removal and continuum normalisation.

    Stateless: ``transform`` applies :func:`continuum_normalize` to each row
    (star) independently; ``fit`` only checks the input and records
    ``n_features_in_``. With the default ``layout="apogee"``, input spectra may be on
    the 8575-pixel apStar grid or the 7514-pixel gap-removed grid and the output is
    always on the gap-removed grid. Other layouts take spectra of any width (one chip,
    another instrument's chips, a spectral window) and return the same width.

    Uncertainties and bitmasks are passed to ``fit_transform`` / ``transform`` as
    the keyword arguments ``spectra_err`` and ``bitmask``. Inside a
    :class:`~sklearn.pipeline.Pipeline`, enable metadata routing and request them
    for ``transform`` (which also covers the pipeline's ``fit``)::

        sklearn.set_config(enable_metadata_routing=True)
        norm = ContinuumNormalizer().set_transform_request(spectra_err=True, bitmask=True)
        pipe = make_pipeline(norm, PCA(5))
        pipe.fit(X, spectra_err=E, bitmask=M)

    Without them the fit is unweighted and no pixel is flagged.

    Parameters
    ----------
    continuum_mask : array-like of bool of shape (7514,) or (8575,), default=None
        Continuum pixels; None for the bundled APOGEE DR17 mask.
    degree : int, default=2
        Degree of the Chebyshev continuum in each chip.
    bad_bits : sequence of int, default=(0, 1, 2, 3, 4, 5, 6, 7, 12)
        APOGEE_PIXMASK bits that make a pixel bad.
    fill_value : float, default=1.0
        Normalised flux given to bad pixels.
    on_failure : {"raise", "nan"}, default="raise"
        A star whose continuum cannot be fitted (e.g. an all-NaN spectrum):
        raise a ValueError, or return a row of NaN.
    layout : {"apogee", "single"} or sequence of int, default="apogee"
        How the pixels of a row split into chips, each with its own continuum.
        ``"apogee"``: APOGEE's three chips (8575 or 7514 pixels; ``continuum_mask``
        of that size, default the DR17 mask). ``"single"``: the whole row is one chip,
        of any width. A sequence of widths: consecutive chips of those many pixels,
        which must add up to the row's width. For layouts other than ``"apogee"``,
        ``continuum_mask`` has the row's width and None makes every pixel a
        continuum pixel; each chip needs at least ``degree + 1`` of them.

    Attributes
    ----------
    n_features_in_ : int
        Number of pixels seen in ``fit`` (8575 or 7514).
    feature_names_in_ : ndarray of str
        Pixel names seen in ``fit``, if ``X`` had string column names.

    See Also
    --------
    continuum_normalize : the function, which also returns normalised uncertainties.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.spectra import ContinuumNormalizer, apogee_wavelength
    >>> wl = apogee_wavelength(gap_removed=False)
    >>> X = np.array([1e3, 2e3])[:, None] * (1 + 1e-5 * (wl - 16000))
    >>> Xn = ContinuumNormalizer().fit_transform(X, spectra_err=np.full(X.shape, 10.0))
    >>> Xn.shape, bool(np.allclose(Xn, 1))
    ((2, 7514), True)
    """

    _parameter_constraints: ClassVar[dict] = {
        "continuum_mask": ["array-like", None],
        "degree": [Interval(Integral, 0, None, closed="left")],
        "bad_bits": ["array-like"],
        "fill_value": [Real],
        "on_failure": [StrOptions({"raise", "nan"})],
        "layout": [StrOptions({"apogee", "single"}), "array-like"],
    }

    def __init__(
        self,
        continuum_mask: Any = None,
        degree: int = 2,
        bad_bits: Sequence[int] = DEFAULT_BAD_BITS,
        fill_value: float = 1.0,
        on_failure: Literal["raise", "nan"] = "raise",
        layout: str | Sequence[int] = "apogee",
    ) -> None:
        self.continuum_mask = continuum_mask
        self.degree = degree
        self.bad_bits = bad_bits
        self.fill_value = fill_value
        self.on_failure = on_failure
        self.layout = layout

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate_X(self, X: Any, reset: bool) -> np.ndarray:
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_all_finite="allow-nan",
            ensure_min_features=1,
        )
        if self._apogee():
            if X.shape[1] not in (N_PIXELS_APSTAR, N_PIXELS):
                raise _n_pixels_error("X", X.shape, [N_PIXELS_APSTAR, N_PIXELS])
        else:
            self._layout_chips(X.shape[1])
        return X

    def _apogee(self) -> bool:
        return isinstance(self.layout, str) and self.layout == "apogee"

    def _layout_chips(self, n_pixels: int) -> list[slice]:
        """The chips of a non-APOGEE layout, checked against the row width."""
        if isinstance(self.layout, str):  # "single"
            return [slice(0, n_pixels)]
        widths = np.asarray(self.layout)
        if widths.ndim != 1 or widths.size == 0 or widths.dtype.kind not in "iu":
            raise ValueError(
                f"layout must be 'apogee', 'single' or chip widths; got {self.layout!r}"
            )
        if np.any(widths < 1) or int(widths.sum()) != n_pixels:
            raise ValueError(
                f"layout chip widths {widths.tolist()} must be positive and add up to the "
                f"{n_pixels} feature(s) of X"
            )
        edges = np.concatenate([[0], np.cumsum(widths)])
        return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]

    def _layout_mask(self, chips: list[slice], n_pixels: int) -> np.ndarray:
        """The continuum mask of a non-APOGEE layout, checked chip by chip."""
        if self.continuum_mask is None:
            mask = np.ones(n_pixels, dtype=bool)
        else:
            mask = np.asarray(self.continuum_mask)
            if mask.dtype != bool:
                raise TypeError(f"continuum_mask must be a boolean array; got dtype {mask.dtype}")
            if mask.shape != (n_pixels,):
                raise ValueError(
                    f"continuum_mask must have the {n_pixels} feature(s) of X; got shape "
                    f"{mask.shape}"
                )
        for k, sl in enumerate(chips):
            if mask[sl].sum() < self.degree + 1:
                raise ValueError(
                    f"the continuum of degree {self.degree} needs at least {self.degree + 1} "
                    f"continuum pixels in each chip; chip {k} of X's {n_pixels} feature(s) "
                    f"has {int(mask[sl].sum())}"
                )
        return mask

    @staticmethod
    def _check_metadata(X: np.ndarray, spectra_err: Any, bitmask: Any) -> None:
        for name, value in (("spectra_err", spectra_err), ("bitmask", bitmask)):
            if value is not None and np.shape(value) != X.shape:
                raise ValueError(
                    f"{name} must have the shape of X {X.shape}; got {np.shape(value)}"
                )

    def fit(self, X: Any, y: Any = None) -> ContinuumNormalizer:
        """Check ``X`` and record its number of pixels.

        Nothing is learnt: each spectrum is normalised on its own in :meth:`transform`.

        Parameters
        ----------
        X : array-like of shape (n_stars, 8575) or (n_stars, 7514)
            Spectra (flux, any unit).
        y : None
            Ignored.

        Returns
        -------
        self : ContinuumNormalizer
        """
        self._validate_params()
        X = self._validate_X(X, reset=True)
        if self._apogee():
            _check_continuum_mask(self.continuum_mask, self.degree)
        else:
            self._layout_mask(self._layout_chips(X.shape[1]), X.shape[1])
        _bit_value(self.bad_bits)
        return self

    def transform(self, X: Any, spectra_err: Any = None, bitmask: Any = None) -> np.ndarray:
        """Remove the chip gaps and divide each spectrum by its fitted continuum.

        Parameters
        ----------
        X : array-like of shape (n_stars, 8575) or (n_stars, 7514)
            Spectra (flux, any unit). NaN pixels are left out of the fit and stay NaN.
        spectra_err : array-like of the same shape, optional
            1-σ flux uncertainties (same unit, non-negative); the fit weights pixels
            by their inverse variance.
        bitmask : array-like of int of the same shape, optional
            APOGEE_PIXMASK; pixels with a bad bit are left out of the fit and set to
            ``fill_value``.

        Returns
        -------
        ndarray of shape (n_stars, 7514)
            Normalised flux (dimensionless), float32 for float32 input, else float64.
        """
        self._validate_params()
        X = self._validate_X(X, reset=False)
        self._check_metadata(X, spectra_err, bitmask)
        if not self._apogee():
            return self._transform_layout(X, spectra_err, bitmask)
        flux, _ = continuum_normalize(
            X,
            spectra_err,
            bitmask,
            continuum_mask=self.continuum_mask,
            degree=self.degree,
            bad_bits=self.bad_bits,
            fill_value=self.fill_value,
            on_failure=self.on_failure,
        )
        return flux

    def _transform_layout(self, X: np.ndarray, spectra_err: Any, bitmask: Any) -> np.ndarray:
        chips = self._layout_chips(X.shape[1])
        mask = self._layout_mask(chips, X.shape[1])
        err = None if spectra_err is None else np.asarray(spectra_err, dtype=X.dtype)
        if err is not None and np.any(err < 0):
            raise ValueError("spectra_err must be non-negative (1-σ uncertainties)")
        bits = None if bitmask is None else np.asarray(bitmask)
        if bits is not None:
            bad_pixel_mask(bits[..., :1], self.bad_bits)  # type check only
        flux, _ = _normalize(
            X,
            err,
            bits,
            mask,
            int(self.degree),
            chips,
            self.bad_bits,
            self.fill_value,
            self.on_failure,
        )
        return flux

    def fit_transform(
        self, X: Any, y: Any = None, spectra_err: Any = None, bitmask: Any = None
    ) -> np.ndarray:
        """Fit, then transform ``X`` with its uncertainties and bitmask.

        Parameters
        ----------
        X : array-like of shape (n_stars, 8575) or (n_stars, 7514)
            Spectra (flux, any unit).
        y : None
            Ignored.
        spectra_err, bitmask : array-like of the shape of X, optional
            As in :meth:`transform`.

        Returns
        -------
        ndarray of shape (n_stars, 7514)
        """
        return self.fit(X).transform(X, spectra_err=spectra_err, bitmask=bitmask)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output pixels: the input names of the pixels kept.

        Parameters
        ----------
        input_features : array-like of str, optional
            Input pixel names; default ``feature_names_in_`` or ``x0 … x{n-1}``.

        Returns
        -------
        ndarray of str of shape (7514,)
        """
        names = _check_feature_names_in(self, input_features)
        if not self._apogee():
            return names
        if names.shape[0] == N_PIXELS_APSTAR:
            return names[_APSTAR_KEEP]
        if names.shape[0] == N_PIXELS:
            return names
        raise _n_pixels_error("input_features", names.shape, [N_PIXELS_APSTAR, N_PIXELS])
