"""What the ``skages`` command says: argument errors, early checks, log lines."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skages.cli import main

_REPO = Path(__file__).resolve().parents[1]


def _run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )


def _uninstall(monkeypatch, module: str) -> None:
    """Make ``importlib.util.find_spec`` report ``module`` as not installed."""
    import importlib.util

    find_spec = importlib.util.find_spec

    def fake(name, *args):
        return None if name == module else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


def test_demo_help_shows_plain_percent(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "70 % of it" in " ".join(out.split()) and "%%" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--n-stars", "abc", "-o", "x.h5"], "must be a positive integer; got 'abc'"),
        (["simulate", "--seed", "-1", "-o", "x.h5"], "must be a non-negative integer; got -1"),
        (["demo", "--test-size", "1.5"], "must be between 0 and 1"),
        (["train", "--survey", "s.h5", "--test-size", "x", "-o", "m.joblib"], "got 'x'"),
    ],
)
def test_bad_numbers_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "invalid _" not in err


def test_output_in_a_missing_folder_is_named_before_any_work(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "survey.h5"
    assert main(["-q", "simulate", "--n-stars", "5", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"the folder {out.parent} does not exist" in err and "errno" not in err.lower()
    assert not (tmp_path / "no").exists()


def test_train_checks_test_size_and_skops_before_reading_data(tmp_path, capsys, monkeypatch):
    config = tmp_path / "train.toml"
    config.write_text(
        '[data]\nsurvey = "absent.h5"\n[model]\noutput = "m.joblib"\ntest_size = 1.5\n'
    )
    assert main(["-q", "train", "--config", str(config)]) == 1
    assert "test_size must be a fraction between 0 and 1; got 1.5" in capsys.readouterr().err

    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "skops" else find_spec(name, *a),
    )
    code = main(["-q", "train", "--survey", "absent.h5", "-o", str(tmp_path / "m.skops")])
    assert code == 1
    assert "pip install 'skages[skops]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "module", "hint"),
    [([], "pyarrow", "skages[parquet]"), (["--dask"], "distributed", "skages[dask]")],
)
def test_predict_checks_optional_dependencies_first(
    tmp_path, capsys, monkeypatch, extra, module, hint
):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == module else find_spec(name, *a),
    )
    out = tmp_path / ("ages.parquet" if module == "pyarrow" else "ages.fits")
    # the model and spectra do not exist: the check comes before anything is read
    argv = ["-q", "predict", "--model", "absent.joblib", "--spectra", "absent.h5", "-o", str(out)]
    assert main(argv + extra) == 1
    err = capsys.readouterr().err
    assert f"pip install '{hint}'" in err and "absent" not in err
    assert not list(tmp_path.iterdir())  # no progress folder, no output


def test_log_lines_never_share_a_line_with_a_bar_and_warnings_have_no_source(tmp_path):
    code = """
        import logging, warnings
        import skages.cli as cli
        from tqdm.auto import tqdm

        def fake(args):
            with tqdm(total=3, desc="work") as bar:
                for i in range(3):
                    bar.update(1)
                    logging.getLogger("skages.test").info("record %d", i)
            warnings.warn("something to know", UserWarning)
            return 0

        cli._run_psd = fake
        raise SystemExit(cli.main(["psd", "--example", "-o", "x.fits"]))
    """
    result = _run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.replace("\r", "\n").splitlines()
    records = [line for line in lines if "skages.test" in line]
    assert len(records) == 3 and all(line.split()[2] == "INFO" for line in records)
    warning = [line for line in lines if "something to know" in line]
    assert warning == [warning[0]] and warning[0].endswith("UserWarning: something to know")
    assert "cli.main" not in result.stderr and ".py:" not in result.stderr


def test_psd_names_the_star_by_its_kic_and_says_lightkurve_messages_once(shared_data, tmp_path):
    files = sorted((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))
    code = f"""
        from skages.cli import main
        raise SystemExit(main(["psd", *{[str(f) for f in files]!r}, "-o", "p.ecsv"]))
    """
    result = _run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("KIC 9145861: νmax")
    quality = [line for line in result.stderr.splitlines() if "quality mask" in line]
    assert len(quality) == len(files)  # one per file, not two


def test_psd_checks_the_output_extension_before_reading(tmp_path):
    # the light curve does not exist: the extension is refused first
    with pytest.raises(SystemExit, match=r"\.fits, \.ecsv or \.csv; got '\.txt'"):
        main(["psd", str(tmp_path / "absent_llc.fits"), "--output", str(tmp_path / "p.txt")])
