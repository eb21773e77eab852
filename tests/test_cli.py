"""Tests of the ``skages`` command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from skages import __version__
from skages.cli import main
from skages.seismology import frequency_grid

# the bundled and shared light curves are shorter than the 0.009 µHz grid needs
pytestmark = pytest.mark.filterwarnings("ignore:the light curve spans:UserWarning")


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 2  # no command: help, non-zero
    assert "psd" in capsys.readouterr().out


def test_psd_example_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "psd.fits"
    png = tmp_path / "psd.png"
    assert main(["psd", "--example", "--output", str(out), "--plot", str(png)]) == 0
    table = Table.read(out)
    assert table.colnames == ["frequency", "log_psd"]
    assert str(table["frequency"].unit) == "uHz"
    np.testing.assert_allclose(table["frequency"], frequency_grid())
    assert table.meta["NUMAX"] == pytest.approx(106.3, rel=0.05)
    assert table.meta["OBJECT"] == "KIC 11618103"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "νmax" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_psd_from_real_quarter_files(shared_data, tmp_path):
    files = sorted((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))
    out = tmp_path / "kic9145861.ecsv"
    assert main(["psd", *map(str, files), "--output", str(out)]) == 0
    table = Table.read(out)
    assert table.meta["NFILES"] == 2
    assert not np.isnan(np.asarray(table["log_psd"][1:], dtype=float)).any()


def test_psd_bad_input_reports_the_file(tmp_path, capsys):
    bad = tmp_path / "junk.txt"
    bad.write_text("no numbers here\n")
    assert main(["psd", str(bad), "--output", str(tmp_path / "x.fits")]) == 1
    err = capsys.readouterr().err
    assert "junk.txt" in err and "two-column" in err
    with pytest.raises(SystemExit, match="not both"):
        main(["psd", "--example", str(bad), "--output", str(tmp_path / "x.fits")])
    with pytest.raises(SystemExit, match=r"\.fits, \.ecsv or \.csv"):
        main(["psd", "--example", "--output", str(tmp_path / "x.txt")])


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "skages.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and __version__ in result.stdout
