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
