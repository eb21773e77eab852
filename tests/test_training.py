"""skages.training: the functions that ``skages train`` and ``skages demo`` run."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from skages.cli import main
from skages.io import SurveyWriter, TrainingCuts, write_survey
from skages.persistence import load_model
from skages.pipeline import make_age_frame
from skages.training import (
    read_train_config,
    train_from_config,
    train_from_files,
    train_from_survey,
)

TINY = dict(encoder_filters=(4, 8), hidden_units=8, decoder_filters=(4, 4), max_epochs=1)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, small_survey):
    return write_survey(tmp_path_factory.mktemp("training") / "train.h5", small_survey)


def _encoder(model):
    step = model.named_steps["features"].named_transformers_["encoder"]
    return step.estimator if isinstance(step, FrozenEstimator) else step


def _predict(model, survey, n=40):
    return model.predict(make_age_frame(survey.spectra[:n], survey.labels.iloc[:n]))


def test_python_and_command_line_train_the_same_model(
    train_file, small_survey, tmp_path, tiny_train_toml
):
    config = tmp_path / "train.toml"
    config.write_text(tiny_train_toml(model='forest_stars = "aged"\ntest_size = 0.3'))
    (tmp_path / "train.h5").symlink_to(train_file)
    assert main(["-q", "train", "--config", str(config)]) == 0
    cli_model, cli_meta = load_model(tmp_path / "model.joblib", trusted=True)

    model, provenance = train_from_survey(
        tmp_path / "train.h5",
        output=tmp_path / "python.joblib",
        encoder_params=TINY,
        forest_params={"n_estimators": 12},
        forest_stars="aged",
        test_size=0.3,
        verbose=0,
    )
    assert provenance["command"] == "skages.training.train_from_survey"
    assert cli_meta["training"]["command"] == "skages train"
    for key in ("split", "source", "n_stars", "n_aged", "encoder_params", "forest_params"):
        assert provenance[key] == cli_meta["training"][key], key
    np.testing.assert_array_equal(_predict(model, small_survey), _predict(cli_model, small_survey))
    saved, meta = load_model(tmp_path / "python.joblib", trusted=True)
    assert meta["training"]["split"] == provenance["split"]
    np.testing.assert_array_equal(_predict(saved, small_survey), _predict(model, small_survey))

    # the config's tables as a dict give the same model as the file
    tables = read_train_config(config)
    tables["model"]["output"] = tmp_path / "dict.joblib"
    dict_model, dict_provenance = train_from_config(tables, verbose=0)
    assert dict_provenance["split"] == provenance["split"]
    np.testing.assert_array_equal(
        _predict(dict_model, small_survey), _predict(cli_model, small_survey)
    )


def test_train_from_files_records_the_sample(small_survey, tmp_path):
    lab = small_survey.labels.reset_index(drop=True)
    n = 120
    spectra, psd = tmp_path / "spectra.h5", tmp_path / "psd.h5"
    with SurveyWriter(spectra) as w:
        w.append(
            spectra=small_survey.spectra[:n],
            labels=lab.loc[: n - 1, ["apogee_id", "teff", "fe_h", "teff_err", "fe_h_err"]],
        )
    from skages.seismology import frequency_grid

    keep = np.arange(0, n, 2)  # PSDs of every other star
    with SurveyWriter(psd, frequency=frequency_grid()) as w:
        w.append(psd=small_survey.psd[keep], labels=lab.loc[keep, ["kic"]])
    lab[["apogee_id", "kic", "log_age", "log_age_err"]].to_csv(tmp_path / "ages.csv", index=False)
    cuts = TrainingCuts.none()
    model, provenance = train_from_files(
        spectra,
        psd,
        tmp_path / "ages.csv",
        cuts=cuts,
        encoder_params=TINY,
        forest_params={"n_estimators": 8},
        forest_stars="aged",
        verbose=0,
    )
    assert provenance["n_stars"] == keep.size == provenance["source"]["sample"]["n_kept"]
    assert provenance["source"]["cuts"] == cuts.to_dict()
    assert provenance["source"]["ages"] == str(tmp_path / "ages.csv")
    assert provenance["command"] == "skages.training.train_from_files"
    assert np.isfinite(_predict(model, small_survey)).all()


def test_a_trained_encoder_trains_the_forest_only(train_file, small_survey, tmp_path):
    first, _ = train_from_survey(
        train_file, encoder_params=TINY, forest_params={"n_estimators": 8}, verbose=0
    )
    encoder = _encoder(first)
    spectra = make_age_frame(small_survey.spectra[:20], small_survey.labels.iloc[:20])
    spectra = spectra[encoder.feature_names_in_]
    latent = encoder.transform(spectra)
    model, provenance = train_from_survey(
        train_file, encoder=encoder, forest_params={"n_estimators": 8}, test_size=0.3, verbose=0
    )
    assert provenance["source"]["encoder"] == "SpectrumToPSDEncoder"
    assert provenance["split"]["n_train"] == provenance["n_stars"] < len(small_survey.labels)
    again = _encoder(model)
    np.testing.assert_array_equal(again.transform(spectra), latent)
    with pytest.raises(ValueError, match="forest only"):
        train_from_survey(train_file, encoder=encoder, encoder_params={"max_epochs": 3})


def test_an_existing_output_is_not_replaced(train_file, tmp_path):
    out = tmp_path / "model.joblib"
    out.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=r"model\.joblib exists"):
        train_from_survey(train_file, output=out, encoder_params=TINY, verbose=0)
    assert out.read_bytes() == b"mine"
    with pytest.raises(ValueError, match=r"\.joblib or \.skops"):
        train_from_survey(train_file, output=tmp_path / "model.txt", verbose=0)


TRAIN_CHILD = """
import sys, time
from skages import _ved_checkpoint
from skages.cli import main

