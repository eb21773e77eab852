"""The catalogue as a reader meets it: units that astropy reads back, simulated rows
said to be simulated, and the model's own training stars marked."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable, Table

from skages.catalogue import (
    SIMULATED_FIELD,
    SIMULATED_TELESCOPE,
    predict_catalogue,
    read_catalogue,
)
from skages.cli import main
from skages.evaluation import split_indices
from skages.io import read_survey, write_survey


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_survey, tiny_train_toml):
    """A tiny model trained by ``skages train --test-size 0.3`` on a simulated survey."""
    folder = tmp_path_factory.mktemp("catalogue_columns")
    write_survey(folder / "train.h5", small_survey)
    toml = tiny_train_toml(model='seed = 4\nforest_stars = "aged"\ntest_size = 0.3')
    (folder / "train.toml").write_text(toml)
    assert main(["-q", "train", "--config", str(folder / "train.toml")]) == 0
    out = folder / "ages.fits"
    predict_catalogue(folder / "model.joblib", folder / "train.h5", out, trusted=True)
    return folder, out


def test_table_read_returns_the_age_units(trained):
    _, out = trained
    table = Table.read(out, hdu="AGES")
    assert table["LogAge"].unit == u.dex(u.Gyr) and table["LogAge_Error"].unit == u.dex
    assert table["Age"].unit == u.Gyr and table["Age_Error"].unit == u.Gyr
    assert table["LogAge"].description == "log10 of the age in Gyr"
    q = QTable.read(out, hdu="AGES")
    age = q["LogAge"][np.isfinite(q["LogAge"].value)][:3]
    np.testing.assert_allclose(age.physical.to_value("Gyr"), 10**age.value)
    # FITS itself has no dex: other readers find the unit in the column comment
    header = fits.getheader(out, "AGES")
    column = table.colnames.index("LogAge") + 1
    assert header[f"TCOMM{column}"].startswith("[dex(Gyr)]")
    assert f"TUNIT{column}" not in header


def test_simulated_rows_are_said_to_be_simulated(trained):
    _, out = trained
    table = read_catalogue(out)
    assert set(table["TELESCOPE"]) == {SIMULATED_TELESCOPE}
    assert set(table["FIELD"]) == {SIMULATED_FIELD}
    assert table.meta["simulated"] is True
    header = fits.getheader(out, "AGES")
    comments = " ".join(str(c) for c in header["COMMENT"])
    assert "These rows are simulated stars" in comments and "STARFLAG" in comments


def test_in_training_marks_the_models_training_split(trained, small_survey):
    _, out = trained
    table = read_catalogue(out)
    train, _ = split_indices(small_survey.labels, test_size=0.3, random_state=4)
    marked = np.flatnonzero(np.asarray(table["IN_TRAINING"]) == 1)
    np.testing.assert_array_equal(marked, train)
    assert "training split" in table.meta["training_rows"]
    assert "SHA-256 verified" in fits.getheader(out, "AGES")["INTRAIN"]


def test_in_training_marks_nothing_in_another_survey(trained, small_survey):
    folder, _ = trained
    other = read_survey(folder / "train.h5", rows=slice(0, 60))
    write_survey(folder / "other.h5", other)
    out = folder / "other.fits"
    predict_catalogue(folder / "model.joblib", folder / "other.h5", out, trusted=True)
    table = read_catalogue(out)
    assert not np.any(table["IN_TRAINING"])
    assert "not on these spectra" in table.meta["training_rows"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_other_formats_keep_units_and_the_training_column(trained, suffix):
    pytest.importorskip("pyarrow") if suffix == ".parquet" else None
    folder, fits_out = trained
    out = folder / f"ages{suffix}"
    predict_catalogue(folder / "model.joblib", folder / "train.h5", out, trusted=True)
    table = read_catalogue(out)
    assert table["LogAge"].unit == u.dex(u.Gyr) and table["LogAge_Error"].unit == u.dex
    np.testing.assert_array_equal(table["IN_TRAINING"], read_catalogue(fits_out)["IN_TRAINING"])
    _assert_interval_columns(table)
    for name in ("LogAge_Lower", "LogAge_Upper", "Age_Lower", "Age_Upper", "Applicability"):
        np.testing.assert_allclose(table[name], read_catalogue(fits_out)[name], rtol=1e-12)


def _assert_interval_columns(table):
    for name in ("LogAge_Lower", "LogAge_Upper"):
        assert table[name].unit == u.dex(u.Gyr)
    for name in ("Age_Lower", "Age_Upper"):
        assert table[name].unit == u.Gyr
    assert table["Applicability"].unit in (None, u.dimensionless_unscaled)
    aged = np.isfinite(np.asarray(table["LogAge"]))
    assert aged.any()
    log_age = np.asarray(table["LogAge"])[aged]
    lower = np.asarray(table["LogAge_Lower"])[aged]
    upper = np.asarray(table["LogAge_Upper"])[aged]
    assert np.all((lower < log_age) & (log_age < upper))
    np.testing.assert_allclose(np.asarray(table["Age_Upper"])[aged], 10**upper, rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(table["Applicability"])[aged]))
    assert np.all(np.isnan(np.asarray(table["LogAge_Lower"])[~aged]))


def test_interval_and_applicability_columns_keep_their_units(trained):
    _, out = trained
    _assert_interval_columns(read_catalogue(out))
    table = Table.read(out, hdu="AGES")
    assert table["LogAge_Lower"].description.startswith("16% quantile")
    header = fits.getheader(out, "AGES")
    column = table.colnames.index("LogAge_Upper") + 1
    assert header[f"TCOMM{column}"].startswith("[dex(Gyr)]")
