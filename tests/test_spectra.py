"""Tests of skages.spectra: APOGEE pixel layout, bitmasks, continuum normalisation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sklearn
from numpy.polynomial import Chebyshev
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skages.datasets import load_continuum_mask
from skages.spectra import (
    CHIP_RANGES,
    DEFAULT_BAD_BITS,
    N_PIXELS,
    N_PIXELS_APSTAR,
    ContinuumNormalizer,
    add_gaps,
    apogee_wavelength,
    bad_pixel_mask,
    chip_slices,
    continuum_normalize,
    fit_continuum,
    remove_gaps,
)

CHIPS = list(chip_slices().values())


# ----------------------------------------------------------------------------- layout
def test_wavelength_grid_is_apogee_log_linear():
    full = apogee_wavelength(gap_removed=False)
    assert full.shape == (N_PIXELS_APSTAR,)
    assert full[0] == pytest.approx(10**4.179)
    np.testing.assert_allclose(np.diff(np.log10(full)), 6e-6, rtol=1e-6)
    gapless = apogee_wavelength()
    assert gapless.shape == (N_PIXELS,)
    np.testing.assert_array_equal(gapless, remove_gaps(full))
    # the three chips start exactly at the documented apStar pixels
    for (start, _), sl in zip(CHIP_RANGES.values(), CHIPS, strict=True):
        assert gapless[sl.start] == full[start]
    q = apogee_wavelength(quantity=True)
    assert q.unit.to_string() == "Angstrom"
    assert 15100 < q.value.min() < q.value.max() < 17000


def test_chip_slices_partition_both_grids():
    apstar = chip_slices(gap_removed=False)
    lengths = [sl.stop - sl.start for sl in apstar.values()]
    assert lengths == [3028, 2495, 1991]
    index = remove_gaps(np.arange(N_PIXELS_APSTAR))
    for name, sl in chip_slices().items():
        np.testing.assert_array_equal(index[sl], np.arange(N_PIXELS_APSTAR)[apstar[name]])
    assert CHIPS[-1].stop == N_PIXELS == sum(lengths)


def test_continuum_mask_counts_per_chip():
    mask = load_continuum_mask()
    assert [int(mask[sl].sum()) for sl in CHIPS] == [192, 138, 202]


def test_remove_and_add_gaps_round_trip():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, N_PIXELS_APSTAR))
    y = remove_gaps(x)
    assert y.shape == (3, N_PIXELS)
    assert remove_gaps(x[0]).shape == (N_PIXELS,)
    back = add_gaps(y)
    kept = ~np.isnan(back[0])
    assert kept.sum() == N_PIXELS
    np.testing.assert_array_equal(back[:, kept], x[:, kept])
    assert np.isnan(back[:, :246]).all() and np.isnan(back[:, 8335:]).all()
    assert add_gaps(np.ones(N_PIXELS, dtype=np.int32), fill_value=0).dtype.kind == "i"


@pytest.mark.parametrize(
    "shape, match",
    [
        ((8574,), "8575 pixels.*got shape \\(8574,\\)"),
        ((2, 7514), "already gap-removed"),
        ((2, 2, 8575), "got shape \\(2, 2, 8575\\)"),
    ],
)
def test_remove_gaps_rejects_wrong_pixel_count(shape, match):
    with pytest.raises(ValueError, match=match):
        remove_gaps(np.zeros(shape))


def test_add_gaps_rejects_wrong_pixel_count():
    with pytest.raises(ValueError, match="7514 pixels"):
        add_gaps(np.zeros(8575))


# ----------------------------------------------------------------------------- bitmask
def test_bad_pixel_mask_default_bits():
    values = np.array([0, 1 << 0, 1 << 7, 1 << 8, 1 << 12, 1 << 13, (1 << 8) | (1 << 3)])
    np.testing.assert_array_equal(
        bad_pixel_mask(values), [False, True, True, False, True, False, True]
    )
    assert set(DEFAULT_BAD_BITS) == {0, 1, 2, 3, 4, 5, 6, 7, 12}
    np.testing.assert_array_equal(
        bad_pixel_mask(values, bad_bits=[8]), [False, False, False, True, False, False, True]
    )


def test_bad_pixel_mask_reads_int16_as_unsigned():
    # bit 15 in a signed 16-bit FITS column reads as a negative number
    values = np.array([-32768, 1], dtype=np.int16)
    np.testing.assert_array_equal(bad_pixel_mask(values, bad_bits=[15]), [True, False])
    np.testing.assert_array_equal(bad_pixel_mask(values, bad_bits=[0]), [False, True])
    # no spill of the sign into other bits
    np.testing.assert_array_equal(bad_pixel_mask(values, bad_bits=[16]), [False, False])


def test_bad_pixel_mask_rejects_bad_input():
    with pytest.raises(TypeError, match="bitmask must hold integers"):
        bad_pixel_mask(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="bad_bits"):
        bad_pixel_mask([1], bad_bits=[-1])


# ----------------------------------------------------------------------------- synthetic
def _absorption(rng, n_stars):
    """Absorption profile: Gaussian lines away from continuum pixels, exactly 1 on them."""
    mask = load_continuum_mask()
    pix = np.arange(N_PIXELS)
    profile = np.ones((n_stars, N_PIXELS))
    candidates = np.flatnonzero(~mask)
    for i in range(n_stars):
        for centre in rng.choice(candidates, 120, replace=False):
            profile[i] *= 1 - rng.uniform(0.05, 0.5) * np.exp(-0.5 * ((pix - centre) / 1.5) ** 2)
    profile[:, mask] = 1.0  # the continuum pixels are pure continuum
    return profile


def _continuum(rng, n_stars):
    """A known degree-2 Chebyshev continuum per chip and star (positive, sloped)."""
    cont = np.empty((n_stars, N_PIXELS))
    for sl in CHIPS:
        x = np.linspace(-1, 1, sl.stop - sl.start)
        for i in range(n_stars):
            c0 = rng.uniform(500, 2000)
            coef = [c0, rng.uniform(-0.2, 0.2) * c0, rng.uniform(-0.1, 0.1) * c0]
            cont[i, sl] = Chebyshev(coef)(x)
    return cont


def test_normalisation_recovers_injected_continuum_noise_free():
    rng = np.random.default_rng(1)
    profile, cont = _absorption(rng, 4), _continuum(rng, 4)
    raw = add_gaps(profile * cont, fill_value=0.0)
    err = add_gaps(0.01 * cont, fill_value=1e10)
    flux, flux_err = continuum_normalize(raw, err)
    np.testing.assert_allclose(flux, profile, rtol=1e-9)
    np.testing.assert_allclose(flux_err, 0.01, rtol=1e-9)
    fitted, failed = fit_continuum(raw, err)
    assert not failed.any()
    np.testing.assert_allclose(fitted, cont, rtol=1e-9)


def test_normalisation_with_noise_within_expected_error():
    rng = np.random.default_rng(2)
    n = 50
    profile, cont = _absorption(rng, n), _continuum(rng, n)
    sigma = 0.01 * cont  # S/N 100
    raw = profile * cont + rng.normal(size=cont.shape) * sigma
    fitted, _ = fit_continuum(raw, sigma)
    # 3 parameters from ~140-200 pixels at 1 %: continuum good to ~0.1-0.2 %
    rel = fitted / cont - 1
    assert np.sqrt(np.mean(rel**2)) < 0.003
    flux, _ = continuum_normalize(raw, sigma)
    mask = load_continuum_mask()
    assert abs(np.mean(flux[:, mask]) - 1) < 1e-3
    assert np.std(flux[:, mask] - profile[:, mask]) == pytest.approx(0.01, rel=0.1)


def test_fit_matches_numpy_chebyshev_fit_per_star():
    """The vectorised solver agrees with numpy's weighted Chebyshev.fit, star by star."""
    rng = np.random.default_rng(3)
    n = 6
    raw = _absorption(rng, n) * _continuum(rng, n) * rng.normal(1, 0.01, (n, N_PIXELS))
    err = rng.uniform(5, 30, (n, N_PIXELS))
    raw[0, 10] = np.nan  # a NaN continuum pixel (mask[0] is a continuum pixel)
    fitted, _ = fit_continuum(raw, err)
    mask = load_continuum_mask()
    for i in range(n):
        for sl in CHIPS:
            x = np.arange(sl.stop - sl.start)
            m = mask[sl] & np.isfinite(raw[i, sl])
            ref = Chebyshev.fit(x[m], raw[i, sl][m], deg=2, w=1 / err[i, sl][m])
            np.testing.assert_allclose(fitted[i, sl], ref(x), rtol=1e-8)


