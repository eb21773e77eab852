"""Spectrum-quality checks made before a spectrum is encoded.

Each check compares a continuum-normalised spectrum with the mean spectrum of the
training set (e.g. :attr:`skages.encoder.SpectrumToPSDEncoder.mean_`) or with its own
stated noise, and sets one bit of :class:`QualityFlag`:

- ``MASKED``: more masked (NaN) pixels than ``max_masked_fraction``;
- ``BAD_NORMALISATION``: the median flux is far from a continuum of 1;
- ``LINES_UNLIKE_TRAINING``: the line depths, the slope ``b`` of the fit
  ``flux = a + b × reference``, are outside ``line_depth_range`` (a featureless spectrum
  has ``b ≈ 0``; the real APOGEE M dwarfs in the test data have ``|b| < 0.11`` against a
  giant mean spectrum; simulated giants range over 0.55–1.8);
- ``NOISE_MISMATCH``: the pixel-to-pixel scatter of the residual of that fit (1.4826 ×
  the median absolute second difference over runs of three good pixels, which lines of a
  few pixels hardly touch) is more than ``max_noise_ratio`` times the noise the star's
  error array or S/N states.

:func:`spectrum_quality` returns the flags and every statistic; :func:`quality_flags`
returns the same flags, bit for bit, about three times faster (it decides each median's
side of a bound by counting), for survey-scale runs.

The thresholds were chosen with measurements on simulated giants (1,200 stars of
:func:`skages.datasets.make_apokasc`, S/N 30–1,100) and the real spectra in
``../shared/data/apogee_fixtures``; ``docs/user_guide/trust.rst`` lists them. This module
works on arrays only and imports no estimator.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["QualityFlag", "QualityThresholds", "quality_flags", "spectrum_quality"]

logger = logging.getLogger(__name__)


class QualityFlag(enum.IntFlag):
    """Bits set by :func:`spectrum_quality` (0: the spectrum passed every check)."""

    #: More masked pixels than ``QualityThresholds.max_masked_fraction``.
    MASKED = 1
    #: Median flux outside ``QualityThresholds.level_range`` (not continuum-normalised).
    BAD_NORMALISATION = 2
    #: Line depths against the training mean spectrum outside ``line_depth_range``.
    LINES_UNLIKE_TRAINING = 4
    #: Pixel scatter larger than ``max_noise_ratio`` times the stated noise.
    NOISE_MISMATCH = 8


_MESSAGES = {
    QualityFlag.MASKED: "masked fraction {masked_fraction:.2f} > {max_masked_fraction}",
    QualityFlag.BAD_NORMALISATION: "median flux {level:.3f} outside {level_range}",
    QualityFlag.LINES_UNLIKE_TRAINING: (
        "line depth {line_depth:.2f} x the training mean spectrum, outside {line_depth_range}"
    ),
    QualityFlag.NOISE_MISMATCH: (
        "pixel scatter {noise_ratio:.1f} x the stated noise (> {max_noise_ratio})"
    ),
}


@dataclass(frozen=True)
class QualityThresholds:
    """Bounds of :func:`spectrum_quality`; a bound of None switches its check off.

    Parameters
    ----------
    max_masked_fraction : float or None, default=0.3
        Largest fraction of masked pixels (simulated giants: at most 0.04; the real
        APOGEE spectra in the test data: 0.01–0.18).
    level_range : tuple of float or None, default=(0.8, 1.2)
        Range of the median flux (continuum units; simulated giants 0.90–0.99, real
        spectra 1.00–1.01).
    line_depth_range : tuple of float or None, default=(0.35, 3.0)
        Range of the slope b of ``flux = a + b × reference`` (dimensionless).
    max_noise_ratio : float or None, default=3.0
        Largest ratio of the measured pixel scatter to the stated noise (simulated
        giants: at most 1.5; a real DR14 giant: 0.89; ``benchmarks/bench_quality.py``).
    """

    max_masked_fraction: float | None = 0.3
    level_range: tuple[float, float] | None = (0.8, 1.2)
    line_depth_range: tuple[float, float] | None = (0.35, 3.0)
    max_noise_ratio: float | None = 3.0

    def __post_init__(self) -> None:
        for name in ("level_range", "line_depth_range"):
            value = getattr(self, name)
            if value is None:
                continue
            lo, hi = (float(v) for v in value)
            if not lo < hi:
                raise ValueError(f"{name} must be (low, high) with low < high; got {value!r}")
            object.__setattr__(self, name, (lo, hi))
        frac = self.max_masked_fraction
        if frac is not None and not 0.0 <= frac <= 1.0:
            raise ValueError(f"max_masked_fraction must be in [0, 1] or None; got {frac!r}")
        ratio = self.max_noise_ratio
        if ratio is not None and not ratio > 0:
            raise ValueError(f"max_noise_ratio must be > 0 or None; got {ratio!r}")


def spectrum_quality(
    spectra: Any,
    reference: Any,
    *,
    spectra_err: Any = None,
    snr: Any = None,
    thresholds: QualityThresholds | None = None,
    ids: Any = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Check continuum-normalised spectra against the training mean spectrum.

    Parameters
    ----------
    spectra : array-like of shape (n_stars, n_pixels)
        Continuum-normalised flux (dimensionless); NaN marks a masked pixel.
    reference : array-like of shape (n_pixels,)
        The training mean spectrum, e.g. ``encoder.mean_``; NaN pixels are skipped.
    spectra_err : array-like of shape (n_stars, n_pixels), optional
        1σ of each pixel (same units); the stated noise is its median over good pixels.
    snr : array-like of shape (n_stars,), optional
        Signal-to-noise ratio per pixel (e.g. SNREV) when ``spectra_err`` is not given:
        the stated noise is 1 / S/N. Without either, the noise check is skipped.
    thresholds : QualityThresholds, optional
        The bounds; :class:`QualityThresholds` defaults if None.
    ids : array-like of shape (n_stars,), optional
        Names of the stars for the log messages (row numbers if None).

    Returns
    -------
    flags : ndarray of shape (n_stars,), int64
        :class:`QualityFlag` bits per star.
    stats : dict of ndarray of shape (n_stars,)
        ``masked_fraction``, ``level`` (median flux), ``line_depth`` (slope b),
        ``noise_ratio`` (NaN where no noise is stated).

    Examples
    --------
    >>> import numpy as np
    >>> from skages.quality import QualityFlag, spectrum_quality
    >>> rng = np.random.default_rng(0)
    >>> reference = 1 - 0.2 * rng.random(500) ** 8          # absorption lines
    >>> star = reference + rng.normal(scale=0.01, size=500)
    >>> flags, _ = spectrum_quality(np.stack([star, np.full(500, 0.5)]), reference, snr=[100, 100])
    >>> [QualityFlag(int(f)) for f in flags]  # doctest: +NORMALIZE_WHITESPACE
    [<QualityFlag: 0>,
     <QualityFlag.BAD_NORMALISATION|LINES_UNLIKE_TRAINING: 6>]
    """
    t = QualityThresholds() if thresholds is None else thresholds
    flux, ref, noise = _validate(spectra, reference, spectra_err, snr)
    reference = _Reference(ref)
    n = flux.shape[0]
    stats = {
        "masked_fraction": np.empty(n),
        "level": np.full(n, np.nan),
        "line_depth": np.full(n, np.nan),
        "noise_ratio": np.full(n, np.nan),
    }
    for rows in _blocks(n):
        fit = _LinearFit(flux[rows], reference)
        stats["masked_fraction"][rows] = fit.masked_fraction
        stats["line_depth"][rows] = fit.slope
        stats["level"][rows] = fit.median_level(np.arange(fit.n))
        stats["noise_ratio"][rows] = fit.scatter(np.arange(fit.n)) / noise[rows]
    flags = _flags_from_stats(stats, t)
    _log(flags, stats, t, ids)
    return flags, stats


