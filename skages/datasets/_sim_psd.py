"""Simulated Kepler power spectra and light curves of red giants.

Model power density (ppm² µHz⁻¹, one-sided) at frequency ν:

``P(ν) = η²(ν) [B_gran(ν) + Σ_modes L(ν)] + W``

- granulation, two Harvey-like components (Kallinger et al. 2014):
  ``B_gran = Σ_i ξ a² / b_i / (1 + (ν / b_i)⁴)``, ``ξ = 2√2/π``,
  ``a = 3382 νmax^-0.609`` ppm, ``b_1 = 0.317 νmax^0.970``, ``b_2 = 0.948 νmax^0.992`` µHz;
- apodisation of the 29.4-min integration, ``η = sinc(ν / 2ν_Nyq)``;
- white noise ``W = 2 σ² Δt`` from the star's Kepler magnitude;
- modes: Lorentzians on the asymptotic pattern (l = 0-3) under a Gaussian
  envelope of FWHM ``0.66 νmax^0.88`` whose Δν-smoothed height is
  ``envelope_height_ratio`` (≈ 4, Mosser et al. 2012) times ``B_gran(νmax)``;
  l = 1 modes are mixed modes from the asymptotic coupling relation with the
  star's ΔΠ1 and q.

The realisation multiplies ``P`` by χ²₂/2 (unit exponential) noise on the
0.009 µHz grid; :func:`skages.seismology.power_to_log_psd` then makes the
2092-pixel log PSD exactly as for real light curves.
"""

from __future__ import annotations

import numpy as np

from skages.seismology import ENVELOPE_FWHM_COEFF, ENVELOPE_FWHM_EXPONENT

#: Kepler long cadence (s) and its Nyquist frequency (µHz).
CADENCE_S = 29.4244 * 60.0
NU_NYQUIST = 1e6 / (2.0 * CADENCE_S)
#: Mode visibilities V_l² relative to radial modes (Mosser et al. 2012).
VISIBILITY = (1.0, 1.54, 0.63, 0.071)
_XI = 2.0 * np.sqrt(2.0) / np.pi
#: l = 1 modes are treated as mixed when the g-mode spacing ν² ΔΠ1 exceeds this (µHz).
_MIXED_MIN_SPACING = 0.03


def _granulation(freq: np.ndarray, numax: np.ndarray, scale: np.ndarray) -> np.ndarray:
    a2 = (scale * 3382.0 * numax**-0.609) ** 2
    out = np.zeros((numax.size, freq.size))
    for coeff, expo in ((0.317, 0.970), (0.948, 0.992)):
        b = (coeff * numax**expo)[:, None]
        x = freq[None, :] / b
        x *= x
        x *= x
        x += 1.0
        np.divide(_XI * a2[:, None] / b, x, out=x)
        out += x
    return out


def apodisation(freq: np.ndarray) -> np.ndarray:
    """η²(ν): power attenuation of the 29.4-min integration (``numpy.sinc`` convention)."""
    return np.sinc(freq / (2.0 * NU_NYQUIST)) ** 2


def background_power(freq: np.ndarray, p: dict) -> np.ndarray:
    """Granulation (apodised) plus white noise, shape (n_stars, n_freq), ppm² µHz⁻¹."""
    gran = _granulation(freq, p["numax_true"], p["granulation_scale"])
    gran *= apodisation(freq)[None, :]
    gran += p["white_noise"][:, None]
    return gran