def test_inverse_variance_weighting_is_used():
    rng = np.random.default_rng(4)
    profile, cont = _absorption(rng, 1)[0], _continuum(rng, 1)[0]
    raw = profile * cont
    err = 0.01 * cont
    outliers = np.flatnonzero(load_continuum_mask())[::10]
    raw[outliers] *= 1.5
    err[outliers] *= 1e4  # known bad, hence nearly zero weight
    weighted, _ = continuum_normalize(raw, err)
    unweighted, _ = continuum_normalize(raw)
    good = np.setdiff1d(np.arange(N_PIXELS), outliers)
    np.testing.assert_allclose(weighted[good], profile[good], rtol=1e-6)
    assert np.max(np.abs(unweighted[good] / profile[good] - 1)) > 0.02


def test_nan_pixels_left_out_of_fit_and_stay_nan():
    rng = np.random.default_rng(5)
    profile, cont = _absorption(rng, 1)[0], _continuum(rng, 1)[0]
    raw = profile * cont
    cont_pix = np.flatnonzero(load_continuum_mask())
    raw[cont_pix[:40]] = np.nan
    raw[100] = np.nan  # a line pixel
    flux, _ = continuum_normalize(raw, 0.01 * cont)
    assert np.isnan(flux[cont_pix[:40]]).all() and np.isnan(flux[100])
    finite = np.isfinite(flux)
    assert finite.sum() == N_PIXELS - 41
    np.testing.assert_allclose(flux[finite], profile[finite], rtol=1e-9)


