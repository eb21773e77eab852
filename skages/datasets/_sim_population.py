"""The simulated population: a true population free of catalogue noise, and its labels.

The composition (evolutionary state, [α/M] sequence) is that of APOKASC-2
(Pinsonneault et al. 2018). Masses are deconvolved from the catalogues' stated
errors: α-poor stars in the mass range of APOKASC-3 Gold (0.9-1.8 M☉) are
APOKASC-3 Gold stars (Pinsonneault et al. 2025; 4 % masses), the rest come from
APOKASC-2, each mass drawn from its posterior under an extreme-deconvolution
prior. log g (seismic), [Fe/H] and [α/M] come with the source star; Teff, [C/N],
the Δν correction factor and the age follow smooth relations fitted once to the
real tables (``tools/fit_sim_population.py``, coefficients vendored in
``skages/_data/data/sim_population.json``) plus the intrinsic scatter left after
the measurement noise. Observed labels are the true ones plus DR17-like noise.
Reference ages are made as a seismic pipeline makes them: the same age relation
applied to the *observed* νmax, Δν, Teff, [Fe/H] and [α/M], plus the relation's
model scatter, with the uncertainty such a pipeline quotes. The νmax and Δν errors are
APOKASC-2's quoted ones, or (``seismic_errors="agreement"``) those times
``seismic_noise_fraction`` (about 0.4): APOKASC-2 and APOKASC-3 agree on νmax better than
their quoted errors allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from skages.datasets._deconvolve import sample_posterior
from skages.seismology import SOLAR_DNU, SOLAR_NUMAX, SOLAR_TEFF, excess_dnu

#: log10 of the solar surface gravity (cgs), IAU nominal.
SOLAR_LOGG = 4.438

#: Jitter (1-σ) that keeps resampled stars distinct: log g (dex), [Fe/H] (dex), [α/M] (dex).
_JITTER = {"logg": 0.005, "fe_h": 0.01, "alpha_m": 0.005}

#: DR17-like 1-σ uncertainties of the observed spectroscopic labels: Teff (K), [Fe/H],
#: [α/M], [C/N] (dex). The calibrated log g error is per state and sample
#: (``logg_error``), measured as the robust scatter of calibrated ASPCAP minus seismic log g.
TEFF_ERR = (20.0, 20.0)
FE_H_ERR = 0.02
ALPHA_M_ERR = 0.015
C_N_ERR = 0.04
#: Reference ages: "pipeline" (from the observed seismology) or "independent" (the true age
#: plus independent noise of the stated error, the simulator's former model).
REFERENCE_AGE_MODES = ("pipeline", "independent")
#: νmax and Δν errors: APOKASC-2's quoted ones, or scaled to the APOKASC-2 / APOKASC-3
#: agreement (``seismic_noise_fraction``).
SEISMIC_ERROR_MODES = ("apokasc2", "agreement")
#: Systematic floor added in quadrature to APOKASC-2 age errors of non-precise stars in
#: the "independent" reference-age mode (dex).
AGE_ERROR_FLOOR = 0.10
#: Oldest age (Gyr) of the age relation: nothing is older than the Universe.
MAX_AGE = 13.8
#: Log-normal spread (dex of ln) of individual precise-age errors about their typical value.
_PRECISE_ERR_SPREAD = 0.2

#: Columns of the labels table, with units (astropy strings; "" dimensionless).
LABEL_UNITS: dict[str, str] = {
    "apogee_id": "",
    "kic": "",
    "source_kic": "",
    "evstate": "",
    "teff": "K",
    "teff_err": "K",
    "logg": "dex(cm / s2)",
    "logg_err": "dex",
    "fe_h": "dex",
    "fe_h_err": "dex",
    "alpha_m": "dex",
    "alpha_m_err": "dex",
    "c_n": "dex",
    "c_n_err": "dex",
    "numax": "uHz",
    "numax_err": "uHz",
    "dnu": "uHz",
    "dnu_err": "uHz",
    "fdnu": "",
    "excess_dnu": "uHz",
    "mass": "solMass",
    "mass_err": "solMass",
    "radius": "solRad",
    "radius_err": "solRad",
    "age": "Gyr",
    "log_age": "dex(Gyr)",
    "log_age_err": "dex",
    "precise_age": "",
    "snr": "",
    "kepler_mag": "mag",
    "teff_true": "K",
    "logg_true": "dex(cm / s2)",
    "fe_h_true": "dex",
    "alpha_m_true": "dex",
    "c_n_true": "dex",
    "numax_true": "uHz",
    "dnu_true": "uHz",
    "mass_true": "solMass",
    "radius_true": "solRad",
    "age_true": "Gyr",
    "log_age_true": "dex(Gyr)",
    "dpi1": "s",
    "coupling_q": "",
    "eps_p": "",
    "eps_g": "",
    "mode_linewidth": "uHz",
    "envelope_height_ratio": "",
    "granulation_scale": "",
    "white_noise": "ppm2 / uHz",
    "rv": "km / s",
}


@dataclass(frozen=True)
class PopulationConfig:
    """Options of the population model (validated by the public functions)."""

    missing_age_fraction: float = 1.0 / 3.0
    precise_age_fraction: float = 0.12
    precise_age_error_rc: float = 0.10
    precise_age_error_rgb: float = 0.20
    snr_median: float = 150.0
    reference_ages: str = "pipeline"
    seismic_errors: str = "apokasc2"


@cache
def relations() -> dict:
    """The vendored fits of ``tools/fit_sim_population.py`` (``sim_population.json``)."""
    import json

    from skages._data import bundled_path

    return json.loads(bundled_path("sim_population.json").read_text())


@dataclass(frozen=True)
class _Gold:
    kic: np.ndarray
    is_rc: np.ndarray
    ln_mass: np.ndarray
    ln_mass_err: np.ndarray
    logg: np.ndarray
    fe_h: np.ndarray
    alpha_m: np.ndarray


@cache
def gold_population() -> _Gold:
    """The APOKASC-3 Gold (α-poor) stars the simulator resamples (vendored, trimmed)."""
    import pandas as pd

    from skages._data import bundled_path

    g = pd.read_csv(bundled_path("APOKASC3_Table4_Gold_trimmed.csv.gz"))
    return _Gold(
        kic=g["KIC"].to_numpy(np.int64),
        is_rc=(g["Evol_State"] == "RC").to_numpy(),
        ln_mass=np.log(g["Mass"].to_numpy(float)),
        ln_mass_err=(g["S_Mass"] / g["Mass"]).to_numpy(float),
        logg=g["Logg_Seis"].to_numpy(float),
        fe_h=g["[Fe/H]"].to_numpy(float),
        alpha_m=g["[Alp/Fe]"].to_numpy(float),
    )


def _poly(name: str, is_rc: np.ndarray, terms: list[np.ndarray]) -> np.ndarray:
    fit = relations()[name]
    a, b = np.asarray(fit["RGB"]["coef"]), np.asarray(fit["RC"]["coef"])
    design = np.column_stack(terms)
    return np.where(is_rc, design @ b, design @ a)


def _scatter(name: str, is_rc: np.ndarray) -> np.ndarray:
    fit = relations()[name]
    return np.where(is_rc, fit["RC"]["residual_mad_std"], fit["RGB"]["residual_mad_std"])


def _alpha_in_gold(alpha_m):
    # the Teff and [C/N] relations are fitted on α-poor stars: [α/M] is held inside
    # their range (-0.07 to 0.14 dex) rather than extrapolated linearly
    return np.clip(alpha_m, -0.07, 0.14)


def teff_relation(logg, fe_h, mass, alpha_m, is_rc) -> np.ndarray:
    """Mean Teff (K) at log g (dex), [Fe/H], M (M☉) and [α/M] (fit to APOKASC-3 Gold)."""
    x = np.asarray(logg, float) - 2.5
    one = np.ones_like(x)
    terms = [one, x, x**2, np.asarray(fe_h, float), np.log(mass), _alpha_in_gold(alpha_m)]
    return _poly("teff", np.asarray(is_rc), terms)


def age_relation(mass, fe_h, alpha_m, is_rc) -> np.ndarray:
    """log10 age (Gyr) at M (M☉), [Fe/H] and [α/M] (dex): the fit to APOKASC-2 ages.

    ``log10 τ = c0 + c1 ln M + c2 (ln M)² + c3 [Fe/H] + c4 [α/M] + c5 ln M [Fe/H]`` per
    state, capped at :data:`MAX_AGE`.
    """
    lnm, feh = np.log(mass), np.asarray(fe_h, float)
    terms = [np.ones_like(lnm), lnm, lnm**2, feh, np.asarray(alpha_m, float), lnm * feh]
    return np.minimum(_poly("log_age", np.asarray(is_rc), terms), np.log10(MAX_AGE))


def _age_gradient(mass, fe_h, is_rc):
    """d log10 τ / d ln M, d / d[Fe/H], d / d[α/M] of :func:`age_relation` (uncapped)."""
    fit = relations()["log_age"]
    c = np.where(np.asarray(is_rc)[:, None], fit["RC"]["coef"], fit["RGB"]["coef"])
    lnm = np.log(mass)
    return c[:, 1] + 2 * c[:, 2] * lnm + c[:, 5] * fe_h, c[:, 3] + c[:, 5] * lnm, c[:, 4]


def logg_error(is_rc, from_gold) -> np.ndarray:
    """DR17-like uncertainty (dex) of calibrated log g, per state and sample.

    The robust scatter of calibrated ASPCAP minus seismic log g in the preliminary
    APOKASC-3 table: 0.055 (RGB) and 0.037 (RC) dex for the stars of APOKASC-3 Gold,
    0.091 and 0.055 dex for the others (α-rich, outside Gold's mass range or quality).
    ``from_gold`` marks the simulated stars drawn from Gold stars.
    """
    off = relations()["logg_offset"]
    gold = "calibrated_minus_seismic_mad_std_gold"
    other = "calibrated_minus_seismic_mad_std_other"
    return np.where(
        is_rc,
        np.where(from_gold, off["RC"][gold], off["RC"][other]),
        np.where(from_gold, off["RGB"][gold], off["RGB"][other]),
    )


def seismic_noise_fraction(is_rc) -> np.ndarray:
    """The simulated νmax and Δν errors as a fraction of APOKASC-2's quoted ones, per state.

    The robust width of the APOKASC-2 minus APOKASC-3 νmax differences of the same stars
    in units of their quoted errors in quadrature: 0.34 (RGB, 3,348 stars) and 0.42 (RC,
    2,522 stars). Their differences scatter by 0.43 % and 0.62 % against quoted errors of
    0.9 % and 1.3 % (APOKASC-2) and 0.4-0.6 % (APOKASC-3); APOKASC-2 itself finds its
    pipelines "in much better agreement than would be expected from the pipeline-predicted
    random errors" (Pinsonneault et al. 2018). Both catalogues analyse the same light
    curves, so noise they share cancels in the difference and the fraction is a lower
    bound. APOKASC-3 gives no Δν here; Δν takes the νmax fraction. The scaled errors
    (median 0.3 % RGB, 0.5 % RC in νmax) are APOKASC-3's own quoted precision (0.4-0.6 %).
    """
    noise = relations()["seismic_noise"]
    return np.where(is_rc, noise["RC"]["fraction"], noise["RGB"]["fraction"])


def spectroscopic_logg(logg, is_rc) -> np.ndarray:
    """The log g a spectrum shows (ASPCAP raw): seismic log g + 0.20 (RGB) / + 0.33 (RC) dex."""
    off = relations()["logg_offset"]
    return np.asarray(logg, float) + np.where(
        is_rc, off["RC"]["raw_minus_seismic_median"], off["RGB"]["raw_minus_seismic_median"]
    )


@dataclass(frozen=True)
class _Source:
    kic: np.ndarray
    is_rc: np.ndarray
    teff: np.ndarray
    teff_err: np.ndarray
    fe_h: np.ndarray
    fe_h_err: np.ndarray
    alpha_m: np.ndarray
    alpha_m_err: np.ndarray
    numax: np.ndarray
    numax_frac_err: np.ndarray
    dnu_frac_err: np.ndarray
    fdnu: np.ndarray
    mass: np.ndarray
    mass_frac_err: np.ndarray
    logg: np.ndarray
    log_age: np.ndarray
    log_age_err: np.ndarray


@cache
def source_population() -> _Source:
    """The APOKASC-2 RGB and RC stars: the composition and the stars outside Gold."""
    from skages.io import read_apokasc2

    t = read_apokasc2()
    state = np.asarray(t["evstate"]).astype(str)
    cols = {
        name: np.asarray(t[name], dtype=float)
        for name in (
            "teff", "teff_err", "fe_h", "fe_h_err", "alpha_fe", "alpha_fe_err", "numax",
            "numax_err", "dnu", "dnu_err", "fdnu", "mass", "mass_err", "logg_seis", "log_age",
            "log_age_err",
        )
    }  # fmt: skip
    keep = np.isin(state, ["RGB", "RC"])
    for values in cols.values():
        keep &= np.isfinite(values)
    c = {k: v[keep] for k, v in cols.items()}
    return _Source(
        kic=np.asarray(t["kic"], dtype=np.int64)[keep],
        is_rc=state[keep] == "RC",
        teff=c["teff"],
        teff_err=c["teff_err"],
        fe_h=c["fe_h"],
        fe_h_err=c["fe_h_err"],
        alpha_m=c["alpha_fe"],
        alpha_m_err=c["alpha_fe_err"],
        numax=c["numax"],
        numax_frac_err=c["numax_err"] / c["numax"],
        dnu_frac_err=c["dnu_err"] / c["dnu"],
        fdnu=c["fdnu"],
        mass=c["mass"],
        mass_frac_err=c["mass_err"] / c["mass"],
        logg=c["logg_seis"],
        log_age=c["log_age"],
        log_age_err=c["log_age_err"],
    )


def _posterior_ln_mass(rng, ln_mass, ln_mass_err, is_rc, prefix) -> np.ndarray:
    priors = relations()["mass_prior"]
    out = np.empty(ln_mass.size)
    for rc, state in ((False, "RGB"), (True, "RC")):
        p = priors[f"{prefix}_{state}"]
        draw = sample_posterior(
            rng, ln_mass, ln_mass_err, p["weights"], p["means"], p["variances"]
        )
        out = np.where(is_rc == rc, draw, out)
    return out


def scaling_dnu(mass, numax, teff):
    """Δν (µHz) of the scaling relations for a mass (M☉), νmax (µHz) and Teff (K)."""
    return SOLAR_DNU * ((numax / SOLAR_NUMAX) ** 3 * (teff / SOLAR_TEFF) ** 1.5 / mass) ** 0.25


def seismic_logg(numax, teff):
    """log10 g (cgs) from νmax (µHz) and Teff (K): g ∝ νmax Teff^½."""
    return SOLAR_LOGG + np.log10(numax / SOLAR_NUMAX) + 0.5 * np.log10(teff / SOLAR_TEFF)


def carbon_to_nitrogen(mass, fe_h, alpha_m, logg, is_rc, noise):
    """[C/N] (dex): the per-state fit to APOKASC-3 Gold, plus ``noise``.

    ``[C/N] = c0 + c1 tanh(1.2 ln M) + c2 [Fe/H] + c3 [α/M] + c4 x + noise``, with the
    first dredge-up in the ``tanh`` term (it saturates at high mass) and ``x`` the
    thermohaline extra-mixing index (:func:`mixing_index`); [α/M] is held within the
    Gold range (-0.07 to 0.14 dex).
    """
    is_rc = np.asarray(is_rc)
    terms = [
        np.ones(np.shape(mass)),
        np.tanh(1.2 * np.log(mass)),
        np.asarray(fe_h, float),
        _alpha_in_gold(alpha_m),
        mixing_index(mass, logg, is_rc),
    ]
    return _poly("c_n", is_rc, terms) + noise


#: log g (dex) of the RGB luminosity bump, where thermohaline mixing starts, and the log g
#: interval over which it completes on the way up the RGB (see :func:`mixing_index`).
LOGG_BUMP = 2.5
MIXING_RAMP_DEX = 1.0


def mixing_index(mass, logg, is_rc):
    """Strength (0-1) of thermohaline extra mixing: ``clip(2 − M, 0, 1) · s``.

    ``s = 1`` in the red clump and ``clip((2.5 − log g) / 1.0, 0, 1)`` on the RGB: the
    mixing starts at the luminosity bump (log g ≈ 2.5) and lowers ¹²C/¹³C progressively
    over about one dex in luminosity above it (Charbonnel & Lagarde 2010, A&A 522, A10,
    their Figs. 8-9), so a clump star, which has climbed to the RGB tip, carries the full
    imprint while a first-ascent giant at the clump's log g has barely started. Observed:
    ¹²C/¹³C ≈ 20 on the low RGB against ≈ 10 in the clump (Gilroy & Brown 1991, ApJ 371,
    578; Tautvaišienė et al. 2010, MNRAS 409, 1213; 2013, MNRAS 430, 621). The mixing acts
    on low-mass stars only (the ``clip(2 − M, 0, 1)`` factor).
    """
    logg = np.asarray(logg, float)
    up_the_rgb = np.clip((LOGG_BUMP - logg) / MIXING_RAMP_DEX, 0.0, 1.0)
    past_bump = np.where(is_rc, 1.0, up_the_rgb)
    return np.clip(2.0 - np.asarray(mass, float), 0.0, 1.0) * past_bump


def _intrinsic(name: str, is_rc, noise) -> np.ndarray:
    """Scatter about a fitted relation left after the measurement noise (quadrature)."""
    return np.sqrt(np.maximum(_scatter(name, is_rc) ** 2 - np.asarray(noise) ** 2, 0.0))


def draw_population(rng: np.random.Generator, n: int, config: PopulationConfig) -> dict:
    """True and observed labels of ``n`` stars (a dict of 1-D arrays).

    The order of the random draws is fixed: the same generator state gives the
    same stars whatever else the caller asks for.
    """
    src = source_population()
    gold = gold_population()
    fits = relations()
    idx = rng.integers(0, src.kic.size, n)
    is_rc = src.is_rc[idx]
    rich = src.alpha_m[idx] > fits["alpha_rich"]
    # deconvolved APOKASC-2 masses of the drawn rows
    ln_m_a2 = np.where(
        rich,
        _posterior_ln_mass(rng, np.log(src.mass[idx]), src.mass_frac_err[idx], is_rc, "a2_rich"),
        _posterior_ln_mass(rng, np.log(src.mass[idx]), src.mass_frac_err[idx], is_rc, "a2_poor"),
    )
    # α-poor stars in the Gold mass range are APOKASC-3 Gold stars of the same state
    rgb_rows, rc_rows = np.flatnonzero(~gold.is_rc), np.flatnonzero(gold.is_rc)
    j = np.where(
        is_rc,
        rc_rows[rng.integers(0, rc_rows.size, n)],
        rgb_rows[rng.integers(0, rgb_rows.size, n)],
    )
    ln_m_gold = _posterior_ln_mass(rng, gold.ln_mass[j], gold.ln_mass_err[j], is_rc, "gold")
    lo, hi = np.log(fits["gold_window"])
    use_gold = ~rich & (ln_m_a2 >= lo) & (ln_m_a2 <= hi)
    z = rng.standard_normal((6, n))
    mass = np.clip(np.exp(np.where(use_gold, ln_m_gold, ln_m_a2)), 0.6, 4.0)
    logg = np.where(use_gold, gold.logg[j], src.logg[idx]) + _JITTER["logg"] * z[0]
    fe_h = np.where(use_gold, gold.fe_h[j], src.fe_h[idx]) + _JITTER["fe_h"] * z[1]
    alpha_m = np.where(use_gold, gold.alpha_m[j], src.alpha_m[idx]) + _JITTER["alpha_m"] * z[2]
    source_kic = np.where(use_gold, gold.kic[j], src.kic[idx])

    teff = teff_relation(logg, fe_h, mass, alpha_m, is_rc)
    teff_err = np.where(is_rc, TEFF_ERR[1], TEFF_ERR[0])
    teff += _intrinsic("teff", is_rc, teff_err) * z[3]
    numax = SOLAR_NUMAX * 10 ** (logg - SOLAR_LOGG) * (teff / SOLAR_TEFF) ** -0.5
    numax = np.clip(numax, 2.5, 265.0)
    logg = seismic_logg(numax, teff)
    ln_nu = np.log(numax / 30.0)
    fdnu = _poly(
        "fdnu",
        is_rc,
        [np.ones(n), ln_nu, ln_nu**2, teff / 1000 - 4.8, np.log(mass), fe_h],
    )
    fdnu += _scatter("fdnu", is_rc) * z[4]
    log_age = age_relation(mass, fe_h, alpha_m, is_rc)
    # APOKASC-2 convention: the scaling relations hold for fdnu · Δν_observed
    dnu = scaling_dnu(mass, numax, teff) / fdnu
    radius = (numax / SOLAR_NUMAX) * (dnu * fdnu / SOLAR_DNU) ** -2 * (teff / SOLAR_TEFF) ** 0.5
    c_n = carbon_to_nitrogen(
        mass, fe_h, alpha_m, logg, is_rc, _intrinsic("c_n", is_rc, C_N_ERR) * z[5]
    )

    # survey properties: one brightness drives both APOGEE S/N and Kepler magnitude
    bright = rng.standard_normal(n)
    snr = np.clip(config.snr_median * 10 ** (0.25 * bright), 30.0, 1500.0)
    kepler_mag = np.clip(11.9 - 0.8 * (0.7 * bright + 0.714 * rng.standard_normal(n)), 8.5, 13.8)
    rv = -20.0 + 35.0 * rng.standard_normal(n)

    # oscillation-spectrum parameters (see _sim_psd)
    u = rng.standard_normal((7, n))
    log_dnu = np.log10(dnu)
    dpi1 = np.where(
        is_rc,
        300.0 - 120.0 * np.clip(mass - 1.8, 0.0, 1.0) + 15.0 * u[0],
        np.clip(60.0 + 2.0 * dnu, 55.0, 95.0) + 3.0 * u[0],
    )
    coupling_q = np.where(
        is_rc,
        0.28 + 0.04 * u[1],
        np.clip(0.035 + 0.012 * dnu, 0.03, 0.17) * np.exp(0.1 * u[1]),
    )
    coupling_q = np.clip(coupling_q, 0.02, 0.45)
    eps_p = 0.601 + 0.632 * log_dnu - np.where(is_rc, 0.10, 0.0) + 0.02 * u[2]
    eps_g = 0.28 + 0.05 * u[3]
    linewidth = 0.12 * (teff / 4800.0) ** 4 * np.where(is_rc, 1.2, 1.0) * np.exp(0.15 * u[4])
    height_ratio = 4.0 * np.exp(0.2 * u[5])
    gran_scale = np.exp(0.1 * u[6])
    sigma_lc = 40.0 * 10 ** (0.2 * (kepler_mag - 11.0))  # ppm per 29.4-min cadence
    white = 2.0 * sigma_lc**2 * (29.4244 * 60.0) * 1e-6  # ppm² / µHz, one-sided

    # ---------------------------------------------------------------- observations
    e = rng.standard_normal((9, n))
    fe_h_err = np.full(n, FE_H_ERR)
    alpha_m_err = np.full(n, ALPHA_M_ERR)
    logg_err = logg_error(is_rc, use_gold)
    c_n_err = np.full(n, C_N_ERR)
    r_nu, r_dnu = src.numax_frac_err[idx], src.dnu_frac_err[idx]
    if config.seismic_errors == "agreement":
        f_seis = seismic_noise_fraction(is_rc)
        r_nu, r_dnu = f_seis * r_nu, f_seis * r_dnu

    # which stars have a reference age, and which of them a precise one (Miglio et al.
    # 2021-like: ~10 % RC, ~20 % RGB, each star's error scattered log-normally by 20 %)
    draw = rng.random(n)
    has_age = draw >= config.missing_age_fraction
    precise_p = config.precise_age_fraction / max(1.0 - config.missing_age_fraction, 1e-12)
    precise = has_age & (rng.random(n) < precise_p)
    typical = np.where(is_rc, config.precise_age_error_rc, config.precise_age_error_rgb)
    precise_err = typical / np.log(10.0) * np.exp(_PRECISE_ERR_SPREAD * e[7])
    pipeline = config.reference_ages == "pipeline"
    d_lnm, d_feh, d_alpha = _age_gradient(mass, fe_h, is_rc)
    model_err = _scatter("log_age", is_rc)
    other = (d_feh * FE_H_ERR) ** 2 + (d_alpha * ALPHA_M_ERR) ** 2 + model_err**2
    if pipeline:
        # precise ages come from precise seismology: their νmax and Δν errors shrink so
        # that the age error the pipeline quotes is the star's precise_err
        seis = d_lnm**2 * ((3 * r_nu) ** 2 + (4 * r_dnu) ** 2)
        fixed = d_lnm**2 * (1.5 * teff_err / teff) ** 2 + other
        shrink = np.sqrt(np.clip((precise_err**2 - fixed) / np.maximum(seis, 1e-12), 1e-4, 1.0))
        shrink = np.where(precise, shrink, 1.0)
        r_nu, r_dnu = r_nu * shrink, r_dnu * shrink

    numax_err = r_nu * numax
    dnu_err = r_dnu * dnu
    teff_obs = teff + teff_err * e[0]
    fe_h_obs = fe_h + fe_h_err * e[1]
    alpha_obs = alpha_m + alpha_m_err * e[2]
    logg_obs = logg + logg_err * e[3]
    c_n_obs = c_n + c_n_err * e[4]
    numax_obs = np.maximum(numax + numax_err * e[5], 1e-3)
    dnu_obs = np.maximum(dnu + dnu_err * e[6], 1e-3)
    nu_r, dnu_r, t_r = numax_obs / SOLAR_NUMAX, dnu_obs * fdnu / SOLAR_DNU, teff_obs / SOLAR_TEFF
    mass_obs = nu_r**3 * dnu_r**-4 * t_r**1.5
    radius_obs = nu_r * dnu_r**-2 * t_r**0.5
    rel_nu, rel_dnu, rel_t = numax_err / numax_obs, dnu_err / dnu_obs, teff_err / teff_obs
    rel_mass = np.sqrt((3 * rel_nu) ** 2 + (4 * rel_dnu) ** 2 + (1.5 * rel_t) ** 2)
    mass_err = mass_obs * rel_mass
    radius_err = radius_obs * np.sqrt(rel_nu**2 + (2 * rel_dnu) ** 2 + (0.5 * rel_t) ** 2)

    if pipeline:
        # the pipeline: the same age relation at the observed mass, [Fe/H] and [α/M],
        # plus the relation's model scatter; it quotes the propagated uncertainty
        m_obs = np.clip(mass_obs, 0.5, 5.0)
        log_age_obs = age_relation(m_obs, fe_h_obs, alpha_obs, is_rc) + model_err * e[8]
        g_lnm, g_feh, g_alpha = _age_gradient(m_obs, fe_h_obs, is_rc)
        log_age_err = np.sqrt(
            (g_lnm * rel_mass) ** 2 + (g_feh * FE_H_ERR) ** 2 + (g_alpha * ALPHA_M_ERR) ** 2
            + model_err**2
        )  # fmt: skip
    else:
        broad_err = np.sqrt(src.log_age_err[idx] ** 2 + AGE_ERROR_FLOOR**2)
        log_age_err = np.where(precise, precise_err, broad_err)
        log_age_obs = log_age + log_age_err * e[8]
    log_age_err = np.where(has_age, log_age_err, np.nan)
    log_age_obs = np.where(has_age, log_age_obs, np.nan)

    return {
        "source_kic": source_kic,
        "evstate": np.where(is_rc, "RC", "RGB"),
        "teff": teff_obs,
        "teff_err": teff_err,
        "logg": logg_obs,
        "logg_err": logg_err,
        "fe_h": fe_h_obs,
        "fe_h_err": fe_h_err,
        "alpha_m": alpha_obs,
        "alpha_m_err": alpha_m_err,
        "c_n": c_n_obs,
        "c_n_err": c_n_err,
        "numax": numax_obs,
        "numax_err": numax_err,
        "dnu": dnu_obs,
        "dnu_err": dnu_err,
        "fdnu": fdnu,
        "excess_dnu": excess_dnu(dnu_obs, numax_obs),
        "mass": mass_obs,
        "mass_err": mass_err,
        "radius": radius_obs,
        "radius_err": radius_err,
        "age": 10.0**log_age_obs,
        "log_age": log_age_obs,
        "log_age_err": log_age_err,
        "precise_age": precise,
        "snr": snr,
        "kepler_mag": kepler_mag,
        "teff_true": teff,
        "logg_true": logg,
        "fe_h_true": fe_h,
        "alpha_m_true": alpha_m,
        "c_n_true": c_n,
        "numax_true": numax,
        "dnu_true": dnu,
        "mass_true": mass,
        "radius_true": radius,
        "age_true": 10.0**log_age,
        "log_age_true": log_age,
        "dpi1": dpi1,
        "coupling_q": coupling_q,
        "eps_p": eps_p,
        "eps_g": eps_g,
        "mode_linewidth": linewidth,
        "envelope_height_ratio": height_ratio,
        "granulation_scale": gran_scale,
        "white_noise": white,
        "rv": rv,
    }