def _envelope_sigma(numax):
    fwhm = ENVELOPE_FWHM_COEFF * numax**ENVELOPE_FWHM_EXPONENT
    return fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def _mixed_modes(nu_p1, orders, dnu, dpi1, q, eps_g, lo, hi):
    """Frequencies (µHz), order indices and ζ of the l = 1 mixed modes in [lo, hi]."""
    # sample 8 points per g-mode spacing (uniform in period, ν² ΔΠ1 apart in frequency)
    # and at least 32 per Δν: every mixed mode gets its own sign change of h
    c = dpi1 * 1e-6
    nu_switch = np.sqrt(dnu / 4.0 / c)  # where c ν² / 8 = Δν / 32
    parts = []
    if lo < nu_switch:
        parts.append(1.0 / np.arange(1.0 / lo, 1.0 / min(hi, nu_switch), -c / 8.0))
    if hi > nu_switch:
        parts.append(np.arange(max(lo, nu_switch), hi, dnu / 32.0))
    nu = np.concatenate(parts)
    x = np.interp(nu, nu_p1, orders.astype(float))  # continuous p-mode order
    th_p = np.pi * x
    th_g = np.pi * 1e6 / (dpi1 * nu) - np.pi * eps_g
    h = np.sin(th_p) * np.cos(th_g) - q * np.cos(th_p) * np.sin(th_g)
    i = np.flatnonzero(np.signbit(h[:-1]) != np.signbit(h[1:]))
    w = h[i] / (h[i] - h[i + 1])
    root = nu[i] + w * (nu[i + 1] - nu[i])
    th_p = np.pi * np.interp(root, nu_p1, orders.astype(float))
    n_g = dnu / (root**2 * dpi1 * 1e-6)
    zeta = 1.0 / (1.0 + (q / n_g) / (q**2 * np.cos(th_p) ** 2 + np.sin(th_p) ** 2))
    order = np.rint(np.interp(root, nu_p1, orders.astype(float))).astype(int)
    return root, order, zeta


