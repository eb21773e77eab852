"""The age pipeline: composition, routing, searches, scorers and persistence."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.pipeline import (
    age_bias,
    age_scatter,
    age_scatter_scorer,
    age_trust,
    applicability_score,
    fit_age_model,
    make_age_frame,
    make_age_pipeline,
    spectrum_feature_names,
    z_width_scorer,
)

TINY = dict(
    encoder_filters=(4, 8),
    hidden_units=8,
    decoder_filters=(4, 4),
    max_epochs=2,
    batch_size=64,
    random_state=0,
)


def _tiny_encoder(**kw):
    return SpectrumToPSDEncoder(**{**TINY, **kw})


def _forest(**kw):
    return ProbabilisticForestRegressor(**{"n_estimators": 25, "random_state": 0, **kw})


@pytest.fixture(scope="module")
def data(small_survey):
    lab = small_survey.labels
    X = make_age_frame(small_survey.spectra, lab)
    return {
        "X": X,
        "y": lab["log_age"].to_numpy(),
        "y_err": lab["log_age_err"].to_numpy(),
        "psd": small_survey.psd,
        "psd_weight": small_survey.psd_weight,
        "labels": lab,
    }


def test_routing_must_be_enabled():
    with pytest.raises(RuntimeError, match="enable_metadata_routing=True"):
        make_age_pipeline(_tiny_encoder())


def test_make_age_frame_layout_and_errors(data):
    X = data["X"]
    names = spectrum_feature_names()
    assert list(X.columns[:7514]) == names and names[0] == "flux_0000"
    assert list(X.columns[7514:]) == ["teff", "fe_h", "teff_err", "fe_h_err"]
    assert X["flux_0000"].dtype == np.float32
    lab = data["labels"]
    with pytest.raises(ValueError, match="no column"):
        make_age_frame(np.ones((2, 5)), {"teff": [1, 2]})
    bad = lab.iloc[:2].copy()
    bad["teff_err"] = -1.0
    with pytest.raises(ValueError, match="negative"):
        make_age_frame(np.ones((2, 5)), bad)
    with pytest.raises(ValueError, match="one value per spectrum"):
        make_age_frame(np.ones((3, 5)), lab.iloc[:2])


@pytest.mark.usefixtures("metadata_routing")
def test_joint_fit_routes_psd_and_ignores_unaged_stars(data):
    pipe = make_age_pipeline(_tiny_encoder(), _forest())
    y = data["y"]
    assert np.isnan(y).any() and np.isfinite(y).any()  # some stars have no age
    pipe.fit(data["X"], y, psd=data["psd"], psd_weight=data["psd_weight"], y_err=data["y_err"])
    encoder = pipe.named_steps["features"].named_transformers_["encoder"]
    forest = pipe.named_steps["forest"]
    assert encoder.n_psd_ == 2092  # the encoder learned the PSDs, not the ages
    assert encoder.n_iter_ == 2
    # the forest saw only the aged stars (all of them in the OOB arrays)
    assert forest.oob_prediction_.shape == (np.isfinite(y).sum(),)
    mean, std = pipe.predict(data["X"].iloc[:7], return_std=True)
    assert mean.shape == std.shape == (7,) and np.all(std > 0)
    mean_q, std_q, bounds = pipe.predict(
        data["X"].iloc[:7], return_std=True, quantiles=(0.16, 0.84)
    )
    np.testing.assert_allclose(mean_q, mean)
    np.testing.assert_allclose(std_q, std)
    assert bounds.shape == (7, 2) and np.all((bounds[:, 0] < mean) & (mean < bounds[:, 1]))
    # latent σ and label errors are input errors, never split features
    assert len(forest.value_columns_) == 5 + 2
    pipe.set_output(transform="pandas")
    names = list(pipe[:-1].transform(data["X"].iloc[:2]).columns)
    assert names[:2] == ["encoder__z0", "encoder__z1"]
    assert "encoder__z4_std" in names and names[-4:] == [
        "passthrough__teff",
        "passthrough__fe_h",
        "passthrough__teff_err",
        "passthrough__fe_h_err",
    ]


@pytest.mark.usefixtures("metadata_routing")
def test_numpy_and_dataframe_inputs_agree(data):
    aged = np.isfinite(data["y"])
    enc = _tiny_encoder(output_std=True).fit(data["X"][spectrum_feature_names()], psd=data["psd"])
    X, y, y_err = data["X"][aged], data["y"][aged], data["y_err"][aged]
    frame_model = make_age_pipeline(enc, _forest(), freeze_encoder=True).fit(X, y, y_err=y_err)
    enc_np = _tiny_encoder(output_std=True).fit(
        data["X"][spectrum_feature_names()].to_numpy(), psd=data["psd"]
    )
    array_model = make_age_pipeline(enc_np, _forest(), freeze_encoder=True)
    array_model.fit(X.to_numpy(), y, y_err=y_err)
    np.testing.assert_allclose(
        frame_model.predict(X.iloc[:20]), array_model.predict(X.to_numpy()[:20]), rtol=1e-6
    )


@pytest.mark.usefixtures("metadata_routing")
def test_frozen_encoder_search_tunes_the_forest_only(data):
    aged = np.isfinite(data["y"])
    enc = _tiny_encoder(output_std=True).fit(data["X"][spectrum_feature_names()], psd=data["psd"])
    weights_before = {k: v.clone() for k, v in enc.net_.module_.state_dict().items()}
    pipe = make_age_pipeline(enc, _forest(), freeze_encoder=True)
    search = GridSearchCV(
        pipe,
        {"forest__min_samples_leaf": [1, 8]},
        cv=3,
        scoring={
            "scatter": age_scatter_scorer,
            "z": z_width_scorer.set_score_request(y_err=True),
        },
        refit="scatter",
    )
    search.fit(data["X"][aged], data["y"][aged], y_err=data["y_err"][aged])
    assert set(search.cv_results_) >= {"mean_test_scatter", "mean_test_z"}
    assert np.all(search.cv_results_["mean_test_scatter"] < 0)  # minus a scatter in %
    for k, v in (
        search.best_estimator_[0]
        .named_transformers_["encoder"]
        .estimator.net_.module_.state_dict()
        .items()
    ):
        assert v.equal(weights_before[k]), k  # the frozen encoder was never refitted
    with pytest.raises(ValueError, match="already fitted"):
        make_age_pipeline(_tiny_encoder(), freeze_encoder=True)
    with pytest.raises(ValueError, match="output_std"):
        make_age_pipeline(
            _tiny_encoder(max_epochs=1).fit(np.ones((8, 50)), psd=np.ones((8, 20))),
            freeze_encoder=True,
        )


@pytest.mark.usefixtures("metadata_routing")
def test_search_over_the_encoder_with_psd_routed(data):
    pipe = make_age_pipeline(_tiny_encoder(max_epochs=1), _forest(n_estimators=10))
    search = RandomizedSearchCV(
        pipe,
        {"features__encoder__latent_dim": [2, 3], "forest__max_features": [0.5, 1.0]},
        n_iter=2,
        cv=2,
        scoring=age_scatter_scorer,
        random_state=0,
    )
    search.fit(
        data["X"],
        data["y"],
        psd=data["psd"],
        psd_weight=data["psd_weight"],
        y_err=data["y_err"],
    )
    latent = search.best_params_["features__encoder__latent_dim"]
    forest = search.best_estimator_.named_steps["forest"]
    assert len(forest.value_columns_) == latent + 2
    assert np.isfinite(search.best_score_)


def test_age_metrics_by_hand():
    y_true = np.log10([1.0, 2.0, 4.0, 8.0, np.nan])
    ratios = np.array([1.1, 0.9, 1.2, 1.0, 5.0])
    y_pred = y_true + np.log10(ratios)
    from astropy.stats import mad_std

    assert age_scatter(y_true, y_pred) == pytest.approx(100 * mad_std(ratios[:4]))
    assert age_bias(y_true, y_pred) == pytest.approx(100 * (np.median(ratios[:4]) - 1))
    with pytest.raises(ValueError, match="all NaN"):
        age_scatter([np.nan], [1.0])


def test_fit_age_model_two_stages(small_survey):
    lab = small_survey.labels
    model = fit_age_model(
        small_survey.spectra,
        small_survey.psd,
        lab,
        encoder=_tiny_encoder(),
        forest=_forest(),
        random_state=0,
    )
    forest = model.named_steps["forest"]
    n_precise = int((lab["precise_age"] & lab["log_age"].notna()).sum())
    assert forest.oob_prediction_.shape == (n_precise,)
    X = make_age_frame(small_survey.spectra, lab)
    mean, std = model.predict(X.iloc[:4], return_std=True)  # works without routing enabled
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    _, bounds = model.predict(X.iloc[:4], quantiles=(0.16, 0.84))
    assert np.all(bounds[:, 0] < mean) and np.all(mean < bounds[:, 1])
    aged = fit_age_model(
        small_survey.spectra,
        small_survey.psd,
        lab,
        encoder=_tiny_encoder(),
        forest=_forest(),
        forest_stars="aged",
    )
    assert aged.named_steps["forest"].oob_prediction_.shape == (int(lab["log_age"].notna().sum()),)
    with pytest.raises(ValueError, match="forest_stars"):
        fit_age_model(small_survey.spectra, small_survey.psd, lab, forest_stars="all")
    with pytest.raises(ValueError, match="no column 'log_age'"):
        fit_age_model(small_survey.spectra, small_survey.psd, lab.drop(columns="log_age"))


def test_fit_age_model_calibrates_on_stars_the_encoder_never_saw(small_survey, caplog):
    from skages.pipeline import _calibration_stars

    lab = small_survey.labels
    aged = lab["log_age"].notna().to_numpy()
    spectra = np.asarray(small_survey.spectra, dtype=np.float64)
    kwargs = dict(encoder=_tiny_encoder(), forest=_forest(), forest_stars="aged", random_state=0)
    model = fit_age_model(
        small_survey.spectra, small_survey.psd, lab, calibration_fraction=0.3, **kwargs
    )
    held = _calibration_stars(aged, 0.3, 0)
    assert held.sum() == round(0.3 * aged.sum()) and not (held & ~aged).any()
    encoder = model.named_steps["features"].named_transformers_["encoder"].estimator
    # the encoder's training mean spectrum is that of the other stars only
    np.testing.assert_allclose(encoder.mean_, np.nanmean(spectra[~held], axis=0), rtol=1e-5)
    assert not np.allclose(encoder.mean_, np.nanmean(spectra, axis=0), rtol=1e-5)
    forest = model.named_steps["forest"]
    assert forest.oob_prediction_.shape == (aged.sum(),)  # every aged star grows the trees
    assert 0 < forest.calibration_residuals_.size <= held.sum()  # only held ones calibrate
    # 0: the encoder sees every star, the forest calibrates on all
    plain = fit_age_model(
        small_survey.spectra, small_survey.psd, lab, calibration_fraction=0.0, **kwargs
    )
    encoder = plain.named_steps["features"].named_transformers_["encoder"].estimator
    np.testing.assert_allclose(encoder.mean_, np.nanmean(spectra, axis=0), rtol=1e-5)
    assert plain.named_steps["forest"].calibration_residuals_.size > held.sum()
    caplog.set_level("WARNING", logger="skages.pipeline")
    fit_age_model(small_survey.spectra, small_survey.psd, lab, calibration_fraction=0.01, **kwargs)
    assert "fewer than 50" in caplog.text
    with pytest.raises(ValueError, match="calibration_fraction"):
        fit_age_model(small_survey.spectra, small_survey.psd, lab, calibration_fraction=1.0)


def test_fit_age_model_calibrates_per_evolutionary_state(small_survey, caplog, tmp_path):
    from skages.persistence import load_model, save_model

    lab = small_survey.labels
    aged = lab["log_age"].notna().to_numpy()
    kwargs = dict(encoder=_tiny_encoder(), forest=_forest(), forest_stars="aged", random_state=0)
    model = fit_age_model(small_survey.spectra, small_survey.psd, lab, **kwargs)
    forest = model.named_steps["forest"]
    states = sorted(lab["evstate"][aged].unique())
    assert list(forest.calibration_classifier_.classes_) == states == ["RC", "RGB"]
    assert forest.calibration_tree_ is None and forest.calibration_scales_.shape == (2,)
    # the classifier travels with the model through the safe (skops) format
    X = make_age_frame(small_survey.spectra[:30], lab.iloc[:30])
    save_model(model, tmp_path / "model.skops")
    loaded, _ = load_model(tmp_path / "model.skops")
    np.testing.assert_array_equal(
        loaded.predict(X, return_std=True)[1], model.predict(X, return_std=True)[1]
    )
    # a forest star without a state: regions of the inputs instead, and the log says so
    partial = lab.copy()
    partial["evstate"] = partial["evstate"].astype(object)
    first = partial.index[np.flatnonzero(aged)[:2]]
    partial.loc[first[0], "evstate"] = None
    partial.loc[first[1], "evstate"] = " "  # blank: as missing as None
    caplog.set_level("WARNING", logger="skages.pipeline")
    other = fit_age_model(small_survey.spectra, small_survey.psd, partial, **kwargs)
    assert other.named_steps["forest"].calibration_classifier_ is None
    assert "2 of the forest's" in caplog.text and "no evolutionary state" in caplog.text


def test_applicability_and_warning_flags_of_an_age_model(small_survey):
    from skages.quality import QualityFlag

    lab = small_survey.labels
    model = fit_age_model(
        small_survey.spectra, small_survey.psd, lab, encoder=_tiny_encoder(),
        forest=_forest(), forest_stars="aged",
    )  # fmt: skip
    X = make_age_frame(small_survey.spectra, lab).iloc[:6].copy()
    snr = lab["snr"].to_numpy()[:6]
    normal = age_trust(model, X, snr=snr)
    # stars of the training set are inside; their spectra pass the checks
    assert np.all(normal.applicability < 1.5) and np.all(normal.quality_flags == 0)
    np.testing.assert_array_equal(normal.applicability, applicability_score(model, X))
    mean, std = model.predict(X, return_std=True)
    np.testing.assert_array_equal(normal.log_age, mean)
    np.testing.assert_array_equal(normal.log_age_err, std)
    odd = X.copy()
    odd["teff"] = 7000.0
    assert np.all(age_trust(model, odd, snr=snr).outside_training)
    flat = X.copy()
    flat.iloc[:, :7514] = 1.0
    flags = age_trust(model, flat, snr=snr).quality_flags.to_numpy()
    assert np.all(flags & QualityFlag.LINES_UNLIKE_TRAINING)


@pytest.mark.usefixtures("metadata_routing")
def test_frozen_search_over_calibration_and_outside_fraction(data):
    encoder = _tiny_encoder(output_std=True)
    encoder.fit(data["X"].iloc[:, :7514].to_numpy(), psd=data["psd"])
    pipe = make_age_pipeline(encoder, _forest(), freeze_encoder=True)
    aged = np.isfinite(data["y"])
    grid = {"forest__calibration": ["oob", "oob_local"], "forest__outside_fraction": [0.01, 0.05]}
    scoring = z_width_scorer.set_score_request(y_err=True)
    search = GridSearchCV(pipe, grid, cv=2, scoring=scoring).fit(
        data["X"][aged], data["y"][aged], y_err=data["y_err"][aged]
    )
    best = search.best_estimator_
    assert (
        best[-1].applicability_.outside_fraction == search.best_params_["forest__outside_fraction"]
    )
    assert np.all(np.isfinite(applicability_score(best, data["X"].iloc[:3])))