def quality_flags(
    spectra: np.ndarray,
    reference: np.ndarray,
    *,
    snr: Any = None,
    thresholds: QualityThresholds | None = None,
    ids: Any = None,
) -> np.ndarray:
    """The flags of :func:`spectrum_quality`, bit for bit, without computing every median.

    Each median is compared with its bound by counting the values on either side of the
    bound (one vectorised pass over a block of spectra); only rows whose two middle values
    straddle a bound, and the flagged rows (for the log), get their medians computed.
    The catalogue uses it: there the three medians per spectrum of
    :func:`spectrum_quality` cost nearly as much as encoding it.

    Parameters
    ----------
    spectra : array-like of shape (n_stars, n_pixels)
        Continuum-normalised flux (dimensionless); NaN marks a masked pixel.
    reference : array-like of shape (n_pixels,)
        The training mean spectrum, e.g. ``encoder.mean_``; NaN pixels are skipped.
    snr : array-like of shape (n_stars,), optional
        Signal-to-noise ratio per pixel (e.g. SNREV): the stated noise is 1 / S/N.
        Without it the noise check is skipped.
    thresholds : QualityThresholds, optional
        The bounds; :class:`QualityThresholds` defaults if None.
    ids : array-like of shape (n_stars,), optional
        Names of the stars for the log messages (row numbers if None).

    Returns
    -------
    flags : ndarray of shape (n_stars,), int64
        :class:`QualityFlag` bits per star, equal to those of :func:`spectrum_quality`.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.quality import quality_flags, spectrum_quality
    >>> rng = np.random.default_rng(0)
    >>> reference = 1 - 0.2 * rng.random(500) ** 8
    >>> spectra = reference + rng.normal(scale=0.01, size=(3, 500))
    >>> spectra[1] = 0.5
    >>> quality_flags(spectra, reference, snr=[100, 100, 100]).tolist()
    [0, 6, 0]
    >>> bool((spectrum_quality(spectra, reference, snr=[100] * 3)[0] == [0, 6, 0]).all())
    True
    """
    t = QualityThresholds() if thresholds is None else thresholds
    flux, ref, noise = _validate(spectra, reference, None, snr)
    reference = _Reference(ref)
    n = flux.shape[0]
    flags = np.zeros(n, dtype=np.int64)
    logged: dict[str, list[np.ndarray]] = {}
    for rows in _blocks(n):
        fit = _LinearFit(flux[rows], reference)
        stats = {
            "masked_fraction": fit.masked_fraction,
            "line_depth": fit.slope,
            "level": np.full(fit.n, np.nan),
            "noise_ratio": np.full(fit.n, np.nan),
        }
        block = _flags_from_stats(stats, t)  # the two checks without a median
        if t.level_range is not None:
            lo, hi = t.level_range
            below, undecided_lo = _median_beyond(fit.y < lo, fit.ok)
            above, undecided_hi = _median_beyond(fit.y > hi, fit.ok)
            block[below | above] |= QualityFlag.BAD_NORMALISATION
            undecided = np.flatnonzero(undecided_lo | undecided_hi)
            level = fit.median_level(undecided)
            with np.errstate(invalid="ignore"):
                out = (level < lo) | (level > hi)
            block[undecided[out]] |= QualityFlag.BAD_NORMALISATION
        if t.max_noise_ratio is not None:
            # the ratio of each |d2| to the noise, computed as spectrum_quality computes
            # it from the median (monotonic, so the median's side of the bound is exact)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = _MAD_TO_SIGMA * fit.abs_d2 / noise[rows][:, None]
                above, undecided = _median_beyond(ratio > t.max_noise_ratio, fit.d2_ok)
            block[above] |= QualityFlag.NOISE_MISMATCH
            undecided = np.flatnonzero(undecided)
            with np.errstate(invalid="ignore"):
                out = fit.scatter(undecided) / noise[rows][undecided] > t.max_noise_ratio
            block[undecided[out]] |= QualityFlag.NOISE_MISMATCH
        flags[rows] = block
        hit = np.flatnonzero(block)
        if hit.size:  # the values for the log, of flagged rows only
            stats = {k: v[hit] for k, v in stats.items()}
            stats["level"] = fit.median_level(hit)
            stats["noise_ratio"] = fit.scatter(hit) / noise[rows][hit]
            for k, v in stats.items():
                logged.setdefault(k, []).append(v)
            logged.setdefault("_rows", []).append(rows.start + hit)
    if logged:
        where = np.concatenate(logged.pop("_rows"))
        names = np.arange(n).astype(str) if ids is None else np.asarray(ids).astype(str)
        _log(flags[where], {k: np.concatenate(v) for k, v in logged.items()}, t, names[where])
    return flags


