"""Kepler light curves to the 2092-pixel log power spectrum, and asteroseismic helpers.

The power spectral density (PSD) is the target the encoder-decoder learns to
reconstruct from a spectrum. It is made exactly as for the published model of
Leung et al. (2023):

1. Lomb-Scargle power (PSD normalisation, floating mean) from 2 to 270 µHz at
   0.009 µHz spacing: the 29,779 frequencies of :func:`fine_frequency_grid`;
2. background: for windows of half-width 0.01 dex in log10 frequency, stepped
   every 0.005 dex, the window's median divided by (8/9)^3; each frequency's
   background is the mean over the windows that cover it; the power is divided
   by it;
3. Gaussian smoothing with σ = 0.1 µHz;
4. the mean of the samples in each bin of :func:`frequency_edges`, natural log.
   A bin with no sample is NaN (masked).

Step 1 is computed by default with a non-uniform FFT (finufft) that evaluates
the exact floating-mean Lomb-Scargle sums, instead of astropy's approximate
fast method; ``method="astropy"`` keeps astropy's :class:`~astropy.timeseries.LombScargle`
path for comparison. Steps 2-4 are :func:`power_to_log_psd`, shared by real and
simulated data.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
from joblib import Parallel, delayed
from scipy.ndimage import gaussian_filter1d

from skages._units import _check_baseline, _check_teff, _is_quantity, _to_value
from skages._warnings import warn as _warn

__all__ = [
    "DNU_RELATIONS",
    "SOLAR_DNU",
    "SOLAR_NUMAX",
    "SOLAR_TEFF",
    "estimate_numax",
    "excess_dnu",
    "expected_dnu",
    "fine_frequency_grid",
    "frequency_edges",
    "frequency_grid",
    "lightcurve_to_psd",
    "lomb_scargle_power",
    "numax_weights",
    "power_to_log_psd",
    "read_kepler_lightcurve",
    "scaling_mass",
    "scaling_radius",
]

logger = logging.getLogger(__name__)

#: Spacing of the fine frequency grid, µHz.
FINE_STEP = 0.009
#: Lowest and highest frequency of the fine grid, µHz.
FINE_MIN, FINE_MAX = 2.0, 270.0
#: Number of bins of the published PSD grid.
N_BINS = 2092
#: Half-width (dex) and step (dex) of the background median windows.
BACKGROUND_HALF_WIDTH, BACKGROUND_STEP = 0.01, 0.005
#: Median-to-mean correction of the background windows, as published.
BACKGROUND_CORRECTION = (8.0 / 9.0) ** 3
#: Standard deviation of the Gaussian smoothing, µHz.
SMOOTHING_SIGMA = 0.1

#: Width of the oscillation envelope, FWHM = a·νmax^b µHz (Mosser et al. 2012).
ENVELOPE_FWHM_COEFF, ENVELOPE_FWHM_EXPONENT = 0.66, 0.88

#: Solar reference values of the scaling relations (APOKASC-2, Pinsonneault et al. 2018):
#: νmax in µHz, Δν in µHz, Teff in K.
SOLAR_NUMAX = 3076.0
SOLAR_DNU = 135.146
SOLAR_TEFF = 5772.0

#: Δν(νmax) = a·νmax^b (µHz): the paper's Stello et al. (2009) constants and the
#: released code's Huber et al. (2010, SYD pipeline) constants.
DNU_RELATIONS: dict[str, tuple[float, float]] = {
    "paper": (0.263, 0.772),
    "reference": (0.268, 0.758),
}

_SECONDS_PER_DAY = 86400.0
#: astropy Time formats whose values are days (others are converted with ``.jd``).
_DAY_TIME_FORMATS = frozenset({"jd", "mjd", "bkjd", "btjd"})


# --------------------------------------------------------------------------- grids


def fine_frequency_grid() -> np.ndarray:
    """The 29,779 frequencies at which the periodogram is evaluated.

    Returns
    -------
    ndarray of shape (29779,)
        ``2 + 0.009·i`` µHz for i = 0 … 29778 (2.0 to 270.002 µHz), as
        ``numpy.arange(2, 270 + 0.009, 0.009)`` in the published code.
    """
    return _fine_grid().copy()


@cache
def _fine_grid() -> np.ndarray:
    n = int(np.floor((FINE_MAX - FINE_MIN) / FINE_STEP)) + 2
    grid = FINE_MIN + FINE_STEP * np.arange(n)
    grid.setflags(write=False)
    return grid


@cache
def _edges() -> np.ndarray:
    a, b = DNU_RELATIONS["reference"]
    k = a * FINE_MIN**b / FINE_STEP  # bin width is FINE_STEP at 2 µHz: k ≈ 50.36
    edges = [FINE_MIN - FINE_STEP, FINE_MIN]
    while len(edges) < N_BINS + 1:
        edges.append(edges[-1] + a * edges[-1] ** b / k)
    out = np.asarray(edges)
    out.setflags(write=False)
    return out


def frequency_edges() -> np.ndarray:
    """Edges of the 2092 bins of the published PSD grid.

    The bins follow ``edge[i+1] = edge[i] + Δν(edge[i]) / k`` from
    ``[1.991, 2.0]`` µHz, with ``Δν(ν) = 0.268·ν^0.758`` (the released code's
    relation) and ``k = Δν(2 µHz) / 0.009`` (about 50.36), so each bin spans a
    fixed fraction of the local large separation. This reproduces the published
    ``freq_solution.csv`` to 5e-8 µHz; the paper's printed constants
    (``0.263·ν^0.772 / 50``) would give about 2,013 bins instead.

    Returns
    -------
    ndarray of shape (2093,)
        Bin edges in µHz, from 1.991 to about 269.08.
    """
    return _edges().copy()


def frequency_grid() -> np.ndarray:
    """Centres of the 2092 bins of the published PSD grid.

    Returns
    -------
    ndarray of shape (2092,)
        Bin centres in µHz (1.9955 to 268.996). Bin 0, ``[1.991, 2.0)`` µHz,
        receives no periodogram sample, so its PSD value is always NaN; the
        published ``freq_solution.csv`` stores its centre as 2.0.
    """
    e = _edges()
    return 0.5 * (e[:-1] + e[1:])


@cache
def _bin_slices() -> tuple[np.ndarray, np.ndarray]:
    """Start and stop indices into the fine grid of each PSD bin (right-open bins)."""
    idx = np.searchsorted(_fine_grid(), _edges(), side="left")
    return idx[:-1], idx[1:]


@cache
def _background_windows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index ranges of the background windows and the number of windows per sample."""
    logf = np.log10(_fine_grid())
    n_windows = int(np.ceil((logf[-1] - logf[0]) / BACKGROUND_STEP))
    centres = logf[0] + BACKGROUND_STEP * np.arange(n_windows)
    centres = centres[centres < logf[-1]]
    # |log10 f - x0| < half-width: open interval on both sides, as published
    lo = np.searchsorted(logf, centres - BACKGROUND_HALF_WIDTH, side="right")
    hi = np.searchsorted(logf, centres + BACKGROUND_HALF_WIDTH, side="left")
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    count = np.zeros(logf.size + 1)
    np.add.at(count, lo, 1.0)
    np.add.at(count, hi, -1.0)
    return lo, hi, np.cumsum(count)[:-1]


