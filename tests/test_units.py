"""Units and plausibility of physical inputs: Quantities are converted, not stripped, and
plain numbers in the wrong unit are refused with a message naming the likely mistake."""

from __future__ import annotations

import gzip
import shutil

import astropy.units as u
import numpy as np
import pandas as pd
import pytest

from skages import seismology as seis
from skages._data import load_example_lightcurve
from skages.encoder import SpectrumToPSDEncoder
from skages.pipeline import fit_age_model, make_age_frame

# ------------------------------------------------------------------ seismology: Quantities


def test_numax_weights_converts_a_quantity():
    expected = seis.numax_weights(100.0)
    np.testing.assert_array_equal(seis.numax_weights(1e-4 * u.Hz), expected)
    assert expected.max() > 1.9  # not the all-ones weights of a stripped 1e-4 µHz
    f = seis.frequency_grid()
    np.testing.assert_allclose(
        seis.numax_weights(100.0 * u.uHz, frequency=f * 1e-3 * u.mHz), expected, rtol=1e-6
    )


def test_scaling_relations_convert_quantities():
    mass = seis.scaling_mass(100.0, 9.0, 4500.0)
    assert 0.5 < mass < 3
    assert seis.scaling_mass(1e-4 * u.Hz, 9e-6 * u.Hz, 4500 * u.K) == pytest.approx(mass)
    celsius = (4500 - 273.15) * u.deg_C
    assert seis.scaling_mass(100 * u.uHz, 9 * u.uHz, celsius) == pytest.approx(mass)
    assert seis.scaling_radius(0.1 * u.mHz, 9 * u.uHz, 4500 * u.K) == pytest.approx(
        seis.scaling_radius(100.0, 9.0, 4500.0)
    )
    assert seis.expected_dnu(1e-4 * u.Hz) == pytest.approx(seis.expected_dnu(100.0))
    assert seis.excess_dnu(9 * u.uHz, 100 * u.uHz) == pytest.approx(seis.excess_dnu(9, 100))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: seis.scaling_mass(100 * u.K, 9.0, 4500.0), "numax"),
        (lambda: seis.scaling_mass(100.0, 9.0 * u.m, 4500.0), "dnu"),
        (lambda: seis.scaling_radius(100.0, 9.0, 4500 * u.uHz), "teff"),
        (lambda: seis.numax_weights(100 * u.s), "numax"),
        (lambda: seis.numax_weights(100.0, frequency=seis.frequency_grid() * u.d), "frequency"),
        (lambda: seis.expected_dnu(3 * u.km), "numax"),
    ],
)
def test_wrong_dimension_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name} must be in"):
        call()


@pytest.mark.parametrize(
    "teff, hint", [(3.65, "log10"), (-9999.0, "sentinel"), (45000.0, "kelvin")]
)
def test_implausible_teff_is_refused(teff, hint):
    with pytest.raises(ValueError, match=f"2,500-10,000 K.*{hint}"):
        seis.scaling_mass(100.0, 9.0, teff)


@pytest.fixture(scope="module")
def example_lightcurve():
    t, f = load_example_lightcurve()
    return t, f


def test_lightcurve_time_quantity_is_converted(example_lightcurve):
    t, f = example_lightcurve
    with pytest.warns(UserWarning, match="resolution"):
        days = seis.lightcurve_to_psd(t, f)
    with pytest.warns(UserWarning, match="resolution"):
        seconds = seis.lightcurve_to_psd(t * 86400.0 * u.s, f)
    np.testing.assert_allclose(seconds, days, atol=1e-4)
    assert 100 < seis.estimate_numax(seconds) < 115  # KIC 11618103: 106-107 µHz


def test_lightcurve_in_plain_seconds_is_refused(example_lightcurve):
    t, f = example_lightcurve
    with pytest.raises(ValueError, match="time in seconds"):
        seis.lightcurve_to_psd(t * 86400.0, f)
    with pytest.raises(ValueError, match="time in seconds"):
        seis.lomb_scargle_power(t * 86400.0, f)


def test_wrong_time_dimension_is_refused(example_lightcurve):
    t, f = example_lightcurve
    with pytest.raises(ValueError, match=r"^time must be in d"):
        seis.lightcurve_to_psd(t * u.m, f)