def test_bitmask_pixels_excluded_then_set_to_fill_value():
    rng = np.random.default_rng(6)
    profile, cont = _absorption(rng, 2), _continuum(rng, 2)
    raw = profile * cont
    err = 0.01 * cont
    bitmask = np.zeros(raw.shape, dtype=np.int32)
    cont_pix = np.flatnonzero(load_continuum_mask())
    bad0, bad12, warn8 = cont_pix[::7], cont_pix[3::7], cont_pix[5::50]
    bitmask[:, bad0] |= 1 << 0
    bitmask[:, bad12] |= 1 << 12
    bitmask[:, warn8] |= 1 << 8  # LITTROW_GHOST: not a default bad bit
    raw[:, bad0] = 1e6  # garbage that would ruin the fit if used
    raw[:, bad12] = -1e6
    err[:, bad0] = 0.0  # zero error too: must not be a problem when flagged
    flux, flux_err = continuum_normalize(raw, err, bitmask)
    flagged = np.union1d(bad0, bad12)
    assert np.all(flux[:, flagged] == 1) and np.all(flux_err[:, flagged] == 1)
    ok = np.setdiff1d(np.arange(N_PIXELS), flagged)
    np.testing.assert_allclose(flux[:, ok], profile[:, ok], rtol=1e-9)
    # with bit 8 treated as bad too, those pixels are filled as well
    flux8, _ = continuum_normalize(
        raw, err, bitmask, bad_bits=(*DEFAULT_BAD_BITS, 8), fill_value=0.5
    )
    assert np.all(flux8[:, warn8] == 0.5) and np.all(flux8[:, flagged] == 0.5)
    # without the bitmask the garbage enters the fit
    with pytest.raises(ValueError, match=r"non-positive continuum|cannot fit"):
        continuum_normalize(raw, err)


