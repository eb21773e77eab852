"""Tests of skages.seismology: grids, the light curve -> PSD recipe, νmax, scaling relations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skages import seismology as seis

CADENCE = 29.4244 / 1440.0  # Kepler long cadence, days


def _kepler_times(baseline: float, rng: np.random.Generator, gap_fraction: float = 0.01):
    t = np.arange(0.0, baseline, CADENCE)
    # quarterly downlink gaps and random missing cadences
    keep = (np.mod(t, 93.0) > 1.5) & (rng.random(t.size) > gap_fraction)
    return t[keep]


def _oscillating_lightcurve(numax, baseline=1400.0, seed=0, snr=1.0, linewidth=0.1):
    """Flux (ppm) with damped l = 0, 1, 2 modes under a Gaussian envelope at numax.

    The light curve is drawn from a model power spectrum (Lorentzian modes of
    the given linewidth, µHz, on white noise) by inverse FFT of Gaussian
    Fourier amplitudes on a regular long-cadence grid, then cut by Kepler-like
    gaps: stochastically excited modes, as in real red giants. ``snr = 1``
    gives a smoothed envelope about 4 times the background, as observed
    (Mosser et al. 2012).
    """
    rng = np.random.default_rng(seed)
    n = int(baseline / CADENCE)
    freq = np.fft.rfftfreq(n, d=CADENCE * 86400.0) * 1e6  # µHz
    dnu = seis.expected_dnu(numax)
    sigma_env = 0.66 * numax**0.88 / 2.355
    model = np.ones_like(freq)
    for k in range(int(numax / dnu) - 8, int(numax / dnu) + 8):
        for shift, vis in ((0.0, 1.0), (0.5, 1.5), (-0.12, 0.6)):  # l = 0, 1, 2
            nu = dnu * (k + 1.0 + shift)
            height = snr * 30 * vis * np.exp(-0.5 * ((nu - numax) / sigma_env) ** 2)
            model += height / (1 + 4 * ((freq - nu) / linewidth) ** 2)
    amp = np.sqrt(model / 2) * (
        rng.standard_normal(freq.size) + 1j * rng.standard_normal(freq.size)
    )
    flux = np.fft.irfft(amp, n)
    t = np.arange(n) * CADENCE
    keep = (np.mod(t, 93.0) > 1.5) & (rng.random(n) > 0.01)
    return t[keep], 1e6 + 100 * flux[keep] / flux.std()


# ----------------------------------------------------------------------- grids


def test_grid_matches_published_file(shared_data):
    ref = np.loadtxt(shared_data / "reference_model" / "freq_solution.csv")
    grid = seis.frequency_grid()
    assert grid.shape == (2092,)
    np.testing.assert_allclose(grid[1:], ref[1:], rtol=0, atol=1e-6)


def test_grid_matches_bundled_copy():
    from skages.datasets import bundled_path

    ref = np.loadtxt(bundled_path("freq_solution.csv.gz"))
    np.testing.assert_allclose(seis.frequency_grid()[1:], ref[1:], rtol=0, atol=1e-6)


def test_edges_and_fine_grid_layout():
    edges = seis.frequency_edges()
    fine = seis.fine_frequency_grid()
    assert edges.shape == (2093,)
    assert np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(edges[:2], [1.991, 2.0])
    np.testing.assert_allclose(0.5 * (edges[:-1] + edges[1:]), seis.frequency_grid())
    assert fine.shape == (29779,)
    np.testing.assert_allclose([fine[0], fine[-1]], [2.0, 270.002])
    # bin widths grow as Δν(ν)/k: 0.009 µHz at 2 µHz
    np.testing.assert_allclose(edges[2] - edges[1], 0.009, rtol=1e-6)
    # returned arrays are copies: callers can't corrupt the cache
    fine[0] = -1
    assert seis.fine_frequency_grid()[0] == 2.0


# ------------------------------------------------------------------ periodogram


def test_pure_sinusoid_lands_in_its_bin():
    rng = np.random.default_rng(1)
    t = _kepler_times(1400.0, rng)
    nu0 = 57.3
    flux = (
        1 + 1e-3 * np.sin(2 * np.pi * nu0 * 1e-6 * 86400 * t) + 1e-5 * rng.standard_normal(t.size)
    )
    log_psd = seis.lightcurve_to_psd(t, flux)
    edges = seis.frequency_edges()
    peak = np.nanargmax(log_psd)
    assert edges[peak] <= nu0 < edges[peak + 1]
    assert log_psd[peak] > np.nanmedian(log_psd) + 3


@pytest.mark.parametrize("numax", [60.0, 120.0, 200.0])
def test_injected_envelope_recovered(numax):
    # stochastic mode heights scatter a single star's estimate by ~2.5 %, so the
    # envelope's position is checked on the mean of five independent stars
    estimates = []
    for seed in range(5):
        t, flux = _oscillating_lightcurve(numax, seed=seed)
        log_psd = seis.lightcurve_to_psd(t, flux)
        assert log_psd.dtype == np.float32
        assert np.isnan(log_psd[0]) and not np.isnan(log_psd[1:]).any()
        estimates.append(seis.estimate_numax(log_psd))
    assert np.mean(estimates) == pytest.approx(numax, rel=0.03)
    np.testing.assert_allclose(estimates, numax, rtol=0.08)


def test_nufft_matches_astropy_path():
    t, flux = _oscillating_lightcurve(80.0, baseline=1400.0, seed=3)
    p_fast = seis.lomb_scargle_power(t, flux, method="nufft")
    p_ref = seis.lomb_scargle_power(t, flux, method="astropy")
    np.testing.assert_allclose(p_fast, p_ref, rtol=1e-4)
    a = seis.power_to_log_psd(p_fast)
    b = seis.power_to_log_psd(p_ref)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) < 1e-3


def test_power_to_log_psd_on_flat_noise_is_near_zero():
    # χ² (2 d.o.f.) noise about a constant: background division makes the mean ratio ~1
    rng = np.random.default_rng(5)
    power = rng.exponential(3.7, size=(3, seis.fine_frequency_grid().size))
    log_psd, flat = seis.power_to_log_psd(power, return_flattened=True)
    assert log_psd.shape == (3, 2092)
    assert abs(np.mean(flat)) == pytest.approx(1.0, abs=0.05)
    # above 20 µHz each bin averages many smoothed samples
    high = seis.frequency_grid() > 20
    assert np.abs(np.nanmedian(log_psd[:, high])) < 0.05


def test_background_is_mean_of_covering_window_medians():
    """Hand computation of step 2 on a few frequencies."""
    rng = np.random.default_rng(7)
    power = rng.exponential(1.0, size=seis.fine_frequency_grid().size) * np.linspace(5, 1, 29779)
    _, flat = seis.power_to_log_psd(power, return_flattened=True)
    f = seis.fine_frequency_grid()
    logf = np.log10(f)
    for i in (500, 12000, 29000):
        levels = []
        x0_all = np.log10(2.0) + 0.005 * np.arange(500)
        for x0 in x0_all[x0_all < logf[-1]]:
            m = np.abs(logf - x0) < 0.01
            if m[i]:
                levels.append(np.median(power[m]) / (8 / 9) ** 3)
        assert flat[i] == pytest.approx(power[i] / np.mean(levels), rel=1e-9)


def test_batch_and_n_jobs_agree_with_single():
    lcs = [_oscillating_lightcurve(nu, baseline=1300.0, seed=i) for i, nu in enumerate((40, 90))]
    single = np.stack([seis.lightcurve_to_psd(t, y) for t, y in lcs])
    batch = seis.lightcurve_to_psd([t for t, _ in lcs], [y for _, y in lcs], n_jobs=2)
    np.testing.assert_array_equal(single, batch)


# --------------------------------------------------------------------- real data


def test_real_kic11618103_numax(shared_data):
    path = shared_data / "kepler" / "KIC11618103" / "11618103_LC.txt"
    with pytest.warns(UserWarning, match=r"resolution is 0\.019"):
        lc = seis.read_kepler_lightcurve(path)
        log_psd = seis.lightcurve_to_psd(lc)
    assert lc.flux.unit.to_string() == "ppm"
    assert seis.estimate_numax(log_psd) == pytest.approx(106.3, rel=0.05)


def test_real_kic9145861_quarters_stitch(shared_data):
    files = sorted((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))
    assert len(files) == 2
    lc = seis.read_kepler_lightcurve(files)
    t = lc.time.value
    assert np.all(np.diff(t) > 0)
    # both quarters are present: Q1 starts near BKJD 131.5, Q2 ends near 258.5
    assert t[0] < 135 and t[-1] > 255
    assert float(np.nanmedian(np.asarray(lc.flux.value))) == pytest.approx(1e6, rel=1e-3)
    with pytest.warns(UserWarning, match="resolution"):
        log_psd = seis.lightcurve_to_psd(lc)
    assert np.isnan(log_psd[0]) and not np.isnan(log_psd[1:]).any()
    assert seis.estimate_numax(log_psd) == pytest.approx(132.1, rel=0.05)


def test_bundled_example_lightcurve():
    from skages.datasets import load_example_lightcurve

    t, flux = load_example_lightcurve()
    assert t.shape == flux.shape and t.size > 27000
    assert np.all(np.diff(t) > 0)


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("time", "flux", "match"),
    [
        ([], [], "empty"),
        ([0.0, 1.0, 2.0], [1.0, 2.0], "same length"),
        ([0.0, 1.0, 2.0], [np.nan] * 3, "NaN at every cadence"),
        ([0.0, 2.0, 1.0], [1.0, 2.0, 3.0], "not sorted"),
        ([0.0, 1.0, 1.0], [1.0, 2.0, 3.0], "duplicate"),
        ([0.0, 1.0, 2.0, 3.0], [5.0] * 4, "zero variance"),
        ([0.0, np.nan, 2.0], [1.0, 2.0, 3.0], "time contains NaN"),
    ],
)
def test_bad_lightcurves_raise(time, flux, match):
    with pytest.raises(ValueError, match=match):
        seis.lightcurve_to_psd(np.array(time), np.array(flux))


def test_short_baseline_warns_with_resolution():
    t = np.arange(0, 100, CADENCE)
    flux = np.random.default_rng(0).standard_normal(t.size)
    with pytest.warns(UserWarning, match=r"spans 100\.0 d.*0\.11\d\d µHz"):
        seis.lightcurve_to_psd(t, flux)


def test_nan_flux_cadences_are_dropped():
    rng = np.random.default_rng(2)
    t = _kepler_times(1300.0, rng)
    flux = rng.standard_normal(t.size)
    holed = flux.copy()
    holed[::7] = np.nan
    expected = seis.lightcurve_to_psd(t[np.isfinite(holed)], flux[np.isfinite(holed)])
    np.testing.assert_array_equal(seis.lightcurve_to_psd(t, holed), expected)


def test_power_to_log_psd_rejects_wrong_grid():
    with pytest.raises(ValueError, match="29779"):
        seis.power_to_log_psd(np.ones(1000))
    with pytest.raises(ValueError, match="non-negative"):
        seis.power_to_log_psd(-np.ones(29779))


def test_mismatched_batches_raise():
    with pytest.raises(ValueError, match="2 time arrays but 1 flux"):
        seis.lightcurve_to_psd([np.arange(3.0), np.arange(3.0)], [np.arange(3.0)])


def test_not_a_kepler_fits_file(tmp_path: Path):
    path = tmp_path / "spectrum.fits"
    hdu = fits.PrimaryHDU()
    hdu.header["TELESCOP"] = "SDSS 2.5-M"
    fits.HDUList([hdu, fits.ImageHDU(np.ones(10), name="FLUX")]).writeto(path)
    with pytest.raises(ValueError, match="not a Kepler light curve"):
        seis.read_kepler_lightcurve(path)


def test_text_file_that_is_not_a_lightcurve(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not\na light curve\n")
    with pytest.raises(ValueError, match="two-column"):
        seis.read_kepler_lightcurve(path)
    with pytest.raises(FileNotFoundError, match="no such"):
        seis.read_kepler_lightcurve(tmp_path / "missing.fits")


# ------------------------------------------------------- weights and scalings


def test_numax_weights_shape_and_range():
    w = seis.numax_weights([20.0, 100.0, np.nan])
    f = seis.frequency_grid()
    assert w.shape == (3, 2092) and w.dtype == np.float32
    assert w.min() >= 1.0 and w.max() <= 2.0
    assert f[np.argmax(w[1])] == pytest.approx(100.0, rel=0.01)
    np.testing.assert_array_equal(w[2], 1.0)  # unknown νmax: uniform weights
    # width: weight 1 + e^{-1/2} one width (2·Δν) away from νmax
    width = 2 * seis.expected_dnu(100.0)
    w1 = seis.numax_weights(100.0, frequency=[100.0 + width])
    assert w1[0] == pytest.approx(1 + np.exp(-0.5), rel=1e-6)
    with pytest.raises(ValueError, match="positive"):
        seis.numax_weights(-5.0)


def test_scaling_relations_solar_and_apokasc(shared_data):
    assert seis.scaling_mass(seis.SOLAR_NUMAX, seis.SOLAR_DNU, seis.SOLAR_TEFF) == pytest.approx(1)
    assert seis.scaling_radius(seis.SOLAR_NUMAX, seis.SOLAR_DNU, seis.SOLAR_TEFF) == pytest.approx(
        1
    )
    import pandas as pd

    table = pd.read_csv(shared_data / "apokasc2" / "APOKASC2_Table5.txt", sep="\t")
    ok = (table["ES"] == "RGB") & (table["Nmax"] > 0) & (table["M(cor)"] > 0)
    t = table[ok]
    # APOKASC-2 masses use Δν times its correction factor Fdnu; with it, the
    # solar values of scaling_mass reproduce the catalogue masses and radii
    dnu = t["Dnu"] * t["Fdnu"]
    mass = seis.scaling_mass(t["Nmax"], dnu, t["Teff"])
    radius = seis.scaling_radius(t["Nmax"], dnu, t["Teff"])
    assert np.median(mass / t["M(cor)"]) == pytest.approx(1.0, abs=0.005)
    assert np.median(radius / t["R(cor)"]) == pytest.approx(1.0, abs=0.005)


def test_dnu_relations_and_excess():
    assert seis.expected_dnu(100.0, "paper") == pytest.approx(0.263 * 100**0.772)
    assert seis.expected_dnu(100.0) == pytest.approx(0.268 * 100**0.758)
    assert seis.excess_dnu(seis.expected_dnu(50.0, "paper"), 50.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="relation"):
        seis.expected_dnu(10.0, "bogus")


def test_estimate_numax_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2092"):
        seis.estimate_numax(np.zeros(100))
    with pytest.raises(ValueError, match="NaN at every pixel"):
        seis.estimate_numax(np.full(2092, np.nan))
