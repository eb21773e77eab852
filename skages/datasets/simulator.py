"""A simulated APOKASC-like survey: APOGEE spectra, Kepler power spectra and seismic ages.

Real APOGEE spectra and Kepler PSDs cannot ship with a Python package, so skages
simulates them, from real ingredients: a population calibrated on APOKASC-2 and
APOKASC-3 Gold (free of their catalogue noise, with pipeline-made reference ages),
the real mean APOGEE red-giant spectrum and its per-pixel scatter, real H-band
line positions, and the same PSD code as real light curves. The generative
model, its equations and what it leaves out are in
``docs/user_guide/simulator.rst``.

Stars are generated in fixed blocks of :data:`BLOCK_SIZE`, each from its own
random streams (``numpy.random.SeedSequence(entropy, spawn_key=(block, part, batch))``),
so star ``i`` of a survey depends only on the seed and on ``i``: the result
does not depend on ``n_stars``, on ``chunk_size``, on ``n_jobs`` or on which
optional arrays are requested, and an interrupted survey file resumes exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from functools import cache
from numbers import Integral, Real
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from skages._labels import SIMULATED_ID_PREFIX
from skages.datasets import _sim_population as _pop
from skages.datasets import _sim_psd as _psd
from skages.datasets import _sim_spectra as _spec

__all__ = [
    "BLOCK_SIZE",
    "LABEL_UNITS",
    "counterfactual_spectra",
    "iter_apokasc",
    "make_apokasc",
    "model_power",
    "simulate_lightcurve",
    "write_apokasc",
]

logger = logging.getLogger(__name__)

#: Stars per random block. Changing it changes every simulated star.
BLOCK_SIZE = 256
#: Units of the columns of ``labels`` (astropy unit strings; "" = dimensionless or text).
LABEL_UNITS: dict[str, str] = dict(_pop.LABEL_UNITS)
#: Number of stars in APOGEE DR17's allStar catalogue: the default catalogue-scale survey.
APOGEE_DR17_N_STARS = 733_901

_PART_POPULATION, _PART_SPECTRA, _PART_PSD, _PART_RAW = 0, 1, 2, 3
_PSD_BATCH = 32  # stars per power_to_log_psd call: bounds the fine-grid memory
_SPECTRA_BATCH = 64  # stars per spectrum batch inside a block
_KIC_OFFSET = 100_000_000  # synthetic KIC numbers start above every real one
_TRUE_PSD_COLUMNS = (
    "numax_true",
    "dnu_true",
    "evstate",
    "dpi1",
    "coupling_q",
    "eps_p",
    "eps_g",
    "mode_linewidth",
    "envelope_height_ratio",
    "granulation_scale",
    "white_noise",
)

_RANDOM_STATE = [
    None,
    Interval(Integral, 0, None, closed="left"),
    np.random.Generator,
    np.random.RandomState,
]
_COMMON_PARAMS = {
    "missing_age_fraction": [Interval(Real, 0, 1, closed="both")],
    "precise_age_fraction": [Interval(Real, 0, 1, closed="both")],
    "reference_ages": [StrOptions(set(_pop.REFERENCE_AGE_MODES))],
    "seismic_errors": [StrOptions(set(_pop.SEISMIC_ERROR_MODES))],
    "psd": ["boolean"],
    "raw_flux": ["boolean"],
    "bad_pixel_fill": [Real],
    "n_jobs": [Integral, None],
    "verbose": ["verbose"],
    "random_state": _RANDOM_STATE,
}


# ----------------------------------------------------------------- randomness


def _entropy(random_state: Any) -> int:
    """One integer that seeds every block (drawn once from a Generator/RandomState)."""
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**62))
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer; got {random_state}")
        return int(random_state)
    raise TypeError(
        "random_state must be None, a non-negative int, a numpy Generator or RandomState; "
        f"got {type(random_state).__name__}"
    )


def _rng(entropy: int, block: int, part: tuple[int, ...]) -> np.random.Generator:
    """The random stream of one part (and batch) of one block."""
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(block, *part)))


# ---------------------------------------------------------------- one block


@cache
def _label_reference() -> np.ndarray:
    """Population-mean labels the spectral responses are taken about (RESPONSE_LABELS order).

    Means over 8,192 stars of the population model drawn from a fixed seed; log g is the
    spectroscopic (ASPCAP raw-like) one.
    """
    pop = _pop.draw_population(np.random.default_rng(20240101), 8192, _pop.PopulationConfig())
    ref = _label_values(pop).mean(axis=0)
    ref.setflags(write=False)
    return ref


def _label_values(pop: Mapping[str, np.ndarray]) -> np.ndarray:
    """The labels a spectrum responds to: true labels, with the spectroscopic log g.

    The log g the spectrum shows is the seismic one plus the state's ASPCAP raw offset
    (+0.20 dex RGB, +0.33 dex RC: :func:`_sim_population.spectroscopic_logg`), so red-clump
    spectra carry the state signature real ASPCAP spectra carry.
    """
    is_rc = np.asarray(pop["evstate"]) == "RC"
    mixing = _pop.mixing_index(pop["mass_true"], pop["logg_true"], is_rc)
    return np.column_stack(
        [
            pop["teff_true"],
            _pop.spectroscopic_logg(pop["logg_true"], is_rc),
            pop["fe_h_true"],
            pop["alpha_m_true"],
            pop["c_n_true"],
            mixing,
        ]
    )


def _label_offsets(pop: Mapping[str, np.ndarray]) -> np.ndarray:
    return _label_values(pop) - _label_reference()[None, :]


_OFFSET_COLUMNS = (
    "evstate", "mass_true", "logg_true", "teff_true", "fe_h_true", "alpha_m_true", "c_n_true"
)  # fmt: skip


def counterfactual_spectra(spectra: Any, labels: Any, **shifts: float) -> np.ndarray:
    """The same simulated stars' spectra with some of their labels shifted.

    Each spectrum is multiplied by the ratio of the simulator's noiseless model
    spectrum at the shifted labels to that at the star's true labels, so noise, bad
    pixels and continuum residuals stay those of the original star. With
    ``alpha_m=0.1`` only the α-element lines deepen: an age model that reads age from
    [α/M] changes its answer, one that does not, does not
    (:func:`skages.evaluation.evaluate_age_model` measures exactly that).

    Parameters
    ----------
    spectra : array-like of shape (n_stars, 7514)
        Simulated continuum-normalised spectra (NaN = masked, kept).
    labels : pandas.DataFrame
        Their labels from :func:`make_apokasc`, with the true-label columns
        (``teff_true`` K, ``logg_true``, ``fe_h_true``, ``alpha_m_true``, ``c_n_true``
        dex, ``mass_true``, ``evstate``).
    **shifts : float
        Label shifts among ``teff`` (K), ``logg``, ``fe_h``, ``alpha_m``, ``c_n`` (dex).

    Returns
    -------
    ndarray of shape (n_stars, 7514), float32
    """
    allowed = set(_spec.RESPONSE_LABELS) - {"mixing"}
    unknown = set(shifts) - allowed
    if unknown:
        raise ValueError(f"cannot shift {sorted(unknown)}; choose among {sorted(allowed)}")
    missing = [c for c in _OFFSET_COLUMNS if c not in labels]
    if missing:
        raise ValueError(
            f"labels lacks the simulator's true-label columns {missing}: counterfactual "
            "spectra exist only for stars made by make_apokasc"
        )
    spectra = np.asarray(spectra, dtype=np.float32)
    if spectra.shape != (len(labels), _spec.N_PIXELS):
        raise ValueError(
            f"spectra has shape {spectra.shape}; expected ({len(labels)}, {_spec.N_PIXELS})"
        )
    pop = {c: np.asarray(labels[c]) for c in _OFFSET_COLUMNS}
    before = _label_offsets(pop)
    after = before.copy()
    for name, value in shifts.items():
        after[:, _spec.RESPONSE_LABELS.index(name)] += float(value)
    ratio = _spec.noiseless_spectra(after) / _spec.noiseless_spectra(before)
    return (spectra * ratio).astype(np.float32)


def _batches(size: int, lo: int, hi: int) -> range:
    """Batches (of ``size`` stars) of a block that overlap its rows [lo, hi)."""
    return range(lo // size, (hi - 1) // size + 1)


def _simulate_block(
    entropy: int, block: int, options: dict, lo: int = 0, hi: int = BLOCK_SIZE
) -> dict:
    """The labels of one block of BLOCK_SIZE stars and the requested arrays of rows [lo, hi).

    Every batch of stars has its own random stream, so rows outside [lo, hi) can be
    skipped (their array rows are left uninitialised) without changing the others.
    """
    from skages.seismology import (
        FINE_MIN,
        FINE_STEP,
        fine_frequency_grid,
        numax_weights,
        power_to_log_psd,
    )

    pop = _pop.draw_population(
        _rng(entropy, block, (_PART_POPULATION,)), BLOCK_SIZE, options["population"]
    )
    out: dict[str, Any] = {"labels": pop}
    offsets = _label_offsets(pop)
    for k in _batches(_SPECTRA_BATCH, lo, hi):
        sl = slice(k * _SPECTRA_BATCH, (k + 1) * _SPECTRA_BATCH)
        raw_rng = _rng(entropy, block, (_PART_RAW, k)) if options["raw_flux"] else None
        part = _spec.draw_spectra(
            _rng(entropy, block, (_PART_SPECTRA, k)),
            offsets[sl], pop["snr"][sl], pop["rv"][sl], pop["teff_true"][sl],
            bad_pixel_fill=options["bad_pixel_fill"], raw_rng=raw_rng,
        )  # fmt: skip
        for name, values in part.items():
            if name not in out:
                out[name] = np.empty((BLOCK_SIZE, values.shape[1]), values.dtype)
            out[name][sl] = values
    if options["psd"]:
        m = fine_frequency_grid().size
        out["psd"] = np.empty((BLOCK_SIZE, 2092), dtype=np.float32)
        for k in _batches(_PSD_BATCH, lo, hi):
            sl = slice(k * _PSD_BATCH, (k + 1) * _PSD_BATCH)
            sub = {name: np.asarray(pop[name])[sl] for name in _TRUE_PSD_COLUMNS}
            power = _psd.model_power_grid(sub, FINE_MIN, FINE_STEP, m)
            power *= _rng(entropy, block, (_PART_PSD, k)).standard_exponential(power.shape)
            out["psd"][sl] = power_to_log_psd(power)
        out["psd_weight"] = numax_weights(pop["numax"])
    return out


def _labels_frame(pop: Mapping[str, np.ndarray], start: int, stop: int, lo: int) -> pd.DataFrame:
    """Rows ``start:stop`` (global star numbers) of a block that begins at star ``lo``."""
    sl = slice(start - lo, stop - lo)
    index = np.arange(start, stop)
    data: dict[str, Any] = {
        "apogee_id": [f"{SIMULATED_ID_PREFIX}{i + 1:07d}" for i in index],
        "kic": _KIC_OFFSET + 1 + index,
    }
    for name in LABEL_UNITS:
        if name in data:
            continue
        values = np.asarray(pop[name])[sl]
        if name == "evstate":
            values = pd.Categorical(values, categories=["RGB", "RC"])
        data[name] = values
    frame = pd.DataFrame(data, index=pd.RangeIndex(start, stop))
    frame.attrs["units"] = dict(LABEL_UNITS)
    return frame


# --------------------------------------------------------------- validation


def _check_options(
    missing_age_fraction,
    precise_age_fraction,
    psd,
    raw_flux,
    bad_pixel_fill,
    reference_ages="pipeline",
    seismic_errors="apokasc2",
) -> dict:
    if precise_age_fraction > 1.0 - missing_age_fraction + 1e-12:
        raise ValueError(
            "precise_age_fraction must not exceed the fraction of stars with an age, "
            f"1 - missing_age_fraction = {1 - missing_age_fraction:.3f}; got "
            f"precise_age_fraction={precise_age_fraction}"
        )
    return {
        "population": _pop.PopulationConfig(
            missing_age_fraction=float(missing_age_fraction),
            precise_age_fraction=float(precise_age_fraction),
            reference_ages=str(reference_ages),
            seismic_errors=str(seismic_errors),
        ),
        "psd": bool(psd),
        "raw_flux": bool(raw_flux),
        "bad_pixel_fill": float(bad_pixel_fill),
    }


def _array_names(options: dict) -> list[str]:
    names = ["spectra", "spectra_err", "bitmask"]
    if options["raw_flux"]:
        names += ["raw_flux", "raw_flux_err"]
    if options["psd"]:
        names += ["psd", "psd_weight"]
    return names


# ------------------------------------------------------------------- public


def _iter_blocks(entropy: int, start: int, stop: int, options: dict, n_jobs, verbose):
    """(block number, block dict) for the blocks that cover stars [start, stop)."""
    first, last = start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE
    blocks = range(first, last + 1)

    def rows(b: int) -> tuple[int, int]:
        lo = b * BLOCK_SIZE
        return max(start - lo, 0), min(stop - lo, BLOCK_SIZE)

    progress = None
    if verbose:
        from tqdm.auto import tqdm

        progress = tqdm(total=stop - start, desc="simulating", unit="star")
    if n_jobs in (None, 1):
        results = (_simulate_block(entropy, b, options, *rows(b)) for b in blocks)
    else:
        from joblib import delayed

        from skages._workers import _parallel

        results = _parallel(n_jobs, return_as="generator")(
            delayed(_simulate_block)(entropy, b, options, *rows(b)) for b in blocks
        )
    try:
        for b, res in zip(blocks, results, strict=True):
            if progress is not None:
                lo = b * BLOCK_SIZE
                progress.update(min(stop, lo + BLOCK_SIZE) - max(start, lo))
            yield b, res
    finally:
        if progress is not None:
            progress.close()


def _iter_chunks(
    n_stars: int, chunk_size: int, start: int, entropy: int, options: dict, n_jobs, verbose
) -> Iterator[Bunch]:
    names = _array_names(options)
    pending: list[tuple[int, int, int, dict]] = []  # (block start, from, to, block)
    chunk_start = start
    for b, res in _iter_blocks(entropy, start, n_stars, options, n_jobs, verbose):
        lo = b * BLOCK_SIZE
        pending.append((lo, max(start, lo), min(n_stars, lo + BLOCK_SIZE), res))
        covered = pending[-1][2]
        while covered - chunk_start >= chunk_size or (
            covered == n_stars and covered > chunk_start
        ):
            chunk_stop = min(chunk_start + chunk_size, n_stars)
            parts: dict[str, list] = {name: [] for name in names}
            frames = []
            for blo, a, z, blk in pending:
                a2, z2 = max(a, chunk_start), min(z, chunk_stop)
                if a2 >= z2:
                    continue
                for name in names:
                    parts[name].append(blk[name][a2 - blo : z2 - blo])
                frames.append(_labels_frame(blk["labels"], a2, z2, blo))
            chunk = Bunch(start=chunk_start, stop=chunk_stop)
            for name in names:
                chunk[name] = (
                    np.concatenate(parts[name]) if len(parts[name]) > 1 else parts[name][0].copy()
                )
            labels = pd.concat(frames) if len(frames) > 1 else frames[0]
            labels.attrs["units"] = dict(LABEL_UNITS)
            chunk.labels = labels
            yield chunk
            chunk_start = chunk_stop
            pending = [p for p in pending if p[2] > chunk_start]
            if chunk_start >= n_stars:
                break


@validate_params(
    {
        "n_stars": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "start": [Interval(Integral, 0, None, closed="left")],
        **_COMMON_PARAMS,
    },
    prefer_skip_nested_validation=True,
)
def iter_apokasc(
    n_stars: int = 10_000,
    *,
    chunk_size: int = 1024,
    start: int = 0,
    missing_age_fraction: float = 1.0 / 3.0,
    precise_age_fraction: float = 0.12,
    reference_ages: str = "pipeline",
    seismic_errors: str = "apokasc2",
    psd: bool = True,
    raw_flux: bool = False,
    bad_pixel_fill: float = np.nan,
    n_jobs: int | None = None,
    verbose: int = 0,
    random_state: int | np.random.Generator | None = None,
) -> Iterator[Bunch]:
    """Generate the simulated survey of :func:`make_apokasc` chunk by chunk.

    Memory is set by ``chunk_size`` (plus one block of :data:`BLOCK_SIZE`
    stars per worker), not by ``n_stars``. Star ``i`` is the same whatever
    ``chunk_size``, ``start``, ``n_jobs``, ``psd`` or ``raw_flux``: the
    concatenated chunks equal ``make_apokasc(n_stars, ...)`` with the same
    ``random_state``.

    Parameters
    ----------
    n_stars : int, default=10_000
        Total number of stars of the survey.
    chunk_size : int, default=1024
        Stars per yielded chunk (the last may be shorter).
    start : int, default=0
        First star to generate (to resume an interrupted run at a chunk boundary).
    missing_age_fraction, precise_age_fraction, psd, raw_flux, bad_pixel_fill, n_jobs, verbose
        As for :func:`make_apokasc` (so are ``reference_ages`` and ``seismic_errors``).
    random_state : int, numpy.random.Generator or None
        Seed of the whole survey. A Generator is used once, to draw that seed,
        when this function is called.

    Yields
    ------
    sklearn.utils.Bunch
        ``start`` and ``stop`` (star numbers), the per-star arrays of
        :func:`make_apokasc` for these stars, and ``labels`` (DataFrame indexed
        by star number).

    Examples
    --------
    >>> from skages.datasets import iter_apokasc
    >>> sizes = [len(c.labels) for c in iter_apokasc(600, chunk_size=256, psd=False,
    ...                                              random_state=0)]
    >>> sizes
    [256, 256, 88]
    """
    if start > n_stars:
        raise ValueError(f"start must be at most n_stars = {n_stars}; got start={start}")
    options = _check_options(
        missing_age_fraction, precise_age_fraction, psd, raw_flux, bad_pixel_fill,
        reference_ages, seismic_errors,
    )  # fmt: skip
    entropy = _entropy(random_state)
    if start == n_stars:
        return iter(())
    return _iter_chunks(n_stars, chunk_size, start, entropy, options, n_jobs, verbose)


_DESCR = """\
Simulated APOKASC-like survey (skages.datasets.make_apokasc)
-----------------------------------------------------------
Red giants calibrated on APOKASC-2 and APOKASC-3 Gold (deconvolved masses;
Teff, [C/N] and ages from relations fitted to them; pipeline-made reference ages);
continuum-normalised APOGEE-like spectra (7514 pixels) built on the real mean
DR17 training spectrum with line responses to Teff, log g, [Fe/H], [α/M], [C/N]
and extra mixing, S/N-scaled noise and APOGEE-like bitmasks; Kepler-like
natural-log PSDs (2092 pixels) from granulation, white noise and l = 0-3
(mixed l = 1) modes, made with the same code as real light curves. Labels are
observed values (true value + DR17-like noise of the stated *_err); *_true
columns hold the generating values. See docs/user_guide/simulator.rst.
"""


@validate_params(
    {"n_stars": [Interval(Integral, 1, None, closed="left")], **_COMMON_PARAMS},
    prefer_skip_nested_validation=True,
)
def make_apokasc(
    n_stars: int = 10_000,
    *,
    missing_age_fraction: float = 1.0 / 3.0,
    precise_age_fraction: float = 0.12,
    reference_ages: str = "pipeline",
    seismic_errors: str = "apokasc2",
    psd: bool = True,
    raw_flux: bool = False,
    bad_pixel_fill: float = np.nan,
    n_jobs: int | None = None,
    verbose: int = 0,
    random_state: int | np.random.Generator | None = None,
) -> Bunch:
    """Simulate an APOKASC-like survey: APOGEE spectra, Kepler PSDs, seismic labels and ages.

    Parameters
    ----------
    n_stars : int, default=10_000
        Number of stars (10,000 spectrum–PSD pairs is the paper's training set size).
    missing_age_fraction : float, default=1/3
        Fraction of stars without a seismic age (``log_age`` NaN), drawn at random.
    precise_age_fraction : float, default=0.12
        Fraction of *all* stars whose age is precise (``precise_age`` True): the
        paper's ~1,200 training ages of Miglio et al. (2021) quality, with
        errors of about 10 % (RC) and 20 % (RGB). Must not exceed
        ``1 - missing_age_fraction``.
    reference_ages : {"pipeline", "independent"}, default="pipeline"
        How the reference ages ``log_age`` are made. ``"pipeline"``: as a seismic
        pipeline makes them, from the *observed* νmax, Δν, Teff, [Fe/H] and [α/M]
        through the simulator's age relation plus its model scatter, quoting the
        propagated uncertainty (precise stars have proportionally more precise νmax
        and Δν), so age errors move with the seismic observables. ``"independent"``:
        the true age plus independent Gaussian noise of ``log_age_err`` (precise
        stars as above; the others the APOKASC-2 error of their source row plus a
        0.1 dex floor), the simulator's former model.
    seismic_errors : {"apokasc2", "agreement"}, default="apokasc2"
        The νmax and Δν uncertainties (and noise) of the catalogue. ``"apokasc2"``: the
        quoted errors of each star's APOKASC-2 source row (median 0.9 % and 0.4 % on
        the RGB, 1.3 % and 1.1 % in the clump). ``"agreement"``: those times 0.34 (RGB)
        and 0.42 (RC), the width of the APOKASC-2 minus APOKASC-3 νmax differences of
        the same stars in units of their quoted errors (a lower bound on the real errors:
        both catalogues analyse the same light curves). See the realism page.
    psd : bool, default=True
        Simulate the power spectra (most of the run time).
    raw_flux : bool, default=False
        Also return ``raw_flux`` and ``raw_flux_err``: the spectra times a
        smooth continuum on the 8575-pixel apStar grid with NaN chip gaps, to
        exercise :func:`skages.spectra.continuum_normalize`.
    bad_pixel_fill : float, default=NaN
        Value of ``spectra`` and ``spectra_err`` on pixels with a bad bitmask bit
        (:data:`skages.spectra.DEFAULT_BAD_BITS`). NaN means masked, skages'
        convention; 1.0 gives the astroNN convention.
    n_jobs : int, optional
        Worker processes (joblib) over blocks of stars; None means 1.
    verbose : int, default=0
        Progress bar on stderr when > 0.
    random_state : int, numpy.random.Generator or None
        Seed; the same integer always gives the same survey.

    Returns
    -------
    sklearn.utils.Bunch
        spectra : ndarray of shape (n_stars, 7514), float32
            Continuum-normalised flux (dimensionless) on the gap-removed APOGEE grid.
        spectra_err : ndarray of shape (n_stars, 7514), float32
            1-σ uncertainty of ``spectra``.
        bitmask : ndarray of shape (n_stars, 7514), int32
            APOGEE_PIXMASK-like bits (0 BADPIX, 1 CRPIX, 9 PERSIST_HIGH, 12 SIG_SKYLINE).
        raw_flux, raw_flux_err : ndarray of shape (n_stars, 8575), float32
            Only with ``raw_flux=True``; 1e-17 erg s⁻¹ cm⁻² Å⁻¹, NaN in the chip gaps.
        psd : ndarray of shape (n_stars, 2092), float32
            Natural-log PSD on :func:`skages.seismology.frequency_grid` (bin 0 NaN).
        psd_weight : ndarray of shape (n_stars, 2092), float32
            :func:`skages.seismology.numax_weights` of the observed νmax.
        frequency : ndarray of shape (2092,)
            PSD bin centres, µHz.
        wavelength : ndarray of shape (7514,)
            Vacuum wavelength of the spectrum pixels, Å.
        labels : pandas.DataFrame
            One row per star; units in ``labels.attrs["units"]`` and
            :data:`LABEL_UNITS`. Identifiers ``apogee_id`` ("2M-SIM-0000001", ...),
            ``kic`` (synthetic, above 10⁸) and ``source_kic`` (the real APOKASC-2
            star it was drawn from); ``evstate`` ("RGB"/"RC"); observed labels
            with uncertainties ``teff``/``teff_err`` (K), ``logg``/``logg_err``
            (dex), ``fe_h``, ``alpha_m``, ``c_n`` (dex, with ``_err``),
            ``numax``, ``dnu`` (µHz, with ``_err``), ``fdnu`` (Δν correction
            factor, APOKASC-2 convention: ``mass = scaling_mass(numax, dnu * fdnu, teff)``),
            ``excess_dnu`` (µHz), ``mass``/``mass_err`` (M☉), ``radius``/``radius_err``
            (R☉), ``age`` (Gyr), ``log_age`` (log10 Gyr; true value plus noise of
            ``log_age_err``, NaN without age), ``log_age_err`` (dex),
            ``precise_age`` (bool), ``snr``, ``kepler_mag`` (mag); the generating
            values ``*_true`` (teff, logg, fe_h, alpha_m, c_n, numax, dnu, mass,
            radius, age, log_age); and the oscillation-model parameters ``dpi1``
            (s), ``coupling_q``, ``eps_p``, ``eps_g``, ``mode_linewidth`` (µHz),
            ``envelope_height_ratio``, ``granulation_scale``, ``white_noise``
            (ppm² µHz⁻¹) and the radial velocity ``rv`` (km/s) that places sky lines.
        label_units : dict
            Column -> astropy unit string.
        random_seed : int
            The seed actually used (reproduces the survey when given as ``random_state``).
        DESCR : str
            Description of the dataset.

    Examples
    --------
    >>> from skages.datasets import make_apokasc
    >>> data = make_apokasc(300, random_state=0)
    >>> data.spectra.shape, data.psd.shape, data.labels.shape[0]
    ((300, 7514), (300, 2092), 300)
    >>> sorted(data.labels["evstate"].unique())
    ['RC', 'RGB']
    """
    options = _check_options(
        missing_age_fraction, precise_age_fraction, psd, raw_flux, bad_pixel_fill,
        reference_ages, seismic_errors,
    )  # fmt: skip
    entropy = _entropy(random_state)
    names = _array_names(options)
    out = Bunch()
    frames = []
    # blocks go straight into the preallocated arrays: no chunk copies
    for b, block in _iter_blocks(entropy, 0, n_stars, options, n_jobs, verbose):
        lo = b * BLOCK_SIZE
        hi = min(n_stars, lo + BLOCK_SIZE)
        for name in names:
            if name not in out:
                out[name] = np.empty((n_stars, block[name].shape[1]), block[name].dtype)
            out[name][lo:hi] = block[name][: hi - lo]
        frames.append(_labels_frame(block["labels"], lo, hi, lo))
        del block
    labels = pd.concat(frames) if len(frames) > 1 else frames[0]
    labels.attrs["units"] = dict(LABEL_UNITS)
    from skages.seismology import frequency_grid
    from skages.spectra import apogee_wavelength

    out.frequency = frequency_grid()
    out.wavelength = apogee_wavelength()
    out.labels = labels
    out.label_units = dict(LABEL_UNITS)
    out.random_seed = entropy
    out.DESCR = _DESCR
    return out


def _stored_metadata(partial: Path) -> dict:
    """The settings and seed of an unfinished survey, read without changing the file."""
    import h5py

    try:
        with h5py.File(partial, "r") as h5:
            return json.loads(h5.attrs.get("metadata", "{}"))
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError for damage
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"cannot resume {partial}: the HDF5 file is damaged ({text.split(' (')[0]}), "
            "e.g. by a full disk during a write; it is left as it is: delete it or start "
            "again with --restart (restart=True)"
        ) from exc


def _settings(
    n_stars, missing_age_fraction, precise_age_fraction, reference_ages, seismic_errors, psd,
    raw_flux, bad_pixel_fill,
) -> dict:  # fmt: skip
    """The settings :func:`write_apokasc` stores in a survey's metadata (and resumes by)."""
    return {
        "n_stars": int(n_stars),
        "missing_age_fraction": float(missing_age_fraction),
        "precise_age_fraction": float(precise_age_fraction),
        "reference_ages": str(reference_ages),
        **({} if seismic_errors == "apokasc2" else {"seismic_errors": str(seismic_errors)}),
        "psd": bool(psd),
        "raw_flux": bool(raw_flux),
        "bad_pixel_fill": None if np.isnan(bad_pixel_fill) else float(bad_pixel_fill),
        "block_size": BLOCK_SIZE,
    }