def test_dtype_preserved_and_input_untouched():
    rng = np.random.default_rng(7)
    raw = (_absorption(rng, 2) * _continuum(rng, 2)).astype(np.float32)
    before = raw.copy()
    flux, flux_err = continuum_normalize(raw, np.ones_like(raw))
    assert flux.dtype == np.float32 and flux_err.dtype == np.float32
    np.testing.assert_array_equal(raw, before)
    assert continuum_normalize(raw.astype(np.float64))[0].dtype == np.float64
    assert continuum_normalize(raw)[1] is None


def test_all_nan_spectrum_raises_or_gives_nan_row():
    rng = np.random.default_rng(8)
    raw = _absorption(rng, 3) * _continuum(rng, 3)
    raw[1] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\].*all-NaN"):
        continuum_normalize(raw)
    flux, _ = continuum_normalize(raw, on_failure="nan")
    assert np.isnan(flux[1]).all()
    assert np.isfinite(flux[[0, 2]]).all()


def test_bad_error_and_shape_inputs():
    raw = np.ones((2, N_PIXELS))
    err = np.ones((2, N_PIXELS))
    err[1, 5] = -0.1
    with pytest.raises(ValueError, match=r"spectra_err must be non-negative.*rows \[1\]"):
        continuum_normalize(raw, err)
    with pytest.raises(ValueError, match="spectra_err must match the spectra"):
        continuum_normalize(raw, np.ones((3, N_PIXELS)))
    with pytest.raises(ValueError, match="bitmask must have 8575 or 7514 pixels"):
        continuum_normalize(raw, None, np.zeros((2, 100), dtype=int))
    with pytest.raises(ValueError, match=r"spectra must have 8575 or 7514 pixels.*\(2, 100\)"):
        continuum_normalize(np.ones((2, 100)))
    with pytest.raises(TypeError, match="spectra must be numeric"):
        continuum_normalize(np.full((1, N_PIXELS), "a"))
    with pytest.raises(ValueError, match="on_failure"):
        continuum_normalize(raw, on_failure="ignore")
    few = np.zeros(N_PIXELS, dtype=bool)
    few[[0, 1]] = True
    with pytest.raises(ValueError, match="at least degree \\+ 1 = 3 continuum pixels"):
        continuum_normalize(raw, continuum_mask=few)
    with pytest.raises(TypeError, match="continuum_mask must be a boolean"):
        continuum_normalize(raw, continuum_mask=np.ones(N_PIXELS))


# ----------------------------------------------------------------------------- real files
def test_real_apstar_normalises_like_aspcap(shared_data):
    from astropy.io import fits

    folder = shared_data / "apogee_fixtures"
    mask = load_continuum_mask()
    ids = sorted(p.name.removeprefix("apStar-r6-") for p in folder.glob("apStar-r6-*.fits"))
    assert len(ids) == 3
    for name in ids:
        with fits.open(folder / f"apStar-r6-{name}") as hdul:
            flux, err, bits = (np.asarray(hdul[i].data[0]) for i in (1, 2, 3))
        with fits.open(folder / f"aspcapStar-r6-l30e.2-{name}") as hdul:
            aspcap = remove_gaps(np.asarray(hdul[1].data))
        norm, norm_err = continuum_normalize(flux, err, bits)
        assert norm.shape == (N_PIXELS,) and np.isfinite(norm).all()
        bad = bad_pixel_mask(remove_gaps(bits))
        assert bad.any() and np.all(norm[bad] == 1) and np.all(norm_err[bad] == 1)
        good = ~bad & (aspcap > 0)
        # continuum pixels sit at 1; the line pattern matches ASPCAP's own normalisation
        assert abs(np.median(norm[mask & good]) - 1) < 0.02
        assert np.corrcoef(norm[good], aspcap[good])[0, 1] > 0.85