#: 1 / Φ⁻¹(3/4): the median absolute value of a zero-mean Gaussian is 0.6745 σ.
_MAD_TO_SIGMA = 1.482602218505602
#: Rows per block: the block's arrays of (32, 7514) float64 stay in the processor's cache
#: (measured: 0.09 ms a star with 32 rows, 0.14 with 256, on an AMD EPYC)
_BLOCK = 32
#: Fewer good pixels than this: no level, line depth or noise is measured.
_MIN_PIXELS = 10


def _validate(spectra, reference, spectra_err, snr) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectra (as given: converted to float64 block by block), float64 reference, and
    the stated noise per star (NaN where none)."""
    flux = np.asarray(spectra)
    if not np.issubdtype(flux.dtype, np.number):
        flux = flux.astype(np.float64)
    if flux.ndim != 2:
        raise ValueError(f"spectra must be 2-D (n_stars, n_pixels); got shape {flux.shape}")
    n, n_pixels = flux.shape
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != (n_pixels,):
        raise ValueError(
            f"reference must have shape ({n_pixels},) like a spectrum; got {ref.shape}"
        )
    noise = np.full(n, np.nan)
    if spectra_err is not None:
        err = np.asarray(spectra_err, dtype=np.float64)
        if err.shape != flux.shape:
            raise ValueError(f"spectra_err must have shape {flux.shape}; got {err.shape}")
        if (err < 0).any():
            raise ValueError("spectra_err must be non-negative (standard deviations)")
        with np.errstate(invalid="ignore"):
            good = np.isfinite(flux) & np.isfinite(err) & (err > 0)
        for i in range(n):
            if good[i].any():
                noise[i] = np.median(err[i, good[i]])
    elif snr is not None:
        s = np.asarray(snr, dtype=np.float64).reshape(-1)
        if s.shape != (n,):
            raise ValueError(f"snr must have shape ({n},); got {s.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            noise = np.where(s > 0, 1.0 / s, np.nan)
    return flux, ref, noise


class _Reference:
    """What the fit needs of the reference spectrum: its good pixels, the reference
    centred on its mean (so the per-row sums of the fit stay small and lose no precision
    to cancellation) and the second differences of that."""

    def __init__(self, ref: np.ndarray) -> None:
        self.ok = np.isfinite(ref)
        self.centred = ref - (ref[self.ok].mean() if self.ok.any() else 0.0)
        self.d2 = self.centred[2:] - 2.0 * self.centred[1:-1] + self.centred[:-2]


def _blocks(n: int) -> list[slice]:
    return [slice(start, min(start + _BLOCK, n)) for start in range(0, n, _BLOCK)]


class _LinearFit:
    """The fit ``flux = a + b × reference`` of a block of spectra, vectorised.

    ``slope`` is ``b`` (NaN for fewer than ``_MIN_PIXELS`` good pixels); ``abs_d2`` the
    absolute second differences of the fit's residual divided by √6 (white noise of σ
    gives σ), defined where all three pixels are good (``d2_ok``): a masked pixel is
    never bridged. The second differences of ``a + b × reference`` are ``b`` times those
    of the reference, so the residual's are the flux's less ``b × d2(reference)``.
    """

    def __init__(self, flux: np.ndarray, ref: _Reference) -> None:
        flux = np.asarray(flux, dtype=np.float64)
        self.n, n_pixels = flux.shape
        ok = np.isfinite(flux)
        ok &= ref.ok
        count = ok.sum(axis=1)
        self.masked_fraction = 1.0 - count / n_pixels if n_pixels else np.ones(self.n)
        enough = count >= _MIN_PIXELS
        ok &= enough[:, None]
        m = np.maximum(count, 1)
        y = np.where(ok, flux, 0.0)
        x = np.where(ok, ref.centred, 0.0)
        xbar, ybar = x.sum(axis=1) / m, y.sum(axis=1) / m
        sxx = np.einsum("ij,ij->i", x, x) - count * xbar**2
        sxy = np.einsum("ij,ij->i", x, y) - count * xbar * ybar
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(sxx > 0, sxy / sxx, 0.0)
        self.slope = np.where(enough, slope, np.nan)
        d2 = flux[:, 2:] - 2.0 * flux[:, 1:-1]
        d2 += flux[:, :-2]
        d2 -= slope[:, None] * ref.d2
        d2 *= 1.0 / np.sqrt(6.0)
        self.abs_d2 = np.abs(d2, out=d2)
        self.d2_ok = np.isfinite(d2)
        self.d2_ok &= enough[:, None]
        self.ok, self.y = ok, y

    def median_level(self, rows: np.ndarray) -> np.ndarray:
        """Median flux over good pixels of ``rows`` (NaN where too few)."""
        return _row_medians(self.y, self.ok, rows)

    def scatter(self, rows: np.ndarray) -> np.ndarray:
        """Robust σ of the fit's residual, ``1.4826 × median |d2|``, of ``rows``."""
        return _MAD_TO_SIGMA * _row_medians(self.abs_d2, self.d2_ok, rows)


