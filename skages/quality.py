"""Spectrum-quality checks made before a spectrum is encoded.

Each check compares a continuum-normalised spectrum with the mean spectrum of the
training set (e.g. :attr:`skages.encoder.SpectrumToPSDEncoder.mean_`) or with its own
stated noise, and sets one bit of :class:`QualityFlag`:

- ``MASKED``: more masked (NaN) pixels than ``max_masked_fraction``;
- ``BAD_NORMALISATION``: the median flux is far from a continuum of 1;
- ``LINES_UNLIKE_TRAINING``: the line depths, the slope ``b`` of the fit
  ``flux = a + b × reference``, are outside ``line_depth_range`` (a featureless spectrum
  has ``b ≈ 0``; the real APOGEE M dwarfs in the test data have ``|b| < 0.11`` against a
  giant mean spectrum; simulated training giants range over 0.65–1.9);
- ``NOISE_MISMATCH``: the pixel-to-pixel scatter of the residual of that fit (second
  differences, which lines of a few pixels hardly touch) is more than ``max_noise_ratio``
  times the noise the star's error array or S/N states.

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

__all__ = ["QualityFlag", "QualityThresholds", "spectrum_quality"]

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
        giants: at most 1.95; a real DR14 giant: 0.87).
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
    flux = np.asarray(spectra, dtype=np.float64)
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
    finite = np.isfinite(flux) & np.isfinite(ref)
    stats = {
        "masked_fraction": 1.0 - finite.mean(axis=1) if n_pixels else np.ones(n),
        "level": np.full(n, np.nan),
        "line_depth": np.full(n, np.nan),
        "noise_ratio": np.full(n, np.nan),
    }
    for i in range(n):
        ok = finite[i]
        if ok.sum() < 10:
            continue
        y, x = flux[i, ok], ref[ok]
        stats["level"][i] = np.median(y)
        xc = x - x.mean()
        denom = float(xc @ xc)
        slope = float(xc @ (y - y.mean())) / denom if denom > 0 else 0.0
        stats["line_depth"][i] = slope
        residual = y - y.mean() - slope * xc
        # second differences: a smooth mismatch of lines cancels, white noise of σ gives σ√6
        d2 = (residual[2:] - 2 * residual[1:-1] + residual[:-2]) / np.sqrt(6.0)
        scatter = 1.482602218505602 * np.median(np.abs(d2 - np.median(d2)))
        if np.isfinite(noise[i]) and noise[i] > 0:
            stats["noise_ratio"][i] = scatter / noise[i]
    flags = np.zeros(n, dtype=np.int64)
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
    _log(flags, stats, t, ids)
    return flags, stats


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
