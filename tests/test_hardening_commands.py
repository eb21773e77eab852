"""Consistent commands: verbosity after the command, clean lock messages, hints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from skages._lock import OutputInUseError, output_lock
from skages.cli import build_parser, main
from skages.io import SurveyReader

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("argv", "quiet", "verbose"),
    [
        (["simulate", "-o", "x.h5", "-q"], True, 0),
        (["-q", "simulate", "-o", "x.h5"], True, 0),
        (["simulate", "-o", "x.h5", "-vv"], False, 2),
        (["-v", "simulate", "-o", "x.h5"], False, 1),
        (["predict", "--model", "m.skops", "--spectra", "s.h5", "-o", "a.fits", "-q"], True, 0),
    ],
)
def test_quiet_and_verbose_work_after_the_command(argv, quiet, verbose):
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose) == (quiet, verbose)


def test_a_second_run_message_has_no_errno(tmp_path, capsys):
    out = tmp_path / "sim.h5"
    with output_lock(out):
        with pytest.raises(OutputInUseError) as info, output_lock(out):
            pass
        assert "[Errno" not in str(info.value) and "in use by another skages run" in str(
            info.value
        )
        assert main(["simulate", "--n-stars", "5", "--no-psd", "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "in use" in err and "[Errno" not in err


def test_an_allstar_given_as_spectra_hints_labels(tmp_path):
    allstar = tmp_path / "allStar-dr17-synspec_rev1.fits"
    Table({"APOGEE_ID": ["2M00000000+0000000"], "LOGG": np.array([2.5])}).write(allstar)
    with pytest.raises(ValueError, match=r"is not an HDF5 file.*FITS file.*--labels"):
        SurveyReader(allstar)


def test_psd_prints_no_lightkurve_dependency_notice(tmp_path):
    pytest.importorskip("lightkurve")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "skages.cli", "psd", "--example", "-o", str(tmp_path / "p.csv")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "oktopus" not in done.stderr and "tpfmodel" not in done.stderr