# ----------------------------------------------------------------------------- transformer
def _raw_batch(seed, n=5):
    rng = np.random.default_rng(seed)
    profile, cont = _absorption(rng, n), _continuum(rng, n)
    raw = add_gaps(profile * cont, fill_value=0.0)
    err = add_gaps(0.01 * cont, fill_value=1e10)
    return raw, err, profile


def test_transformer_matches_function_on_both_grids():
    raw, err, profile = _raw_batch(10)
    norm = ContinuumNormalizer()
    out = norm.fit_transform(raw, spectra_err=err)
    assert norm.n_features_in_ == N_PIXELS_APSTAR
    np.testing.assert_allclose(out, profile, rtol=1e-9)
    np.testing.assert_array_equal(out, continuum_normalize(raw, err)[0])
    out7514 = ContinuumNormalizer().fit_transform(remove_gaps(raw), spectra_err=remove_gaps(err))
    np.testing.assert_allclose(out7514, out, rtol=1e-12)
    # stateless: transform works unfitted, and rows are independent
    np.testing.assert_allclose(
        ContinuumNormalizer().transform(raw[2:4], spectra_err=err[2:4]), out[2:4], rtol=1e-12
    )


def test_transformer_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    raw, err, _ = _raw_batch(11, n=2)
    names = [f"px{i}" for i in range(N_PIXELS_APSTAR)]
    frame = pd.DataFrame(raw, columns=names)
    norm = ContinuumNormalizer().set_output(transform="pandas")
    out = norm.fit_transform(frame, spectra_err=err)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns[:2]) == ["px246", "px247"] and out.shape == (2, N_PIXELS)
    np.testing.assert_array_equal(
        ContinuumNormalizer().fit(raw).get_feature_names_out()[[0, -1]], ["x246", "x8334"]
    )


def test_transformer_in_pipeline_with_metadata_routing():
    raw, err, _ = _raw_batch(12, n=8)
    bitmask = np.zeros(raw.shape, dtype=np.int16)
    bitmask[:, 300] = 1
    raw_bad = raw.copy()
    raw_bad[:, 300] = 1e9
    with sklearn.config_context(enable_metadata_routing=True):
        norm = ContinuumNormalizer().set_transform_request(spectra_err=True, bitmask=True)
        pipe = make_pipeline(norm, PCA(n_components=2, random_state=0))
        pipe.fit(raw_bad, spectra_err=err, bitmask=bitmask)
        z = pipe.transform(raw_bad, spectra_err=err, bitmask=bitmask)
    # the routed errors and bitmask reached the normaliser: same as doing it by hand
    normalised, _ = continuum_normalize(raw_bad, err, bitmask)
    assert np.all(normalised[:, 300 - 246] == 1)
    np.testing.assert_allclose(
        z, PCA(n_components=2, random_state=0).fit(normalised).transform(normalised), atol=1e-10
    )
    # without routing the garbage pixel is not masked
    unmasked = make_pipeline(ContinuumNormalizer(), PCA(n_components=2, random_state=0))
    assert np.all(unmasked[0].fit_transform(raw_bad)[:, 300 - 246] > 1e3)


def test_transformer_clone_pickle_and_param_validation():
    raw, err, _ = _raw_batch(13, n=3)
    norm = ContinuumNormalizer(degree=2, on_failure="nan").fit(raw)
    again = pickle.loads(pickle.dumps(norm))
    np.testing.assert_array_equal(again.transform(raw, spectra_err=err), norm.transform(raw, err))
    assert clone(norm).get_params() == norm.get_params()
    with pytest.raises(InvalidParameterError, match="degree"):
        ContinuumNormalizer(degree=-1).fit(raw)
    with pytest.raises(InvalidParameterError, match="on_failure"):
        ContinuumNormalizer(on_failure="skip").fit(raw)
    with pytest.raises(ValueError, match="X must have 8575 or 7514 pixels"):
        ContinuumNormalizer().fit(raw[:, :100])
    with pytest.raises(ValueError, match="spectra_err must have the shape of X"):
        norm.transform(raw, spectra_err=err[:2])
    with pytest.raises(
        ValueError, match="X has 7514 features, but ContinuumNormalizer is expecting 8575"
    ):
        norm.transform(remove_gaps(raw))


