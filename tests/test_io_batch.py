"""Batch ingestion: Kepler files -> PSD survey, APOGEE folder -> spectra survey, age tables,
the KIC <-> 2MASS cross-match and the training sample."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from skages.cli import main
from skages.io import (
    KEPLER_DEFAULT_BITMASK,
    LightCurveFlag,
    SurveyReader,
    SurveyWriter,
    TrainingCuts,
    add_crossmatch_ids,
    find_lightcurve_files,
    group_kepler_files,
    lightcurves_to_survey,
    load_kic_2mass_crossmatch,
    read_age_table,
    read_kepler_star,
    read_normalized_spectra,
    read_survey,
    spectra_to_survey,
    training_sample,
)
from skages.io import kepler as kepler_module


@pytest.fixture(scope="module")
def quarters(shared_data):
    return sorted((shared_data / "kepler" / "KIC9145861").glob("*.fits"))


def _copy_quarter(src: Path, dst: Path, **header) -> Path:
    with fits.open(src) as hdul:
        for key, value in header.items():
            hdul[0].header[key] = value
        dst.parent.mkdir(parents=True, exist_ok=True)
        hdul.writeto(dst)
    return dst


# ----------------------------------------------------------------------------- Kepler


def test_default_bitmask_is_lightkurves():
    from skages.seismology import _import_lightkurve

    lk = _import_lightkurve()
    assert KEPLER_DEFAULT_BITMASK == lk.utils.KeplerQualityFlags.DEFAULT_BITMASK


@pytest.mark.parametrize("which", ["q1", "q2", "both", "text"])
def test_fast_reader_equals_lightkurve_on_real_files(quarters, shared_data, which):
    from skages.seismology import read_kepler_lightcurve

    files = {
        "q1": [quarters[0]],
        "q2": [quarters[1]],
        "both": quarters,
        "text": [shared_data / "kepler" / "KIC11618103" / "11618103_LC.txt"],
    }[which]
    lc = read_kepler_lightcurve(files)
    time, flux = read_kepler_star(files)
    np.testing.assert_array_equal(time, lc.time.value)
    np.testing.assert_array_equal(flux, np.asarray(lc.flux.value, dtype=float))


def test_fast_reader_refuses_a_power_spectrum_as_a_light_curve(shared_data, tmp_path):
    """A pySYD power spectrum under a light-curve-like name is refused, not read."""
    path = tmp_path / "kic11618103.txt"
    path.write_bytes((shared_data / "kepler" / "KIC11618103" / "11618103_PS.txt").read_bytes())
    with pytest.raises(ValueError, match="looks like a power spectrum"):
        read_kepler_star(path)


def test_quality_bitmask_drops_the_flagged_cadences(quarters, tmp_path):
    from skages.seismology import read_kepler_lightcurve

    path = tmp_path / "kplr009145861-2009259160929_llc.fits"
    with fits.open(quarters[1]) as hdul:
        data = hdul[1].data
        good = np.flatnonzero(np.isfinite(data["TIME"]) & np.isfinite(data["PDCSAP_FLUX"]))
        data["SAP_QUALITY"][good[100:110]] = 32  # Desat: in the default bitmask
        data["SAP_QUALITY"][good[200:205]] = 16  # ZeroCrossing: not in it
        hdul.writeto(path)
    every, _ = read_kepler_star(path, quality_bitmask=0, sigma=np.inf)
    default, _ = read_kepler_star(path, sigma=np.inf)
    assert every.size - default.size == 10
    lc = read_kepler_lightcurve(path)  # and lightkurve drops the same ones
    np.testing.assert_array_equal(read_kepler_star(path)[0], lc.time.value)


def test_bad_light_curve_files_get_one_line_naming_them(quarters, tmp_path):
    tess = _copy_quarter(quarters[0], tmp_path / "tess.fits", TELESCOP="TESS")
    short = _copy_quarter(quarters[0], tmp_path / "short.fits", OBSMODE="short cadence")
    truncated = tmp_path / "kplr009145861-trunc_llc.fits"
    truncated.write_bytes(quarters[1].read_bytes()[:100_000])
    notfits = tmp_path / "kplr009145861-x_llc.fits"
    notfits.write_text("hello")
    for path, needle in [
        (tess, "not a Kepler light curve (TELESCOP='TESS'"),
        (short, "short-cadence"),
        (truncated, "truncated FITS file"),
        (notfits, "not a FITS file"),
    ]:
        with pytest.raises(ValueError) as info:
            read_kepler_star(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and needle in message


def test_find_and_group_files(quarters, shared_data, tmp_path):
    folder = tmp_path / "lc"
    shutil.copytree(shared_data / "kepler", folder)
    renamed = _copy_quarter(quarters[0], folder / "deep" / "q1.fits", KEPLERID=123456)
    _copy_quarter(quarters[0], folder / "other.fits", TELESCOP="TESS", KEPLERID=None)
    (folder / "notes.md").write_text("not a light curve")
    found = find_lightcurve_files(folder)
    assert renamed in found and not any(p.suffix == ".md" for p in found)
    grouped = group_kepler_files(found)
    assert list(grouped.stars) == [123456, 9145861, 11618103]
    assert [p.name for p in grouped.stars[9145861]] == [q.name for q in quarters]
    reasons = {p.name: r for p, r in grouped.skipped.items()}
    assert "power spectrum" in reasons["11618103_PS.txt"]
    assert "no KEPLERID" in reasons["other.fits"] and "TESS" in reasons["other.fits"]
    # a glob and a list file give the same files
    assert find_lightcurve_files(str(folder / "KIC9145861" / "*.fits")) == sorted(
        folder / "KIC9145861" / q.name for q in quarters
    )
    listing = tmp_path / "files.lst"
    listing.write_text(f"# quarters\nlc/KIC9145861/{quarters[0].name}\n")
    assert find_lightcurve_files(listing) == [folder / "KIC9145861" / quarters[0].name]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        find_lightcurve_files(str(tmp_path / "nothing*.fits"))


def _star_folder(quarters, shared_data, tmp_path):
    folder = tmp_path / "lc"
    (folder / "a").mkdir(parents=True)
    for q in quarters:
        shutil.copy(q, folder / "a" / q.name)
    shutil.copy(shared_data / "kepler" / "KIC11618103" / "11618103_LC.txt", folder)
    for kic in (2000001, 2000002, 2000003):  # copies of Q2 under other KICs
        _copy_quarter(quarters[1], folder / f"kplr{kic:09d}-2009259160929_llc.fits", KEPLERID=kic)
    bad = folder / "kplr000000777-2009259160929_llc.fits"  # a star with no usable quarter
    bad.write_bytes(quarters[1].read_bytes()[:50_000])
    return folder, bad


def test_lightcurves_to_survey_rows_flags_and_weights(quarters, shared_data, tmp_path, caplog):
    from skages.seismology import (
        estimate_numax,
        frequency_grid,
        lightcurve_to_psd,
        numax_weights,
    )

    folder, bad = _star_folder(quarters, shared_data, tmp_path)
    numax = {9145861: 132.1, 2000001: 80.0}
    with caplog.at_level(logging.WARNING, logger="skages.io.kepler"):
        res = lightcurves_to_survey(folder, tmp_path / "psd.h5", numax=numax, chunk_size=2)
    assert res.n_stars == 6 and res.n_failed == 1 and res.n_file_errors == 1
    assert any(
        str(bad) in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records
    )
    survey = read_survey(tmp_path / "psd.h5")
    lab = survey.labels
    assert lab["kic"].tolist() == [777, 2000001, 2000002, 2000003, 9145861, 11618103]
    np.testing.assert_array_equal(survey.frequency, frequency_grid())
    assert np.isnan(survey.psd[0]).all() and lab.loc[0, "n_quarters"] == 0
    flag = LightCurveFlag
    assert lab.loc[0, "psd_flag"] == flag.FILE_FAILED | flag.NO_DATA | flag.NO_NUMAX
    assert lab.loc[4, "psd_flag"] == flag.SHORT_BASELINE
    assert lab.loc[2, "psd_flag"] == flag.SHORT_BASELINE | flag.NO_NUMAX
    # copies of one quarter give one PSD; each row is the single-star computation
    np.testing.assert_array_equal(survey.psd[1], survey.psd[3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = lightcurve_to_psd(*read_kepler_star(quarters))
    np.testing.assert_array_equal(survey.psd[4], one.astype(np.float32))
    # νmax comes from a 16-star matrix product: equal to one star's to rounding
    assert lab.loc[4, "numax_est"] == pytest.approx(estimate_numax(one), rel=1e-12)
    assert lab.loc[4, "n_cadences"] == read_kepler_star(quarters)[0].size
    np.testing.assert_array_equal(lab["numax"].to_numpy()[[1, 4]], [80.0, 132.1])
    np.testing.assert_allclose(survey.psd_weight[4], numax_weights(132.1))
    assert (survey.psd_weight[[0, 2, 3, 5]] == 1).all()  # no νmax: uniform weights


def test_lightcurves_to_survey_resumes_after_a_kill(quarters, shared_data, tmp_path, monkeypatch):
    folder, _ = _star_folder(quarters, shared_data, tmp_path)
    fresh = tmp_path / "fresh.h5"
    lightcurves_to_survey(folder, fresh)
    real = kepler_module._star_batch
    calls = []

    def dies_on_the_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(kepler_module, "_star_batch", dies_on_the_third_batch)
    out = tmp_path / "psd.h5"
    with pytest.raises(KeyboardInterrupt):
        lightcurves_to_survey(folder, out, chunk_size=1)
    assert not out.exists() and out.with_name("psd.h5.partial").exists()
    monkeypatch.setattr(kepler_module, "_star_batch", real)
    with pytest.raises(ValueError, match="started with settings"):
        lightcurves_to_survey(folder, out, sigma=4.0)
    res = lightcurves_to_survey(folder, out, chunk_size=1)
    assert res.n_resumed == 2 and res.n_stars == 6
    a, b = read_survey(fresh), read_survey(out)
    np.testing.assert_array_equal(a.psd, b.psd)
    pd.testing.assert_frame_equal(a.labels, b.labels, check_exact=True)


def test_lightcurves_to_survey_does_not_depend_on_n_jobs(quarters, shared_data, tmp_path):
    folder, _ = _star_folder(quarters, shared_data, tmp_path)
    lightcurves_to_survey(folder, tmp_path / "one.h5", n_jobs=1)
    lightcurves_to_survey(folder, tmp_path / "two.h5", n_jobs=2)
    a, b = read_survey(tmp_path / "one.h5"), read_survey(tmp_path / "two.h5")
    np.testing.assert_array_equal(a.psd, b.psd)
    pd.testing.assert_frame_equal(a.labels, b.labels, check_exact=True)


def test_cli_psd_many_stars_and_one_star(quarters, shared_data, tmp_path, capsys):
    folder, _ = _star_folder(quarters, shared_data, tmp_path)
    assert main(["-q", "psd", str(folder), "--output", str(tmp_path / "psd.h5")]) == 0
    out = capsys.readouterr().out
    assert "6 stars written" in out and "1 without a PSD" in out
    listing = tmp_path / "stars.txt"
    listing.write_text("\n".join(f"lc/a/{q.name}" for q in quarters) + "\n")
    argv = ["-q", "psd", "--list", str(listing), "--output", str(tmp_path / "list.h5")]
    argv += ["--numax", str(shared_data / "apokasc2" / "APOKASC2_Table5.txt")]
    assert main(argv) == 0
    listed = read_survey(tmp_path / "list.h5")
    assert listed.labels["kic"].tolist() == [9145861]
    assert listed.labels["numax"].tolist() == [132.099]  # APOKASC-2's νmax of the star
    assert float(listed.psd_weight.max()) > 1.9
    # one star, one table: unchanged
    argv = ["-q", "psd", *map(str, quarters), "--output", str(tmp_path / "one.ecsv")]
    assert main(argv) == 0
    assert Table.read(tmp_path / "one.ecsv")["log_psd"].shape == (2092,)
    assert main(["-q", "psd", str(folder), "--output", str(tmp_path / "x.fits")]) == 1
    err = capsys.readouterr().err
    assert "must end in .h5" in err and len(err.strip().splitlines()) == 1
    two = [str(quarters[0]), str(folder / "kplr002000001-2009259160929_llc.fits")]
    assert main(["-q", "psd", *two, "--output", str(tmp_path / "y.fits")]) == 1
    err = capsys.readouterr().err
    assert "of 2 stars (KIC 2000001, 9145861)" in err and len(err.strip().splitlines()) == 1


def test_cli_train_refuses_an_age_table_without_ages(shared_data, tmp_path, capsys):
    gold = shared_data / "apokasc3" / "Table4_Apoor_RGB+RC_Gold.csv"
    argv = ["-q", "train", "--spectra", "s.h5", "--psd", "p.h5", "--ages", str(gold)]
    assert main([*argv, "-o", str(tmp_path / "m.skops")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Table4_Apoor" in err and "masses, not ages" in err


# ---------------------------------------------------------------------------- spectra


def _allstar(path, rows):
    n = len(rows)
    t = Table()
    t["APOGEE_ID"], t["TELESCOPE"], t["FIELD"] = ([r[i] for r in rows] for i in range(3))
    for name, value in [("TEFF", 4800.0), ("TEFF_ERR", 80.0), ("FE_H", -0.1), ("FE_H_ERR", 0.02)]:
        t[name] = value + np.arange(n)
    t["LOGG"], t["LOGG_ERR"] = np.full(n, 2.8), np.full(n, 0.05)
    t["ALPHA_M"], t["ALPHA_M_ERR"] = np.zeros(n), np.full(n, 0.02)
    t["SNREV"] = np.full(n, 150.0)
    t["STARFLAG"] = np.zeros(n, dtype=np.int64)
    t["ASPCAPFLAG"] = np.zeros(n, dtype=np.int64)
    t.write(path)


@pytest.fixture
def spectra_folder(shared_data, tmp_path):
    folder = tmp_path / "spectra" / "apo25m" / "F1"
    folder.mkdir(parents=True)
    for f in (shared_data / "apogee_fixtures").glob("apStar-*.fits"):
        shutil.copy(f, folder)
    broken = folder / "apStar-dr17-2M00000000+0000000.fits"
    broken.write_bytes((folder / "apStar-r6-2M19535443+4424541.fits").read_bytes()[:40_000])
    return tmp_path / "spectra", broken


def test_spectra_to_survey_file_order_values_and_flags(spectra_folder, tmp_path, caplog):
    root, broken = spectra_folder
    with caplog.at_level(logging.WARNING, logger="skages.io.apogee"):
        res = spectra_to_survey(root, tmp_path / "spec.h5", chunk_size=2)
    assert res.n_stars == 6 and list(res.errors) == [str(broken)]
    assert any(str(broken) in r.getMessage() for r in caplog.records)
    with SurveyReader(tmp_path / "spec.h5") as s:
        lab, spectra, bitmask = s.labels, s.read("spectra"), s.read("bitmask")
    files = sorted(p for p in (root / "apo25m" / "F1").iterdir())
    direct = read_normalized_spectra([p for p in files if p != broken])
    ids = lab["apogee_id"].tolist()
    assert ids[0] == "2M00000000+0000000"  # from the file name: its header is unreadable
    assert lab.loc[0, "spectrum_flag"] == 1 and np.isnan(spectra[0]).all()
    order = [direct.apogee_id.tolist().index(i) for i in ids[1:]]
    np.testing.assert_array_equal(spectra[1:], direct.spectra[order])
    np.testing.assert_array_equal(bitmask[1:], direct.bitmask[order])
    assert (lab["spectrum_flag"][1:] == 0).all() and lab["telescope"][1:].eq("apo25m").all()


def test_predict_folder_input_reads_through_the_same_function(spectra_folder, tmp_path):
    from skages.catalogue._sources import _Source

    root, _ = spectra_folder
    files = sorted(str(p) for p in (root / "apo25m" / "F1").glob("apStar-dr17-2M1*.fits"))
    spectra, flags = _Source("files", str(root))._read_files(np.array(files, object), 7514)
    np.testing.assert_array_equal(spectra, read_normalized_spectra(files).spectra)
    assert (flags == 0).all()


def test_spectra_to_survey_allstar_order_and_resume(spectra_folder, tmp_path, monkeypatch):
    from skages.io import apogee as apogee_module

    root, _ = spectra_folder
    rows = [
        ("2M19485057+5005279", "apo25m", "F1"),
        ("2M99999999+9999999", "apo25m", "F1"),  # no file
        ("2M17335483-2753043", "apo25m", "F1"),
        ("2M12241699+2453335", "apo25m", "F1"),
    ]
    _allstar(tmp_path / "allStar.fits", rows)
    fresh = spectra_to_survey(root, tmp_path / "fresh.h5", allstar=tmp_path / "allStar.fits")
    assert fresh.n_stars == 3 and fresh.n_allstar_without_file == 1
    assert fresh.n_files_not_in_allstar == 3  # two r6 stars and the broken file
    real = apogee_module._spectra_chunk
    calls = []

    def dies(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(apogee_module, "_spectra_chunk", dies)
    out = tmp_path / "spec.h5"
    with pytest.raises(KeyboardInterrupt):
        spectra_to_survey(root, out, allstar=tmp_path / "allStar.fits", chunk_size=1)
    monkeypatch.setattr(apogee_module, "_spectra_chunk", real)
    res = spectra_to_survey(root, out, allstar=tmp_path / "allStar.fits", chunk_size=1)
    assert res.n_resumed == 1
    a, b = read_survey(tmp_path / "fresh.h5"), read_survey(out)
    assert b.labels["apogee_id"].tolist() == [rows[0][0], rows[2][0], rows[3][0]]
    assert b.labels["teff"].tolist() == [4800.0, 4802.0, 4803.0]
    np.testing.assert_array_equal(a.spectra, b.spectra)
    pd.testing.assert_frame_equal(a.labels, b.labels, check_exact=True)


def test_cli_spectra(spectra_folder, tmp_path, capsys):
    root, _ = spectra_folder
    argv = ["-q", "spectra", "--spectra", str(root), "--output", str(tmp_path / "s.h5")]
    assert main(argv) == 0
    assert "6 spectra written" in capsys.readouterr().out
    assert main([*argv[:-1], str(tmp_path / "s.fits")]) == 1
    assert "must end in .h5" in capsys.readouterr().err


# ------------------------------------------------------------------ tables, training


def test_bundled_crossmatch_agrees_with_apokasc2():
    from skages.io import read_apokasc2

    kic, ids = load_kic_2mass_crossmatch()
    assert (
        kic.size == 23363 and np.unique(kic).size == kic.size and np.unique(ids).size == ids.size
    )
    apokasc = read_apokasc2()
    lookup = dict(zip(kic.tolist(), ids.tolist(), strict=True))
    common = [k for k in apokasc["kic"].tolist() if k in lookup]
    assert len(common) > 6000
    same = [lookup[k] == a for k, a in zip(apokasc["kic"], apokasc["apogee_id"], strict=True)
            if k in lookup]  # fmt: skip
    assert np.mean(same) > 0.99


def test_age_tables_as_published(shared_data):
    a3 = shared_data / "apokasc3"
    with pytest.raises(ValueError, match="masses, not ages") as info:
        read_age_table(a3 / "Table4_Apoor_RGB+RC_Gold.csv")
    assert "\n" not in str(info.value) and "Table4_Apoor" in str(info.value)
    gold = read_age_table(a3 / "Table4_Apoor_RGB+RC_Gold.csv", require=("mass", "evstate"))
    assert gold.meta["format"] == "apokasc3" and len(gold) == 6603
    assert sorted(set(gold["evstate"])) == ["RC", "RGB"]
    assert (np.asarray(gold["apogee_id"]) == "").all()
    filled = add_crossmatch_ids(gold)
    assert filled.n_filled_apogee_id == int((filled.table["apogee_id"] != "").sum()) > 6000
    cal = read_age_table(a3 / "apokasc3_preliminary_logg_cal.fits", require=("numax",))
    assert cal.meta["format"] == "apokasc3-calibration"
    es = Table.read(a3 / "apokasc3_preliminary_logg_cal.fits")["ES_AST"]
    np.testing.assert_array_equal(cal["evstate"] == "RGB", np.asarray(es) == 1)
    np.testing.assert_array_equal(cal["evstate"] == "", ~np.isin(es, [1, 2]))
    a2 = read_age_table(shared_data / "apokasc2" / "APOKASC2_Table5.txt")
    assert a2.meta["format"] == "apokasc2" and str(a2["log_age"].unit) == "dex(Gyr)"


def test_miglio_style_bounds_and_errors_and_mappings():
    df = pd.DataFrame({"KIC": [1, 2], "Age": [2.0, 8.0], "b_Age": [1.0, 6.0], "B_Age": [4.0, 9.0]})
    t = read_age_table(df)
    assert t.meta["format"] == "miglio2021"
    np.testing.assert_allclose(t["log_age"], np.log10([2.0, 8.0]))
    np.testing.assert_allclose(t["log_age_err_lower"], np.log10([2.0, 8 / 6]))
    np.testing.assert_allclose(t["log_age_err_upper"], np.log10([2.0, 9 / 8]))
    np.testing.assert_allclose(
        t["log_age_err"], 0.5 * (t["log_age_err_lower"] + t["log_age_err_upper"])
    )
    errs = pd.DataFrame({"KIC": [1], "Age": [2.0], "e_Age": [1.0], "E_Age": [2.0]})
    np.testing.assert_allclose(read_age_table(errs)["log_age_err_upper"], np.log10(2.0))
    mapped = pd.DataFrame({"id": ["KIC 5"], "lage": [0.3], "elage": [0.1], "st": [2]})
    t = read_age_table(mapped, columns={"kic": "id", "log_age": "lage", "log_age_err": "elage",
                                        "evstate": "st"})  # fmt: skip
    assert t["kic"][0] == 5 and t["log_age_err"][0] == 0.1 and t["evstate"][0] == "RC"
    with pytest.raises(ValueError, match="no star id"):
        read_age_table(pd.DataFrame({"age": [1.0]}))
    with pytest.raises(ValueError, match=r"no \['log_age'\]"):
        read_age_table(pd.DataFrame({"kic": [1], "mass": [1.0]}))
    with pytest.raises(ValueError, match="wrong side"):
        read_age_table(pd.DataFrame({"kic": [1], "age": [2.0], "age_16": [3.0], "age_84": [4.0]}))
    with pytest.raises(ValueError, match="column mapping"):
        read_age_table(df, columns={"kic": "nope"})


def test_training_sample_counts_each_cut_and_failed_match(tmp_path):
    from skages.seismology import frequency_grid

    rng = np.random.default_rng(0)
    n = 10
    ids = [f"2M{i:08d}+0000000" for i in range(n)]
    kics = np.arange(100, 100 + n)
    flags = np.zeros(n, dtype=np.int64)
    flags[1] = 1  # an unreadable spectrum
    spec = rng.normal(1, 0.01, (n, 7514)).astype(np.float32)
    spec[1] = np.nan
    with SurveyWriter(tmp_path / "spec.h5") as w:
        w.append(spectra=spec, labels=pd.DataFrame({"apogee_id": ids, "spectrum_flag": flags,
                                                    "teff": 4800.0 + np.arange(n)}))  # fmt: skip
    psd = rng.normal(0, 1, (n - 1, 2092)).astype(np.float32)
    psd[2] = np.nan
    pflag = np.where(np.arange(n - 1) == 2, 2, 0)
    with SurveyWriter(tmp_path / "psd.h5", frequency=frequency_grid()) as w:
        w.append(psd=psd, labels=pd.DataFrame({"kic": kics[:-1], "psd_flag": pflag}))  # no PSD: 9
    ages = pd.DataFrame({
        "kic": [*kics, 999, 100],  # 999: no spectrum anywhere; 100 again: a duplicate
        "apogee_id": [*ids, "", ids[0]],
        "log_age": rng.normal(0.5, 0.1, n + 2),
        "numax": [50, 50, 50, 300, 50, 3, 50, 50, 50, 50, 50, 50],
        "evstate": ["RGB", "RC", "RGB", "RGB", "", "RGB", "RC", "AGB", "RGB", "RGB", "RGB", "RGB"],
    })  # fmt: skip
    s = training_sample(tmp_path / "spec.h5", tmp_path / "psd.h5", ages, crossmatch=([], []))
    assert s.summary == {
        "ages_rows": 12,
        "removed_no_apogee_id": 1,
        "removed_no_kic": 0,
        "removed_duplicate": 1,
        "removed_no_spectrum": 0,
        "removed_no_psd": 1,
        "removed_bad_spectrum": 1,
        "removed_bad_psd": 1,
        "numax_from": "ages table",
        "removed_numax_range": 2,
        "removed_state": 2,
        "n_kept": 3,
    }
    assert s.labels["kic"].tolist() == [100, 106, 108]
    np.testing.assert_array_equal(s.spectra, spec[[0, 6, 8]])
    np.testing.assert_array_equal(s.psd, psd[[0, 6, 8]])
    assert s.labels["teff"].tolist() == [4800.0, 4806.0, 4808.0]
    none = training_sample(
        tmp_path / "spec.h5", tmp_path / "psd.h5", ages, cuts=TrainingCuts.none(),
        crossmatch=([], []),
    )  # fmt: skip
    assert none.summary["n_kept"] == 9  # bad rows kept when no cut asks for them
    ages_kic_only = ages.assign(apogee_id="")
    xmatch = (kics, np.array(ids, dtype=object))
    s2 = training_sample(tmp_path / "spec.h5", tmp_path / "psd.h5", ages_kic_only,
                         crossmatch=xmatch)  # fmt: skip
    assert s2.summary["ids_from_crossmatch"] == 11 and s2.summary["n_kept"] == 3
