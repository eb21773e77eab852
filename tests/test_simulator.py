"""Tests of the simulated APOKASC-like survey (skages.datasets.simulator and its _sim_* parts).

Statistical checks are seeded; their tolerances follow from the injected noise
and the sample sizes, as stated next to each assertion.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from skages import seismology as seis
from skages.datasets import (
    LABEL_UNITS,
    iter_apokasc,
    load_reference_spectrum,
    make_apokasc,
    model_power,
    simulate_lightcurve,
    simulator,
    write_apokasc,
)
from skages.datasets import _sim_population as pop
from skages.datasets import _sim_psd as sim_psd
from skages.spectra import DEFAULT_BAD_BITS, apogee_wavelength, bad_pixel_mask

ISSUE_COLUMNS = [
    "apogee_id", "kic", "teff", "teff_err", "logg", "fe_h", "fe_h_err", "alpha_m", "c_n",
    "mass", "radius", "numax", "dnu", "excess_dnu", "evstate", "age", "log_age",
    "log_age_err", "snr",
]  # fmt: skip


@pytest.fixture(scope="module")
def survey():
    """768 stars (three blocks) with PSDs."""
    return make_apokasc(768, random_state=7)


@pytest.fixture(scope="module")
def spectra_only():
    """1,536 stars without PSDs, for the spectrum statistics."""
    return make_apokasc(1536, psd=False, random_state=11)


@pytest.fixture(scope="module")
def big_population():
    """Labels of 8,000 stars (the population model alone is cheap)."""
    rng = np.random.default_rng(3)
    return pd.DataFrame(pop.draw_population(rng, 8000, pop.PopulationConfig()))


# ----------------------------------------------------------------- structure


def test_bunch_shapes_dtypes_grids_and_columns(survey):
    n = 768
    assert survey.spectra.shape == survey.spectra_err.shape == survey.bitmask.shape == (n, 7514)
    assert survey.spectra.dtype == survey.spectra_err.dtype == np.float32
    assert survey.bitmask.dtype == np.int32
    assert survey.psd.shape == survey.psd_weight.shape == (n, 2092)
    assert survey.psd.dtype == np.float32
    np.testing.assert_array_equal(survey.frequency, seis.frequency_grid())
    np.testing.assert_array_equal(survey.wavelength, apogee_wavelength())
    assert np.isnan(survey.psd[:, 0]).all() and np.isfinite(survey.psd[:, 1:]).all()
    np.testing.assert_allclose(survey.psd_weight, seis.numax_weights(survey.labels["numax"]))
    labels = survey.labels
    assert len(labels) == n
    assert set(ISSUE_COLUMNS) <= set(labels.columns)
    assert list(labels.columns) == list(LABEL_UNITS)
    assert labels.attrs["units"] == LABEL_UNITS == survey.label_units
    assert LABEL_UNITS["numax"] == "uHz" and LABEL_UNITS["log_age"] == "dex(Gyr)"
    assert labels["apogee_id"].is_unique and labels["kic"].is_unique
    assert labels["apogee_id"].iloc[0] == "2M-SIM-0000001"
    assert labels["kic"].min() > 100_000_000
    # the source stars are real APOKASC-2 or APOKASC-3 Gold RGB / RC stars, with repeats,
    # of the same state
    from skages.io import read_apokasc2

    real = read_apokasc2().to_pandas()
    real = real[real["evstate"].isin(["RGB", "RC"])]
    gold = pop.gold_population()
    pairs = set(zip(real["kic"], real["evstate"], strict=True))
    pairs |= set(zip(gold.kic, np.where(gold.is_rc, "RC", "RGB"), strict=True))
    assert set(labels["evstate"].astype(str)) == {"RGB", "RC"}
    drawn = zip(labels["source_kic"], labels["evstate"].astype(str), strict=True)
    assert all(pair in pairs for pair in drawn)
    in_gold = labels["source_kic"].isin(gold.kic)
    assert 0.3 < in_gold.mean() < 0.9  # α-poor stars in Gold's mass range come from Gold
    assert (labels.alpha_m_true[in_gold] < 0.16).all()


def test_reproducible_with_random_state_and_different_seeds_differ():
    a = make_apokasc(40, psd=False, random_state=3)
    b = make_apokasc(40, psd=False, random_state=3)
    c = make_apokasc(40, psd=False, random_state=4)
    np.testing.assert_array_equal(a.spectra, b.spectra)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    assert not np.allclose(np.nan_to_num(a.spectra), np.nan_to_num(c.spectra))
    g1 = make_apokasc(10, psd=False, random_state=np.random.default_rng(5))
    g2 = make_apokasc(10, psd=False, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(g1.spectra, g2.spectra)
    again = make_apokasc(10, psd=False, random_state=g1.random_seed)
    np.testing.assert_array_equal(again.spectra, g1.spectra)


def test_chunked_equals_unchunked_and_independent_of_n_and_options():
    full = make_apokasc(300, random_state=5)
    chunks = list(iter_apokasc(300, chunk_size=97, random_state=5))
    assert [len(c.labels) for c in chunks] == [97, 97, 97, 9]
    assert [c.start for c in chunks] == [0, 97, 194, 291]
    for name in ("spectra", "spectra_err", "bitmask", "psd", "psd_weight"):
        np.testing.assert_array_equal(np.concatenate([c[name] for c in chunks]), full[name])
    pd.testing.assert_frame_equal(pd.concat([c.labels for c in chunks]), full.labels)
    big = list(iter_apokasc(300, chunk_size=290, psd=False, random_state=5))  # spans 2 blocks
    assert [len(c.labels) for c in big] == [290, 10]
    np.testing.assert_array_equal(np.concatenate([c.spectra for c in big]), full.spectra)
    # star i does not depend on n_stars, start, psd or raw_flux
    small = make_apokasc(100, psd=False, raw_flux=True, random_state=5)
    np.testing.assert_array_equal(small.spectra, full.spectra[:100])
    pd.testing.assert_frame_equal(small.labels, full.labels.iloc[:100])
    (tail,) = list(iter_apokasc(300, start=260, chunk_size=100, random_state=5))
    np.testing.assert_array_equal(tail.psd, full.psd[260:])
    assert tail.labels.index[0] == 260


def test_parallel_workers_give_the_same_survey(capsys):
    one = make_apokasc(300, psd=False, random_state=9)
    two = make_apokasc(300, psd=False, random_state=9, n_jobs=2, verbose=1)
    assert "300/300" in capsys.readouterr().err  # the progress bar goes to stderr
    np.testing.assert_array_equal(one.spectra, two.spectra)
    pd.testing.assert_frame_equal(one.labels, two.labels)


# ---------------------------------------------------------------- population


def test_scaling_relations_hold_and_mass_recovered_within_noise(big_population):
    p = big_population
    # true values obey the scaling relations exactly (APOKASC-2: Δν × fdnu enters them)
    np.testing.assert_allclose(
        seis.scaling_mass(p.numax_true, p.dnu_true * p.fdnu, p.teff_true), p.mass_true, rtol=1e-9
    )
    np.testing.assert_allclose(
        seis.scaling_radius(p.numax_true, p.dnu_true * p.fdnu, p.teff_true),
        p.radius_true,
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        p.logg_true,
        np.log10(27400 * p.mass_true / p.radius_true**2),  # g☉ = 27,400 cm s⁻²
        atol=2e-3,
    )
    # observed mass from noisy νmax, Δν, Teff: pulls against the truth are N(0, 1)
    mass = seis.scaling_mass(p.numax, p.dnu * p.fdnu, p.teff)
    np.testing.assert_allclose(mass, p.mass)
    pull = (mass - p.mass_true) / p.mass_err
    assert abs(np.median(pull)) < 0.1  # small-error propagation: ~3 % skew allowed
    assert 0.9 < np.std(pull) < 1.1  # 8,000 stars: sampling error of the std is 0.8 %
    np.testing.assert_allclose(p.excess_dnu, seis.excess_dnu(p.dnu, p.numax), rtol=1e-12)


def test_correlations_as_in_apokasc2(big_population):
    from skages.io import read_apokasc2

    real = read_apokasc2().to_pandas()
    real = real[real["evstate"].isin(["RGB", "RC"])].dropna(
        subset=["alpha_fe", "log_age", "mass", "fe_h"]
    )
    sim = big_population
    aged = sim.dropna(subset=["log_age"])
    # catalogue against simulated catalogue: APOKASC-2's ages, masses and abundances are
    # measured, so they are compared with the simulator's reference ages and observed
    # values (the noise-free true ages correlate more tightly with [α/M] than any catalogue)
    pairs = [("alpha_fe", "alpha_m", "log_age", "log_age"),
             ("mass", "mass", "log_age", "log_age"),
             ("fe_h", "fe_h", "alpha_fe", "alpha_m")]  # fmt: skip
    for rx, sx, ry, sy in pairs:
        r_real = np.corrcoef(real[rx], real[ry])[0, 1]
        r_sim = np.corrcoef(aged[sx], aged[sy])[0, 1]
        # correlations of 6,479 real and ~5,300 simulated stars: sampling error ~0.015
        assert abs(r_sim - r_real) < 0.05, (rx, ry, r_real, r_sim)
    assert r_real != 0
    # old α-rich stars: α-rich (> 0.13 dex) stars are older than the rest in both
    for table, a, age in ((real, "alpha_fe", "log_age"), (sim, "alpha_m_true", "log_age_true")):
        rich = table[a] > 0.13
        assert table.loc[rich, age].median() - table.loc[~rich, age].median() > 0.25
    # young massive clump stars: RC stars above 1.8 M☉ are younger than 1.5 Gyr in median
    young = sim[(sim.evstate == "RC") & (sim.mass_true > 1.8)]
    assert 10 ** young.log_age_true.median() < 1.5
    assert abs((sim.evstate == "RC").mean() - (real.evstate == "RC").mean()) < 0.03


def _gold_like(p):
    return p[(p.alpha_m_true <= 0.12) & p.mass_true.between(0.9, 1.8)]


def test_mass_spreads_free_of_catalogue_noise(big_population):
    gold = pop.gold_population()
    sim = _gold_like(big_population)
    from astropy.stats import mad_std

    for rc in (False, True):
        real_lnm = gold.ln_mass[gold.is_rc == rc]
        # Gold's spread minus its own ~4 % mass errors, in quadrature
        target = np.sqrt(mad_std(real_lnm) ** 2 - np.median(gold.ln_mass_err) ** 2)
        got = mad_std(np.log(sim.mass_true[(sim.evstate == "RC") == rc]))
        assert abs(got / target - 1) < 0.10, (rc, got, target)  # ~3,000 stars: 2 % error
    # APOKASC-2's noisy clump masses are deconvolved: the spread of the simulated α-rich
    # clump is below that of the catalogue
    src = pop.source_population()
    a2_rc_rich = np.log(src.mass[src.is_rc & (src.alpha_m > 0.12)])
    p = big_population
    sim_rc_rich = np.log(p.mass_true[(p.evstate == "RC") & (p.alpha_m_true > 0.125)])
    assert mad_std(sim_rc_rich) < mad_std(a2_rc_rich)


def test_calibrated_logg_noise_is_that_of_the_stars_sample(big_population):
    from astropy.stats import mad_std

    p = big_population
    err = p.logg_err.to_numpy()
    # the preliminary APOKASC-3 table: Gold stars 0.055 / 0.037 dex, the others
    # 0.091 / 0.055 dex (RGB / RC)
    assert set(np.round(np.unique(err), 3)) == {0.037, 0.055, 0.091}
    gold_like = ((p.alpha_m_true <= 0.1) & p.mass_true.between(0.95, 1.75)).to_numpy()
    rich = (p.alpha_m_true > 0.2).to_numpy()
    for state, gold_err, other_err in (("RGB", 0.0546, 0.0909), ("RC", 0.0374, 0.0553)):
        s = (p.evstate == state).to_numpy()
        assert np.allclose(err[s & gold_like], gold_err, atol=1e-4)
        assert np.allclose(err[s & rich], other_err, atol=1e-4)
        for sel, expected in ((s & gold_like, gold_err), (s & ~gold_like, None)):
            d = (p.logg - p.logg_true).to_numpy()[sel]
            target = expected if expected is not None else np.sqrt(np.mean(err[sel] ** 2))
            assert abs(mad_std(d) / target - 1) < 0.1, (state, mad_std(d), target)


def test_c_n_is_a_mass_proxy_as_in_apokasc3_gold(big_population):
    from astropy.stats import mad_std

    from skages._data import bundled_path

    real = pd.read_csv(bundled_path("APOKASC3_Table4_Gold_trimmed.csv.gz"))
    sim = _gold_like(big_population)
    for state in ("RGB", "RC"):
        r = real[real.Evol_State == state]
        s = sim[sim.evstate == state]
        fits = []
        for lnm, feh, cn in ((np.log(r.Mass), r["[Fe/H]"], r["[C/N]"]),
                             (np.log(s.mass_true), s.fe_h, s.c_n)):  # fmt: skip
            design = np.column_stack([np.ones(len(lnm)), lnm, feh])
            coef, *_ = np.linalg.lstsq(design, cn, rcond=None)
            fits.append((coef, mad_std(cn - design @ coef)))
        (c_real, sd_real), (c_sim, sd_sim) = fits
        assert c_real[1] < -0.3 and c_sim[1] < -0.3  # first dredge-up: massive giants lower
        # slopes from ~3,000 stars each agree within a few sampling errors (~0.02 dex)
        assert abs(c_sim[1] - c_real[1]) < 0.08, (state, c_real, c_sim)
        assert abs(c_sim[2] - c_real[2]) < 0.05, (state, c_real, c_sim)
        assert abs(sd_sim / sd_real - 1) < 0.15, (state, sd_real, sd_sim)
    # low-mass stars past the bump mixed: their [C/N] lies below the no-mixing relation
    p = big_population
    rgb = p[p.evstate == "RGB"]
    x = pop.mixing_index(rgb.mass_true, rgb.logg_true, np.zeros(len(rgb), bool))
    no_mix = pop.carbon_to_nitrogen(
        rgb.mass_true,
        rgb.fe_h_true,
        rgb.alpha_m_true,
        np.full(len(rgb), 10.0),
        np.zeros(len(rgb), bool),
        0.0,
    )
    assert x.max() > 0.5  # some stars past the bump
    np.testing.assert_allclose(
        pop.carbon_to_nitrogen(rgb.mass_true, rgb.fe_h_true, rgb.alpha_m_true, rgb.logg_true,
                               np.zeros(len(rgb), bool), 0.0) - no_mix,
        pop.relations()["c_n"]["RGB"]["coef"][4] * x,
        atol=1e-12,
    )  # fmt: skip


def test_ages_missing_precise_and_noisy(big_population):
    p = big_population
    n = len(p)
    has = p.log_age.notna()
    # binomial: 4σ of a 1/3 fraction over 8,000 stars is 0.021
    assert abs((~has).mean() - 1 / 3) < 0.021
    assert abs(p.precise_age.mean() - 0.12) < 4 * np.sqrt(0.12 * 0.88 / n)
    assert not (p.precise_age & ~has).any()
    assert (p.log_age_err.isna() == ~has).all() and (p.age.isna() == ~has).all()
    rel = p.log_age_err * np.log(10)  # fractional age error
    precise = p.precise_age
    # precise ages: about 10 % (RC); at most about 20 % on the RGB, where the catalogue's
    # seismology alone already gives ~13 % (a pipeline cannot make an age worse than its
    # inputs allow, so precise RGB stars keep their better errors)
    sel = precise & (p.evstate == "RC")
    assert abs(rel[sel].median() / 0.10 - 1) < 0.1
    sel = precise & (p.evstate == "RGB")
    assert rel[sel].median() < 0.2 * 1.1
    # precise clump ages are much better than the catalogue's (~16 %); never worse on the RGB
    rc, rgb = p.evstate == "RC", p.evstate == "RGB"
    assert rel[has & ~precise & rc].median() > 1.3 * rel[precise & rc].median()
    assert rel[precise & rgb].median() < 1.03 * rel[has & ~precise & rgb].median()
    # the quoted errors describe the pipeline's errors: pulls against the true age are
    # N(0, 1) (linear propagation: a few per cent of skew and width allowed)
    pull = (p.log_age - p.log_age_true)[has] / p.log_age_err[has]
    assert abs(pull.mean()) < 0.05 and 0.93 < pull.std() < 1.07  # ~5,300 pulls
    np.testing.assert_allclose(p.age[has], 10 ** p.log_age[has])


def test_pipeline_ages_follow_the_observed_seismology(big_population):
    p = big_population[big_population.log_age.notna()]
    is_rc = (p.evstate == "RC").to_numpy()
    # the reference age is the age relation at the observed mass, [Fe/H] and [α/M] plus
    # the relation's small model scatter (~0.01 dex), so its error follows the mass error
    expected = pop.age_relation(p.mass, p.fe_h, p.alpha_m, is_rc)
    resid = p.log_age - expected
    model = pop.relations()["log_age"]
    for rc, state in ((False, "RGB"), (True, "RC")):
        sd = np.std(resid[is_rc == rc])
        assert abs(sd / model[state]["residual_mad_std"] - 1) < 0.1, (state, sd)
    age_error = p.log_age - p.log_age_true
    mass_error = np.log(p.mass / p.mass_true)
    assert np.corrcoef(age_error, mass_error)[0, 1] < -0.8  # heavier -> younger
    # the true ages follow the smooth relation exactly
    np.testing.assert_allclose(
        p.log_age_true,
        pop.age_relation(p.mass_true, p.fe_h_true, p.alpha_m_true, is_rc),
        atol=1e-12,
    )


def test_independent_reference_age_mode_is_kept():
    rng = np.random.default_rng(5)
    config = pop.PopulationConfig(reference_ages="independent")
    p = pd.DataFrame(pop.draw_population(rng, 4000, config))
    has = p.log_age.notna()
    err = (p.log_age - p.log_age_true)[has]
    mass_error = np.log(p.mass / p.mass_true)[has]
    assert abs(np.corrcoef(err, mass_error)[0, 1]) < 0.1  # independent of the seismology
    pull = err / p.log_age_err[has]
    assert 0.93 < pull.std() < 1.07
    sel = p.precise_age & (p.evstate == "RGB")
    assert abs((p.log_age_err[sel] * np.log(10)).median() / 0.20 - 1) < 0.1
    data = make_apokasc(16, psd=False, reference_ages="independent", random_state=0)
    base = make_apokasc(16, psd=False, random_state=0)
    np.testing.assert_array_equal(data.labels.mass_true, base.labels.mass_true)
    assert not np.allclose(data.labels.log_age, base.labels.log_age, equal_nan=True)


def test_seismic_errors_agreement_scales_the_seismic_noise_only():
    rng = np.random.default_rng(5)
    base = pd.DataFrame(pop.draw_population(rng, 4000, pop.PopulationConfig()))
    rng = np.random.default_rng(5)
    config = pop.PopulationConfig(seismic_errors="agreement")
    agree = pd.DataFrame(pop.draw_population(rng, 4000, config))
    # the same stars; only the νmax and Δν errors (and what follows from them) change
    np.testing.assert_array_equal(agree.mass_true, base.mass_true)
    np.testing.assert_array_equal(agree.teff, base.teff)
    is_rc = (base.evstate == "RC").to_numpy()
    f = pop.seismic_noise_fraction(is_rc)
    assert f.min() > 0.2 and f.max() < 0.6
    free = ~base.precise_age.to_numpy()  # precise stars' errors are set by their ages
    np.testing.assert_allclose(
        (agree.numax_err / base.numax_err)[free], f[free], rtol=1e-12
    )  # fmt: skip
    np.testing.assert_allclose((agree.dnu_err / base.dnu_err)[free], f[free], rtol=1e-12)
    # the drawn noise follows the quoted errors: νmax pulls are N(0, 1) in both
    for p in (base, agree):
        pull = ((p.numax - p.numax_true) / p.numax_err)[free]
        assert 0.95 < pull.std() < 1.05  # ~3,500 pulls: ±0.012 per σ
    # so the seismic masses scatter less about the true ones, by about the fraction
    for state, sel in (("RGB", ~is_rc), ("RC", is_rc)):
        sel = sel & free
        ratio = np.std(np.log(agree.mass / agree.mass_true)[sel]) / np.std(
            np.log(base.mass / base.mass_true)[sel]
        )
        assert ratio < 0.8, state  # Teff noise, unscaled, keeps it above f


def test_seismic_noise_fraction_refits_from_the_real_tables(shared_data):
    import importlib.util
    from pathlib import Path

    from astropy.table import Table

    from skages.io import read_apokasc2

    tool = Path(__file__).resolve().parents[1] / "tools" / "fit_sim_population.py"
    spec = importlib.util.spec_from_file_location("fit_sim_population", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    a2 = read_apokasc2().to_pandas()
    a2 = a2[a2.evstate.isin(["RGB", "RC"])].dropna(subset=["numax", "numax_err"])
    cal = Table.read(shared_data / "apokasc3" / "apokasc3_preliminary_logg_cal.fits")
    fitted = module.seismic_noise(a2, cal.to_pandas())
    for state in ("RGB", "RC"):
        vendored = pop.relations()["seismic_noise"][state]
        assert fitted[state]["n"] > 2000
        # the catalogues agree better than their quoted errors: f well below 1
        assert fitted[state]["fraction"] < 0.6
        np.testing.assert_allclose(fitted[state]["fraction"], vendored["fraction"], rtol=0.02)


def test_age_fractions_are_configurable():
    data = make_apokasc(512, psd=False, missing_age_fraction=0.5, precise_age_fraction=0.3,
                        random_state=1)  # fmt: skip
    lab = data.labels
    assert abs(lab.log_age.isna().mean() - 0.5) < 4 * np.sqrt(0.25 / 512)
    assert abs(lab.precise_age.mean() - 0.3) < 4 * np.sqrt(0.21 / 512)
    none = make_apokasc(64, psd=False, missing_age_fraction=0.0, precise_age_fraction=0.0,
                        random_state=1)  # fmt: skip
    assert none.labels.log_age.notna().all() and not none.labels.precise_age.any()


# ------------------------------------------------------------------- spectra


def test_spectra_scatter_comparable_to_real_training_spectra():
    data = make_apokasc(1024, psd=False, bad_pixel_fill=1.0, random_state=2)
    mean, std = load_reference_spectrum()
    sim_std = data.spectra.astype(float).std(axis=0)
    depth = 1 - mean
    for lo, hi in ((-1, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 1.0)):
        sel = (depth > lo) & (depth <= hi)
        ratio = np.median(sim_std[sel] / std[sel])
        assert 0.75 < ratio < 1.33, (lo, hi, ratio)
    assert np.corrcoef(np.log(sim_std), np.log(std))[0, 1] > 0.75
    # the population mean spectrum stays on the real one
    assert np.median(np.abs(data.spectra.mean(axis=0) - mean)) < 0.005


def test_simple_regressor_recovers_abundances_from_spectra(spectra_only):
    from sklearn.linear_model import RidgeCV
    from threadpoolctl import threadpool_limits

    x = np.nan_to_num(spectra_only.spectra, nan=1.0)
    lab = spectra_only.labels
    train, test = slice(0, 1200), slice(1200, None)
    cols = ["logg_true", "fe_h_true", "alpha_m_true", "c_n_true"]
    y = lab[cols].to_numpy()
    model = RidgeCV(alphas=np.logspace(-3, 3, 13), alpha_per_target=True)
    with threadpool_limits(1):  # threaded BLAS crawls on a busy 2-core machine
        res = model.fit(x[train], y[train]).predict(x[test]) - y[test]
    r2 = dict(zip(cols, 1 - res.var(axis=0) / y[test].var(axis=0), strict=True))
    assert r2["logg_true"] > 0.85 and r2["fe_h_true"] > 0.9, r2
    assert r2["alpha_m_true"] > 0.6 and r2["c_n_true"] > 0.5, r2  # abundances are there


def test_bad_pixels_bitmask_and_snr(spectra_only):
    bad = bad_pixel_mask(spectra_only.bitmask, DEFAULT_BAD_BITS)
    assert 0.01 < bad.mean() < 0.06  # "a few per cent"
    np.testing.assert_array_equal(np.isnan(spectra_only.spectra), bad)
    np.testing.assert_array_equal(np.isnan(spectra_only.spectra_err), bad)
    assert (spectra_only.spectra_err[~bad] > 0).all()
    bits = spectra_only.bitmask
    for bit in (0, 1, 9, 12):
        assert ((bits >> bit) & 1).any(), bit
    assert ((bits >> 12) & 1).mean() > 0.01  # sky lines dominate
    snr = spectra_only.labels.snr
    assert ((snr > 70) & (snr < 500)).mean() > 0.8
    # uncertainties scale as 1 / S/N
    med_err = np.nanmedian(spectra_only.spectra_err, axis=1)
    np.testing.assert_allclose(med_err * snr, np.median(med_err * snr), rtol=0.05)
    ones = make_apokasc(8, psd=False, bad_pixel_fill=1.0, random_state=11)
    mask = bad_pixel_mask(ones.bitmask)
    assert (ones.spectra[mask] == 1).all() and (ones.spectra_err[mask] == 1).all()
    np.testing.assert_array_equal(ones.spectra[~mask], spectra_only.spectra[:8][~mask])


def test_raw_flux_normalises_back_to_the_spectra():
    from skages.spectra import continuum_normalize

    data = make_apokasc(16, psd=False, raw_flux=True, random_state=4)
    assert data.raw_flux.shape == data.raw_flux_err.shape == (16, 8575)
    assert np.isnan(data.raw_flux[:, :246]).all() and np.isnan(data.raw_flux[:, 3274:3585]).all()
    assert np.nanmin(data.raw_flux) > 0
    flux, err = continuum_normalize(data.raw_flux, data.raw_flux_err, data.bitmask)
    good = ~bad_pixel_mask(data.bitmask)
    diff = np.abs(flux[good] - data.spectra[good])
    assert np.median(diff) < 0.005  # the refitted continuum differs by a fraction of a per cent
    rel = np.abs(err[good] / data.spectra_err[good] - 1)  # same continuum ratio as the flux
    assert np.median(rel) < 0.005 and np.quantile(rel, 0.999) < 0.03


# ---------------------------------------------------------------------- PSDs


def _noiseless_log_psd(labels: pd.DataFrame) -> np.ndarray:
    p = {k: np.asarray(labels[k]) for k in simulator._TRUE_PSD_COLUMNS}
    model = sim_psd.model_power_grid(p, seis.FINE_MIN, seis.FINE_STEP, 29779)
    return seis.power_to_log_psd(model)


def test_numax_from_simulated_psds(survey):
    lab = survey.labels
    est = seis.estimate_numax(survey.psd)
    ok = lab.numax_true.between(40, 250).to_numpy()
    # (envelopes above ~200 µHz are cut by the grid's end at 269 µHz: centroid of the rest)
    inside = lab.numax_true.between(40, 200).to_numpy()
    # 1. the envelope is centred on νmax in absolute power (before apodisation)
    f = seis.fine_frequency_grid()
    p = {k: np.asarray(lab[k])[inside][:40] for k in simulator._TRUE_PSD_COLUMNS}
    total = sim_psd.model_power_grid(p, seis.FINE_MIN, seis.FINE_STEP, f.size)
    modes = (total - sim_psd.background_power(f, p)) / sim_psd.apodisation(f)
    centroid = (modes * f).sum(axis=1) / modes.sum(axis=1)
    np.testing.assert_allclose(centroid, p["numax_true"], rtol=0.01)
    # 2. realisation noise and the PSD recipe keep it: within 5 % of the noiseless estimate
    clean = seis.estimate_numax(_noiseless_log_psd(lab[ok]))
    ratio = est[ok] / clean
    assert np.mean(np.abs(ratio - 1) < 0.05) > 0.9 and abs(np.median(ratio) - 1) < 0.02
    # 3. against the true νmax the flattened envelope peaks high, because the background
    #    falls across the envelope (documented): within 10 %, median +2 to +8 %
    bias = est[ok] / lab.numax_true[ok]
    assert np.mean(np.abs(bias - 1) < 0.10) > 0.9
    assert 1.02 < np.median(bias) < 1.08


def test_rc_and_rgb_psds_differ_at_equal_numax(survey):
    lab = survey.labels
    rc = lab[(lab.evstate == "RC") & lab.numax_true.between(30, 45)].iloc[0]
    twin = rc.copy()  # an RGB star with the same νmax, Δν, Teff, mass and background
    twin["evstate"], twin["dpi1"], twin["coupling_q"] = "RGB", 70.0, 0.09
    twin["eps_p"] = rc["eps_p"] + 0.10  # RGB ε at the same Δν (Kallinger et al. 2012)
    rng = np.random.default_rng(0)
    f = seis.fine_frequency_grid()
    runs = {}
    for name, star in (("rc", rc), ("rgb", twin)):
        model = model_power(star, f)
        runs[name] = seis.power_to_log_psd(model * rng.standard_exponential((12, f.size)))
    grid = survey.frequency
    numax, dnu = rc.numax_true, rc.dnu_true
    envelope = np.abs(grid - numax) < 1.5 * dnu
    background = (grid > 150) & (grid < 250)

    def chi2_per_bin(sel):
        a, b = runs["rc"][:, sel], runs["rgb"][:, sel]
        se2 = (a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / a.shape[0]
        return np.mean((a.mean(axis=0) - b.mean(axis=0)) ** 2 / se2)

    assert chi2_per_bin(envelope) > 5.0  # systematically different mode patterns
    assert chi2_per_bin(background) < 2.0  # same granulation and noise: only noise differs
    # across the survey: at equal νmax (30-45 µHz), RC and RGB differ in excess Δν
    band = lab.numax_true.between(30, 45)
    ex = lab.excess_dnu[band]
    assert ex[lab.evstate[band] == "RC"].median() - ex[lab.evstate[band] == "RGB"].median() > 0.1


def test_lightcurve_to_psd_matches_direct_psd_in_expectation(survey):
    lab = survey.labels
    star = lab[lab.numax_true.between(80, 140) & (lab.evstate == "RGB")].iloc[0]
    time, _ = simulate_lightcurve(star, random_state=0)
    cadence = np.median(np.diff(time)) * 1440
    assert abs(cadence - 29.4244) < 1e-6
    assert 1440 < time[-1] - time[0] <= 1460
    assert 0.9 < time.size / (1460 * 1440 / 29.4244) < 0.97  # ~95 % duty cycle
    assert np.diff(time).max() > 0.9  # quarterly gaps

    k = 6
    f = seis.fine_frequency_grid()
    model = model_power(star, f)
    rng = np.random.default_rng(1)
    direct = seis.power_to_log_psd(model * rng.standard_exponential((k, f.size)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curves = [simulate_lightcurve(star, random_state=10 + i) for i in range(k)]
        via_lc = seis.lightcurve_to_psd([t for t, _ in curves], [y for _, y in curves])
    grid = seis.frequency_grid()
    numax, dnu = star.numax_true, star.dnu_true
    bands = {
        "envelope": np.abs(grid - numax) < 2 * dnu,
        "granulation": (grid > 10) & (grid < 30),
        "high": (grid > 200) & (grid < 260),
    }
    for name, sel in bands.items():
        a = np.expm1(direct[:, sel]).mean(axis=1) + 1
        b = np.expm1(via_lc[:, sel]).mean(axis=1) + 1
        se = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / k)
        assert abs(a.mean() - b.mean()) < max(4 * se, 0.02 * a.mean()), (name, a, b)
    # the envelope stands out in both paths
    assert np.expm1(via_lc[:, bands["envelope"]]).mean() > 0.5
    # variance of the light curve is the integral of the model density
    t_full, y_full = simulate_lightcurve(star, gaps=False, random_state=3)
    df = 1e6 / (t_full.size * sim_psd.CADENCE_S)
    fft_f = df * np.arange(t_full.size // 2 + 1)
    expected = model_power(star, fft_f)[1:].sum() * df
    assert abs(np.var(y_full) / expected - 1) < 0.05


# -------------------------------------------------------------------- files


def test_write_apokasc_round_trip_and_exact_resume(tmp_path, monkeypatch):
    from skages.io import SurveyReader

    reference = make_apokasc(600, random_state=21)
    path = tmp_path / "sim.h5"
    real_block = simulator._simulate_block

    def failing(entropy, block, options, lo, hi):
        if block == 2:
            raise RuntimeError("killed")
        return real_block(entropy, block, options, lo, hi)

    monkeypatch.setattr(simulator, "_simulate_block", failing)
    with pytest.raises(RuntimeError, match="killed"):
        write_apokasc(path, 600, chunk_size=128, random_state=21)
    assert not path.exists() and (tmp_path / "sim.h5.partial").exists()
    monkeypatch.setattr(simulator, "_simulate_block", real_block)
    with pytest.raises(ValueError, match="settings"):
        write_apokasc(path, 600, chunk_size=128, psd=False, resume=True)
    with pytest.raises(ValueError, match="random seed"):
        write_apokasc(path, 600, chunk_size=128, resume=True, random_state=22)
    write_apokasc(path, 600, chunk_size=128, resume=True)  # the stored seed is used
    with SurveyReader(path) as survey:
        assert survey.n_stars == 600
        assert survey.metadata["random_seed"] == "21"
        for name in ("spectra", "spectra_err", "bitmask", "psd", "psd_weight"):
            np.testing.assert_array_equal(survey.read(name), reference[name])
        np.testing.assert_array_equal(survey.frequency, seis.frequency_grid())
        labels = survey.labels
        assert survey.label_units["numax"] == "uHz"
    pd.testing.assert_series_equal(labels["apogee_id"], reference.labels["apogee_id"])
    np.testing.assert_array_equal(labels["log_age"], reference.labels["log_age"])
    assert list(labels["evstate"].astype(str)) == list(reference.labels["evstate"].astype(str))


# -------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_stars": 0}, ValueError, "n_stars"),
        ({"n_stars": 2.5}, ValueError, "n_stars"),
        ({"missing_age_fraction": 1.5}, ValueError, "missing_age_fraction"),
        ({"precise_age_fraction": -0.1}, ValueError, "precise_age_fraction"),
        ({"missing_age_fraction": 0.9, "precise_age_fraction": 0.2}, ValueError, "exceed"),
        ({"random_state": "seed"}, ValueError, "random_state"),
        ({"bad_pixel_fill": "nan"}, ValueError, "bad_pixel_fill"),
        ({"psd": "yes"}, ValueError, "psd"),
        ({"reference_ages": "true"}, ValueError, "reference_ages"),
        ({"seismic_errors": "apokasc3"}, ValueError, "seismic_errors"),
    ],
)
def test_make_apokasc_rejects_bad_arguments(kwargs, error, match):
    kwargs = {"n_stars": 4, "psd": False, **kwargs}
    with pytest.raises(error, match=match):
        make_apokasc(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_stars": 0}, "'n_stars' parameter of write_apokasc"),
     ({"chunk_size": 0}, "'chunk_size' parameter of write_apokasc"),
     ({"seismic_errors": "apokasc3"}, "'seismic_errors' parameter of write_apokasc")],
)  # fmt: skip
def test_write_apokasc_names_itself_when_it_rejects_an_argument(tmp_path, kwargs, match):
    kwargs = {"n_stars": 4, "psd": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        write_apokasc(tmp_path / "survey.h5", **kwargs)
    assert not list(tmp_path.iterdir())


def test_iterator_and_lightcurve_reject_bad_arguments(survey, tmp_path):
    with pytest.raises(ValueError, match="chunk_size"):
        iter_apokasc(10, chunk_size=0)
    with pytest.raises(ValueError, match="start must be at most"):
        iter_apokasc(10, start=11)
    assert list(iter_apokasc(10, start=10, random_state=0)) == []
    row = survey.labels.iloc[0]
    with pytest.raises(ValueError, match="lacks"):
        simulate_lightcurve(row.drop("dpi1"))
    with pytest.raises(ValueError, match="one row"):
        simulate_lightcurve(survey.labels.iloc[:2])
    with pytest.raises(TypeError, match="row of make_apokasc"):
        simulate_lightcurve(np.ones(5))
    bad = row.copy()
    bad["evstate"] = "AGB"
    with pytest.raises(ValueError, match="evstate"):
        simulate_lightcurve(bad)
    bad = row.copy()
    bad["numax_true"] = -3.0
    with pytest.raises(ValueError, match="numax_true"):
        simulate_lightcurve(bad)
    with pytest.raises(ValueError, match="duration"):
        simulate_lightcurve(row, duration=0.5)
    with pytest.raises(ValueError, match="uniformly spaced"):
        model_power(row, [1.0, 2.0, 4.0])
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(FileExistsError):
        write_apokasc(tmp_path / "x.h5", 4, psd=False, random_state=0)


def test_extreme_deconvolution_recovers_the_noise_free_distribution():
    from skages.datasets._deconvolve import fit_xd, sample_posterior

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.0, 0.1, 3000), rng.normal(0.5, 0.2, 1000)])
    s = rng.uniform(0.05, 0.3, x.size)  # per-point errors comparable to the spreads
    y = x + s * rng.standard_normal(x.size)
    w, mu, var = fit_xd(y, s, 2)
    # 4,000 points: weights, means and widths within a few sampling errors
    np.testing.assert_allclose(w, [0.75, 0.25], atol=0.04)
    np.testing.assert_allclose(mu, [0.0, 0.5], atol=0.04)
    np.testing.assert_allclose(np.sqrt(var), [0.1, 0.2], atol=0.03)
    # posterior draws are distributed as the noise-free values, not as the noisy ones
    draws = sample_posterior(rng, y, s, w, mu, var)
    assert abs(draws.std() / x.std() - 1) < 0.04 and y.std() / x.std() > 1.2
    assert abs(draws.mean() - x.mean()) < 0.01
    with pytest.raises(ValueError, match="finite"):
        fit_xd(y, np.zeros_like(s))


# ------------------------------------------------- evolutionary-state signatures


def test_extra_mixing_ramps_up_the_rgb_and_is_complete_in_the_clump(big_population):
    p = big_population
    mixing = pop.mixing_index(p.mass_true, p.logg_true, (p.evstate == "RC").to_numpy())
    low = (p.mass_true < 1.3).to_numpy()
    at_clump = p.logg_true.between(2.35, 2.55).to_numpy()
    rc, rgb = (p.evstate == "RC").to_numpy(), (p.evstate == "RGB").to_numpy()
    # at the clump's log g a low-mass clump star carries the full imprint (clip(2 - M) >= 0.7),
    # a first-ascent giant has barely started mixing
    assert np.median(mixing[low & at_clump & rc]) > 0.7
    assert np.median(mixing[low & at_clump & rgb]) < 0.15
    # on the RGB the mixing grows up the branch, towards the clump's value near the tip
    means = [
        mixing[low & rgb & p.logg_true.between(lo, lo + 0.2).to_numpy()].mean()
        for lo in (2.4, 1.9, 1.4)
    ]
    assert means[0] < means[1] < means[2], means
    assert means[2] > 0.7
    # stars of 2 M☉ and more do not mix
    assert np.all(mixing[(p.mass_true >= 2.0).to_numpy()] == 0.0)


def test_extra_mixing_deepens_only_the_13co_features():
    from skages.datasets import _sim_spectra as spec

    offsets = np.zeros((2, len(spec.RESPONSE_LABELS)))
    offsets[1, spec.RESPONSE_LABELS.index("mixing")] = 1.0  # unmixed vs fully mixed
    plain, mixed = spec.noiseless_spectra(offsets)
    _, scale, _ = spec.response_matrix()  # flux = scale * exp(-tau)
    tau_plain, tau_mixed = -np.log(plain / scale), -np.log(mixed / scale)
    wl = apogee_wavelength()
    changed = np.abs(mixed - plain) > 1e-7
    # nothing blueward of the first 13CO bandhead moves (12CO, OH, CN and atoms do not mix)
    first_head = spec.line_list()["13CO_heads"].min()
    assert changed.any() and not changed[wl < first_head - 3.0].any()
    # where 13CO absorbs, it deepens (a lower 12C/13C), by at most ln 2 in optical depth
    ratio = np.log(tau_mixed[changed] / tau_plain[changed])
    assert np.all(ratio > 0) and np.all(ratio <= np.log(2.0) + 1e-9)
    # the 13CO band regions respond, not only the two listed features
    for head in spec.line_list()["13CO_heads"]:
        # (measured 0.46-1: the Al I lines near 16750 Å leave little unidentified absorption)
        assert changed[(wl > head + 5.0) & (wl < head + 60.0)].mean() > 0.3, head


def test_line_model_fit_recovers_the_labels_through_masks_and_continuum():
    """fit_label_offsets, the ASPCAP analogue of the realism report, inverts the model."""
    from skages.datasets import _sim_spectra as spec

    rng = np.random.default_rng(3)
    offsets = rng.normal(size=(6, 6)) * [300.0, 0.3, 0.2, 0.08, 0.15, 0.3]
    tilt = 1.0 + 0.01 * spec._continuum_basis() @ rng.normal(size=12)
    flux = spec.noiseless_spectra(offsets) * tilt
    flux[rng.random(flux.shape) < 0.05] = np.nan  # masked pixels are left out
    err = np.full(flux.shape, 0.01)
    err[:, :40] = np.inf
    fitted = spec.fit_label_offsets(flux, err, 6)
    np.testing.assert_allclose(fitted, offsets, atol=1e-7)
    # a star's labels do not depend on the stars fitted beside it
    np.testing.assert_array_equal(spec.fit_label_offsets(flux, err, 6, chunk=4), fitted)
    np.testing.assert_array_equal(spec.fit_label_offsets(flux[3:4], err[3:4], 6)[0], fitted[3])
    # with 12C/13C held at the mean, as ASPCAP does, the labels of unmixed-at-mean stars
    offsets[:, 5] = 0.0
    flux = spec.noiseless_spectra(offsets) * tilt
    np.testing.assert_allclose(spec.fit_label_offsets(flux, err, 5), offsets[:, :5], atol=1e-7)


def test_line_model_fit_precision_follows_the_noise():
    from skages.datasets import _sim_spectra as spec

    rng = np.random.default_rng(4)
    truth = np.array([[150.0, -0.2, 0.1, 0.05, -0.1, 0.0]])
    model = spec.noiseless_spectra(truth)
    spreads = []
    for snr in (50.0, 200.0):
        err = np.full((40, model.shape[1]), 1.0 / snr)
        flux = model + err * rng.standard_normal(err.shape)
        fitted = spec.fit_label_offsets(flux, err, 5)
        bias = fitted.mean(axis=0) - truth[0, :5]
        spread = fitted.std(axis=0, ddof=1)
        # unbiased within 4 standard errors of the mean (not a systematic offset)
        assert np.all(np.abs(bias) < 4 * spread / np.sqrt(40)), (snr, bias, spread)
        spreads.append(spread)
    # four times the S/N, a quarter of the label error (sampling error of 40 draws: ~11 %)
    np.testing.assert_allclose(spreads[0] / spreads[1], 4.0, rtol=0.35)


def test_spectrum_at_a_real_giants_labels_is_closer_than_the_mean_spectrum(shared_data):
    """The real DR14 giant 2M08002084+4044415 against the simulator at its ASPCAP labels."""
    import json

    from astropy.stats import mad_std

    from skages.datasets import _sim_spectra as spec
    from skages.spectra import chip_slices

    base = shared_data / "apogee_fixtures" / "apogee_dr14_2M08002084+4044415_normalized"
    d = np.load(f"{base}.npz")
    meta = json.loads(base.with_suffix(".json").read_text())
    flux, err = d["normalized_flux"], d["normalized_error"]
    good = d["good_pixel_mask"] & np.isfinite(flux) & (err > 0) & (err < 1)
    logg = meta["log_surface_gravity"]
    values = np.array([
        meta["effective_temperature"], float(pop.spectroscopic_logg(logg, False)),
        meta["metallicity"], meta["alpha_enhancement"],
        meta["carbon_over_m"] - meta["nitrogen_over_m"], float(pop.mixing_index(1.0, logg, False)),
    ])  # fmt: skip
    at_labels = spec.noiseless_spectra((values - simulator._label_reference())[None])[0]
    mean_only = spec.noiseless_spectra(np.zeros((1, values.size)))[0]

    def rms_pull(model, sl):
        # ASPCAP DR14 normalises differently from the DR17 mean spectrum: a quadratic per chip
        x = np.linspace(-1, 1, sl.stop - sl.start)
        g = good[sl]
        coef = np.polyfit(x[g], flux[sl][g] / model[sl][g], 2)
        return mad_std(((flux[sl] - model[sl] * np.polyval(coef, x)) / err[sl])[g])

    for chip, sl in chip_slices().items():
        labelled, plain = rms_pull(at_labels, sl), rms_pull(mean_only, sl)
        # measured 0.63-0.78 (blue, green, red); 0.9 leaves room but not for a wrong sign
        assert labelled < 0.9 * plain, (chip, labelled, plain)
        assert labelled < 3.5, (chip, labelled)  # within a few times the real noise
    # read back with the line model (the realism report's ASPCAP analogue), the real
    # spectrum gives ASPCAP's temperature and, in the simulator's convention, its gravity
    # (measured: -17 K, -0.14 dex; [M/H], [α/M] and [C/N] are off by -0.19, +0.13, +0.48)
    fit_err = np.where(good, err, np.inf)[None].astype(float)
    fitted = spec.fit_label_offsets(flux[None].astype(float), fit_err, 5)[0]
    fitted += simulator._label_reference()[:5]
    assert abs(fitted[0] - values[0]) < 60.0, fitted
    assert abs(fitted[1] - values[1]) < 0.25, fitted
