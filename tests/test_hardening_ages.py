"""Ages in the wrong units are converted with a message or refused naming the column."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from skages.io import read_age_table

AGES = np.array([1.0, 2.0, 3.5, 5.0, 8.0, 11.0])  # Gyr
KIC = np.arange(1, AGES.size + 1)


def _log_age(table) -> np.ndarray:
    return np.asarray(table["log_age"], dtype=float)


@pytest.mark.parametrize(
    ("column", "values", "says"),
    [
        ("age", AGES * 1e3, "looks like Myr"),
        ("age", AGES * 1e9, "looks like years"),
        ("log_age", np.log10(AGES * 1e9), "log10 of years"),
        ("log_age", np.log10(AGES * 1e3), "log10 of Myr"),
        ("Age_Myr", AGES * 1e3, "from its name"),
        ("log_age_yr", np.log10(AGES * 1e9), "from its name"),
    ],
)
def test_ages_in_other_units_are_converted_with_a_message(column, values, says, caplog):
    with caplog.at_level("WARNING", logger="skages"):
        table = read_age_table(pd.DataFrame({"kic": KIC, column: values}))
    np.testing.assert_allclose(_log_age(table), np.log10(AGES), atol=1e-12)
    assert says in caplog.text and repr(column) in caplog.text


def test_gyr_ages_pass_without_a_message(caplog):
    with caplog.at_level("WARNING", logger="skages"):
        a = read_age_table(pd.DataFrame({"kic": KIC, "age": AGES}))
        b = read_age_table(pd.DataFrame({"kic": KIC, "log_age": np.log10(AGES)}))
    np.testing.assert_allclose(_log_age(a), _log_age(b))
    assert caplog.text == ""


def test_quantities_are_converted():
    table = read_age_table(Table({"kic": KIC, "age": AGES * 1e3 * u.Myr}))
    np.testing.assert_allclose(np.asarray(table["age"]), AGES)
    logs = Table({"kic": KIC, "log_age": np.log10(AGES * 1e9)})
    logs["log_age"].unit = u.dex(u.yr)
    np.testing.assert_allclose(_log_age(read_age_table(logs)), np.log10(AGES))


def test_miglio_bounds_follow_the_age_unit():
    frame = pd.DataFrame(
        {"kic": KIC, "age_myr": AGES * 1e3, "age_lower": AGES * 900, "age_upper": AGES * 1100}
    )
    table = read_age_table(frame, columns={"age": "age_myr"})
    np.testing.assert_allclose(np.asarray(table["age"]), AGES)
    np.testing.assert_allclose(np.asarray(table["log_age_err_lower"]), -np.log10(0.9))


def test_implausible_ages_are_refused_naming_the_column():
    with pytest.raises(ValueError, match=r"column 'age' has 1 age\(s\) outside 0 < age < 20 Gyr"):
        read_age_table(pd.DataFrame({"kic": KIC, "age": np.r_[AGES[:-1], 40.0]}))
    with pytest.raises(ValueError, match=r"column 'Age' has 1 age"):
        read_age_table(pd.DataFrame({"kic": KIC, "Age": np.r_[AGES[:-1], -1.0]}))


def test_a_table_without_ages_names_the_ways_to_give_them():
    with pytest.raises(ValueError, match=r"--ages-column age=NAME.*age_myr"):
        read_age_table(pd.DataFrame({"kic": KIC, "tau": AGES}))


# ------------------------------------------- ages given directly to the training layer


@pytest.mark.parametrize(
    ("shift", "says"), [(9.0, "log10 of the age in years"), (3.0, "log10 of the age in Myr")]
)
def test_fit_age_model_refuses_log_ages_not_in_gyr(small_survey, shift, says):
    from skages.pipeline import fit_age_model

    labels = small_survey.labels.copy()
    labels["log_age"] = labels["log_age"] + shift
    with pytest.raises(ValueError, match=says) as info:
        fit_age_model(small_survey.spectra, small_survey.psd, labels, random_state=0)
    assert "labels['log_age']" in str(info.value)
    assert "log10 of the age in Gyr is expected" in str(info.value)


def test_training_ages_as_quantities_are_converted():
    from skages._ages import training_log_ages

    expected = np.log10(AGES)
    for given in (AGES * u.Gyr, AGES * 1e3 * u.Myr, AGES * 1e9 * u.yr):
        got = training_log_ages(given, where="test")
        np.testing.assert_allclose(got, expected, atol=1e-12)
    logs = u.Dex(np.log10(AGES * 1e9), u.dex(u.yr))
    np.testing.assert_allclose(training_log_ages(logs, where="test"), expected, atol=1e-12)
    with pytest.raises(ValueError, match="not an age"):
        training_log_ages(AGES * u.K, where="test")
    np.testing.assert_array_equal(training_log_ages(np.log10(AGES), where="t"), expected)


def test_train_from_survey_refuses_log_ages_in_years_before_training(tmp_path):
    from skages.datasets import make_apokasc
    from skages.io import SurveyWriter
    from skages.seismology import frequency_grid
    from skages.training import train_from_survey

    data = make_apokasc(40, random_state=3)
    labels = data.labels.copy()
    labels["log_age"] = labels["log_age"] + 9.0  # log10 of years
    path = tmp_path / "yr.h5"
    with SurveyWriter(path, frequency=frequency_grid()) as writer:
        writer.append(labels=labels, spectra=data.spectra, psd=data.psd)
    with pytest.raises(ValueError, match="log10 of the age in years") as info:
        train_from_survey(path, output=tmp_path / "m.skops", verbose=0)
    assert str(path) in str(info.value)
