"""The applicability cuts (:class:`CatalogueCuts`) and the ``SKAGES_FLAG`` bits."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from skages.quality import QualityFlag, QualityThresholds

_CUT_LABELS = ("logg", "snrev")


class CatalogueFlag(enum.IntFlag):
    """Bits of the catalogue's ``SKAGES_FLAG`` column: why a row has no latent or no age,
    or (bits 128 and up, warnings) why its latent and age should not be trusted.

    A row with ``SKAGES_FLAG == 0`` has latent coordinates and an age that passed every
    check. The warning bits leave the values in place; see the docs page "How far to trust
    an age".
    """

    #: No spectrum for this star: not in the survey file or the folder.
    NO_SPECTRUM = 1
    #: Spectrum unusable: unreadable file, continuum fit failed, infinite values, or
    #: fewer finite pixels than ``CatalogueCuts.min_finite_fraction``.
    BAD_SPECTRUM = 2
    #: log g or SNREV missing, so the applicability cuts cannot be applied.
    NO_CUT_LABELS = 4
    #: Outside the latent cuts (log g or SNREV): no latent, no age.
    LATENT_CUT = 8
    #: Outside the age cut (log g too low): latent only.
    AGE_CUT = 16
    #: Teff, [Fe/H] (or another label the model needs) or their errors missing or
    #: negative: latent only.
    NO_MODEL_LABELS = 32
    #: The model raised an error on this row (logged).
    MODEL_FAILED = 64
    #: Warning: the star's inputs (latent coordinates and σ, Teff, [Fe/H]) lie outside
    #: the training set: applicability score > ``CatalogueCuts.max_applicability``.
    OUTSIDE_TRAINING = 128
    #: Warning: more masked pixels than ``CatalogueCuts.max_masked_fraction``.
    MASKED_PIXELS = 256
    #: Warning: median flux off 1 by more than ``CatalogueCuts.max_level_offset``.
    BAD_NORMALISATION = 512
    #: Warning: line depths against the training mean spectrum outside
    #: ``CatalogueCuts.min_line_depth`` … ``max_line_depth`` (featureless, another kind of star).
    LINES_UNLIKE_TRAINING = 1024
    #: Warning: pixel scatter above ``CatalogueCuts.max_noise_ratio`` times 1 / SNREV.
    NOISE_MISMATCH = 2048


_FLAG_HELP = {
    CatalogueFlag.NO_SPECTRUM: "no spectrum for this star",
    CatalogueFlag.BAD_SPECTRUM: "spectrum unreadable or unusable",
    CatalogueFlag.NO_CUT_LABELS: "log g or SNREV missing",
    CatalogueFlag.LATENT_CUT: "outside the latent cuts (log g, SNREV)",
    CatalogueFlag.AGE_CUT: "outside the age cut (log g)",
    CatalogueFlag.NO_MODEL_LABELS: "Teff/[Fe/H] or their errors missing",
    CatalogueFlag.MODEL_FAILED: "the model failed on this row",
    CatalogueFlag.OUTSIDE_TRAINING: "warning: inputs outside the training set",
    CatalogueFlag.MASKED_PIXELS: "warning: many masked pixels",
    CatalogueFlag.BAD_NORMALISATION: "warning: spectrum not continuum-normalised",
    CatalogueFlag.LINES_UNLIKE_TRAINING: "warning: lines unlike the training spectra",
    CatalogueFlag.NOISE_MISMATCH: "warning: noise inconsistent with SNREV",
}
#: The warning bits: a row with only these set still has its latent and age.
WARNING_FLAGS = (
    CatalogueFlag.OUTSIDE_TRAINING
    | CatalogueFlag.MASKED_PIXELS
    | CatalogueFlag.BAD_NORMALISATION
    | CatalogueFlag.LINES_UNLIKE_TRAINING
    | CatalogueFlag.NOISE_MISMATCH
)
#: Each spectrum-quality bit of skages.quality and its catalogue bit.
_QUALITY_BITS = {
    QualityFlag.MASKED: CatalogueFlag.MASKED_PIXELS,
    QualityFlag.BAD_NORMALISATION: CatalogueFlag.BAD_NORMALISATION,
    QualityFlag.LINES_UNLIKE_TRAINING: CatalogueFlag.LINES_UNLIKE_TRAINING,
    QualityFlag.NOISE_MISMATCH: CatalogueFlag.NOISE_MISMATCH,
}


@dataclass(frozen=True)
class CatalogueCuts:
    """Where the age model applies (Leung et al. 2023, §5): the applicability cuts.

    Every bound may be None to switch it off.

    Parameters
    ----------
    latent_logg_min, latent_logg_max : float or None, default=1.5 and 3.6
        Latent coordinates only for ``latent_logg_min < log g < latent_logg_max``
        (log g in dex(cm s⁻²)).
    latent_snr_min : float or None, default=30
        Latent coordinates only for ``SNREV > latent_snr_min``.
    age_logg_min : float or None, default=2.5
        Ages only where also ``log g >= age_logg_min`` (and the labels the model needs,
        Teff in K and [Fe/H] in dex with their errors, exist).
    min_finite_fraction : float, default=0.5
        A spectrum with fewer finite (unmasked) pixels than this fraction is unusable.
    max_masked_fraction, max_level_offset, min_line_depth, max_line_depth, max_noise_ratio \
