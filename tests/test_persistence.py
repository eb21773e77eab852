"""Saving and loading fitted models."""

from __future__ import annotations

import joblib
import numpy as np
import pytest

from skages import __version__
from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.persistence import load_model, save_model, training_summary
from skages.pipeline import make_age_frame, make_age_pipeline, spectrum_feature_names


@pytest.fixture(scope="module")
def fitted(small_survey):
    import sklearn

    lab = small_survey.labels
    X = make_age_frame(small_survey.spectra, lab)
    y = lab["log_age"].to_numpy()
    with sklearn.config_context(enable_metadata_routing=True):
        enc = SpectrumToPSDEncoder(
            encoder_filters=(4, 8),
            hidden_units=8,
            decoder_filters=(4, 4),
            max_epochs=1,
            output_std=True,
            random_state=0,
        ).fit(X[spectrum_feature_names()], psd=small_survey.psd)
        aged = np.isfinite(y)
        pipe = make_age_pipeline(
            enc,
            ProbabilisticForestRegressor(n_estimators=15, random_state=0),
            freeze_encoder=True,
        ).fit(X[aged], y[aged], y_err=lab["log_age_err"].to_numpy()[aged])
    return pipe, X, y, lab


@pytest.mark.parametrize("suffix", [".joblib", ".skops"])
def test_round_trip_gives_identical_predictions(fitted, tmp_path, suffix):
    pipe, X, y, lab = fitted
    path = save_model(
        pipe, tmp_path / f"model{suffix}", training=training_summary(X, y, labels=lab)
    )
    model, meta = load_model(path, trusted=suffix == ".joblib" or None)
    np.testing.assert_array_equal(model.predict(X.iloc[:25]), pipe.predict(X.iloc[:25]))
    _, s0 = pipe.predict(X.iloc[:5], return_std=True)
    _, s1 = model.predict(X.iloc[:5], return_std=True)
    np.testing.assert_array_equal(s0, s1)
    assert meta["skages_version"] == __version__
    assert len(meta["frequency_grid_uHz"]) == 2092
    assert meta["training"]["n_stars"] == len(X)
    assert meta["training"]["n_aged"] == int(np.isfinite(y).sum())
    assert set(meta["training"]["evstate_counts"]) <= {"RGB", "RC"}
    assert not list(tmp_path.glob(".*tmp"))


def test_incompatible_version_is_refused(fitted, tmp_path):
    pipe, *_ = fitted
    path = save_model(pipe, tmp_path / "model.joblib")
    payload = joblib.load(path)
    payload["metadata"]["skages_version"] = "0.0.1"
    joblib.dump(payload, path)
    with pytest.raises(ValueError, match=r"written by skages 0\.0\.1.*Install skages==0\.0\.1"):
        load_model(path)
    payload["metadata"]["skages_version"] = __version__
    payload["metadata"]["format_version"] = 99
    joblib.dump(payload, path)
    with pytest.raises(ValueError, match="format 99"):
        load_model(path)
    payload["metadata"]["format_version"] = 1
    payload["metadata"]["frequency_grid_sha256"] = "0" * 64
    joblib.dump(payload, path)
    with pytest.raises(ValueError, match="different PSD frequency grid"):
        load_model(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "other.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)
    with pytest.raises(ValueError, match="not a skages model"):
        load_model(path, trusted=True)
    with pytest.raises(ValueError, match=r"\.joblib or \.skops"):
        save_model(object(), tmp_path / "model.bin")
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "missing.joblib")


def test_skops_refuses_untrusted_types(tmp_path):
    import skops.io as sio

    path = tmp_path / "evil.skops"
    from fractions import Fraction

    sio.dump({"model": Fraction(1, 3), "metadata": {}}, path)
    with pytest.raises(ValueError, match="does not trust"):
        load_model(path)
