"""Simulated APOGEE spectra: line responses on the real mean spectrum, noise and bitmasks.

The flux of pixel ``p`` is written as ``f_p = exp(-τ̄_p · exp(s_p))`` where
``τ̄_p = -ln m̄_p`` is the optical depth of the real mean spectrum of the
published model's 9,769 training spectra, and ``s_p = Σ_k c_kp Δθ_k`` the
change of the log optical depth caused by the label offsets ``Δθ`` (Teff,
log g, [Fe/H], [α/M], [C/N] and the extra-mixing index) from the population
mean. The coefficients ``c_kp`` come from a species map: real H-band line
positions (Smith et al. 2013, AJ 146, 133; Brackett series from the Rydberg
formula) give each pixel's share of atomic species, the rest of the mean
spectrum's absorption is shared between CO, OH, CN and unidentified lines by
smooth weights, and every species responds to the labels with its own
physically signed sensitivities (table ``_RESPONSES``). Details and equations:
``docs/user_guide/simulator.rst``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from skages.spectra import (
    CHIP_RANGES,
    LOG10_WAVELENGTH_STEP,
    N_PIXELS,
    N_PIXELS_APSTAR,
    apogee_wavelength,
    chip_slices,
)

# -------------------------------------------------------------------- line lists

# Air wavelengths (Å) of clean H-band lines, Smith et al. (2013, AJ 146, 133)
# Tables 2-5 (Fe I, Mg I, Al I, Si I, K I, Ca I, Ti I, V I, Cr I, Mn I, Co I,
# Ni I, Cu I and the molecular features), plus Na I (Cunha) and the 16750.56 Å
# Al I line; converted to vacuum below.
_AIR_LINES: dict[str, list[float]] = {
    "Fe": [15194.492, 15207.526, 15395.718, 15490.339, 15648.510, 15964.867,
           16040.657, 16153.247, 16165.032, 16697.635],
    "Mg": [15740.716, 15748.9, 15765.8, 15879.5, 15886.2, 15889.485, 15954.477],
    "Al": [16718.957, 16750.564, 16763.359],
    "Si": [15361.161, 15376.831, 15833.602, 15960.063, 16060.009, 16094.787,
           16215.670, 16680.770, 16828.159],
    "K": [15163.067, 15168.376],
    "Ca": [16136.823, 16150.763, 16155.236, 16157.364],
    "Ti": [15543.756, 15602.842, 15698.979, 15715.573, 16635.161],
    "V": [15924.0],
    "Cr": [15680.063, 15860.214],
    "Mn": [15159.0, 15217.0, 15262.0],
    "Co": [16757.7],
    "Ni": [15605.680, 15632.654, 16584.439, 16589.295, 16673.711, 16815.471, 16818.760],
    "Cu": [16005.7],
    "Na": [16373.86, 16388.85],
    "OH": [15279.5, 15391.0, 15505.5, 15570.5],
    "CN": [15260.0, 15322.0, 15332.0, 15397.0, 15410.0, 15447.0, 15466.0, 15472.0, 15482.0],
    "13CO": [16122.5, 16743.5],
}  # fmt: skip
# Vacuum wavelengths (Å) of S I lines (Shetrone et al. 2015).
_VAC_LINES = {"S": [15406.540, 15426.490, 15474.043, 15482.712]}
# 12CO second-overtone (Δv = 3) bandheads, air wavelengths (Å): 3-0 to 9-6.
_CO_BANDHEADS_AIR = [15582.0, 15780.5, 15988.0, 16189.5, 16397.0, 16610.5, 16834.0]
# 13CO Δv = 3 bandheads 3-0 to 7-4 (air, Å): the 4-1 and 7-4 heads are the 13CO features
# of the list above; the others scale the 12CO heads by their mean isotopic ratio (1.0214).
_13CO_BANDHEADS_AIR = [15915.0, 16122.5, 16330.0, 16536.0, 16743.5]
#: Share of the unidentified absorption redward of a 13CO bandhead (decaying over 100 Å)
#: that belongs to 13CO lines. Set once so that issue 21's spectra -> state protocol
#: reaches the real anchor (Hawkins, Ting & Rix 2018: < 2-3 % RC contamination from APOGEE
#: spectra alone) at the survey's S/N: 0.1 gave 89 % accuracy and 13 % contamination, 0.3 gives
#: 95.0 % and 5.4 % (APOGEE's own spectroscopic state: 95.8 % and 5.3 %); see
#: ``docs/developers/realism.rst``.
W_13CO_BAND = 0.30

#: Species -> response group.
_GROUP = {
    "Fe": "iron_peak", "V": "iron_peak", "Cr": "iron_peak", "Mn": "iron_peak",
    "Co": "iron_peak", "Ni": "iron_peak", "Cu": "iron_peak", "Na": "iron_peak",
    "Mg": "alpha", "Si": "alpha", "Ca": "alpha", "S": "alpha", "Ti": "titanium",
    "Al": "odd_z", "K": "odd_z", "OH": "OH", "CN": "CN", "13CO": "13CO",
}  # fmt: skip

#: Labels the spectra respond to, and the unit of one step of each.
RESPONSE_LABELS = ("teff", "logg", "fe_h", "alpha_m", "c_n", "mixing")
_LABEL_STEP = np.array([1000.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # K, dex, dex, dex, dex, index

#: d ln τ / d label for each group, per (1000 K, dex of log g, dex, dex, dex, mixing index).
#: Signs: neutral metal lines and molecules weaken with Teff, Brackett lines strengthen;
#: molecular bands of cool giants strengthen at low gravity (CO, CN), pressure-broadened
#: wings at high gravity (Mg, Brackett); lines scale with their element's abundance
#: (d ln τ / d [X/H] ≈ ln 10 × 0.7 on the curve of growth); at fixed C+N, lowering [C/N]
#: weakens CO and strengthens CN; full extra mixing halves 12C/13C (about 20 -> 10, see
#: ``_sim_population.mixing_index``), so the weak 13CO lines deepen by ln 2 ≈ 0.7.
_RESPONSES: dict[str, tuple[float, ...]] = {
    #             teff  logg  fe_h  alpha  c_n  mixing
    "iron_peak": (-1.0, 0.15, 1.6, 0.0, 0.0, 0.0),
    "alpha": (-0.7, 0.35, 1.6, 1.8, 0.0, 0.0),
    "titanium": (-2.5, 0.10, 1.6, 1.8, 0.0, 0.0),
    "odd_z": (-1.5, 0.25, 1.6, 0.6, 0.0, 0.0),
    "brackett": (2.5, 0.60, 0.0, 0.0, 0.0, 0.0),
    "OH": (-3.5, 0.30, 1.8, 1.8, 0.0, 0.0),
    "CO": (-1.2, -0.50, 1.5, 0.0, 0.6, 0.0),
    "CN": (-1.5, -0.30, 2.0, 0.0, -0.7, 0.0),
    "13CO": (-1.2, -0.50, 1.5, 0.0, 0.3, 0.7),
    "forest": (-1.0, 0.10, 1.6, 0.0, 0.0, 0.0),
}
#: Global gain on all responses, set once so that the per-pixel standard deviation of a
#: simulated population matches the real one (see ``calibration_report``).
RESPONSE_GAIN = 0.8
#: Optical depth at which a line's response is halved (curve-of-growth saturation).
TAU_SATURATION = 0.2

_RESOLUTION = 22_500.0
_C_KMS = 299_792.458


def air_to_vacuum(wavelength_air) -> np.ndarray:
    """Vacuum wavelength (Å) of an air wavelength (Å), IAU standard (Morton 2000).

    Solves ``λ_vac = λ_air · n(λ_vac)`` by fixed-point iteration.
    """
    air = np.asarray(wavelength_air, dtype=float)
    vac = air.copy()
    for _ in range(4):
        s2 = (1e4 / vac) ** 2
        n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s2) + 1.5998e-4 / (38.9 - s2)
        vac = air * n
    return vac


def line_list() -> dict[str, np.ndarray]:
    """Vacuum wavelengths (Å) of the lines the simulator gives their own response.

    Returns
    -------
    dict of str to ndarray
        Species (element or molecule) -> line centres in Å (vacuum); ``"H"`` holds
        the Brackett lines Br 11 to Br 20 (Rydberg formula), ``"CO"`` the 12CO
        Δv = 3 bandheads and ``"13CO_heads"`` the 13CO Δv = 3 bandheads.
    """
    out = {k: air_to_vacuum(v) for k, v in _AIR_LINES.items()}
    out.update({k: np.asarray(v) for k, v in _VAC_LINES.items()})
    rydberg_h = 109_677.583  # cm⁻¹
    n_up = np.arange(11, 21)
    out["H"] = 1e8 / (rydberg_h * (1 / 16 - 1 / n_up.astype(float) ** 2))
    out["CO"] = air_to_vacuum(_CO_BANDHEADS_AIR)
    out["13CO_heads"] = air_to_vacuum(_13CO_BANDHEADS_AIR)
    return out


# ------------------------------------------------------------------ species map


@cache
def _reference() -> tuple[np.ndarray, np.ndarray]:
    from skages._data import load_reference_spectrum

    return load_reference_spectrum()


@cache
def response_matrix() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Baseline optical depth, continuum factor and response coefficients per pixel.

    Returns
    -------
    tau : ndarray of shape (7514,)
        ``-ln min(m̄, 0.9995)`` of the real mean spectrum ``m̄``.
    scale : ndarray of shape (7514,)
        ``m̄ / min(m̄, 0.9995)``: keeps pixels above 1 (normalisation artefacts) as they are.
    coef : ndarray of shape (6, 7514)
        d ln τ / d label for :data:`RESPONSE_LABELS`, per unit of the label
        (K, dex, dex, dex, dex, mixing index), times :data:`RESPONSE_GAIN`.
    """
    mean, _ = _reference()
    wl = apogee_wavelength()
    depth = np.clip(1.0 - mean, 0.0, None)
    capped = np.minimum(mean, 0.9995)
    tau = -np.log(capped)

    lines = line_list()
    share = {g: np.zeros(N_PIXELS) for g in (*_RESPONSES, "brackett")}
    sigma_lsf = wl / _RESOLUTION / 2.3548
    atomic_total = np.zeros(N_PIXELS)
    strong = {"Mg", "Al", "K"}
    for species, centres in lines.items():
        if species in ("CO", "H", "13CO_heads"):
            continue
        group = _GROUP[species]
        for c in centres:
            width = np.interp(c, wl, sigma_lsf) * (2.0 if species in strong else 1.3)
            profile = np.exp(-0.5 * ((wl - c) / width) ** 2)
            amp = np.interp(c, wl, depth)
            contrib = amp * profile
            share[group] += contrib
            atomic_total += contrib
    # Brackett lines: Stark-broadened, a Lorentzian of 2.5 Å half width
    for c in lines["H"]:
        amp = np.interp(c, wl, depth)
        contrib = amp / (1.0 + ((wl - c) / 2.5) ** 2)
        share["brackett"] += contrib
        atomic_total += contrib
    norm = np.maximum(depth, atomic_total)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = {g: np.where(norm > 0, v / norm, 0.0) for g, v in share.items()}
    forest = np.clip(1.0 - sum(frac.values()), 0.0, 1.0)

    # the unidentified absorption: CO redward of its bandheads, OH strongest in the blue,
    # CN everywhere, the rest unidentified (mostly weak metal lines)
    co = np.zeros(N_PIXELS)
    for head in lines["CO"]:
        co += np.where(wl >= head, np.exp(-(wl - head) / 100.0), 0.0)
    w_co = 0.6 * np.clip(co, 0.0, 1.0)
    co13 = np.zeros(N_PIXELS)
    for head in lines["13CO_heads"]:
        co13 += np.where(wl >= head, np.exp(-(wl - head) / 100.0), 0.0)
    w_13co = W_13CO_BAND * np.clip(co13, 0.0, 1.0)
    w_oh = 0.45 * np.exp(-(wl - 15150.0) / 900.0)
    w_cn = np.full(N_PIXELS, 0.30)
    total = w_co + w_13co + w_oh + w_cn
    squeeze = np.where(total > 0.9, 0.9 / total, 1.0)
    frac["CO"] = frac.get("CO", 0.0) + forest * w_co * squeeze
    frac["13CO"] += forest * w_13co * squeeze
    frac["OH"] += forest * w_oh * squeeze
    frac["CN"] += forest * w_cn * squeeze
    frac["forest"] = forest * (1.0 - total * squeeze)

    coef = np.zeros((len(RESPONSE_LABELS), N_PIXELS))
    for group, f in frac.items():
        coef += np.asarray(_RESPONSES[group])[:, None] * f[None, :]
    # curve of growth: strong (saturated) lines respond less than weak ones
    coef *= RESPONSE_GAIN / _LABEL_STEP[:, None] / (1.0 + tau / TAU_SATURATION)[None, :]
    tau.setflags(write=False)
    scale = mean / capped
    scale.setflags(write=False)
    coef.setflags(write=False)
    return tau, scale, coef


