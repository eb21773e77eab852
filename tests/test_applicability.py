"""Tests of skages.applicability and the forest's applicability score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skages.applicability import ApplicabilityScore
from skages.forest import ProbabilisticForestRegressor


def _giants(n, rng):
    """Teff (K), [Fe/H] (dex) and two latent-like coordinates of a giant population."""
    teff = rng.normal(4750, 200, n)
    fe_h = rng.normal(-0.1, 0.2, n)
    z = np.column_stack([(teff - 4750) / 300 + rng.normal(0, 0.3, n), rng.normal(0, 1, n)])
    return np.column_stack([z, teff, fe_h])


def test_calibrated_fraction_of_training_stars_outside():
    rng = np.random.default_rng(0)
    X = _giants(2000, rng)
    score = ApplicabilityScore(outside_fraction=0.05).fit(X)
    assert np.mean(score.training_scores_ > 1) == pytest.approx(0.05, abs=0.002)
    # new stars of the same population: close to that fraction outside
    fresh = score.applicability(_giants(4000, rng))
    assert np.mean(fresh > 1) < 0.1


@pytest.mark.parametrize(
    ("column", "value"), [(2, 7000.0), (3, -2.5), (0, 8.0)], ids=["teff", "fe_h", "latent"]
)
def test_out_of_population_star_scores_above_one(column, value):
    rng = np.random.default_rng(1)
    X = _giants(1500, rng)
    score = ApplicabilityScore().fit(X)
    star = _giants(5, rng)
    normal = score.applicability(star)
    star[:, column] = value
    assert np.all(score.applicability(star) > 1)
    assert np.all(normal < 1)
    assert np.all(score.predict(star) == -1) and np.all(score.predict(X[:5]) == 1)


def test_score_of_a_row_does_not_depend_on_its_batch():
    rng = np.random.default_rng(2)
    score = ApplicabilityScore().fit(_giants(500, rng))
    Y = _giants(50, rng)
    whole = score.applicability(Y)
    parts = np.concatenate([score.applicability(Y[i : i + 7]) for i in range(0, 50, 7)])
    np.testing.assert_array_equal(whole, parts)


def test_forest_fits_the_score_on_its_value_columns():
    rng = np.random.default_rng(3)
    X = _giants(800, rng)
    names = ["z0", "z1", "teff", "fe_h"]
    frame = pd.DataFrame(X, columns=names)
    # error columns: constant in training, as the simulator's label errors are
    frame["teff_err"] = 20.0
    frame["fe_h_err"] = 0.02
    y = 0.3 * X[:, 0] + rng.normal(0, 0.05, len(X))
    forest = ProbabilisticForestRegressor(30, random_state=0, error_columns="auto").fit(frame, y)
    assert forest.applicability_.n_features_in_ == 4
    new = frame.iloc[:3].copy()
    new["teff_err"] = 80.0  # other errors than in training: not a reason to flag
    assert np.all(forest.applicability(new) < 1)
    new["teff"] = 7000.0
    assert np.all(forest.applicability(new) > 1)
    with pytest.raises(ValueError, match="outside_fraction=None"):
        clone(forest).set_params(outside_fraction=None).fit(frame, y).applicability(frame)


def test_forest_score_survives_skops_and_joblib(tmp_path):
    import joblib
    import skops.io as sio

    from skages.persistence import SKOPS_TRUSTED_TYPES

    rng = np.random.default_rng(4)
    X = _giants(600, rng)
    y = 0.3 * X[:, 0] + rng.normal(0, 0.05, len(X))
    forest = ProbabilisticForestRegressor(30, random_state=0).fit(X, y)
    assert forest.calibration_tree_ is not None  # the default "oob_local" regions
    sio.dump(forest, tmp_path / "f.skops")
    untrusted = sio.get_untrusted_types(file=tmp_path / "f.skops")
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES)
    loaded = sio.load(tmp_path / "f.skops", trusted=untrusted)
    joblib.dump(forest, tmp_path / "f.joblib")
    again = joblib.load(tmp_path / "f.joblib")
    Y = _giants(20, rng)
    for other in (loaded, again):
        np.testing.assert_array_equal(other.applicability(Y), forest.applicability(Y))
        np.testing.assert_array_equal(
            other.predict(Y, return_std=True)[1], forest.predict(Y, return_std=True)[1]
        )