: float or None, default=0.3, 0.2, 0.35, 3.0 and 3.0
        The spectrum-quality checks of :func:`skages.quality.spectrum_quality` (the
        noise is compared with 1 / SNREV; the median flux must lie within
        ``1 ± max_level_offset``): warning bits, the values are kept.
    max_applicability : float or None, default=1.0
        ``OUTSIDE_TRAINING`` above this applicability score (the forest's
        :meth:`~skages.forest.ProbabilisticForestRegressor.applicability`): warning bit.

    Examples
    --------
    >>> from skages.catalogue import CatalogueCuts
    >>> CatalogueCuts().latent_logg_min, CatalogueCuts().age_logg_min
    (1.5, 2.5)
    >>> cuts = CatalogueCuts.from_strings(["latent_snr_min=50", "age_logg_min=none"])
    >>> cuts.latent_snr_min, cuts.age_logg_min is None
    (50.0, True)
    """

    latent_logg_min: float | None = 1.5
    latent_logg_max: float | None = 3.6
    latent_snr_min: float | None = 30.0
    age_logg_min: float | None = 2.5
    min_finite_fraction: float = 0.5
    max_masked_fraction: float | None = 0.3
    max_level_offset: float | None = 0.2
    min_line_depth: float | None = 0.35
    max_line_depth: float | None = 3.0
    max_noise_ratio: float | None = 3.0
    max_applicability: float | None = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name != "min_finite_fraction":
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
                raise ValueError(f"cut {f.name} must be a number or None; got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if not 0.0 <= self.min_finite_fraction <= 1.0:
            raise ValueError(
                f"cut min_finite_fraction must be in [0, 1]; got {self.min_finite_fraction}"
            )
        lo, hi = self.latent_logg_min, self.latent_logg_max
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"cut latent_logg_min ({lo}) must be below latent_logg_max ({hi})")

    @classmethod
    def none(cls) -> CatalogueCuts:
        """No cuts: latent and ages for every usable spectrum with the model's labels."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**dict.fromkeys(names) | {"min_finite_fraction": 0.0})

    def to_dict(self) -> dict[str, float | None]:
        """The cuts as a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_strings(cls, items: Sequence[str], base: CatalogueCuts | None = None):
        """Cuts from ``"name=value"`` strings (``value`` a number or ``none``).

        Parameters
        ----------
        items : sequence of str
            E.g. ``["latent_snr_min=50", "age_logg_min=none"]``.
        base : CatalogueCuts, optional
            Cuts to start from; the paper's by default.

        Returns
        -------
        CatalogueCuts
        """
        values = (base or cls()).to_dict()
        for item in items:
            name, sep, text = str(item).partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in values:
                raise ValueError(
                    f"cut {item!r} must be NAME=VALUE with NAME among {sorted(values)}"
                )
            text = text.strip()
            if text.lower() in ("none", "off", ""):
                values[name] = None if name != "min_finite_fraction" else 0.0
                continue
            try:
                values[name] = float(text)
            except ValueError:
                raise ValueError(f"cut {name} must be a number or 'none'; got {text!r}") from None
        return cls(**values)

    def select(self, logg: Any, snr: Any) -> tuple[np.ndarray, np.ndarray]:
        """Which stars these cuts give a latent, and which of those an age.

        Only the label cuts (log g, S/N); the spectrum-quality and applicability checks
        need the spectra and the model.

        Parameters
        ----------
        logg : array-like of shape (n_stars,)
            Surface gravity, log10(cm s⁻²) (the survey's spectroscopic ``LOGG``).
        snr : array-like of shape (n_stars,)
            Signal-to-noise ratio per pixel (``SNREV``), dimensionless.

        Returns
        -------
        latent, dated : ndarray of bool, shape (n_stars,)
            Passes the latent cuts; passes them and the age cut. A missing label fails
            every cut on it.

        Examples
        --------
        >>> latent, dated = CatalogueCuts().select([2.4, 2.7, 3.9], [100.0, 100.0, 100.0])
        >>> latent.tolist(), dated.tolist()
        ([True, True, False], [False, True, False])
        """
        logg = np.asarray(logg, dtype=float)
        snr = np.asarray(snr, dtype=float)
        if logg.shape != snr.shape or logg.ndim != 1:
            raise ValueError(
                f"logg and snr must be 1-D of one length; got shapes {logg.shape} and {snr.shape}"
            )
        _, latent = self._masks(logg, snr)
        return latent, latent & self._age(logg)

    def _masks(self, logg: np.ndarray, snr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(needs cut labels and has them, passes the latent cuts)."""
        logg_cuts = (self.latent_logg_min, self.latent_logg_max, self.age_logg_min)
        have = np.ones(logg.shape, dtype=bool)
        if any(v is not None for v in logg_cuts):
            have &= np.isfinite(logg)
        if self.latent_snr_min is not None:
            have &= np.isfinite(snr)
        latent = have.copy()
        with np.errstate(invalid="ignore"):
            if self.latent_logg_min is not None:
                latent &= logg > self.latent_logg_min
            if self.latent_logg_max is not None:
                latent &= logg < self.latent_logg_max
            if self.latent_snr_min is not None:
                latent &= snr > self.latent_snr_min
        return have, latent

    def _quality(self) -> QualityThresholds:
        level, lines = self.max_level_offset, (self.min_line_depth, self.max_line_depth)
        return QualityThresholds(
            max_masked_fraction=self.max_masked_fraction,
            level_range=None if level is None else (1.0 - level, 1.0 + level),
            line_depth_range=None if None in lines else lines,
            max_noise_ratio=self.max_noise_ratio,
        )

    def _age(self, logg: np.ndarray) -> np.ndarray:
        if self.age_logg_min is None:
            return np.ones(logg.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            return logg >= self.age_logg_min
