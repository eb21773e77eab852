"""The ``skages simulate``, ``train`` and ``predict`` commands."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from skages.catalogue import predict_catalogue, read_catalogue
from skages.cli import main
from skages.datasets import make_apokasc, write_apokasc
from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.io import SurveyReader, SurveyWriter, write_survey
from skages.persistence import load_model, save_model
from skages.pipeline import fit_age_model


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_survey):
    """A training survey file, a tiny model, and a 1,200-star survey to predict."""
    folder = tmp_path_factory.mktemp("cli")
    train = write_survey(folder / "train.h5", small_survey)
    model = fit_age_model(
        small_survey.spectra,
        small_survey.psd,
        small_survey.labels,
        encoder=SpectrumToPSDEncoder(
            encoder_filters=(4, 8), hidden_units=8, decoder_filters=(4, 4), max_epochs=1
        ),
        forest=ProbabilisticForestRegressor(n_estimators=10, random_state=0),
        forest_stars="aged",
        random_state=0,
    )
    model_path = save_model(model, folder / "tiny.joblib")
    survey = write_apokasc(folder / "survey.h5", 1200, psd=False, random_state=2)
    return folder, train, model_path, survey


def _one_line_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if "error:" in x]
    assert len(line) == 1, err
    for needle in needles:
        assert needle in line[0], line[0]


def test_help_lists_the_commands_with_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("psd", "simulate", "train", "predict"):
        assert command in out
    for command in ("simulate", "train", "predict"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "example" in capsys.readouterr().out


# ----------------------------------------------------------------------- simulate


def test_simulate_writes_a_survey_in_chunks(tmp_path, capsys):
    out = tmp_path / "sim.h5"
    argv = ["-q", "simulate", "--n-stars", "40", "--no-psd", "--chunk-size", "16", "-o", str(out)]
    assert main(argv) == 0
    with SurveyReader(out) as survey:
        assert survey.n_stars == 40
        assert "psd" not in survey.arrays and "spectra" in survey.arrays
        assert survey.metadata["random_seed"] == "0"
    assert capsys.readouterr().out.strip().endswith(str(out))
    assert main(argv) == 1  # exists
    _one_line_error(capsys.readouterr().err, "sim.h5", "--overwrite")


@pytest.mark.parametrize(
    ("flag", "modes", "column"),
    [
        ("--reference-ages", ("pipeline", "independent"), "log_age"),
        ("--seismic-errors", ("apokasc2", "agreement"), "numax_err"),
    ],
)
def test_simulate_passes_the_population_options(tmp_path, flag, modes, column):
    values = {}
    for mode in modes:
        out = tmp_path / f"{mode}.h5"
        argv = ["-q", "simulate", "--n-stars", "40", "--no-psd", flag, mode]
        assert main([*argv, "-o", str(out)]) == 0
        with SurveyReader(out) as survey:
            values[mode] = survey.read_labels()[column].to_numpy()
        param = flag.removeprefix("--").replace("-", "_")
        expected = make_apokasc(40, psd=False, random_state=0, **{param: mode})
        np.testing.assert_array_equal(values[mode], expected.labels[column].to_numpy())
    first, second = (values[mode] for mode in modes)
    both = np.isfinite(first) & np.isfinite(second)
    assert both.sum() > 10 and not np.allclose(first[both], second[both])


def test_simulate_on_a_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    original = SurveyWriter.append
    calls = {"n": 0}

    def append(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SurveyWriter, "append", append)
    out = tmp_path / "full.h5"
    argv = ["-q", "simulate", "--n-stars", "40", "--no-psd", "--chunk-size", "16", "-o", str(out)]
    assert main(argv) == 1
    _one_line_error(capsys.readouterr().err, "full.h5", "No space left", "same command again")
    assert "[Errno" not in capsys.readouterr().err
    assert not out.exists()
    monkeypatch.setattr(SurveyWriter, "append", original)
    assert main([*argv, "--resume"]) == 0  # the stars written so far are kept
    with SurveyReader(out) as survey:
        assert survey.n_stars == 40


# -------------------------------------------------------------------------- train


def test_train_from_a_survey_with_a_config_file(files, tmp_path, capsys, tiny_train_toml):
    _, train, _, _ = files
    config = tmp_path / "train.toml"
    config.write_text(
        tiny_train_toml(data="max_stars = 250", model='seed = 3\nforest_stars = "aged"')
    )
    (tmp_path / "train.h5").symlink_to(train)
    assert main(["-q", "train", "--config", str(config), "--n-estimators", "15"]) == 0
    out = tmp_path / "model.joblib"
    assert str(out) in capsys.readouterr().out
    model, meta = load_model(out, trusted=True)
    training = meta["training"]
    assert training["n_stars"] == 250 and training["command"] == "skages train"
    assert training["encoder_params"]["max_epochs"] == 1
    assert training["encoder_params"]["encoder_filters"] == [4, 8]
    assert training["forest_params"]["n_estimators"] == 15  # the flag beats the file
    assert training["source"]["survey"] == str(tmp_path / "train.h5")
    assert model[-1].n_estimators == 15 and model.named_steps["features"] is not None


def test_train_from_spectra_psd_and_ages_files(small_survey, tmp_path, capsys):
    lab = small_survey.labels.reset_index(drop=True)
    n = 120
    spectra, psd = tmp_path / "spectra.h5", tmp_path / "psd.h5"
    with SurveyWriter(spectra) as w:  # spectra in survey order, with their labels
        w.append(
            spectra=small_survey.spectra[:n],
            labels=lab.loc[: n - 1, ["apogee_id", "teff", "fe_h", "teff_err", "fe_h_err"]],
        )
    order = np.random.default_rng(0).permutation(n)[:100]  # PSDs of other stars, shuffled
    from skages.seismology import frequency_grid

    with SurveyWriter(psd, frequency=frequency_grid()) as w:
        w.append(psd=small_survey.psd[order], labels=lab.loc[order, ["kic"]])
    ages = lab.loc[:, ["apogee_id", "kic", "log_age", "log_age_err"]]
    ages.iloc[::-1].to_csv(tmp_path / "ages.csv", index=False)
    out = tmp_path / "m.skops"
    argv = ["-q", "train", "--spectra", str(spectra), "--psd", str(psd)]
    argv += ["--ages", str(tmp_path / "ages.csv"), "--max-epochs", "1", "--latent-dim", "3"]
    argv += ["--n-estimators", "8", "--forest-stars", "aged", "-o", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    _, meta = load_model(out)
    assert meta["training"]["n_stars"] == 100  # the stars in all three files
    assert meta["training"]["encoder_params"]["latent_dim"] == 3
    assert meta["training"]["source"]["ages"] == str(tmp_path / "ages.csv")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--survey", "{train}"], ["--output"]),
        (["--survey", "{train}", "--spectra", "{train}", "-o", "m.joblib"], ["not both"]),
        (["--spectra", "{train}", "-o", "m.joblib"], ["missing", "psd"]),
        (["--survey", "{survey}", "-o", "{tmp}/m.joblib"], ["survey.h5", "psd"]),
        (["--survey", "{train}", "-o", "m.txt"], [".joblib or .skops"]),
        (["--config", "{tmp}/bad.toml"], ["bad.toml", "unknown key", "epochs"]),
        (["--config", "{tmp}/nothere.toml"], ["nothere.toml"]),
    ],
)
def test_train_errors_are_one_clear_line(files, tmp_path, capsys, argv, needles):
    _, train, _, survey = files
    (tmp_path / "bad.toml").write_text("[encoder]\nmax_epochs = 1\n[model]\nepochs = 3\n")
    fill = {"train": str(train), "survey": str(survey), "tmp": str(tmp_path)}
    assert main(["-q", "train", *[a.format(**fill) for a in argv]]) == 1
    _one_line_error(capsys.readouterr().err, *needles)


# ------------------------------------------------------------------------ predict


def test_predict_writes_the_catalogue(files, tmp_path, capsys):
    _, _, model, survey = files
    out = tmp_path / "ages.parquet"
    argv = ["-q", "predict", "--model", str(model), "--spectra", str(survey), "-o", str(out)]
    argv += ["--trust-joblib", "--chunk-size", "500"]
    argv += ["--cuts", "latent_snr_min=60", "age_logg_min=none"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith(str(out)) and "1200 stars" in line
    table = read_catalogue(out)
    assert len(table) == 1200 and table.meta["latent_snr_min"] == 60.0
    assert table.meta["age_logg_min"] == "none"
    assert table.meta["chunk_size"] == 500
    with SurveyReader(survey) as reader:
        snr = reader.read_labels(columns=["snr"])["snr"].to_numpy()
    assert np.all(np.isnan(table["z0"][snr <= 60]))


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--model", "{tmp}/nomodel.joblib"], ["nomodel.joblib"]),
        (["--spectra", "{tmp}/nothere.h5"], ["nothere.h5"]),
        (["--spectra", "{model}"], ["HDF5"]),
        (["--cuts", "logg=3"], ["NAME=VALUE"]),
        (["--output", "{tmp}/x.txt"], [".fits, .csv or .parquet"]),
        (["--labels", "{survey}"], ["FITS"]),
    ],
)
def test_predict_errors_are_one_clear_line(files, tmp_path, capsys, extra, needles):
    _, _, model, survey = files
    fill = {"tmp": str(tmp_path), "model": str(model), "survey": str(survey)}
    args = {"--model": str(model), "--spectra": str(survey), "--output": str(tmp_path / "a.fits")}
    for key, value in zip(extra[::2], extra[1::2], strict=True):
        args[key] = value.format(**fill)
    argv = ["-q", "predict", "--trust-joblib", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 1
    _one_line_error(capsys.readouterr().err, *needles)


def test_predict_killed_with_sigkill_resumes_where_it_stopped(files, tmp_path):
    _, _, model, survey = files
    out = tmp_path / "ages.fits"
    progress = tmp_path / "ages.fits.progress"
    cmd = [sys.executable, "-m", "skages.cli", "predict", "--model", str(model)]
    cmd += ["--spectra", str(survey), "-o", str(out), "--chunk-size", "8", "--keep-progress"]
    cmd += ["--trust-joblib"]
    n_chunks = math.ceil(1200 / 8)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*cmd[:3], "-q", *cmd[3:]], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 120
    while len(list(progress.glob("chunk-*.npz"))) < 3:
        assert proc.poll() is None, "predict ended before it could be killed"
        assert time.monotonic() < deadline, "predict wrote no chunk in 120 s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in progress.glob("chunk-*")}
    assert 3 <= len(before) < n_chunks

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} of {n_chunks} chunks already done" in rerun.stderr
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in progress.glob("chunk-*")}
    assert len(after) == n_chunks
    assert all(after[name] == stamp for name, stamp in before.items())  # not recomputed
    assert str(out) in rerun.stdout

    reference = predict_catalogue(model, survey, tmp_path / "ref.fits", chunk_size=8, trusted=True)
    table = read_catalogue(out)
    assert len(table) == 1200 and table.meta["content_sha256"] == reference.checksum
    assert list(table["APOGEE_ID"]) == [f"2M-SIM-{i:07d}" for i in range(1, 1201)]
    assert pd.Series(np.asarray(table["APOGEE_ID"])).is_unique