# ----------------------------------------------------------------- periodogram


def _check_lightcurve(time: Any, flux: Any, *, star: str = "") -> tuple[np.ndarray, np.ndarray]:
    where = f" (star {star})" if star else ""
    t = _to_value(time, "d", "time")
    # the flux unit cancels (the power is divided by its own background)
    y = np.asarray(flux.value if _is_quantity(flux) else flux, dtype=float)
    if t.ndim != 1 or y.ndim != 1:
        raise ValueError(
            f"time and flux must be 1-D arrays{where}; got shapes {t.shape} and {y.shape}"
        )
    if t.size != y.size:
        raise ValueError(
            f"time and flux must have the same length{where}; got {t.size} and {y.size}"
        )
    if t.size == 0:
        raise ValueError(f"the light curve is empty{where}: time and flux have no cadence")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"time contains NaN or infinite values{where}; remove those cadences")
    good = np.isfinite(y)
    if not good.any():
        raise ValueError(f"flux is NaN at every cadence{where}: nothing to analyse")
    t, y = t[good], y[good]
    dt = np.diff(t)
    if np.any(dt == 0):
        raise ValueError(
            f"time has {int(np.sum(dt == 0))} duplicate values{where}; "
            "stitch quarters without overlap or drop repeated cadences"
        )
    if np.any(dt < 0):
        raise ValueError(
            f"time is not sorted{where}; sort the cadences (order = numpy.argsort(time)) first"
        )
    if t.size < 3 or np.ptp(y) == 0:
        raise ValueError(
            f"flux has zero variance{where} ({t.size} finite cadences): no power to measure"
        )
    _check_baseline(t, where)
    baseline = t[-1] - t[0]
    resolution = 1e6 / (baseline * _SECONDS_PER_DAY)
    if resolution > FINE_STEP:
        _warn(
            f"the light curve{where} spans {baseline:.1f} d, so its frequency resolution is "
            f"{resolution:.4f} µHz, coarser than the {FINE_STEP} µHz grid (which needs "
            f"≥ {1e6 / FINE_STEP / _SECONDS_PER_DAY:.0f} d); the PSD is oversampled and its "
            "modes are broadened"
        )
    return t, y