def _default_settings(n_stars: int, **options) -> dict:
    """The settings of ``write_apokasc(path, n_stars, **options)``, every other option at
    its default (read from the signature, so the two cannot drift apart)."""
    import inspect

    params = inspect.signature(write_apokasc).parameters
    names = [name for name in inspect.signature(_settings).parameters if name != "n_stars"]
    return _settings(n_stars, **{k: options.get(k, params[k].default) for k in names})


@validate_params(
    {
        "path": [str, PathLike],
        "n_stars": [Interval(Integral, 1, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
        "overwrite": ["boolean"],
        "resume": ["boolean"],
        **_COMMON_PARAMS,
    },
    prefer_skip_nested_validation=True,
)
def write_apokasc(
    path: str | PathLike,
    n_stars: int = APOGEE_DR17_N_STARS,
    *,
    chunk_size: int = 4096,
    missing_age_fraction: float = 1.0 / 3.0,
    precise_age_fraction: float = 0.12,
    reference_ages: str = "pipeline",
    seismic_errors: str = "apokasc2",
    psd: bool = True,
    raw_flux: bool = False,
    bad_pixel_fill: float = np.nan,
    overwrite: bool = False,
    resume: bool = False,
    n_jobs: int | None = None,
    verbose: int = 0,
    random_state: int | np.random.Generator | None = None,
    restart: bool = False,
) -> Path:
    """Write a simulated survey to a skages HDF5 survey collection, chunk by chunk.

    Memory stays bounded by ``chunk_size`` whatever ``n_stars`` (the default is
    the 733,901 stars of APOGEE DR17). The file is written through
    :class:`skages.io.SurveyWriter`: atomically (``<path>.partial`` until
    complete) and resumable. The seed and the options are stored in the file's
    metadata, so ``resume=True`` continues exactly where an interrupted run
    stopped (with ``random_state=None`` the stored seed is used).

    Parameters
    ----------
    path : str or path-like
        Output file (``*.h5``).
    n_stars : int, default=733_901
        Number of stars.
    chunk_size : int, default=4096
        Stars generated and appended at a time.
    missing_age_fraction, precise_age_fraction, psd, raw_flux, bad_pixel_fill, n_jobs, verbose
        As for :func:`make_apokasc` (so are ``reference_ages`` and ``seismic_errors``). For
        a catalogue-scale inference survey, ``psd=False`` saves most of the time and about
        6 GB per 733,901 stars.
    overwrite : bool, default=False
        Replace an existing complete file.
    resume : bool, default=False
        Continue ``<path>.partial`` if it exists.
    random_state : int, numpy.random.Generator or None
        Seed of the survey.
    restart : bool, default=False
        Discard an existing ``<path>.partial`` and start again. Without ``resume`` or
        ``restart`` an existing partial file is an error, never silently truncated.

    Returns
    -------
    pathlib.Path
        The written file; read it with :class:`skages.io.SurveyReader`.

    Raises
    ------
    ValueError
        When resuming a file written with other options or another seed.
    FileExistsError
        If ``<path>.partial`` exists and neither ``resume`` nor ``restart`` is set.
    """
    from skages._atomic import WriteError

    options = _check_options(
        missing_age_fraction, precise_age_fraction, psd, raw_flux, bad_pixel_fill,
        reference_ages, seismic_errors,
    )  # fmt: skip
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    settings = _settings(
        n_stars, missing_age_fraction, precise_age_fraction, reference_ages, seismic_errors,
        psd, raw_flux, bad_pixel_fill,
    )  # fmt: skip
    if resume and restart:
        raise ValueError("pass resume=True or restart=True, not both")
    if partial.exists() and not (resume or restart):
        raise FileExistsError(
            f"{partial} holds the stars of an interrupted run; pass resume=True (--resume) to "
            "continue it or restart=True (--restart) to discard it"
        )
    if resume and partial.exists():
        stored = _stored_metadata(partial)
        stored_settings = stored.get("settings", {})
        if stored_settings != settings:
            raise ValueError(
                f"cannot resume {partial}: it was written with settings {stored_settings}, "
                f"this call asks for {settings}; start again with --restart (restart=True)"
            )
        stored_seed = int(stored["random_seed"])
        entropy = stored_seed if random_state is None else _entropy(random_state)
        if entropy != stored_seed:
            raise ValueError(
                f"cannot resume {partial}: it was written with random seed {stored_seed}; "
                f"got random_state={random_state!r} (pass None or {stored_seed})"
            )
    else:
        entropy = _entropy(random_state)
    from skages._version import __version__

    metadata = {
        "generator": "skages.datasets.write_apokasc",
        "skages_version": __version__,
        "random_seed": str(entropy),
        "settings": settings,
    }
    units = {k: v for k, v in LABEL_UNITS.items() if v}
    try:
        _write_chunks(path, partial, n_stars, chunk_size, entropy, options, n_jobs, verbose,
                      psd, units, metadata, overwrite, resume)  # fmt: skip
    except (WriteError, FileExistsError):
        raise
    except OSError as exc:  # a write that failed outside the writer's own checks
        from skages._atomic import describe_write_error

        code, reason = describe_write_error(exc)
        kept = ""
        if partial.exists():
            kept = f"; the stars written so far are kept in {partial}"
        raise WriteError(
            code, f"could not write {path}: {reason}{kept}: run the same command again to resume"
        ) from exc
    return path


def _write_chunks(
    path, partial, n_stars, chunk_size, entropy, options, n_jobs, verbose, psd, units,
    metadata, overwrite, resume,
) -> None:  # fmt: skip
    from skages.io import SurveyWriter
    from skages.seismology import frequency_grid

    with SurveyWriter(
        path,
        frequency=frequency_grid() if psd else None,
        units=units,
        metadata=metadata,
        overwrite=overwrite,
        resume=resume,
    ) as writer:
        start = writer.n_stars
        if start:
            logger.info("resuming %s at star %d of %d", partial, start, n_stars)
        for chunk in _iter_chunks(n_stars, chunk_size, start, entropy, options, n_jobs, verbose):
            arrays = {name: chunk[name] for name in _array_names(options)}
            writer.append(labels=chunk.labels, **arrays)


# ------------------------------------------------------------- light curves


def _star_parameters(star: Any) -> dict[str, np.ndarray]:
    if isinstance(star, pd.DataFrame):
        if len(star) != 1:
            raise ValueError(
                f"star must be one row of make_apokasc labels; got a DataFrame of {len(star)} rows"
            )
        star = star.iloc[0]
    if not isinstance(star, (Mapping, pd.Series)):
        raise TypeError(
            "star must be a row of make_apokasc(...).labels (pandas Series, one-row "
            f"DataFrame or mapping); got {type(star).__name__}"
        )
    missing = [c for c in _TRUE_PSD_COLUMNS if c not in star]
    if missing:
        raise ValueError(f"star lacks the simulator column(s) {missing}; pass a labels row")
    p = {}
    for name in _TRUE_PSD_COLUMNS:
        value = star[name]
        if name == "evstate":
            if value not in ("RGB", "RC"):
                raise ValueError(f"star['evstate'] must be 'RGB' or 'RC'; got {value!r}")
            p[name] = np.array([value])
            continue
        value = float(value)
        if not np.isfinite(value) or (value <= 0 and name != "eps_g"):
            raise ValueError(f"star[{name!r}] must be finite and positive; got {value}")
        p[name] = np.array([value])
    return p


def model_power(star: Any, frequency: Any) -> np.ndarray:
    """Expected power density of a simulated star (before realisation noise).

    Parameters
    ----------
    star : pandas.Series, one-row DataFrame or mapping
        A row of ``make_apokasc(...).labels``.
    frequency : array-like of shape (m,)
        Uniformly spaced frequencies, µHz; each value is the mean over a bin of
        the grid step centred on it.

    Returns
    -------
    ndarray of shape (m,)
        ppm² µHz⁻¹ (one-sided).
    """
    p = _star_parameters(star)
    f = np.asarray(frequency, dtype=float)
    if f.ndim != 1 or f.size < 2 or not np.allclose(np.diff(f), f[1] - f[0], rtol=1e-6):
        raise ValueError("frequency must be a uniformly spaced 1-D grid in µHz")
    return _psd.model_power_grid(p, float(f[0]), float(f[1] - f[0]), f.size)[0]


@validate_params(
    {
        "duration": [Interval(Real, 1, None, closed="left")],
        "gaps": ["boolean"],
        "random_state": _RANDOM_STATE,
    },
    prefer_skip_nested_validation=True,
)
def simulate_lightcurve(
    star: Any,
    *,
    duration: float = 1460.0,
    gaps: bool = True,
    random_state: int | np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A Kepler-like long-cadence light curve of a simulated star.

    The star's model power density (:func:`model_power`: granulation,
    white noise and modes, as for its ``psd``) is sampled on the Fourier grid
    of a regular 29.4244-min series; complex Gaussian Fourier amplitudes with
    that variance are inverse-FFT'd, then Kepler-like gaps are cut (quarterly
    and monthly downlinks, safe modes, 1.5 % random losses). The result, put
    through :func:`skages.seismology.lightcurve_to_psd`, has the same
    expectation as the star's direct PSD.

    Parameters
    ----------
    star : pandas.Series, one-row DataFrame or mapping
        A row of ``make_apokasc(...).labels`` (needs its ``*_true`` and
        oscillation-model columns).
    duration : float, default=1460.0
        Length in days (Kepler's four years: 1460).
    gaps : bool, default=True
        Cut Kepler-like gaps.
    random_state : int, numpy.random.Generator or None
        Seed of the realisation.

    Returns
    -------
    time : ndarray of shape (n_cadences,)
        Days from the first cadence.
    flux : ndarray of shape (n_cadences,)
        Flux in ppm about 10⁶ (as :func:`skages.seismology.read_kepler_lightcurve` gives).

    Examples
    --------
    >>> from skages.datasets import make_apokasc, simulate_lightcurve
    >>> star = make_apokasc(1, psd=False, random_state=0).labels.iloc[0]
    >>> time, flux = simulate_lightcurve(star, random_state=1)
    >>> bool(0.9 < time.size / (1460 / (29.4244 / 1440)) < 0.97)  # duty cycle
    True
    """
    p = _star_parameters(star)
    if isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(0, 2**62))
    rng = np.random.default_rng(random_state)
    n = int(duration * 86400.0 / _psd.CADENCE_S)
    df = 1e6 / (n * _psd.CADENCE_S)
    m = n // 2 + 1
    model = _psd.model_power_grid(p, 0.0, df, m)[0]
    model[0] = 0.0
    # Var(x) = Σ_k P_k Δf for a one-sided density P: E|X_k|² = N² P_k Δf / 2
    scale = n * np.sqrt(model * df / 4.0)
    amp = scale * (rng.standard_normal(m) + 1j * rng.standard_normal(m))
    flux = np.fft.irfft(amp, n)
    time = np.arange(n) * (_psd.CADENCE_S / 86400.0)
    if gaps:
        keep = _psd.gap_mask(rng, time)
        time, flux = time[keep], flux[keep]
    return time, 1e6 + flux