def _median_beyond(beyond: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose median of the ``valid`` values surely lies beyond a bound, and the rows
    it cannot tell without the median; ``beyond`` marks each value beyond the bound."""
    count = valid.sum(axis=1)
    n_beyond = (beyond & valid).sum(axis=1)
    # the median averages the sorted values at (m - 1) // 2 and m // 2: both lie beyond
    # the bound when more than m // 2 values do, neither when at most (m - 1) // 2 do;
    # only an even m with exactly m / 2 beyond needs the median (none without values)
    sure = n_beyond > count // 2
    undecided = (n_beyond > (count - 1) // 2) & ~sure & (count > 0)
    return sure, undecided


def _row_medians(values, valid, rows) -> np.ndarray:
    out = np.full(len(rows), np.nan)
    for k, i in enumerate(rows):
        if valid[i].any():
            out[k] = np.median(values[i, valid[i]])
    return out


def _flags_from_stats(stats: dict[str, np.ndarray], t: QualityThresholds) -> np.ndarray:
    flags = np.zeros(stats["masked_fraction"].size, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        if t.max_masked_fraction is not None:
            flags[stats["masked_fraction"] > t.max_masked_fraction] |= QualityFlag.MASKED
        if t.level_range is not None:
            lo, hi = t.level_range
            level = stats["level"]
            flags[(level < lo) | (level > hi)] |= QualityFlag.BAD_NORMALISATION
        if t.line_depth_range is not None:
            lo, hi = t.line_depth_range
            depth = stats["line_depth"]
            flags[(depth < lo) | (depth > hi)] |= QualityFlag.LINES_UNLIKE_TRAINING
        if t.max_noise_ratio is not None:
            flags[stats["noise_ratio"] > t.max_noise_ratio] |= QualityFlag.NOISE_MISMATCH
    return flags


def _log(flags, stats, t: QualityThresholds, ids) -> None:
    """One warning per check that fired: how many stars, and the first few with their value."""
    if not flags.any():
        return
    names = np.arange(flags.size).astype(str) if ids is None else np.asarray(ids).astype(str)
    values = vars(t)
    for bit, template in _MESSAGES.items():
        hit = np.flatnonzero(flags & bit)
        if hit.size:
            shown = "; ".join(
                f"{names[i]}: " + template.format(**{k: v[i] for k, v in stats.items()}, **values)
                for i in hit[:3]
            )
            more = f" and {hit.size - 3} more" if hit.size > 3 else ""
            logger.warning("%s on %d spectra (%s%s)", bit.name, hit.size, shown, more)