save = _ved_checkpoint.TrainingState.save

def slow_save(self, net, finished):  # time for the parent to kill the run mid-way
    save(self, net, finished)
    time.sleep(0.5)

_ved_checkpoint.TrainingState.save = slow_save
sys.exit(main(["-q", "train", "--config", sys.argv[1]]))
"""


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_a_killed_skages_train_resumes_from_its_last_epoch(
    train_file, small_survey, tmp_path, tiny_train_toml, caplog, sigkill_at_epoch
):
    import logging
    import os
    import subprocess
    import sys

    from skages._ved_checkpoint import STATE_FILE

    (tmp_path / "train.h5").symlink_to(train_file)
    config = tmp_path / "train.toml"
    config.write_text(tiny_train_toml().replace("max_epochs = 1", "max_epochs = 4"))
    state = tmp_path / "model.joblib.training" / STATE_FILE
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(config)], env=env)
    killed_at = sigkill_at_epoch(child, state, 2)
    assert 2 <= killed_at < 4 and not (tmp_path / "model.joblib").exists()

    # the same command again resumes; the model equals an uninterrupted run's
    with caplog.at_level(logging.INFO, logger="skages.encoder"):
        assert main(["-q", "train", "--config", str(config)]) == 0
    assert f"{killed_at} epoch(s) done, {4 - killed_at} to go" in caplog.text
    assert not state.parent.exists(), "the checkpoint outlived the saved model"
    resumed, meta = load_model(tmp_path / "model.joblib", trusted=True)
    assert meta["training"]["encoder_params"]["checkpoint_dir"] is None

    other = tmp_path / "other"
    other.mkdir()
    (other / "train.h5").symlink_to(train_file)
    (other / "train.toml").write_text(config.read_text())
    assert main(["-q", "train", "--config", str(other / "train.toml")]) == 0
    uninterrupted, _ = load_model(other / "model.joblib", trusted=True)
    frame = make_age_frame(small_survey.spectra[:40], small_survey.labels.iloc[:40])
    np.testing.assert_array_equal(
        _encoder(resumed).transform(small_survey.spectra[:40]),
        _encoder(uninterrupted).transform(small_survey.spectra[:40]),
    )
    np.testing.assert_array_equal(resumed.predict(frame), uninterrupted.predict(frame))


def test_restart_discards_an_interrupted_training(train_file, tmp_path, tiny_train_toml, capsys):

    (tmp_path / "train.h5").symlink_to(train_file)
    config = tmp_path / "train.toml"
    config.write_text(tiny_train_toml())
    folder = tmp_path / "model.joblib.training"
    folder.mkdir()
    (folder / "training_state.pt").write_bytes(b"not a checkpoint")  # a damaged one
    assert main(["-q", "train", "--config", str(config)]) != 0
    assert "--restart" in capsys.readouterr().err
    assert (folder / "training_state.pt").read_bytes() == b"not a checkpoint"  # untouched
    assert main(["-q", "train", "--config", str(config), "--restart"]) == 0
    assert (tmp_path / "model.joblib").exists() and not folder.exists()


def test_calibration_stars_follow_the_seed_and_the_fraction(
    train_file, small_survey, tmp_path, tiny_train_toml, capsys
):
    config = tmp_path / "train.toml"
    config.write_text(tiny_train_toml(model='forest_stars = "aged"'))
    (tmp_path / "train.h5").symlink_to(train_file)
    assert main(["-q", "train", "--config", str(config), "--calibration-fraction", "0.5"]) == 0
    cli_model, meta = load_model(tmp_path / "model.joblib", trusted=True)
    assert meta["training"]["calibration_fraction"] == 0.5

    runs = [
        train_from_survey(
            train_file,
            encoder_params=TINY,
            forest_params={"n_estimators": 12},
            forest_stars="aged",
            calibration_fraction=fraction,
            verbose=0,
        )
        for fraction in (0.5, 0.5, 0.0)
    ]
    half, again, none = (model.named_steps["forest"] for model, _ in runs)
    n_aged = runs[0][1]["n_aged"]
    # half the forest's stars calibrate σ (fewer if too few trees left one out), all with 0
    assert half.calibration_residuals_.size <= round(0.5 * n_aged)
    assert none.calibration_residuals_.size > round(0.5 * n_aged)
    # the same seed holds out the same stars: the same model, from Python and the CLI
    np.testing.assert_array_equal(half.calibration_residuals_, again.calibration_residuals_)
    np.testing.assert_array_equal(
        _predict(runs[0][0], small_survey), _predict(cli_model, small_survey)
    )
    with pytest.raises(SystemExit):
        main(["-q", "train", "--config", str(config), "--calibration-fraction", "1"])
    assert "--calibration-fraction: must be at least 0 and below 1" in capsys.readouterr().err