# ------------------------------------------------------------------ light-curve files


def test_pysyd_power_spectrum_is_not_read_as_a_lightcurve(shared_data):
    path = shared_data / "kepler" / "KIC11618103" / "11618103_PS.txt"
    with pytest.raises(ValueError, match=r"11618103_PS\.txt looks like a power spectrum"):
        seis.read_kepler_lightcurve(path)
    # its light curve, same format, is read
    lc = seis.read_kepler_lightcurve(path.with_name("11618103_LC.txt"))
    assert len(lc) > 20000


def test_gzipped_fits_is_read_like_the_plain_file(shared_data, tmp_path):
    quarter = sorted((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))[0]
    packed = tmp_path / (quarter.name + ".gz")
    with open(quarter, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain = seis.read_kepler_lightcurve(quarter)
    gz = seis.read_kepler_lightcurve(packed)
    np.testing.assert_array_equal(gz.time.value, plain.time.value)
    np.testing.assert_array_equal(gz.flux.value, plain.flux.value)


@pytest.mark.parametrize("keep", [5000, 150_000])
def test_truncated_fits_is_one_error_naming_the_file(shared_data, tmp_path, keep):
    quarter = sorted((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))[0]
    cut = tmp_path / "cut_llc.fits"
    cut.write_bytes(quarter.read_bytes()[:keep])
    with pytest.raises(ValueError, match=r"cut_llc\.fits is not a readable FITS file"):
        seis.read_kepler_lightcurve(cut)


def test_cli_psd_on_a_truncated_fits_is_one_line(shared_data, tmp_path, capsys):
    from skages.cli import main

    quarter = sorted((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))[0]
    cut = tmp_path / "cut_llc.fits"
    cut.write_bytes(quarter.read_bytes()[:150_000])
    assert main(["-q", "psd", str(cut), "--output", str(tmp_path / "x.fits")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "LightkurveError" not in err
    assert "cut_llc.fits" in err


# ------------------------------------------------------------------ labels


def _labels(n: int, teff) -> dict:
    return {
        "teff": teff,
        "fe_h": np.zeros(n),
        "teff_err": np.full(n, 80.0),
        "fe_h_err": np.full(n, 0.05),
    }


def test_make_age_frame_converts_quantities():
    spectra = np.ones((3, 120), dtype=np.float32)
    kelvin = np.array([4500.0, 4800.0, 5000.0])
    lab = _labels(3, (kelvin - 273.15) * u.deg_C)
    lab["teff_err"] = np.full(3, 80.0) * u.deg_C  # an uncertainty: 80 °C is 80 K
    lab["fe_h"] = np.array([0.1, -0.2, 0.0]) * u.dex
    frame = make_age_frame(spectra, lab)
    np.testing.assert_allclose(frame["teff"], kelvin)
    np.testing.assert_allclose(frame["teff_err"], 80.0)
    np.testing.assert_allclose(frame["fe_h"], [0.1, -0.2, 0.0])
    with pytest.raises(ValueError, match=r"labels\['teff'\] must be in K"):
        make_age_frame(spectra, _labels(3, kelvin * u.uHz))


def test_make_age_frame_refuses_implausible_teff():
    spectra = np.ones((3, 120), dtype=np.float32)
    with pytest.raises(ValueError, match=r"labels\['teff'\].*sentinel"):
        make_age_frame(spectra, _labels(3, np.array([4500.0, -9999.0, 4700.0])))
    nan_ok = make_age_frame(spectra, _labels(3, np.array([4500.0, np.nan, 4700.0])))
    assert np.isnan(nan_ok["teff"][1])


# ------------------------------------------------------------------ encoder inputs

_TINY = {
    "latent_dim": 2,
    "encoder_filters": (2,),
    "encoder_kernel_size": 3,
    "hidden_units": 4,
    "decoder_filters": (2,),
    "decoder_kernel_size": 4,
    "max_epochs": 1,
    "batch_size": 16,
    "random_state": 0,
}


@pytest.fixture(scope="module")
def spectra_psd():
    rng = np.random.default_rng(3)
    spectra = (1 + 0.02 * rng.standard_normal((40, 160))).astype(np.float32)
    psd = (0.2 * rng.standard_normal((40, 128)) + np.linspace(2, -0.2, 128)).astype(np.float32)
    return spectra, psd


@pytest.fixture(scope="module")
def fitted(spectra_psd):
    spectra, psd = spectra_psd
    return SpectrumToPSDEncoder(**_TINY).fit(spectra, psd=psd)


def test_unnormalised_spectra_are_refused(spectra_psd, fitted):
    spectra, psd = spectra_psd
    with pytest.raises(ValueError, match=r"not look continuum normalised.*median flux 5"):
        SpectrumToPSDEncoder(**_TINY).fit(spectra * 5000, psd=psd)
    bad = spectra.copy()
    bad[7] *= 5000
    with pytest.raises(ValueError, match=r"row\(s\) \[7\]"):
        fitted.transform(bad)
    # before this check, every un-normalised star got the same latent (all pixels > 2 -> 1)
    assert np.ptp(fitted.transform(spectra), axis=0).min() > 0


def test_spectra_as_quantities(spectra_psd, fitted):
    spectra, _ = spectra_psd
    np.testing.assert_array_equal(
        fitted.transform(spectra * u.dimensionless_unscaled), fitted.transform(spectra)
    )
    with pytest.raises(ValueError, match="must be dimensionless"):
        fitted.transform(spectra * u.erg / u.s / u.cm**2 / u.AA)


def test_linear_psd_is_refused_by_fit(spectra_psd):
    spectra, psd = spectra_psd
    with pytest.raises(ValueError, match=r"linear power, not the natural-log PSD.*numpy\.log"):
        SpectrumToPSDEncoder(**_TINY).fit(spectra, psd=np.exp(psd))


def test_log10_psd_is_refused_against_the_training_spread(spectra_psd, fitted):
    spectra, psd = spectra_psd
    assert fitted.psd_spread_ == pytest.approx(np.median(np.abs(psd - np.median(psd))) * 1.4826)
    fitted.score(spectra[:5], psd=psd[:5])  # natural log: fine, even for a few stars
    with pytest.raises(ValueError, match=r"looks like a log10 PSD.*numpy\.log\(10\)"):
        fitted.score(spectra, psd=psd / np.log(10))


def test_fit_age_model_refuses_linear_psd(small_survey):
    s = small_survey
    with pytest.raises(ValueError, match="linear power"):
        fit_age_model(s.spectra, np.exp(s.psd), s.labels, random_state=0)


def test_fit_age_model_names_the_psd_grid_not_psd_weight(small_survey):
    s = small_survey
    assert "numax" in s.labels
    with pytest.raises(ValueError, match=r"2092-bin grid.*shape \(300, 2091\)") as exc:
        fit_age_model(s.spectra, s.psd[:, 1:], s.labels, random_state=0)
    assert "psd_weight must" not in str(exc.value)


def test_fit_age_model_refuses_teff_in_wrong_units(small_survey):
    s = small_survey
    labels = pd.DataFrame(s.labels).copy()
    labels["teff"] = np.log10(labels["teff"])
    with pytest.raises(ValueError, match="log10"):
        fit_age_model(s.spectra, s.psd, labels, random_state=0)


@pytest.mark.parametrize("what", ["grid", "linear"])
def test_cli_train_refuses_wrong_psds(what, small_survey, tmp_path, capsys, tiny_train_toml):
    from skages.cli import main
    from skages.io import write_survey

    s = small_survey
    data = {"labels": s.labels, "spectra": s.spectra}
    if what == "grid":
        data["psd"] = s.psd[:, 1:]
        frequency = seis.frequency_grid()[1:]
    else:
        data["psd"] = np.exp(s.psd)
        frequency = seis.frequency_grid()
    write_survey(tmp_path / "train.h5", data, frequency=frequency)
    config = tmp_path / "train.toml"
    config.write_text(tiny_train_toml())
    assert main(["-q", "train", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("2092-bin grid" if what == "grid" else "linear power") in err
    assert not (tmp_path / "model.joblib").exists()
