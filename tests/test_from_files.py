"""The worked example of docs/user_guide/from_files.rst, run on the real fixtures.

The four ``$ skages ...`` lines are read from the page and run as written, in a folder
holding the real files of ``../shared/data`` (Kepler quarters of KIC 9145861, the text
light curve of KIC 11618103, two DR17 apStar files, the r6 apStar / aspcapStar files)
and small files written here: copies of those files under the ids of APOKASC-2 stars
(so that a training sample exists) and an allStar table. The checks are plumbing and
values (what each stage wrote equals what the single-file functions give), not science.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skages.cli import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "from_files.rst"
N_EXTRA = 14  # APOKASC-2 stars given copies of the real files


def _page_commands() -> list[list[str]]:
    lines = [ln.strip() for ln in PAGE.read_text().splitlines()]
    prefix = "$ skages "
    return [shlex.split(ln.removeprefix(prefix)) for ln in lines if ln.startswith(prefix)]


def _allstar(path: Path, rows: list[tuple[str, str, str]]) -> None:
    n = len(rows)
    table = Table()
    table["APOGEE_ID"] = [r[0] for r in rows]
    table["TELESCOPE"] = [r[1] for r in rows]
    table["FIELD"] = [r[2] for r in rows]
    rng = np.random.default_rng(0)
    table["TEFF"] = 4700.0 + rng.normal(0, 50, n)
    table["TEFF_ERR"] = np.full(n, 80.0)
    table["LOGG"], table["LOGG_ERR"] = np.full(n, 2.8), np.full(n, 0.05)
    table["FE_H"] = rng.normal(0, 0.2, n)
    table["FE_H_ERR"] = np.full(n, 0.02)
    table["ALPHA_M"], table["ALPHA_M_ERR"] = np.zeros(n), np.full(n, 0.02)
    table["SNREV"] = np.full(n, 150.0)
    table["STARFLAG"] = np.zeros(n, dtype=np.int64)
    table["ASPCAPFLAG"] = np.zeros(n, dtype=np.int64)
    table.write(path)


@pytest.fixture(scope="module")
def example(shared_data, tmp_path_factory):
    """The example's folder, and what the single-file functions say about its stars."""
    from skages.io import read_apokasc2

    root = tmp_path_factory.mktemp("from_files")
    kepler, fixtures = shared_data / "kepler", shared_data / "apogee_fixtures"
    lc = root / "lightcurves"
    shutil.copytree(kepler / "KIC9145861", lc / "KIC9145861")
    shutil.copytree(kepler / "KIC11618103", lc / "KIC11618103")  # with its pySYD *_PS.txt

    ages = read_apokasc2()
    ok = (ages["numax"] > 4) & (ages["numax"] < 250) & np.isfinite(ages["log_age"])
    ok &= np.isin(ages["evstate"], ["RGB", "RC"]) & (ages["kic"] != 9145861)
    extra = ages[ok][:N_EXTRA]
    quarter = sorted((kepler / "KIC9145861").glob("*.fits"))[1]
    (lc / "extra").mkdir()
    for kic in extra["kic"]:  # the real Q2 quarter under another star's KIC
        with fits.open(quarter) as hdul:
            hdul[0].header["KEPLERID"] = int(kic)
            hdul.writeto(lc / "extra" / f"kplr{int(kic):09d}-2009259160929_llc.fits")

    spectra = root / "spectra"
    kepler_field = spectra / "apo25m" / "K04_083+13"
    kepler_field.mkdir(parents=True)
    real_kepler_star = fixtures / "apStar-dr17-2M19485057+5005279.fits"
    shutil.copy(real_kepler_star, kepler_field)
    bulge = spectra / "apo25m" / "bulge"
    bulge.mkdir()
    shutil.copy(fixtures / "apStar-dr17-2M17335483-2753043.fits", bulge)
    r6 = spectra / "apo25m" / "r6"
    r6.mkdir()
    for f in fixtures.glob("*-r6-*.fits"):
        shutil.copy(f, r6)
    train_ids = [str(ages["apogee_id"][ages["kic"] == 9145861][0]), *map(str, extra["apogee_id"])]
    for apogee_id in train_ids:  # the real DR17 file under the training stars' ids
        with fits.open(real_kepler_star) as hdul:
            hdul[0].header["OBJID"] = apogee_id
            hdul.writeto(kepler_field / f"apStar-dr17-{apogee_id}.fits")
    rows = [(i, "apo25m", "K04_083+13") for i in ["2M19485057+5005279", *train_ids]]
    rows.insert(3, ("2M17335483-2753043", "apo25m", "bulge"))
    rows.insert(5, ("2M99999999+9999999", "apo25m", "nowhere"))  # no file
    rows += [(f.name.split("-")[-1].removesuffix(".fits"), "apo25m", "r6")
             for f in sorted(r6.glob("apStar-*"))]  # fmt: skip
    _allstar(root / "allStar.fits", rows)
    from skages._data import bundled_path

    shutil.copy(bundled_path("APOKASC2_Table5.txt.gz"), root)
    return {"root": root, "rows": rows, "train_ids": train_ids, "extra": extra}


