"""``skages evaluate`` and ``skages demo``: held-out splits recovered from the model."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from skages.catalogue import read_catalogue
from skages.cli import main
from skages.demo import run_demo
from skages.evaluation import held_out_split, split_indices, split_record
from skages.io import read_survey, write_survey
from skages.persistence import load_model

# the [model] lines of the training config: 30 % of the stars held out
_SPLIT_MODEL = 'seed = 5\nforest_stars = "aged"\ntest_size = 0.3'


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_survey, tiny_train_toml):
    folder = tmp_path_factory.mktemp("evaluate")
    write_survey(folder / "train.h5", small_survey)
    (folder / "train.toml").write_text(tiny_train_toml(model=_SPLIT_MODEL))
    assert main(["-q", "train", "--config", str(folder / "train.toml")]) == 0
    return folder


def test_split_indices_partition_and_stratify(small_survey):
    train, test = split_indices(small_survey.labels, test_size=0.25, random_state=1)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(300))
    assert len(test) == 75
    rc = small_survey.labels["evstate"].to_numpy() == "RC"
    assert abs(rc[test].mean() - rc.mean()) < 0.03
    again, _ = split_indices(small_survey.labels, test_size=0.25, random_state=1)
    assert np.array_equal(train, again)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_indices(small_survey.labels, test_size=1.5)


def test_train_records_split_and_trains_on_train_rows_only(trained, small_survey):
    _, meta = load_model(trained / "model.joblib", trusted=True)
    split = meta["training"]["split"]
    train, test = split_indices(small_survey.labels, test_size=0.3, random_state=5)
    assert split["n_train"] == len(train) == meta["training"]["n_stars"]
    assert split["n_test"] == len(test)
    assert np.array_equal(held_out_split(meta["training"], small_survey.labels)[1], test)


def test_held_out_split_refuses_other_survey_or_missing_split(small_survey):
    _, record = split_record(small_survey.labels, test_size=0.3, seed=0)
    shuffled = small_survey.labels.sample(frac=1.0, random_state=0).reset_index(drop=True)
    with pytest.raises(ValueError, match="does not reproduce the model's training split"):
        held_out_split({"split": record}, shuffled.iloc[:250])
    with pytest.raises(ValueError, match="records no held-out stars"):
        held_out_split({}, small_survey.labels)


def test_evaluate_command_writes_report_on_held_out_stars(trained, capsys):
    out = trained / "report"
    code = main(
        ["-q", "evaluate", "--trust-joblib", "--model", str(trained / "model.joblib"),
         "--survey", str(trained / "train.h5"), "--output", str(out), "--no-baselines"]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 90 and metrics["n_train"] == 210
    assert (out / "report.md").read_text().startswith("# skages evaluation report")
    assert (out / "figures" / "ages.png").stat().st_size > 10_000
    assert "report written to" in capsys.readouterr().out


def test_evaluate_command_explains_a_model_without_held_out_stars(
    tmp_path, trained, capsys, tiny_train_toml
):
    toml = tiny_train_toml(model=_SPLIT_MODEL.replace("test_size = 0.3", ""), output="all.joblib")
    (trained / "all.toml").write_text(toml)
    assert main(["-q", "train", "--config", str(trained / "all.toml")]) == 0
    code = main(
        ["-q", "evaluate", "--trust-joblib", "--model", str(trained / "all.joblib"),
         "--survey", str(trained / "train.h5"), "--output", str(tmp_path / "r")]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "--test-size" in err and "--test-survey" in err
    assert err.count("error:") == 1  # reported once, not by the logger and again by print


class _Marker:
    """Unpickles by calling exec on a line that writes a marker file (harmless)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle ran')",))


def test_run_demo_end_to_end_and_reuses_finished_steps(tmp_path, caplog):
    settings = dict(n_stars=240, max_epochs=1, n_estimators=10, seed=2, baselines=False)
    # a pickle planted in the output folder is never loaded (the demo saves .skops)
    marker = tmp_path / "marker.txt"
    (tmp_path / "demo").mkdir()
    joblib.dump({"metadata": {}, "model": _Marker(marker)}, tmp_path / "demo" / "model.joblib")
    result = run_demo(tmp_path / "demo", verbose=0, **settings)
    assert result.model.name == "model.skops" and not marker.exists()
    survey = read_survey(result.survey)
    assert len(survey.labels) == 240
    cat = read_catalogue(result.catalogue)
    assert len(cat) == 240
    assert np.isfinite(np.asarray(cat["LogAge"], dtype=float)).any()
    assert result.metrics["n_test"] == 72
    assert result.metrics["demo"]["max_epochs"] == 1
    assert result.report.is_file()
    assert set(result.timings) == {"simulate", "train", "predict", "evaluate"}

    model_mtime = result.model.stat().st_mtime_ns
    survey_mtime = result.survey.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="skages.demo"):
        again = run_demo(tmp_path / "demo", verbose=0, **settings)
    assert result.model.stat().st_mtime_ns == model_mtime
    assert result.survey.stat().st_mtime_ns == survey_mtime
    assert "reusing the finished model" in caplog.text
    assert again.metrics["ages"]["latent"]["all"] == result.metrics["ages"]["latent"]["all"]


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("options", "reused"),
    [
        ({}, True),
        ({"seismic_errors": "agreement"}, False),
        ({"reference_ages": "independent"}, False),
    ],
)
def test_demo_reuses_only_a_survey_it_would_write_itself(
    tmp_path, monkeypatch, caplog, options, reused
):
    import skages.datasets
    import skages.training
    from skages.datasets import write_apokasc

    folder = tmp_path / "demo"
    folder.mkdir()
    write_apokasc(folder / "survey.h5", 40, random_state=3, **options)
    calls = []

    def write(*args, **kwargs):
        calls.append(kwargs)
        raise _Stop

    def train(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(skages.datasets, "write_apokasc", write)
    monkeypatch.setattr(skages.training, "train_from_survey", train)
    with pytest.raises(_Stop), caplog.at_level("INFO", logger="skages.demo"):
        run_demo(folder, n_stars=40, seed=3, verbose=0)
    assert ("other settings" in caplog.text) is not reused
    # a survey of other options is simulated afresh (the demo's own defaults), never reused
    assert (calls == []) is reused
    assert all("seismic_errors" not in c and "reference_ages" not in c for c in calls)


def test_demo_command_says_it_trains_fewer_epochs_than_the_paper(tmp_path, capsys):
    code = main(
        ["-q", "demo", "--output", str(tmp_path / "d"), "--n-stars", "200",
         "--max-epochs", "1", "--n-estimators", "8", "--no-baselines"]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "fewer than the paper's 150" in captured.err
    for name in ("survey.h5", "model.skops", "catalogue.fits", "report.md", "figures"):
        assert name in captured.out