def _lomb_scargle_nufft(t: np.ndarray, y: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """Exact floating-mean Lomb-Scargle power on a uniform grid, by non-uniform FFT."""
    import finufft

    f0, df, m = freq[0], freq[1] - freq[0], freq.size
    # One transform with 2m modes gives both Σ e^{-iωt} on f0 + i·df (i < m) and
    # Σ e^{-2iωt} on 2·f0 + 2k·df (even i): pre-phases shift mode 0 to the right place.
    # Phases are reduced modulo one cycle (f[µHz]·t[d]·0.0864) before multiplying by 2π.
    cycles = (1e-6 * _SECONDS_PER_DAY) * (t - t[0])
    w = 1.0 / t.size
    ym = y - np.mean(y)
    x = (2.0 * np.pi) * np.mod(df * cycles, 1.0)
    p1 = np.exp(-2j * np.pi * np.mod((f0 + m * df) * cycles, 1.0))
    p2 = p1 * np.exp(-2j * np.pi * np.mod(f0 * cycles, 1.0))
    out = finufft.nufft1d1(x, np.stack([ym * p1, p1, p2]), 2 * m, isign=-1, eps=1e-9, nthreads=1)
    out1, out2 = out[:2, :m], out[2, ::2]

    # Σ w y e^{-iωt} = YC - i·YS, etc.
    yc, ys = w * out1[0].real, -w * out1[0].imag
    c, s = w * out1[1].real, -w * out1[1].imag
    c2, s2 = w * out2.real, -w * out2.imag
    cc = 0.5 * (1.0 + c2) - c * c
    ss = 0.5 * (1.0 - c2) - s * s
    cs = 0.5 * s2 - c * s
    d = cc * ss - cs * cs
    power = (ss * yc * yc + cc * ys * ys - 2.0 * cs * yc * ys) / d
    # astropy's "psd" normalisation for unit weights
    return 0.5 * t.size * power


def _lomb_scargle_astropy(t: np.ndarray, y: np.ndarray, freq: np.ndarray) -> np.ndarray:
    import astropy.units as u
    from astropy.timeseries import LombScargle

    ls = LombScargle(t * u.day, y, normalization="psd")
    return np.asarray(ls.power(freq * u.uHz).value)


def lomb_scargle_power(
    time: Any,
    flux: Any,
    *,
    method: Literal["nufft", "astropy"] = "nufft",
) -> np.ndarray:
    """Lomb-Scargle power of one light curve on :func:`fine_frequency_grid`.

    Parameters
    ----------
    time : array-like of shape (n_cadences,)
        Times in days, increasing (a Quantity is converted to days).
    flux : array-like of shape (n_cadences,)
        Flux (relative or ppm; the PSD is later divided by its background, so
        the unit cancels). NaN cadences are dropped.
    method : {"nufft", "astropy"}, default="nufft"
        ``"nufft"`` evaluates the exact floating-mean Lomb-Scargle sums with
        two non-uniform FFTs (finufft); ``"astropy"`` calls
        :class:`astropy.timeseries.LombScargle` (its approximate fast method),
        the path of the published code.

    Returns
    -------
    ndarray of shape (29779,)
        Power in astropy's ``"psd"`` normalisation (flux² units).
    """
    t, y = _check_lightcurve(time, flux)
    freq = _fine_grid()
    if method == "nufft":
        return _lomb_scargle_nufft(t, y, freq)
    if method == "astropy":
        return _lomb_scargle_astropy(t, y, freq)
    raise ValueError(f"method must be 'nufft' or 'astropy'; got {method!r}")


# ----------------------------------------------------------- power -> log PSD


def _window_median(seg: np.ndarray) -> np.ndarray:
    """Median along the last axis by partial sort (np.median's overhead dominates here)."""
    n = seg.shape[-1]
    half = n // 2
    if n % 2:
        return np.partition(seg, half, axis=-1)[..., half]
    part = np.partition(seg, (half - 1, half), axis=-1)
    return 0.5 * (part[..., half - 1] + part[..., half])


def _flatten(power: np.ndarray) -> np.ndarray:
    lo, hi, count = _background_windows()
    n_fine = power.shape[-1]
    median = (lambda seg: np.nanmedian(seg, axis=-1)) if np.isnan(power).any() else _window_median
    acc = np.zeros((*power.shape[:-1], n_fine + 1))
    for a, b in zip(lo, hi, strict=True):
        level = median(power[..., a:b])
        acc[..., a] += level
        acc[..., b] -= level
    background = np.cumsum(acc[..., :-1], axis=-1) / (count * BACKGROUND_CORRECTION)
    return power / background


def power_to_log_psd(power: Any, *, return_flattened: bool = False) -> np.ndarray:
    """Turn power on the fine grid into the 2092-pixel natural-log PSD.

    Steps 2-4 of the published recipe (background division, Gaussian smoothing
    with σ = 0.1 µHz, bin means, natural log), shared by real light curves and
    the simulator.

    Parameters
    ----------
    power : array-like of shape (29779,) or (n_stars, 29779)
        Power on :func:`fine_frequency_grid`, in any unit (it is divided by its
        own background).
    return_flattened : bool, default=False
        Also return the background-divided (flattened) power, before smoothing.

    Returns
    -------
    log_psd : ndarray of shape (2092,) or (n_stars, 2092), float32
        Natural log of the smoothed, flattened power averaged in each bin of
        :func:`frequency_edges`; NaN in bins with no sample (bin 0).
    flattened : ndarray, same shape as ``power``
        Only if ``return_flattened``.
    """
    p = np.asarray(power, dtype=float)
    n_fine = _fine_grid().size
    if p.ndim not in (1, 2) or p.shape[-1] != n_fine:
        raise ValueError(
            f"power must have shape ({n_fine},) or (n_stars, {n_fine}) on fine_frequency_grid(); "
            f"got shape {p.shape}"
        )
    if np.any(p < 0):
        raise ValueError("power must be non-negative; got negative values")
    if np.all(np.isnan(p), axis=-1).any():
        raise ValueError("power is NaN at every frequency for at least one star")
    flat = _flatten(p)
    sigma = SMOOTHING_SIGMA / FINE_STEP
    # zero-filled edges and a ±4σ kernel, as astropy's convolve with Gaussian1DKernel
    smooth = gaussian_filter1d(
        np.nan_to_num(flat, nan=0.0), sigma, axis=-1, mode="constant", cval=0.0, truncate=4.0
    )
    lo, hi = _bin_slices()
    csum = np.concatenate([np.zeros((*smooth.shape[:-1], 1)), np.cumsum(smooth, axis=-1)], -1)
    n = (hi - lo).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (csum[..., hi] - csum[..., lo]) / n
        log_psd = np.where(n > 0, np.log(mean), np.nan).astype(np.float32)
    return (log_psd, flat) if return_flattened else log_psd


def _one_psd(time: Any, flux: Any, method: str, star: str) -> np.ndarray:
    t, y = _check_lightcurve(time, flux, star=star)
    freq = _fine_grid()
    power = (
        _lomb_scargle_nufft(t, y, freq) if method == "nufft" else _lomb_scargle_astropy(t, y, freq)
    )
    return power_to_log_psd(power)


def _as_arrays(lc: Any) -> tuple[np.ndarray, np.ndarray]:
    """(time in days, flux) from a lightkurve/astropy light curve object."""
    time = lc.time
    if hasattr(time, "jd") and hasattr(time, "format"):  # astropy Time
        time = time.value if time.format in _DAY_TIME_FORMATS else time.jd
    elif _is_quantity(time):
        time = _to_value(time, "d", "time")
    flux = lc.flux
    flux = flux.filled(np.nan) if hasattr(flux, "filled") else flux
    return np.asarray(time, dtype=float), np.asarray(getattr(flux, "value", flux), dtype=float)


def _is_ragged_batch(time: Any) -> bool:
    """True for a list/tuple/object array of per-star time arrays."""
    if isinstance(time, np.ndarray):
        return time.dtype == object
    return isinstance(time, (list, tuple)) and len(time) > 0 and np.ndim(time[0]) == 1


def lightcurve_to_psd(
    time: Any,
    flux: Any = None,
    *,
    method: Literal["nufft", "astropy"] = "nufft",
    n_jobs: int | None = None,
    verbose: int = 0,
) -> np.ndarray:
    """Light curve(s) to the 2092-pixel natural-log PSD of the published model.

    Parameters
    ----------
    time : array-like of shape (n_cadences,), a light curve object, or a sequence of either
        Times in days (an astropy Quantity is converted to days; a baseline over
        10⁵ plain "days" is refused as probably seconds). A
        :class:`lightkurve.LightCurve` (or any object with ``time`` and ``flux``)
        may be passed instead, with ``flux=None``. A
        sequence of 1-D arrays (with a matching sequence ``flux``) or of light
        curve objects gives one PSD per star.
    flux : array-like of shape (n_cadences,) or a sequence of them, optional
        Flux, relative or in ppm (the unit cancels). NaN cadences are dropped.
    method : {"nufft", "astropy"}, default="nufft"
        Periodogram implementation, see :func:`lomb_scargle_power`. Both give
        the same log-PSD to better than 1e-3.
    n_jobs : int, optional
        Stars processed in parallel (joblib threads); None means 1, -1 all cores.
    verbose : int, default=0
        Show a progress bar over stars when > 0.

    Returns
    -------
    ndarray of shape (2092,) or (n_stars, 2092), float32
        Natural-log PSD on :func:`frequency_grid`; NaN where a bin is empty.

    Warns
    -----
    UserWarning
        When a light curve spans less than ~1,286 d, the time needed to resolve
        the 0.009 µHz grid; the warning states the resolution reached.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.seismology import lightcurve_to_psd
    >>> t = np.arange(0, 1400, 0.0204)            # 1,400 d of 29.4-min cadences
    >>> rng = np.random.default_rng(0)
    >>> flux = 1 + 1e-4 * rng.standard_normal(t.size)
    >>> lightcurve_to_psd(t, flux).shape
    (2092,)
    """
    if method not in ("nufft", "astropy"):
        raise ValueError(f"method must be 'nufft' or 'astropy'; got {method!r}")
    if _is_quantity(time):
        time = _to_value(time, "d", "time")
    if hasattr(time, "flux") and flux is None:
        return _one_psd(*_as_arrays(time), method, "")
    if flux is None:
        if isinstance(time, Sequence) and len(time) and all(hasattr(x, "flux") for x in time):
            pairs = [_as_arrays(x) for x in time]
        else:
            raise ValueError("flux is required when time is an array (pass a light curve object)")
    elif _is_ragged_batch(time):
        if len(time) != len(flux):
            raise ValueError(
                f"got {len(time)} time arrays but {len(flux)} flux arrays; give one per star"
            )
        pairs = list(zip(time, flux, strict=True))
    elif np.ndim(time) == 2:
        pairs = list(zip(np.asarray(time), np.asarray(flux), strict=True))
    else:
        return _one_psd(time, flux, method, "")
    if not pairs:
        raise ValueError("no light curves given")
    iterator: Any = enumerate(pairs)
    if verbose:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(pairs), desc="PSDs", unit="star")
    out = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_one_psd)(t, y, method, str(i)) for i, (t, y) in iterator
    )
    return np.stack(out)


