"""Tests of skages.quality: each spectrum-quality check fires on its case, not on a giant."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from skages.quality import QualityFlag, QualityThresholds, quality_flags, spectrum_quality


@pytest.fixture(scope="module")
def giants(small_survey):
    """Training mean spectrum of 200 simulated giants; 100 others with their S/N."""
    spectra = np.asarray(small_survey.spectra, dtype=np.float64)
    reference = np.nanmean(spectra[:200], axis=0)
    snr = np.asarray(small_survey.labels["snr"], dtype=float)
    return reference, spectra[200:], snr[200:], np.asarray(small_survey.spectra_err)[200:]


def test_simulated_giants_pass_every_check(giants):
    reference, spectra, snr, err = giants
    flags, stats = spectrum_quality(spectra, reference, snr=snr)
    assert np.all(flags == 0)
    # the statistics are measured, not defaulted
    assert np.all(stats["line_depth"] > 0.35) and np.all(np.isfinite(stats["noise_ratio"]))
    flags_err, _ = spectrum_quality(spectra, reference, spectra_err=err)
    assert np.all(flags_err == 0)


@pytest.mark.parametrize(
    ("case", "bit"),
    [
        ("flat", QualityFlag.LINES_UNLIKE_TRAINING),
        ("constant 0.5", QualityFlag.BAD_NORMALISATION),
        ("noise S/N 5 under label 150", QualityFlag.NOISE_MISMATCH),
        ("45 % masked", QualityFlag.MASKED),
        ("lines at 20 % depth", QualityFlag.LINES_UNLIKE_TRAINING),
    ],
)
def test_each_check_fires_on_its_case(giants, case, bit, caplog):
    reference, spectra, _, _ = giants
    rng = np.random.default_rng(3)
    star = spectra[:5].copy()
    if case == "flat":
        star[:] = 1.0
    elif case == "constant 0.5":
        star[:] = 0.5
    elif case.startswith("noise"):
        star += rng.normal(size=star.shape) * 0.2
    elif case == "45 % masked":
        star[rng.random(star.shape) < 0.45] = np.nan
    else:
        star = 1.0 - 0.2 * (1.0 - star)
    caplog.set_level(logging.WARNING, logger="skages.quality")
    flags, _ = spectrum_quality(star, reference, snr=np.full(5, 150.0), ids=list("abcde"))
    assert np.all(flags & bit)
    assert bit.name in caplog.text and "a:" in caplog.text  # named in the log, star by star
    # the same stars unchanged pass
    clean, _ = spectrum_quality(spectra[:5], reference, snr=np.full(5, 150.0))
    assert np.all(clean == 0)


def test_switching_a_check_off(giants):
    reference, spectra, _, _ = giants
    star = np.full((1, spectra.shape[1]), 0.5)
    off = QualityThresholds(level_range=None, line_depth_range=None)
    flags, _ = spectrum_quality(star, reference, thresholds=off)
    assert flags[0] == 0
    flags, _ = spectrum_quality(star, reference)
    assert flags[0] == QualityFlag.BAD_NORMALISATION | QualityFlag.LINES_UNLIKE_TRAINING


def test_noise_check_needs_a_stated_noise(giants):
    reference, spectra, _, _ = giants
    noisy = spectra[:2] + np.random.default_rng(0).normal(size=spectra[:2].shape) * 0.2
    flags, stats = spectrum_quality(noisy, reference)
    assert not np.any(flags & QualityFlag.NOISE_MISMATCH)
    assert np.all(np.isnan(stats["noise_ratio"]))


def test_real_m_dwarfs_and_a_real_giant(giants, shared_data):
    from skages.io import read_normalized_spectra

    reference = giants[0]
    files = sorted((shared_data / "apogee_fixtures").glob("aspcapStar-r6-*.fits"))
    dwarfs = read_normalized_spectra(files)
    flags, stats = spectrum_quality(dwarfs.spectra, reference)
    assert np.all(flags & QualityFlag.LINES_UNLIKE_TRAINING)
    assert np.all(np.abs(stats["line_depth"]) < 0.2)
    giant = np.load(
        shared_data / "apogee_fixtures" / "apogee_dr14_2M08002084+4044415_normalized.npz"
    )
    good = giant["good_pixel_mask"].astype(bool)
    flux = np.where(good, giant["normalized_flux"], np.nan)[None]
    err = np.where(good, giant["normalized_error"], np.nan)[None]
    flags, _ = spectrum_quality(flux, reference, spectra_err=np.nan_to_num(err, nan=0.0))
    assert flags[0] == 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="reference must have shape"):
        spectrum_quality(np.ones((2, 10)), np.ones(9))
    with pytest.raises(ValueError, match="snr must have shape"):
        spectrum_quality(np.ones((2, 10)), np.ones(10), snr=[1.0])
    with pytest.raises(ValueError, match="spectra_err must be non-negative"):
        spectrum_quality(np.ones((1, 10)), np.ones(10), spectra_err=-np.ones((1, 10)))
    with pytest.raises(ValueError, match="low < high"):
        QualityThresholds(level_range=(1.2, 0.8))


def test_quality_flags_equal_spectrum_quality_at_the_bounds(giants, caplog):
    """The catalogue's fast path decides each median by counting; it must give the flags
    of spectrum_quality bit for bit, also for spectra whose statistic sits on a bound."""
    reference, spectra, _, _ = giants
    rng = np.random.default_rng(7)
    rows = [spectra[:40]]
    # even pixel counts whose two middle values straddle a level bound: the count
    # below the bound is exactly m / 2 in both, but one median is inside, one outside
    for low, high in ((0.79, 0.8105), (0.7, 0.85), (1.19, 1.2098), (1.15, 1.3)):
        flux = np.where(np.arange(reference.size) % 2 == 0, low, high).astype(float)
        rows.append(flux[None])
    odd = np.full((1, reference.size), 0.8)
    odd[0, :-1:2] = 0.79
    odd[0, -1] = np.nan  # an odd pixel count, the middle value on the bound
    rows.append(odd)
    masked = spectra[40:50].copy()
    masked[rng.random(masked.shape) < 0.3] = np.nan  # around the masked-fraction bound
    rows.append(masked)
    rows.append(np.full((1, reference.size), np.nan))  # nothing to measure
    flux = np.vstack(rows)
    _, stats = spectrum_quality(flux, reference, snr=np.full(len(flux), 100.0))
    # stated noise that puts every star's noise ratio just above or just below 3
    ratio = stats["noise_ratio"] / 3.0
    stated = 100.0 / np.where(np.arange(len(flux)) % 2 == 0, ratio * (1 - 1e-12), ratio)
    stated[-1] = 100.0
    stated[1] = np.nan  # no stated noise: no noise check
    caplog.set_level(logging.WARNING, logger="skages.quality")
    caplog.clear()
    expected, stats = spectrum_quality(flux, reference, snr=stated, ids=np.arange(len(flux)))
    expected_log = caplog.text
    caplog.clear()
    fast = quality_flags(flux, reference, snr=stated, ids=np.arange(len(flux)))
    np.testing.assert_array_equal(fast, expected)
    assert caplog.text == expected_log  # the same messages, with the same values
    # the bounds were exercised on both sides
    for bit in QualityFlag:
        assert (expected & bit).any() and not (expected & bit).all(), bit
    assert (expected[40:44] & QualityFlag.BAD_NORMALISATION).tolist() == [0, 2, 0, 2]


def test_noise_ratio_does_not_bridge_masked_pixels(giants):
    """A masked pixel removes the second differences it enters, instead of joining two
    pixels far apart (which would read a line edge as noise)."""
    reference, spectra, snr, _ = giants
    star = spectra[:1].copy()
    gappy = star.copy()
    gappy[0, 1::2] = np.nan  # every other pixel: no three good pixels in a row
    _, stats = spectrum_quality(np.vstack([star, gappy]), reference, snr=snr[:2])
    assert np.isfinite(stats["noise_ratio"][0]) and np.isnan(stats["noise_ratio"][1])