def mode_table(p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All modes of all stars: star index, frequency (µHz), power A² (ppm²), FWHM (µHz).

    ``p`` holds 1-D arrays ``numax_true``, ``dnu_true``, ``evstate``, ``dpi1``,
    ``coupling_q``, ``eps_p``, ``eps_g``, ``mode_linewidth``,
    ``envelope_height_ratio``, ``granulation_scale``.
    """
    numax = np.asarray(p["numax_true"], float)
    dnu_all = np.asarray(p["dnu_true"], float)
    gs = np.asarray(p["granulation_scale"], float)
    a2 = (gs * 3382.0 * numax**-0.609) ** 2
    b_max = np.zeros_like(numax)
    for coeff, expo in ((0.317, 0.970), (0.948, 0.992)):
        b = coeff * numax**expo
        b_max += _XI * a2 / b / (1.0 + (numax / b) ** 4)
    b_max *= apodisation(numax)

    stars, freqs, powers, widths = [], [], [], []
    for s in range(numax.size):
        nm, dnu = numax[s], dnu_all[s]
        sig = _envelope_sigma(nm)
        eps = p["eps_p"][s]
        alpha = 0.015 * dnu**-0.32
        n_max = nm / dnu - eps
        span = 4.0 * sig / dnu
        n = np.arange(np.floor(n_max - span) - 1, np.ceil(n_max + span) + 2)
        curv = 0.5 * alpha * (n - n_max) ** 2
        d02 = 0.121 + 0.035 * np.log10(dnu)
        shifts = (0.0, 0.5 - 0.04, 1.0 - d02, 1.5 - 0.28)
        a0 = p["envelope_height_ratio"][s] * b_max[s] * dnu / sum(VISIBILITY)
        gamma0 = p["mode_linewidth"][s]
        lo, hi = nm - 4.0 * sig, nm + 4.0 * sig
        for ell, (shift, vis) in enumerate(zip(shifts, VISIBILITY, strict=True)):
            nu = (n + shift + eps + curv) * dnu
            env = np.exp(-0.5 * ((nu - nm) / sig) ** 2) * apodisation(nu)
            ok = (nu > max(lo, 0.5)) & (nu < hi)
            if ell == 1:
                # mixed modes within ±3σ of νmax where the g modes are resolvable
                dpi1 = p["dpi1"][s]
                lo_m = max(nm - 3.0 * sig, np.sqrt(_MIXED_MIN_SPACING / (dpi1 * 1e-6)))
                hi_m = nm + 3.0 * sig
                mixed = ok & (nu - 0.5 * dnu > lo_m) & (nu + 0.5 * dnu < hi_m)
                if mixed.any():
                    root, order, zeta = _mixed_modes(
                        nu, n, dnu, dpi1, p["coupling_q"][s], p["eps_g"][s],
                        nu[mixed][0] - 0.5 * dnu, nu[mixed][-1] + 0.5 * dnu,
                    )  # fmt: skip
                    k = order - int(n[0])
                    inside = mixed[k]
                    root, k, zeta = root[inside], k[inside], zeta[inside]
                    share = 1.0 - zeta
                    total = np.bincount(k, weights=share, minlength=n.size)
                    share = share / total[k]
                    keep = share > 1e-3
                    stars.append(np.full(keep.sum(), s))
                    freqs.append(root[keep])
                    powers.append((vis * a0 * env[k] * share)[keep])
                    widths.append(gamma0 * (1.0 - zeta[keep]))
                    ok &= ~mixed
            stars.append(np.full(ok.sum(), s))
            freqs.append(nu[ok])
            powers.append(vis * a0 * env[ok])
            widths.append(np.full(ok.sum(), gamma0))
    return (
        np.concatenate(stars).astype(np.int64),
        np.concatenate(freqs),
        np.concatenate(powers),
        np.concatenate(widths),
    )


def add_modes(model: np.ndarray, f0: float, df: float, modes) -> None:
    """Add Lorentzian modes to ``model`` (n_stars, m) on the grid f0 + k·df, in place.

    A mode of FWHM Γ is evaluated within ±max(20 Γ, 2.5 df) of its centre (at
    most ±256 samples) and its samples are rescaled to hold exactly its power
    A², so truncated wings go to the core rather than being lost. Modes
    narrower than 3 df (unresolved) use the mean of the Lorentzian over each
    sample's bin, so their power lands in the right bins on any grid.
    """
    star, nu, power, width = modes
    m = model.shape[1]
    k_needed = np.ceil(np.maximum(20.0 * width, 2.5 * df) / df).astype(np.int64)
    classes = np.array([3, 8, 24, 64, 128, 192, 256])
    k_class = classes[np.minimum(np.searchsorted(classes, k_needed), classes.size - 1)]
    all_idx, all_val = [], []
    for k in np.unique(k_class):
        sel = np.flatnonzero(k_class == k)
        centre = np.rint((nu[sel] - f0) / df).astype(np.int64)
        idx = centre[:, None] + np.arange(-k, k + 1)[None, :]
        x = (f0 + idx * df) - nu[sel][:, None]
        half = 0.5 * width[sel][:, None]
        if k <= 8:  # bin-averaged profile of unresolved modes
            val = np.arctan((x + 0.5 * df) / half) - np.arctan((x - 0.5 * df) / half)
        else:
            val = 1.0 / (1.0 + (x / half) ** 2)
        val *= (power[sel] / (df * val.sum(axis=1)))[:, None]
        inside = (idx >= 0) & (idx < m)
        all_idx.append((star[sel][:, None] * m + idx)[inside])
        all_val.append(val[inside])
    if all_idx:
        flat = model.reshape(-1)
        flat += np.bincount(np.concatenate(all_idx), np.concatenate(all_val), minlength=flat.size)


def model_power_grid(p: dict, f0: float, df: float, m: int) -> np.ndarray:
    """Model power (n_stars, m), ppm² µHz⁻¹, on the uniform grid ``f0 + k·df`` µHz."""
    freq = f0 + df * np.arange(m)
    model = background_power(freq, p)
    add_modes(model, f0, df, mode_table(p))
    return model


def gap_mask(rng: np.random.Generator, time: np.ndarray) -> np.ndarray:
    """Kepler-like duty cycle: True for cadences kept.

    1-day gaps at each 93-day quarter boundary, 0.6-day monthly downlinks, a
    Poisson(2) number of 2-8-day safe-mode gaps, and 1.5 % of cadences lost at
    random (a duty cycle of about 95 % over four years).
    """
    keep = np.mod(time, 93.0) >= 1.0
    keep &= np.mod(time - 31.0, 31.0) >= 0.6
    for _ in range(rng.poisson(2.0)):
        start = rng.uniform(time[0], time[-1])
        keep &= ~((time >= start) & (time < start + rng.uniform(2.0, 8.0)))
    keep &= rng.random(time.size) >= 0.015
    return keep