# ----------------------------------------------------------------- reading


def read_kepler_lightcurve(
    paths: str | PathLike | Sequence[str | PathLike],
    *,
    flux_column: str = "pdcsap_flux",
    sigma: float = 5.0,
):
    """Read, clean and stitch a star's Kepler light curve, as the published model did.

    Each file (a Kepler long-cadence ``*_llc.fits`` from MAST, read with
    lightkurve, or a plain two-column text file of time in days and relative
    flux) has its NaN cadences and ``sigma``-clipped outliers removed and is
    normalised to ppm (flux / median × 10⁶); the quarters are then stitched.
    FITS files may be gzip-compressed. A file that cannot be read (truncated,
    corrupt, not a Kepler light curve, or a power spectrum such as pySYD's
    ``*_PS.txt``) raises one :class:`ValueError` naming it.

    Parameters
    ----------
    paths : path or sequence of paths
        The star's quarter files.
    flux_column : str, default="pdcsap_flux"
        FITS column to use as flux (``"sap_flux"`` for simple aperture photometry).
    sigma : float, default=5.0
        Outlier clipping threshold, in standard deviations.

    Returns
    -------
    lightkurve.LightCurve
        Time in days (BKJD for Kepler files), flux in ppm.
    """
    lk = _import_lightkurve()

    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty: give at least one light curve file")
    pieces = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no such light curve file: {path}")
        if _is_fits(path):
            lc = _read_kepler_fits(path, flux_column, lk)
        else:
            data = _read_text_lightcurve(path)
            lc = lk.LightCurve(time=data[:, 0], flux=data[:, 1])
        lc = lc.remove_nans()
        if len(lc) < 3:
            raise ValueError(f"{path} has fewer than 3 finite cadences")
        pieces.append(lc.remove_outliers(sigma=sigma).normalize(unit="ppm"))
    lc = lk.LightCurveCollection(pieces).stitch(corrector_func=lambda x: x)
    order = np.argsort(lc.time.value, kind="stable")
    lc = lc[order]
    keep = np.concatenate([[True], np.diff(lc.time.value) > 0])
    if not keep.all():
        logger.info("dropped %d repeated cadences where quarters overlap", int((~keep).sum()))
        lc = lc[keep]
    return lc