def test_the_page_has_the_four_commands():
    commands = _page_commands()
    assert [c[0] for c in commands] == ["psd", "spectra", "train", "predict"]


@pytest.fixture(scope="module")
def ran(example):
    root = example["root"]
    old = Path.cwd()
    import os

    os.chdir(root)
    try:
        for argv in _page_commands():
            assert main(["-q", *argv]) == 0, argv
    finally:
        os.chdir(old)
    return example


def test_psd_survey_equals_the_single_star_path(ran, shared_data):
    from skages.io import read_survey
    from skages.seismology import estimate_numax, lightcurve_to_psd, read_kepler_lightcurve

    survey = read_survey(ran["root"] / "psd.h5")
    labels = survey.labels
    assert len(labels) == 2 + N_EXTRA
    assert labels["kic"].is_monotonic_increasing
    files = sorted((shared_data / "kepler" / "KIC9145861").glob("*.fits"))
    lc = read_kepler_lightcurve(files)
    row = int(np.flatnonzero(labels["kic"] == 9145861)[0])
    assert labels.loc[row, "n_quarters"] == 2
    assert labels.loc[row, "n_cadences"] == len(lc)
    assert labels.loc[row, "baseline_days"] == pytest.approx(np.ptp(lc.time.value), rel=1e-12)
    with pytest.warns(UserWarning, match="frequency resolution"):
        psd = lightcurve_to_psd(lc)
    np.testing.assert_array_equal(survey.psd[row], psd.astype(np.float32))
    assert labels.loc[row, "numax_est"] == pytest.approx(estimate_numax(psd), rel=1e-12)
    text = int(np.flatnonzero(labels["kic"] == 11618103)[0])
    assert labels.loc[text, "n_quarters"] == 1  # the *_PS.txt beside it is not a quarter
    assert labels.loc[text, "n_cadences"] == 27144
    assert labels.loc[text, "psd_flag"] == 4  # 599 d: SHORT_BASELINE, nothing failed
    assert np.isfinite(survey.psd[:, 1:]).all()


def test_spectra_survey_follows_the_allstar_and_the_predict_path(ran):
    from skages.io import SurveyReader, read_apstar
    from skages.spectra import continuum_normalize

    root = ran["root"]
    with SurveyReader(root / "spec.h5") as survey:
        labels = survey.labels
        spectra = survey.read("spectra")
    expected = [r[0] for r in ran["rows"] if r[0] != "2M99999999+9999999"]
    assert labels["apogee_id"].tolist() == expected  # allStar order, the row without file out
    assert (labels["spectrum_flag"] == 0).all()
    path = root / "spectra" / "apo25m" / "K04_083+13" / "apStar-dr17-2M19485057+5005279.fits"
    spec = read_apstar(path)
    flux = spec.flux.astype(np.float32)
    flux[flux <= 0] = np.nan
    norm, _ = continuum_normalize(flux, spec.flux_err, spec.bitmask, fill_value=np.nan)
    np.testing.assert_array_equal(spectra[0], norm.astype(np.float32))
    assert labels.loc[0, "snr"] == pytest.approx(spec.snr)
    assert labels.loc[0, "teff"] == pytest.approx(Table.read(root / "allStar.fits")["TEFF"][0])


def test_training_summary_counts_every_star(ran):
    from skages.persistence import load_model

    _, meta = load_model(ran["root"] / "model.skops")
    summary = meta["training"]["source"]["sample"]
    assert summary["n_kept"] == 1 + N_EXTRA == meta["training"]["n_stars"]
    removed = sum(v for k, v in summary.items() if k.startswith("removed_") and isinstance(v, int))
    assert summary["ages_rows"] - removed == summary["n_kept"]
    assert summary["numax_from"] == "ages table"
    assert meta["training"]["source"]["ages_format"] == "apokasc2"


def test_catalogue_has_one_row_per_allstar_row(ran):
    from skages.catalogue import CatalogueFlag, read_catalogue

    cat = read_catalogue(ran["root"] / "ages.fits")
    ids = [str(x).strip() for x in cat["APOGEE_ID"]]
    assert ids == [r[0] for r in ran["rows"]]
    missing = ids.index("2M99999999+9999999")
    assert cat["SKAGES_FLAG"][missing] & CatalogueFlag.NO_SPECTRUM
    trained = np.isin(ids, ran["train_ids"])
    assert np.isfinite(np.asarray(cat["LogAge"])[trained]).all()
