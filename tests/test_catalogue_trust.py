"""The catalogue's warning bits: each fires on its case, not on a normal star, and each
can be switched off; a model trained on simulated spectra says so."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from astropy.io import fits

from skages.catalogue import (
    WARNING_FLAGS,
    CatalogueCuts,
    CatalogueFlag,
    predict_catalogue,
    read_catalogue,
)
from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.io import SurveyWriter
from skages.persistence import save_model, training_summary
from skages.pipeline import fit_age_model

TINY = dict(encoder_filters=(4, 8), hidden_units=8, decoder_filters=(4, 4), max_epochs=1)
LABELS = ["apogee_id", "teff", "fe_h", "teff_err", "fe_h_err"]
F = CatalogueFlag
CASES = [  # row: what is done to it, the bit it must get
    ("normal", 0),
    ("normal", 0),
    ("Teff 7000 K", F.OUTSIDE_TRAINING),
    ("[Fe/H] -2.5", F.OUTSIDE_TRAINING),
    ("flat", F.LINES_UNLIKE_TRAINING),
    ("constant 0.5", F.BAD_NORMALISATION),
    ("S/N 5 noise", F.NOISE_MISMATCH),
    ("45 % masked", F.MASKED_PIXELS),
]


@pytest.fixture(scope="module")
def trust(tmp_path_factory, small_survey):
    """A tiny model saved with its training summary, and a survey of the cases."""
    lab = small_survey.labels
    model = fit_age_model(
        small_survey.spectra, small_survey.psd, lab,
        encoder=SpectrumToPSDEncoder(**TINY, random_state=0),
        forest=ProbabilisticForestRegressor(n_estimators=20, random_state=0),
        forest_stars="aged",
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("trust")
    path = save_model(model, folder / "m.joblib", training=training_summary(labels=lab))
    rng = np.random.default_rng(0)
    # stars of the training set, log g 2.6-3.5 and S/N 150: inside the paper's cuts
    pick = np.flatnonzero(((lab.logg > 2.6) & (lab.logg < 3.5)).to_numpy())[: len(CASES)]
    spectra = np.asarray(small_survey.spectra, dtype=np.float32)[pick].copy()
    labels = lab.iloc[pick][LABELS].reset_index(drop=True).assign(logg=3.0, snr=150.0)
    labels["apogee_id"] = [f"2M0000000{i}+0000000" for i in range(len(CASES))]  # not "2M-SIM"
    for row, (case, _) in enumerate(CASES):
        if case == "Teff 7000 K":
            labels.loc[row, "teff"] = 7000.0
        elif case == "[Fe/H] -2.5":
            labels.loc[row, "fe_h"] = -2.5
        elif case == "flat":
            spectra[row] = 1.0
        elif case == "constant 0.5":
            spectra[row] = 0.5
        elif case == "S/N 5 noise":
            spectra[row] += rng.normal(size=spectra.shape[1]).astype(np.float32) * 0.2
        elif case == "45 % masked":
            spectra[row, rng.random(spectra.shape[1]) < 0.45] = np.nan
    survey = folder / "cases.h5"
    with SurveyWriter(survey) as writer:
        writer.append(spectra=spectra, labels=labels)
    return path, survey


def test_each_warning_bit_fires_on_its_case_and_keeps_the_age(trust, tmp_path, caplog):
    model, survey = trust
    caplog.set_level(logging.WARNING)
    with pytest.warns(UserWarning, match="trained on simulated spectra"):
        res = predict_catalogue(model, survey, tmp_path / "a.fits", trusted=True)
    table = read_catalogue(res.path)
    flags = np.asarray(table["SKAGES_FLAG"])
    for row, (case, bit) in enumerate(CASES):
        if bit == 0:
            assert flags[row] == 0, case
        else:
            assert flags[row] & bit, (case, CatalogueFlag(int(flags[row])))
    assert np.all(flags & ~WARNING_FLAGS == 0)  # warnings only: every row has its age
    assert np.all(np.isfinite(table["LogAge"]))
    for name in ("OUTSIDE_TRAINING", "LINES_UNLIKE_TRAINING", "NOISE_MISMATCH", "MASKED"):
        assert name in caplog.text
    header = fits.getheader(res.path, 1)
    assert header["MODELSIM"] is True
    assert header["MAXAPPL"] == 1.0
    assert "trained on simulated spectra" in str(header["COMMENT"])


def test_each_check_can_be_switched_off(trust, tmp_path):
    model, survey = trust
    names = ["max_applicability", "max_masked_fraction", "max_level_offset"]
    names += ["min_line_depth", "max_noise_ratio"]
    off = CatalogueCuts.from_strings([f"{name}=none" for name in names])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = read_catalogue(
            predict_catalogue(model, survey, tmp_path / "b.fits", cuts=off, trusted=True).path
        )
    assert np.all(np.asarray(table["SKAGES_FLAG"]) == 0)