def _import_lightkurve():
    with warnings.catch_warnings():
        # lightkurve warns at import about an optional PRF dependency we never use
        warnings.filterwarnings("ignore", message=".*tpfmodel submodule.*")
        import lightkurve

    return lightkurve


def _is_fits(path: Path) -> bool:
    """True for a FITS file, plain or gzip-compressed."""
    import gzip

    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(9)
        except (OSError, EOFError):
            return False
    return head == b"SIMPLE  ="


def _read_kepler_fits(path: Path, flux_column: str, lk: Any):
    """One Kepler FITS light curve; any failure of the file is one error naming it."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns about truncation before failing
            with fits.open(path) as hdul:
                header = hdul[0].header
                mission = str(header.get("TELESCOP", header.get("MISSION", ""))).strip()
                kind = hdul[1].header.get("EXTNAME", "") if len(hdul) > 1 else ""
                if mission.lower() == "kepler" and kind.upper() == "LIGHTCURVE":
                    hdul[1].data  # noqa: B018 - reads the table: fails here if truncated
    except Exception as exc:  # astropy raises OSError, TypeError, ValueError, EOFError ...
        raise ValueError(
            f"{path} is not a readable FITS file (truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if mission.lower() != "kepler" or kind.upper() != "LIGHTCURVE":
        raise ValueError(
            f"{path} is not a Kepler light curve file (TELESCOP={mission!r}, "
            f"first extension {kind!r}; expected 'Kepler' and 'LIGHTCURVE')"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=lk.LightkurveWarning)
            return lk.read(path, flux_column=flux_column)
    except Exception as exc:  # lightkurve wraps astropy's errors in LightkurveError
        raise ValueError(
            f"{path}: lightkurve could not read it as a Kepler light curve "
            f"(flux_column={flux_column!r}): {type(exc).__name__}: {exc}"
        ) from None


def _read_text_lightcurve(path: Path) -> np.ndarray:
    """Time (d) and flux columns of a text light curve, refusing power spectra."""
    try:
        data = np.loadtxt(path, ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path} is neither a Kepler FITS light curve nor a numeric two-column "
            f"text file (time in days, flux): {exc}"
        ) from None
    if data.shape[1] < 2:
        raise ValueError(f"{path} has {data.shape[1]} column(s); expected time (d) and flux")
    if _looks_like_power_spectrum(data[:, 0], data[:, 1]):
        raise ValueError(
            f"{path} looks like a power spectrum (frequency, power), not a light curve "
            f"(time in days, flux): its second column is never negative and spans "
            f"{np.nanmin(data[:, 1]):.3g} to {np.nanmax(data[:, 1]):.3g}, and its first runs "
            f"{data[0, 0]:.4g} to {data[-1, 0]:.4g} in even steps like a frequency grid (µHz). "
            "Give the light curve file (e.g. pySYD's *_LC.txt, not *_PS.txt)"
        )
    return data


def _looks_like_power_spectrum(first: np.ndarray, second: np.ndarray) -> bool:
    """Power is never negative and spans decades; a flux column does neither.

    Relative flux sits near 1 (or near 0 with negative values in ppm), so its maximum
    is a few per cent above its median; a periodogram's power is chi-squared
    distributed with a steep granulation background, so its maximum is many times its
    median. The first column of a frequency grid also starts within a few steps of 0.
    """
    good = np.isfinite(first) & np.isfinite(second)
    x, y = first[good], second[good]
    if y.size < 100 or y.min() < 0:
        return False
    median = np.median(y)
    if median <= 0 or y.max() < 20 * median:
        return False
    step = np.median(np.diff(x))
    return bool(step > 0 and 0 <= x[0] <= 10 * step)


# ------------------------------------------------------- weights and νmax


def _positive(name: str, value: Any, unit: str = "uHz") -> np.ndarray:
    """``value`` in ``unit`` (Quantities converted), refused unless positive and finite."""
    arr = _to_value(value, unit, name)
    bad = np.isfinite(arr) & (arr <= 0)
    if bad.any():
        shown = "K" if unit == "K" else "µHz" if unit == "uHz" else unit
        raise ValueError(f"{name} must be positive ({shown}); got {arr[bad].ravel()[:3]}")
    if np.isinf(arr).any():
        raise ValueError(f"{name} must be finite; got infinite values")
    return arr


def expected_dnu(numax: Any, relation: Literal["paper", "reference"] = "reference") -> np.ndarray:
    """Large frequency separation expected from νmax, Δν = a·νmax^b.

    Parameters
    ----------
    numax : array-like
        Frequency of maximum power, µHz (a Quantity is converted).
    relation : {"reference", "paper"}, default="reference"
        ``"reference"``: a = 0.268, b = 0.758 (Huber et al. 2010, SYD pipeline),
        the relation of the released code and of :func:`frequency_edges`.
        ``"paper"``: a = 0.263, b = 0.772 (Stello et al. 2009), as printed in
        Leung et al. (2023).

    Returns
    -------
    ndarray
        Δν in µHz.
    """
    if relation not in DNU_RELATIONS:
        raise ValueError(f"relation must be one of {sorted(DNU_RELATIONS)}; got {relation!r}")
    a, b = DNU_RELATIONS[relation]
    return a * _positive("numax", numax) ** b


def excess_dnu(
    dnu: Any, numax: Any, relation: Literal["paper", "reference"] = "paper"
) -> np.ndarray:
    """Excess large separation: observed Δν minus the Δν expected from νmax.

    Δν_excess = Δν − a·νmax^b (Leung et al. 2023, eq. 7, with the paper's
    Stello et al. 2009 constants by default). At fixed νmax, Δν ∝ M^(-1/4)
    roughly, so the excess tracks mass, and red-clump stars sit apart from
    the red-giant branch.

    Parameters
    ----------
    dnu : array-like
        Observed large frequency separation, µHz (a Quantity is converted).
    numax : array-like
        Frequency of maximum power, µHz (a Quantity is converted).
    relation : {"paper", "reference"}, default="paper"
        See :func:`expected_dnu`.

    Returns
    -------
    ndarray
        Δν_excess in µHz.
    """
    return _positive("dnu", dnu) - expected_dnu(numax, relation)


def _scaling_inputs(numax: Any, dnu: Any, teff: Any) -> tuple[np.ndarray, ...]:
    t = _positive("teff", _check_teff(_to_value(teff, "K", "teff")), "K")
    return _positive("numax", numax), _positive("dnu", dnu), t


def _solar(numax_sun: Any, dnu_sun: Any, teff_sun: Any) -> tuple[float, float, float]:
    return (
        float(_positive("numax_sun", numax_sun)),
        float(_positive("dnu_sun", dnu_sun)),
        float(_check_teff(_to_value(teff_sun, "K", "teff_sun"), "teff_sun")),
    )


def scaling_mass(
    numax: Any,
    dnu: Any,
    teff: Any,
    *,
    numax_sun: float = SOLAR_NUMAX,
    dnu_sun: float = SOLAR_DNU,
    teff_sun: float = SOLAR_TEFF,
) -> np.ndarray:
    """Asteroseismic scaling-relation mass (Leung et al. 2023, eq. 3).

    M / M☉ = (νmax/νmax,☉)³ (Δν/Δν☉)⁻⁴ (Teff/Teff,☉)^1.5, with the APOKASC-2
    solar values νmax,☉ = 3076 µHz, Δν☉ = 135.146 µHz and Teff,☉ = 5772 K
    (the released code uses 5780 K). No Δν correction factor is applied.

    Parameters
    ----------
    numax, dnu : array-like
        νmax and Δν, µHz (Quantities are converted).
    teff : array-like
        Effective temperature, K (a Quantity is converted, °C included); values
        outside 2,500-10,000 K are refused.
    numax_sun, dnu_sun : float
        Solar νmax and Δν, µHz.
    teff_sun : float
        Solar effective temperature, K.

    Returns
    -------
    ndarray
        Mass in solar masses.
    """
    nu, d, t = _scaling_inputs(numax, dnu, teff)
    numax_sun, dnu_sun, teff_sun = _solar(numax_sun, dnu_sun, teff_sun)
    return (nu / numax_sun) ** 3 * (d / dnu_sun) ** -4 * (t / teff_sun) ** 1.5


def scaling_radius(
    numax: Any,
    dnu: Any,
    teff: Any,
    *,
    numax_sun: float = SOLAR_NUMAX,
    dnu_sun: float = SOLAR_DNU,
    teff_sun: float = SOLAR_TEFF,
) -> np.ndarray:
    """Asteroseismic scaling-relation radius.

    R / R☉ = (νmax/νmax,☉) (Δν/Δν☉)⁻² (Teff/Teff,☉)^0.5, with the solar values
    of :func:`scaling_mass`.

    Parameters
    ----------
    numax, dnu : array-like
        νmax and Δν, µHz (Quantities are converted).
    teff : array-like
        Effective temperature, K (a Quantity is converted, °C included); values
        outside 2,500-10,000 K are refused.
    numax_sun, dnu_sun : float
        Solar νmax and Δν, µHz.
    teff_sun : float
        Solar effective temperature, K.

    Returns
    -------
    ndarray
        Radius in solar radii.
    """
    nu, d, t = _scaling_inputs(numax, dnu, teff)
    numax_sun, dnu_sun, teff_sun = _solar(numax_sun, dnu_sun, teff_sun)
    return (nu / numax_sun) * (d / dnu_sun) ** -2 * (t / teff_sun) ** 0.5


def _check_frequency(frequency: Any) -> np.ndarray:
    if frequency is None:
        return frequency_grid()
    f = _to_value(frequency, "uHz", "frequency")
    if f.ndim != 1 or f.size < 1:
        raise ValueError(f"frequency must be a 1-D array of µHz values; got shape {f.shape}")
    return f


def numax_weights(numax: Any, frequency: Any = None) -> np.ndarray:
    """Per-pixel loss weights that emphasise the oscillation envelope.

    ``w = 1 + exp(-(ν - νmax)² / (2 s²))`` with ``s = 2·Δν(νmax)`` from the
    released code's relation (:func:`expected_dnu`, ``"reference"``), so the
    weights lie in [1, 2] and reach 2 at νmax.

    Parameters
    ----------
    numax : float or array-like of shape (n_stars,)
        νmax in µHz (a Quantity is converted). A NaN νmax (unknown) gives uniform weights of 1.
    frequency : array-like of shape (n_pixels,), optional
        Frequencies in µHz (a Quantity is converted); defaults to :func:`frequency_grid`.

    Returns
    -------
    ndarray of shape (n_pixels,) or (n_stars, n_pixels), float32
    """
    nu = _positive("numax", numax)
    f = _check_frequency(frequency)
    scalar = nu.ndim == 0
    nu = np.atleast_1d(nu)
    if nu.ndim != 1:
        raise ValueError(f"numax must be a scalar or 1-D array; got shape {nu.shape}")
    known = np.isfinite(nu)
    width = np.full(nu.shape, np.nan)
    width[known] = 2.0 * expected_dnu(nu[known], "reference")
    with np.errstate(invalid="ignore"):
        bump = np.exp(-0.5 * ((f[None, :] - nu[:, None]) / width[:, None]) ** 2)
    w = (1.0 + np.nan_to_num(bump, nan=0.0)).astype(np.float32)
    return w[0] if scalar else w


@cache
def _numax_filter() -> tuple[np.ndarray, np.ndarray]:
    """Matched filter: normalised Gaussian envelopes of FWHM 0.66·ν^0.88 on every bin."""
    f = frequency_grid()
    candidates = f[(f > 3.0) & (f < 268.0)]
    width = ENVELOPE_FWHM_COEFF * candidates**ENVELOPE_FWHM_EXPONENT / (2 * np.sqrt(2 * np.log(2)))
    kernel = np.exp(-0.5 * ((f[None, :] - candidates[:, None]) / width[:, None]) ** 2)
    kernel[:, 0] = 0.0  # bin 0 is always empty
    kernel /= kernel.sum(axis=1, keepdims=True)
    return candidates, kernel.T.copy()


def estimate_numax(log_psd: Any) -> np.ndarray:
    """Estimate νmax from 2092-pixel log PSDs.

    The flattened PSD is the power divided by the local background, so away
    from the oscillation modes its smoothed value sits near 1 and the modes
    rise above it. The estimate is the frequency that maximises the mean
    excess ``exp(log_psd) - 1`` under a Gaussian window shaped like the
    oscillation envelope itself, FWHM = 0.66·ν^0.88 µHz (Mosser et al. 2012):
    a matched filter. The peak is refined by a parabola in log frequency.
    Candidates run from 3 to 268 µHz.

    On white-noise light curves with an injected envelope it recovers νmax to
    1-3 % between 60 and 200 µHz. Where a granulation background falls steeply
    across the envelope, as in real giants and in the simulator, dividing by the
    published background (median windows of ±0.01 dex) moves the envelope's peak
    to higher frequency, so the estimate runs high: on the simulated survey by a
    median +4 to +5 % at 100-250 µHz, +7 % at 40-100 µHz, +9 % at 20-40 µHz and
    +14 % below 20 µHz, with a scatter of 2-3 % (6 % below 20 µHz); the doctest
    in the user guide's PSD page measures it. Use it to rank and flag stars, and
    catalogue νmax values for science. On the bundled real light curves it gives
    107.5 µHz for KIC 11618103 (published 106.3-106.9 µHz) and
    137.1 µHz for the 127 days of KIC 9145861 (APOKASC-2: 132.1 µHz, from four
    years).

    Parameters
    ----------
    log_psd : array-like of shape (2092,) or (n_stars, 2092)
        Natural-log PSD on :func:`frequency_grid`; NaN pixels are ignored.

    Returns
    -------
    float or ndarray of shape (n_stars,)
        νmax in µHz.
    """
    x = np.asarray(log_psd, dtype=float)
    if x.shape[-1] != N_BINS or x.ndim not in (1, 2):
        raise ValueError(
            f"log_psd must have shape ({N_BINS},) or (n_stars, {N_BINS}); got {x.shape}"
        )
    scalar = x.ndim == 1
    x = np.atleast_2d(x)
    if np.isnan(x[:, 1:]).all(axis=1).any():
        raise ValueError("log_psd is NaN at every pixel for at least one star")
    excess = np.nan_to_num(np.expm1(x), nan=0.0)
    candidates, kernel = _numax_filter()
    score = excess @ kernel
    i = np.clip(np.argmax(score, axis=1), 1, candidates.size - 2)
    rows = np.arange(x.shape[0])
    y0, y1, y2 = score[rows, i - 1], score[rows, i], score[rows, i + 1]
    lx = np.log(candidates)
    denom = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(denom < 0, 0.5 * (y0 - y2) / denom, 0.0)
    step = 0.5 * (lx[i + 1] - lx[i - 1])
    numax = np.exp(lx[i] + np.clip(shift, -1, 1) * step)
    return float(numax[0]) if scalar else numax