def noiseless_spectra(offsets: np.ndarray) -> np.ndarray:
    """Continuum-normalised model flux for label offsets.

    Parameters
    ----------
    offsets : ndarray of shape (n_stars, 6)
        Label minus population reference, in the units of :data:`RESPONSE_LABELS`.

    Returns
    -------
    ndarray of shape (n_stars, 7514), float64
    """
    tau, scale, coef = response_matrix()
    s = offsets @ coef
    np.exp(s, out=s)
    s *= -tau
    np.exp(s, out=s)
    s *= scale
    return s


def _continuum_basis() -> np.ndarray:
    """Cubic Chebyshev polynomials of pixel position on each chip, shape (7514, 12)."""
    basis = np.zeros((N_PIXELS, 12))
    for i, sl in enumerate(chip_slices().values()):
        x = np.linspace(-1.0, 1.0, sl.stop - sl.start)
        basis[sl, 4 * i : 4 * i + 4] = np.polynomial.chebyshev.chebvander(x, 3)
    return basis


def _row_sums(weights: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``weights @ vectors`` as a sum over the rows of ``vectors`` in a fixed order.

    A matrix product's additions follow the BLAS blocking, which changes with the number
    of stars; this keeps each star's result independent of the others in the batch.
    """
    out = np.zeros((weights.shape[0], vectors.shape[1]))
    for k in range(vectors.shape[0]):
        out += weights[:, k, None] * vectors[k]
    return out


def fit_label_offsets(
    flux: np.ndarray,
    flux_err: np.ndarray,
    n_labels: int = 5,
    *,
    n_iter: int = 8,
    chunk: int = 200,
) -> np.ndarray:
    """Read label offsets from spectra by fitting the simulator's own line model.

    The analogue of ASPCAP on simulated spectra: each spectrum is fitted by weighted
    least squares (Gauss-Newton from the population mean) with :func:`noiseless_spectra`
    for the first ``n_labels`` of :data:`RESPONSE_LABELS` times a cubic polynomial per
    chip (the normalisation residual). With ``n_labels=5`` the extra-mixing index
    (¹²C/¹³C) stays at the mean, as ASPCAP's grids hold ¹²C/¹³C fixed.

    Parameters
    ----------
    flux, flux_err : ndarray of shape (n_stars, 7514)
        Continuum-normalised flux and its uncertainty; non-finite or non-positive
        uncertainties mark pixels left out of the fit.
    n_labels : int, default=5
        How many labels, in the order of :data:`RESPONSE_LABELS`, are fitted.
    n_iter : int, default=8
        Gauss-Newton steps (the fit converges in about five).
    chunk : int, default=200
        Stars fitted together (memory ~ ``chunk`` × 7514 × (n_labels + 12) × 8 bytes).

    Returns
    -------
    ndarray of shape (n_stars, n_labels)
        Offsets from the population reference, in the units of :data:`RESPONSE_LABELS`
        (K, dex, dex, dex, dex, mixing index).
    """
    tau, scale, coef = response_matrix()
    coef = coef[:n_labels]
    basis = _continuum_basis()
    out = np.empty((len(flux), n_labels))
    for a in range(0, len(flux), chunk):
        # float64 one chunk at a time: a survey's float32 spectra are not copied whole
        f = np.asarray(flux[a : a + chunk], dtype=float)
        e = np.asarray(flux_err[a : a + chunk], dtype=float)
        good = np.isfinite(f) & np.isfinite(e) & (e > 0)
        weight = np.where(good, 1.0 / np.where(good, e, 1.0) ** 2, 0.0)
        f = np.where(good, f, 0.0)
        theta = np.zeros((f.shape[0], n_labels))
        cont = np.tile([1.0, 0.0, 0.0, 0.0], (f.shape[0], 3))
        for _ in range(n_iter):
            boost = np.exp(_row_sums(theta, coef))
            model = scale * np.exp(-tau * boost)
            poly = _row_sums(cont, basis.T)
            # columns: d(model * poly) / d theta, then d / d cont (the increments solve for
            # the new continuum coefficients directly)
            design = np.concatenate(
                [
                    (poly * model * -tau * boost)[:, None, :] * coef[None],
                    model[:, None, :] * basis.T[None],
                ],
                axis=1,
            )
            weighted_resid = weight * (f - model * poly)
            # the sums over pixels star by star, with einsum's own loop (no BLAS): the same
            # order of additions whatever the batch and the thread count
            step = np.empty((f.shape[0], design.shape[1]))
            for i in range(f.shape[0]):
                normal = np.einsum("ip,p,jp->ij", design[i], weight[i], design[i])
                rhs = np.einsum("ip,p->i", design[i], weighted_resid[i])
                step[i] = np.linalg.solve(normal, rhs)
            theta += step[:, :n_labels]
            cont += step[:, n_labels:]
        out[a : a + chunk] = theta
    return out


# ---------------------------------------------------------------- noise, masks


@cache
def error_shape() -> np.ndarray:
    """Relative per-pixel uncertainty at S/N = 1 (median 1): chip throughput and edges."""
    shape = np.empty(N_PIXELS)
    for sl, level in zip(chip_slices().values(), (1.15, 1.0, 0.9), strict=True):
        n = sl.stop - sl.start
        d = np.minimum(np.arange(n), np.arange(n)[::-1])
        shape[sl] = level * (1.0 + 0.8 * np.exp(-d / 40.0))
    shape /= np.median(shape)
    shape.setflags(write=False)
    return shape


_MARGIN = 64  # pixels of apStar grid beyond each end, for radial-velocity shifts
_PX_PER_KMS = 1.0 / (_C_KMS * np.log(10.0) * LOG10_WAVELENGTH_STEP)


@cache
def _detector_features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed-frame sky lines (start, stop pixel) and bad detector pixels on the apStar grid.

    Drawn once from a fixed seed: 55 airglow-like lines 3-7 pixels wide and 0.4 % bad
    pixels in the chips. Indices are offset by ``_MARGIN``.
    """
    rng = np.random.default_rng(20230415)
    chips = np.concatenate([np.arange(a, b) for a, b in CHIP_RANGES.values()])
    centres = np.sort(rng.choice(chips, 55, replace=False))
    widths = rng.integers(3, 8, centres.size)
    start = centres - widths // 2 + _MARGIN
    stop = start + widths
    bad = np.sort(rng.choice(chips, int(0.004 * chips.size), replace=False)) + _MARGIN
    return start, stop, bad


def _apstar_to_gap_removed_index() -> np.ndarray:
    return np.concatenate([np.arange(a, b) for a, b in CHIP_RANGES.values()])


def draw_bitmask(rng: np.random.Generator, rv: np.ndarray) -> np.ndarray:
    """APOGEE_PIXMASK-like bitmasks (int32, (n, 7514)) in each star's rest frame.

    Bits: 12 SIG_SKYLINE (airglow lines, each flagged with probability 0.75 per
    star), 0 BADPIX (fixed detector pixels), 1 CRPIX (about 6 cosmic rays per
    star), 9 PERSIST_HIGH (blue-chip persistence in 15 % of stars; not a bad bit).
    The sky and detector features are fixed in the observed frame and move with
    the star's radial velocity ``rv`` (km/s).
    """
    n = rv.size
    width = N_PIXELS_APSTAR + 2 * _MARGIN
    start, stop, bad = _detector_features()
    shift = np.rint(rv * _PX_PER_KMS).astype(np.int64)  # rest = observed - shift

    def paint(starts, stops, keep) -> np.ndarray:
        diff = np.zeros((n, width + 1), dtype=np.int32)
        rows = np.broadcast_to(np.arange(n)[:, None], keep.shape)[keep]
        a = np.clip((starts[None, :] - shift[:, None])[keep], 0, width)
        b = np.clip((stops[None, :] - shift[:, None])[keep], 0, width)
        np.add.at(diff, (rows, a), 1)
        np.add.at(diff, (rows, b), -1)
        return np.cumsum(diff[:, :-1], axis=1) > 0

    sky = paint(start, stop, rng.random((n, start.size)) < 0.75)
    badpix = paint(bad, bad + 1, np.ones((n, bad.size), dtype=bool))
    keep = _apstar_to_gap_removed_index() + _MARGIN
    bits = (sky[:, keep].astype(np.int32) << 12) | badpix[:, keep].astype(np.int32)
    n_cr = rng.poisson(6.0, n)
    rows = np.repeat(np.arange(n), n_cr)
    cols = rng.integers(0, N_PIXELS, rows.size)
    bits[rows, cols] |= 1 << 1
    persist = rng.random(n) < 0.15
    bits[persist, :1300] |= 1 << 9
    return bits


def continuum_residual(rng: np.random.Generator, n: int) -> np.ndarray:
    """Multiplicative per-chip residual of imperfect continuum normalisation.

    ``1 + Σ_{k=1..3} c_k T_k(x)`` on each chip (Chebyshev polynomials of pixel
    position ``x ∈ [-1, 1]``), ``c_k ~ N(0, 0.004)``.
    """
    out = np.empty((n, N_PIXELS))
    coefs = 0.004 * rng.standard_normal((3, n, 3))
    for i, sl in enumerate(chip_slices().values()):
        x = np.linspace(-1.0, 1.0, sl.stop - sl.start)
        basis = np.polynomial.chebyshev.chebvander(x, 3)[:, 1:]  # (n_pix, 3)
        out[:, sl] = 1.0 + coefs[i] @ basis.T
    return out


def raw_continuum(rng: np.random.Generator, teff: np.ndarray, snr: np.ndarray) -> np.ndarray:
    """A smooth apStar-like continuum (1e-17 erg s⁻¹ cm⁻² Å⁻¹) on the 8575-pixel grid.

    A power law in wavelength whose slope follows Teff, scaled with the S/N, times
    a per-chip quadratic instrument response with 5 % random coefficients.
    """
    wl = apogee_wavelength(gap_removed=False)
    n = teff.size
    slope = 2.5 + (4800.0 - teff) / 1000.0
    cont = 5.0 * snr[:, None] * (wl[None, :] / 16000.0) ** (-slope[:, None])
    coefs = 0.05 * rng.standard_normal((3, n, 2))
    for i, (a, b) in enumerate(CHIP_RANGES.values()):
        x = np.linspace(-1.0, 1.0, b - a)
        cont[:, a:b] *= 1.0 + coefs[i, :, :1] * x + coefs[i, :, 1:] * (x**2 - 1.0 / 3.0)
    return cont


def draw_spectra(
    rng: np.random.Generator,
    offsets: np.ndarray,
    snr: np.ndarray,
    rv: np.ndarray,
    teff: np.ndarray,
    *,
    bad_pixel_fill: float,
    raw_rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Noisy spectra, uncertainties, bitmasks (and, with ``raw_rng``, apStar-grid raw flux).

    The raw flux draws from its own generator, so the normalised spectra do not
    depend on whether it is requested.
    """
    from skages.spectra import DEFAULT_BAD_BITS, bad_pixel_mask

    n = snr.size
    flux = noiseless_spectra(offsets)
    flux *= continuum_residual(rng, n)
    err = np.sqrt(np.clip(flux, 0.05, None))
    err *= error_shape()[None, :] / snr[:, None]
    noisy = rng.standard_normal(flux.shape)
    noisy *= err
    noisy += flux
    del flux
    bitmask = draw_bitmask(rng, rv)
    bad = bad_pixel_mask(bitmask, DEFAULT_BAD_BITS)
    out: dict[str, np.ndarray] = {}
    if raw_rng is not None:
        from skages.spectra import add_gaps

        cont = raw_continuum(raw_rng, teff, snr)
        junk = noisy * np.exp(0.5 * raw_rng.standard_normal(noisy.shape))  # sky residuals
        out["raw_flux"] = (add_gaps(np.where(bad, junk, noisy)) * cont).astype(np.float32)
        del junk
        raw_err = add_gaps(np.where(bad, 10.0 * err, err)) * cont
        out["raw_flux_err"] = raw_err.astype(np.float32)
    noisy[bad] = bad_pixel_fill
    err[bad] = bad_pixel_fill
    out["spectra"] = noisy.astype(np.float32)
    out["spectra_err"] = err.astype(np.float32)
    out["bitmask"] = bitmask
    return out
