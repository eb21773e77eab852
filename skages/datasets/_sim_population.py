"""The simulated population: APOKASC-2 red giants resampled with jitter, and their labels.

Every simulated star is a real APOKASC-2 RGB or RC star (Pinsonneault et al.
2018) moved by a small jitter, so Teff, [Fe/H], [α/Fe], νmax, mass, state and
age keep their real joint distribution. Δν, radius and log g are then derived
from the jittered values with the scaling relations, so that the seismic
quantities are exactly consistent; [C/N], S/N, Kepler magnitude and the
oscillation-spectrum parameters are drawn from the models documented in
``docs/user_guide/simulator.rst``. Observed labels are the true ones plus
Gaussian noise of the stated uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from skages.seismology import SOLAR_DNU, SOLAR_NUMAX, SOLAR_TEFF, excess_dnu

#: log10 of the solar surface gravity (cgs), IAU nominal.
SOLAR_LOGG = 4.438

#: Jitter (1-σ) added to each resampled star: Teff (K), [Fe/H] (dex), [α/Fe] (dex),
#: ln νmax, ln mass, log10 age beyond the mass term (dex), fdnu.
_JITTER = {
    "teff": 30.0,
    "fe_h": 0.02,
    "alpha_m": 0.01,
    "ln_numax": 0.01,
    "ln_mass": 0.03,
    "log_age": 0.02,
    "fdnu": 0.002,
}

#: Uncertainties of the spectroscopic labels that the source table lacks (dex).
LOGG_ERR = 0.03
C_N_ERR = 0.03
#: Intrinsic scatter of [C/N] at fixed mass and abundances (dex): birth variations and
#: mixing; with C_N_ERR it limits [C/N] masses to ~14 %, as found by Martig et al. (2016).
C_N_SCATTER = 0.07
#: Systematic floor added in quadrature to APOKASC-2 age errors of non-precise stars (dex).
AGE_ERROR_FLOOR = 0.10
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
    log_age: np.ndarray
    log_age_err: np.ndarray
    age_mass_slope: tuple[float, float]  # d log10(age) / d log10(mass): (RGB, RC)


@cache
def source_population() -> _Source:
    """The APOKASC-2 RGB and RC stars with every quantity the simulator resamples."""
    from skages.io import read_apokasc2

    t = read_apokasc2()
    state = np.asarray(t["evstate"]).astype(str)
    cols = {
        name: np.asarray(t[name], dtype=float)
        for name in (
            "teff",
            "teff_err",
            "fe_h",
            "fe_h_err",
            "alpha_fe",
            "alpha_fe_err",
            "numax",
            "numax_err",
            "dnu",
            "dnu_err",
            "fdnu",
            "mass",
            "log_age",
            "log_age_err",
        )
    }
    keep = np.isin(state, ["RGB", "RC"])
    for values in cols.values():
        keep &= np.isfinite(values)
    is_rc = state[keep] == "RC"
    c = {k: v[keep] for k, v in cols.items()}
    log_mass = np.log10(c["mass"])
    slopes = []
    for rc in (False, True):
        sel = is_rc == rc
        design = np.column_stack(
            [np.ones(sel.sum()), log_mass[sel], c["fe_h"][sel], c["alpha_fe"][sel]]
        )
        coef = np.linalg.lstsq(design, c["log_age"][sel], rcond=None)[0]
        slopes.append(float(coef[1]))
    return _Source(
        kic=np.asarray(t["kic"], dtype=np.int64)[keep],
        is_rc=is_rc,
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
        log_age=c["log_age"],
        log_age_err=c["log_age_err"],
        age_mass_slope=(slopes[0], slopes[1]),
    )


def scaling_dnu(mass, numax, teff):
    """Δν (µHz) of the scaling relations for a mass (M☉), νmax (µHz) and Teff (K)."""
    return SOLAR_DNU * ((numax / SOLAR_NUMAX) ** 3 * (teff / SOLAR_TEFF) ** 1.5 / mass) ** 0.25


def seismic_logg(numax, teff):
    """log10 g (cgs) from νmax (µHz) and Teff (K): g ∝ νmax Teff^½."""
    return SOLAR_LOGG + np.log10(numax / SOLAR_NUMAX) + 0.5 * np.log10(teff / SOLAR_TEFF)


def carbon_to_nitrogen(mass, fe_h, alpha_m, logg, is_rc, noise):
    """[C/N] (dex): birth value + first dredge-up + extra mixing + scatter.

    ``[C/N] = 0.03 − 0.15 [Fe/H] + 0.5 ([α/M] − 0.05)`` (birth: Galactic chemical evolution)
    ``− 0.22 − 0.45 tanh(1.2 ln M)`` (first dredge-up) ``− 0.10 x`` (thermohaline mixing,
    ``x`` = :func:`mixing_index`) ``+ noise``.
    """
    birth = 0.03 - 0.15 * fe_h + 0.5 * (alpha_m - 0.05)
    dredge_up = -0.22 - 0.45 * np.tanh(1.2 * np.log(mass))
    return birth + dredge_up - 0.10 * mixing_index(mass, logg, is_rc) + noise


def mixing_index(mass, logg, is_rc):
    """Strength (0-1) of thermohaline extra mixing: ``clip(2 − M, 0, 1) · s``.

    ``s = 1`` on the red clump and ``sigmoid((2.5 − log g) / 0.05)`` on the RGB
    (the mixing starts at the luminosity bump and acts on low-mass stars).
    """
    past_bump = np.where(is_rc, 1.0, 1.0 / (1.0 + np.exp(-(2.5 - logg) / 0.05)))
    return np.clip(2.0 - mass, 0.0, 1.0) * past_bump


def draw_population(rng: np.random.Generator, n: int, config: PopulationConfig) -> dict:
    """True and observed labels of ``n`` stars (a dict of 1-D arrays).

    The order of the random draws is fixed: the same generator state gives the
    same stars whatever else the caller asks for.
    """
    src = source_population()
    idx = rng.integers(0, src.kic.size, n)
    is_rc = src.is_rc[idx]
    z = rng.standard_normal((7, n))

    teff = src.teff[idx] + _JITTER["teff"] * z[0]
    fe_h = src.fe_h[idx] + _JITTER["fe_h"] * z[1]
    alpha_m = src.alpha_m[idx] + _JITTER["alpha_m"] * z[2]
    numax = np.clip(src.numax[idx] * np.exp(_JITTER["ln_numax"] * z[3]), 2.5, 265.0)
    mass = np.clip(src.mass[idx] * np.exp(_JITTER["ln_mass"] * z[4]), 0.6, 4.0)
    slope = np.where(is_rc, src.age_mass_slope[1], src.age_mass_slope[0])
    log_age = src.log_age[idx] + slope * np.log10(mass / src.mass[idx]) + _JITTER["log_age"] * z[5]
    log_age = np.minimum(log_age, np.log10(13.8))  # nothing older than the Universe
    fdnu = src.fdnu[idx] + _JITTER["fdnu"] * z[6]
    # APOKASC-2 convention: the scaling relations hold for fdnu · Δν_observed
    dnu = scaling_dnu(mass, numax, teff) / fdnu
    radius = (numax / SOLAR_NUMAX) * (dnu * fdnu / SOLAR_DNU) ** -2 * (teff / SOLAR_TEFF) ** 0.5
    logg = seismic_logg(numax, teff)
    c_n = carbon_to_nitrogen(
        mass, fe_h, alpha_m, logg, is_rc, C_N_SCATTER * rng.standard_normal(n)
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
    teff_err = src.teff_err[idx]
    fe_h_err = src.fe_h_err[idx]
    alpha_m_err = src.alpha_m_err[idx]
    numax_err = src.numax_frac_err[idx] * numax
    dnu_err = src.dnu_frac_err[idx] * dnu
    logg_err = np.full(n, LOGG_ERR)
    c_n_err = np.full(n, C_N_ERR)
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
    mass_err = mass_obs * np.sqrt((3 * rel_nu) ** 2 + (4 * rel_dnu) ** 2 + (1.5 * rel_t) ** 2)
    radius_err = radius_obs * np.sqrt(rel_nu**2 + (2 * rel_dnu) ** 2 + (0.5 * rel_t) ** 2)

    # ages: a fraction unknown, a subset precise (Miglio et al. 2021-like), the rest APOKASC-like
    draw = rng.random(n)
    has_age = draw >= config.missing_age_fraction
    precise_p = config.precise_age_fraction / max(1.0 - config.missing_age_fraction, 1e-12)
    precise = has_age & (rng.random(n) < precise_p)
    typical = np.where(is_rc, config.precise_age_error_rc, config.precise_age_error_rgb)
    precise_err = typical / np.log(10.0) * np.exp(_PRECISE_ERR_SPREAD * e[7])
    broad_err = np.sqrt(src.log_age_err[idx] ** 2 + AGE_ERROR_FLOOR**2)
    log_age_err = np.where(precise, precise_err, broad_err)
    log_age_obs = log_age + log_age_err * e[8]
    log_age_err = np.where(has_age, log_age_err, np.nan)
    log_age_obs = np.where(has_age, log_age_obs, np.nan)

    return {
        "source_kic": src.kic[idx],
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