def test_common_check_semantics_on_apogee_sized_data():
    """What the common checks test, on data of the size this transformer accepts."""
    raw, _, _ = _raw_batch(14, n=4)
    norm = ContinuumNormalizer()
    params = norm.get_params()
    assert norm.fit(raw) is norm
    assert norm.get_params() == params
    state = dict(norm.__dict__)
    expected = norm.transform(raw)
    assert norm.__dict__.keys() == state.keys()
    assert norm.fit(raw).transform(raw).tobytes() == expected.tobytes()  # idempotent
    readonly = raw.copy()
    readonly.flags.writeable = False
    np.testing.assert_array_equal(norm.transform(readonly), expected)
    np.testing.assert_array_equal(norm.transform(np.asfortranarray(raw)), expected)
    np.testing.assert_array_equal(norm.transform(raw.tolist()), expected)
    perm = np.array([2, 0, 3, 1])
    # batched BLAS sums may differ in the last bit between batch sizes
    np.testing.assert_allclose(norm.transform(raw[perm]), expected[perm], rtol=1e-12)
    np.testing.assert_allclose(norm.transform(raw[1:2]), expected[1:2], rtol=1e-12)
    ints = np.rint(raw).astype(np.int64)
    assert norm.transform(ints).dtype == np.float64
    with pytest.raises(ValueError, match="Expected 2D array"):
        norm.transform(raw[0])


def test_layouts_other_than_apogee_fit_the_same_continuum_on_any_width():
    raw, err, profile = _raw_batch(12)
    flux, sigma = remove_gaps(raw), remove_gaps(err)
    apogee = ContinuumNormalizer().fit_transform(flux, spectra_err=sigma)
    # APOGEE's three chips given as widths, with its mask: the very same numbers
    widths = [sl.stop - sl.start for sl in chip_slices().values()]
    same = ContinuumNormalizer(layout=widths, continuum_mask=load_continuum_mask())
    np.testing.assert_array_equal(same.fit_transform(flux, spectra_err=sigma), apogee)
    # one window of 1000 pixels of the green chip, with its part of the mask: its
    # continuum (a quadratic in pixel there too) is found exactly
    green = chip_slices()["green"]
    chip = slice(green.start, green.start + 1000)
    mask = load_continuum_mask()[chip]
    single = ContinuumNormalizer(layout="single", continuum_mask=mask).fit(flux[:, chip])
    out = single.transform(flux[:, chip], spectra_err=sigma[:, chip])
    assert out.shape == (5, 1000) and single.n_features_in_ == 1000
    np.testing.assert_allclose(out, profile[:, chip], rtol=1e-9)
    # without a mask every pixel counts as continuum, and the lines pull the fit down
    unmasked = ContinuumNormalizer(layout="single").fit_transform(flux[:, chip])
    assert np.median(unmasked[profile[:, chip] == 1]) > 1.001
    assert list(single.get_feature_names_out()) == [f"x{i}" for i in range(1000)]


def test_layout_errors_name_the_problem():
    X = np.ones((2, 10))
    with pytest.raises(ValueError, match=r"add up to the 10 feature\(s\)"):
        ContinuumNormalizer(layout=[4, 5]).fit(X)
    with pytest.raises(ValueError, match=r"needs at least 3 continuum pixels.*chip 1"):
        ContinuumNormalizer(layout=[8, 2]).fit(X)
    with pytest.raises(ValueError, match=r"continuum_mask must have the 10 feature\(s\)"):
        ContinuumNormalizer(layout="single", continuum_mask=np.ones(7, bool)).fit(X)
    with pytest.raises(InvalidParameterError, match="layout"):
        ContinuumNormalizer(layout="three chips").fit(X)
    with pytest.raises(ValueError, match="8575 or 7514 pixels"):
        ContinuumNormalizer().fit(X)  # the APOGEE layout still wants APOGEE spectra
