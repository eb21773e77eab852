"""Tests of skages.io: APOGEE / APOKASC-2 readers, cross-match, HDF5 survey collections."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from skages.io import (
    ALLSTAR_COLUMNS,
    SURVEY_FORMAT_VERSION,
    SurveyReader,
    SurveyWriter,
    crossmatch_training_sample,
    read_allstar,
    read_apogee_spectra,
    read_apokasc2,
    read_apstar,
    read_aspcapstar,
    read_survey,
    write_survey,
)
from skages.spectra import N_PIXELS, N_PIXELS_APSTAR, bad_pixel_mask, continuum_normalize

IDS = ["2M00452143+1634446", "2M12241699+2453335", "2M19535443+4424541"]


@pytest.fixture(scope="module")
def fixtures(shared_data):
    return shared_data / "apogee_fixtures"


def _apstar(folder, i=0):
    return folder / f"apStar-r6-{IDS[i]}.fits"


def _aspcap(folder, i=0):
    return folder / f"aspcapStar-r6-l30e.2-{IDS[i]}.fits"


# ----------------------------------------------------------------------------- apStar
def test_read_apstar_real_files(fixtures):
    for i, apogee_id in enumerate(IDS):
        spec = read_apstar(_apstar(fixtures, i))
        with fits.open(_apstar(fixtures, i)) as hdul:
            raw_flux = np.asarray(hdul[1].data)
            raw_mask = np.asarray(hdul[3].data)
            n_visits = hdul[0].header["NVISITS"]
            snr = hdul[0].header["SNR"]
        assert spec.apogee_id == apogee_id
        assert spec.telescope == "apo25m" and spec.kind == "apStar"
        assert spec.n_visits == n_visits and spec.snr == pytest.approx(snr)
        assert spec.flux.shape == spec.flux_err.shape == spec.bitmask.shape == (N_PIXELS_APSTAR,)
        assert spec.flux.dtype == np.float32 and spec.bitmask.dtype == np.int32
        np.testing.assert_array_equal(spec.flux, raw_flux[0])
        np.testing.assert_array_equal(spec.bitmask, raw_mask[0].astype(np.int64) % 2**16)
        assert spec.wavelength[0] == pytest.approx(10**4.179)
    assert read_apstar(_apstar(fixtures, 2)).field == "K14_080+08"


def test_read_apstar_visit_rows(fixtures):
    path = _apstar(fixtures, 0)  # 3 visits: rows 0, 1 combined; 2, 3, 4 visits
    with fits.open(path) as hdul:
        raw = np.asarray(hdul[1].data)
    np.testing.assert_array_equal(read_apstar(path, visit="global").flux, raw[1])
    for k in range(3):
        np.testing.assert_array_equal(read_apstar(path, visit=k).flux, raw[k + 2])
    with pytest.raises(ValueError, match=r"visit number from 0 to 2.*got 3"):
        read_apstar(path, visit=3)
    with pytest.raises(ValueError, match=r"visit must be"):
        read_apstar(path, visit="best")


def test_apstar_normalises_end_to_end(fixtures):
    spec = read_apstar(_apstar(fixtures, 2))
    flux, _ = continuum_normalize(spec.flux, spec.flux_err, spec.bitmask)
    assert flux.shape == (N_PIXELS,) and np.isfinite(flux).all()
    assert np.median(flux) == pytest.approx(1, abs=0.05)


def test_read_aspcapstar_real_files(fixtures):
    for i, apogee_id in enumerate(IDS):
        spec = read_aspcapstar(_aspcap(fixtures, i))
        assert spec.apogee_id == apogee_id and spec.kind == "aspcapStar"
        assert spec.bitmask is None and spec.model.shape == (N_PIXELS_APSTAR,)
        assert spec.telescope is None  # DR13 aspcapStar files do not record it
        assert spec.snr == pytest.approx(read_apstar(_apstar(fixtures, i)).snr)
        assert 0.5 < np.median(spec.flux[spec.flux > 0]) < 1.1  # normalised flux


def test_wrong_apogee_file_type_is_named(fixtures):
    with pytest.raises(ValueError, match=r"aspcapStar.*use read_aspcapstar"):
        read_apstar(_aspcap(fixtures))
    with pytest.raises(ValueError, match=r"looks like an apStar file.*use read_apstar"):
        read_aspcapstar(_apstar(fixtures))


def test_kepler_file_is_not_apogee(shared_data):
    path = next((shared_data / "kepler" / "KIC9145861").glob("*_llc.fits"))
    for reader in (read_apstar, read_aspcapstar):
        with pytest.raises(ValueError, match=f"{path.name} is not an APOGEE.*'Kepler'"):
            reader(path)


def _write_image_file(path, shapes, dtypes=None, header=None):
    hdus = [fits.PrimaryHDU(header=header)]
    for i, shape in enumerate(shapes):
        dtype = (dtypes or [np.float32] * len(shapes))[i]
        hdus.append(fits.ImageHDU(np.ones(shape, dtype=dtype)))
    fits.HDUList(hdus).writeto(path)
    return path


def test_generic_and_broken_files(tmp_path):
    header = fits.Header({"OBJID": "2M00000000+0000000"})
    too_few = _write_image_file(tmp_path / "few.fits", [(2, 8575)], header=header)
    with pytest.raises(ValueError, match=r"few.fits is not an APOGEE apStar file: it has 2 HDU"):
        read_apstar(too_few)
    wrong_pixels = _write_image_file(
        tmp_path / "px.fits",
        [(2, 8000)] * 3,
        dtypes=[np.float32, np.float32, np.int16],
        header=header,
    )
    with pytest.raises(ValueError, match=r"px.fits: HDU 1 \(flux\) has 8000 pixels"):
        read_apstar(wrong_pixels)
    no_id = _write_image_file(
        tmp_path / "noid.fits", [(2, 8575)] * 3, dtypes=[np.float32, np.float32, np.int16]
    )
    with pytest.raises(ValueError, match=r"noid.fits is not an APOGEE apStar file: no APOGEE_ID"):
        read_apstar(no_id)
    table_hdu = tmp_path / "table.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(header=header),
            fits.BinTableHDU(Table({"a": [1]})),
            *[fits.ImageHDU(np.ones(8575))] * 2,
        ]
    ).writeto(table_hdu)
    with pytest.raises(ValueError, match=r"HDU 1 should be the flux image"):
        read_apstar(table_hdu)
    text = tmp_path / "notes.fits"
    text.write_text("not a FITS file\n")
    with pytest.raises(ValueError, match=r"notes.fits is not a readable FITS file"):
        read_apstar(text)
    with pytest.raises(FileNotFoundError, match=r"apStar file not found"):
        read_apstar(tmp_path / "missing.fits")
    grid = fits.Header({"OBJID": "2M1"})
    bad_grid = tmp_path / "grid.fits"
    hdus = [fits.PrimaryHDU(header=grid)]
    for dtype in (np.float32, np.float32, np.int16):
        hdu = fits.ImageHDU(np.ones((1, 8575), dtype=dtype))
        hdu.header["CRVAL1"], hdu.header["CDELT1"] = 4.2, 6e-6
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(bad_grid)
    with pytest.raises(ValueError, match=r"grid.fits: wavelength grid CRVAL1=4.2"):
        read_apstar(bad_grid)


def test_read_apogee_spectra_batch_and_bad_rows(fixtures, tmp_path):
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"garbage")
    paths = [_apstar(fixtures, 0), _aspcap(fixtures, 1), broken]
    with pytest.raises(ValueError, match=r"broken.fits"):
        read_apogee_spectra(paths)
    out = read_apogee_spectra(paths, on_error="nan")
    assert out.flux.shape == (3, N_PIXELS_APSTAR)
    assert out.kind.tolist() == ["apStar", "aspcapStar", ""]
    assert out.apogee_id.tolist() == [IDS[0], IDS[1], ""]
    assert list(out.errors) == [2] and "broken.fits" in out.errors[2]
    assert np.isnan(out.flux[2]).all() and np.isfinite(out.flux[:2]).all()
    np.testing.assert_array_equal(out.bitmask[0], read_apstar(paths[0]).bitmask)
    assert not out.bitmask[1].any()


# ----------------------------------------------------------------------------- allStar
def _allstar_table(n=4, drop=(), extra=True):
    rng = np.random.default_rng(0)
    t = Table()
    t["APOGEE_ID"] = np.array([f"2M{i:08d}+0000000" for i in range(n)], dtype="S18")
    t["TELESCOPE"] = np.array(["apo25m", "lco25m", "apo1m", "apo25m"][:n], dtype="S8")
    t["FIELD"] = np.array(["K14_080+08"] * n, dtype="S16")
    for name in ("TEFF", "LOGG", "FE_H", "ALPHA_M"):
        t[name] = rng.normal(size=n).astype(np.float32)
        t[name + "_ERR"] = rng.uniform(0.01, 0.1, n).astype(np.float32)
    t["TEFF"] = np.array([4500.0, -9999.0, 4800.0, 5000.0][:n], dtype=np.float32)
    t["FE_H"][2] = -9999.99
    t["SNREV"] = rng.uniform(50, 300, n)
    t["STARFLAG"] = np.array([0, 4, 2**17, 0][:n], dtype=np.int64)
    t["ASPCAPFLAG"] = np.array([0, 2**23, 0, 2**40][:n], dtype=np.uint64)
    if extra:
        t["PARAM"] = rng.normal(size=(n, 9))
        t["EXTRATARG"] = np.zeros(n, dtype=np.int16)
    t.remove_columns(list(drop))
    return t


def test_read_allstar_columns_sentinels_units(tmp_path):
    path = tmp_path / "allStar-test.fits"
    _allstar_table().write(path)
    table = read_allstar(path)
    assert table.colnames == [c.lower() for c in ALLSTAR_COLUMNS]
    assert table["apogee_id"][0] == "2M00000000+0000000"  # bytes decoded, blanks stripped
    assert table["telescope"].tolist() == ["apo25m", "lco25m", "apo1m", "apo25m"]
    assert np.isnan(table["teff"][1]) and table["teff"][0] == 4500
    assert np.isnan(table["fe_h"][2]) and np.isfinite(table["fe_h"][[0, 1, 3]]).all()
    assert table["aspcapflag"][3] == 2**40 and table["starflag"][2] == 2**17
    assert table["teff"].unit == "K" and table["fe_h"].unit == "dex"
    assert str(table["logg"].unit) == "dex(cm / s2)"
    extra = read_allstar(path, columns=["extratarg", "PARAM"])
    assert extra.colnames[-2:] == ["extratarg", "param"] and extra["param"].shape == (4, 9)
    assert "extratarg" in read_allstar(path, columns="all").colnames


def test_read_allstar_errors(tmp_path):
    path = tmp_path / "allStar-missing.fits"
    _allstar_table(drop=("SNREV", "ALPHA_M_ERR")).write(path)
    with pytest.raises(
        ValueError, match=r"missing required column\(s\) \['ALPHA_M_ERR', 'SNREV'\]"
    ):
        read_allstar(path)
    good = tmp_path / "allStar.fits"
    _allstar_table().write(good)
    with pytest.raises(ValueError, match=r"has no column 'NOPE'"):
        read_allstar(good, columns=["NOPE"])
    image = tmp_path / "image.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(3))]).writeto(image)
    with pytest.raises(
        ValueError, match=r"image.fits is not an allStar file: HDU 1 is not a binary"
    ):
        read_allstar(image)


# ----------------------------------------------------------------------------- APOKASC-2
def test_read_apokasc2_bundled_matches_shared_file(shared_data):
    bundled = read_apokasc2()
    shared = read_apokasc2(shared_data / "apokasc2" / "APOKASC2_Table5.txt")
    assert len(bundled) == len(shared) == 6676
    for name in ("kic", "numax", "log_age", "evstate"):
        np.testing.assert_array_equal(np.asarray(bundled[name]), np.asarray(shared[name]))


def test_read_apokasc2_conversions_against_raw_file(shared_data):
    path = shared_data / "apokasc2" / "APOKASC2_Table5.txt"
    raw = pd.read_csv(path, sep="\t")
    table = read_apokasc2(path)
    assert table["apogee_id"][0] == raw["2MASS"][0]
    has = raw["Nmax"].to_numpy() != -1
    np.testing.assert_allclose(
        table["numax_err"][has], raw["S Nmax"][has] * raw["Nmax"][has], rtol=1e-12
    )
    np.testing.assert_allclose(table["dnu_err"][has], raw["S Dnu"][has] * raw["Dnu"][has])
    aged = raw["Log Age"].to_numpy() != -1
    np.testing.assert_allclose(table["log_age"][aged], raw["Log Age"][aged] - 3)
    np.testing.assert_allclose(table["age"][aged], 10 ** (raw["Log Age"][aged] - 3))
    assert np.isnan(table["log_age"][~aged]).all() and (~aged).sum() == 147
    assert np.isnan(table["numax"][~has]).all() and np.isnan(table["numax_err"][~has]).all()
    # [Fe/H] = -1 is the missing value only where its error is -1 too (here: all 17)
    no_feh = raw["S FeH"].to_numpy() == -1
    assert np.isnan(table["fe_h"][no_feh]).all() and np.isfinite(table["fe_h"][~no_feh]).all()
    ok = np.isfinite(table["log_age_err_lower"])
    assert (table["log_age_err_lower"][ok] > 0).all()
    assert np.nanmax(table["log_age_err_upper"]) < 99
    assert set(table["evstate"]) == {"RGB", "RC", "AMB", "REJECT", "BAD_TEFF"}
    assert table["evstate_spectroscopic"].sum() == (raw["ES"].str.endswith("(S)")).sum()
    assert str(table["log_age"].unit) == "dex(Gyr)" and str(table["numax"].unit) == "uHz"
    assert str(table["mass"].unit) == "solMass" and str(table["teff"].unit) == "K"
    # a star's mass error is the fractional column times the mass
    i = int(np.flatnonzero(aged)[0])
    assert table["mass_err"][i] == pytest.approx(raw["S Mran"][i] * raw["M(cor)"][i])


def test_read_apokasc2_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"APOKASC-2 file not found"):
        read_apokasc2(tmp_path / "nope.txt")
    bad = tmp_path / "other.txt"
    bad.write_text("KIC\tTeff\n1\t4000\n")
    with pytest.raises(ValueError, match=r"other.txt is not APOKASC-2 Table 5: missing column"):
        read_apokasc2(bad)


# ----------------------------------------------------------------------------- cross-match
@pytest.fixture
def ages():
    return pd.DataFrame(
        {
            "apogee_id": ["2MA", "2MB", "2MC", "2MD"],
            "kic": [11, 22, 33, 44],
            "log_age": [0.1, np.nan, 0.3, 0.4],
        }
    )


def test_crossmatch_aligns_inputs(ages):
    spectra_ids = np.array([b"2MD ", b"2MZ", b"2MB", b"2MA"])  # bytes and blanks as in FITS
    psd_ids = ["KIC 44", "kplr00000011", "22", "99"]
    m = crossmatch_training_sample(spectra_ids, ages, psd_ids=psd_ids)
    assert m.n_matched == 3
    assert m.spectra_index.tolist() == [0, 2, 3]
    assert m.psd_index.tolist() == [0, 2, 1]
    assert m.ages_index.tolist() == [3, 1, 0]
    assert m.labels["apogee_id"].tolist() == ["2MD", "2MB", "2MA"]
    assert m.n_unmatched == {"spectra": 1, "psd": 1, "ages": 1}
    dropped = crossmatch_training_sample(spectra_ids, Table.from_pandas(ages), dropna=["log_age"])
    assert dropped.labels["apogee_id"].tolist() == ["2MD", "2MA"]
    assert dropped.n_unmatched["ages_dropna"] == 1 and "psd_index" not in dropped


def test_crossmatch_duplicates_missing_and_no_match(ages):
    with pytest.raises(ValueError, match=r"spectra_ids has 1 duplicated id.*'2MA'"):
        crossmatch_training_sample(["2MA", "2MB", "2MA"], ages)
    m = crossmatch_training_sample(["2MA", "2MB", "2MA"], ages, duplicates="first")
    assert m.spectra_index.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"psd_ids has 1 duplicated"):
        crossmatch_training_sample(["2MA"], ages, psd_ids=[11, 11])
    dup_table = pd.concat([ages, ages.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"ages\['apogee_id'\] has 1 duplicated"):
        crossmatch_training_sample(["2MA"], dup_table)
    with pytest.raises(ValueError, match=r"spectra_ids has 1 missing \(blank\) id.*rows \[1\]"):
        crossmatch_training_sample(["2MA", " "], ages)
    with pytest.raises(
        ValueError, match=r"psd_ids must hold Kepler Input Catalogue numbers.*row 1"
    ):
        crossmatch_training_sample(["2MA"], ages, psd_ids=[11, np.nan])
    with pytest.raises(ValueError, match=r"no star is common"):
        crossmatch_training_sample(["2MX"], ages)
    with pytest.raises(ValueError, match=r"ages has no column\(s\) \['kic'\]"):
        crossmatch_training_sample(["2MA"], ages.drop(columns="kic"), psd_ids=[11])
    with pytest.raises(TypeError, match=r"ages must be an astropy Table or a pandas DataFrame"):
        crossmatch_training_sample(["2MA"], {"apogee_id": ["2MA"]})


def test_crossmatch_on_apokasc2():
    table = read_apokasc2()
    rng = np.random.default_rng(3)
    spec_rows = rng.choice(len(table), 500, replace=False)
    psd_rows = rng.choice(len(table), 800, replace=False)
    m = crossmatch_training_sample(
        table["apogee_id"][spec_rows], table, psd_ids=table["kic"][psd_rows]
    )
    assert m.n_matched == np.intersect1d(spec_rows, psd_rows).size
    np.testing.assert_array_equal(spec_rows[m.spectra_index], psd_rows[m.psd_index])
    np.testing.assert_array_equal(spec_rows[m.spectra_index], m.ages_index)


# ----------------------------------------------------------------------------- HDF5
FREQ = np.geomspace(2.0, 269.0, 16)  # a stand-in PSD grid (µHz); the real one has 2092 bins


def _chunk(start, k, rng):
    labels = pd.DataFrame(
        {
            "apogee_id": [f"2M{start + i:06d}" for i in range(k)],
            "kic": np.arange(start, start + k, dtype=np.int64),
            "teff": rng.normal(4700, 100, k),
            "evstate": pd.Categorical(rng.choice(["RGB", "RC"], k)),
            "has_age": rng.random(k) > 0.3,
        }
    )
    arrays = {
        "spectra": rng.normal(1, 0.01, (k, N_PIXELS)).astype(np.float32),
        "bitmask": rng.integers(0, 2**13, (k, N_PIXELS)).astype(np.int16),
        "psd": rng.normal(0, 1, (k, FREQ.size)),
    }
    return labels, arrays


def _write(path, sizes, seed=0, **kw):
    rng = np.random.default_rng(seed)
    chunks, start = [], 0
    with SurveyWriter(
        path, frequency=FREQ, units={"teff": "K"}, metadata={"seed": seed}, **kw
    ) as w:
        for k in sizes:
            labels, arrays = _chunk(start, k, rng)
            w.append(labels=labels, **arrays)
            chunks.append((labels, arrays))
            start += k
    return chunks


def test_survey_round_trip(tmp_path):
    path = tmp_path / "survey.h5"
    chunks = _write(path, [7, 5, 1])
    labels = pd.concat([c[0] for c in chunks], ignore_index=True)
    labels["evstate"] = labels["evstate"].astype("category")  # concat drops mixed categories
    with SurveyReader(path) as survey:
        assert len(survey) == survey.n_stars == 13
        assert set(survey.arrays) == {"spectra", "bitmask", "psd"}
        np.testing.assert_array_equal(survey.frequency, FREQ)
        assert survey.wavelength.shape == (N_PIXELS,)
        assert survey.metadata == {"seed": 0} and survey.label_units == {"teff": "K"}
        for name in ("spectra", "psd"):
            expected = np.concatenate([c[1][name] for c in chunks]).astype(np.float32)
            np.testing.assert_array_equal(survey.read(name), expected)
        bits = np.concatenate([c[1]["bitmask"] for c in chunks])
        assert survey.read("bitmask").dtype == np.int32
        np.testing.assert_array_equal(bad_pixel_mask(survey.read("bitmask")), bad_pixel_mask(bits))
        pd.testing.assert_frame_equal(survey.labels, labels, check_categorical=False)
        assert isinstance(survey.labels["evstate"].dtype, pd.CategoricalDtype)
        assert survey.labels["kic"].dtype == np.int64 and survey.labels["has_age"].dtype == bool
        table = survey.labels_table()
        assert table["teff"].unit == "K"
        some = survey[[9, 2, 2, 12]]
        assert some.labels.index.tolist() == [9, 2, 2, 12]
        np.testing.assert_array_equal(some.spectra, survey.read("spectra")[[9, 2, 2, 12]])
        mask = np.zeros(13, dtype=bool)
        mask[[1, 4]] = True
        np.testing.assert_array_equal(survey.read("psd", mask), survey.read("psd")[[1, 4]])
    full = read_survey(path)
    assert full.spectra.shape == (13, N_PIXELS) and full.labels.shape == (13, 5)
    part = read_survey(path, rows=slice(3, 8), arrays=["psd"])
    assert set(part) - {"labels", "frequency", "wavelength", "metadata"} == {"psd"}
    np.testing.assert_array_equal(part.psd, full.psd[3:8])
    assert part.labels.index.tolist() == [0, 1, 2, 3, 4]
    assert part.labels["kic"].tolist() == full.labels["kic"].iloc[3:8].tolist()
    with pytest.raises(KeyError, match="no array"):
        read_survey(path, arrays=["raw_flux"])


def test_survey_iter_chunks_covers_each_star_once(tmp_path):
    path = tmp_path / "survey.h5"
    _write(path, [10, 10, 3])
    with SurveyReader(path) as survey:
        seen = []
        for chunk in survey.iter_chunks(4, arrays=["psd"]):
            assert set(chunk) == {"start", "stop", "psd", "labels"}
            assert chunk.psd.shape[0] == len(chunk.labels) == chunk.stop - chunk.start <= 4
            np.testing.assert_array_equal(chunk.labels.index, np.arange(chunk.start, chunk.stop))
            seen.extend(chunk.labels["kic"])
        assert seen == list(range(23))
        resumed = [c.start for c in survey.iter_chunks(8, start=16, labels=False)]
        assert resumed == [16]
        with pytest.raises(ValueError, match=r"chunk_size must be a positive integer"):
            next(survey.iter_chunks(0))
        with pytest.raises(KeyError, match=r"has no array 'flux'"):
            next(survey.iter_chunks(4, arrays=["flux"]))


def test_chunked_append_equals_one_shot_write(tmp_path):
    chunks = _write(tmp_path / "a.h5", [6, 6, 6], seed=1)
    data = {
        "labels": pd.concat([c[0] for c in chunks], ignore_index=True),
        **{k: np.concatenate([c[1][k] for c in chunks]) for k in ("spectra", "bitmask", "psd")},
        "frequency": FREQ,
        "wavelength": np.zeros(N_PIXELS),  # a grid, not per-star: skipped
    }
    write_survey(tmp_path / "b.h5", data, chunk_size=5, units={"teff": "K"})
    a, b = read_survey(tmp_path / "a.h5"), read_survey(tmp_path / "b.h5")
    for name in ("spectra", "bitmask", "psd"):
        np.testing.assert_array_equal(a[name], b[name])
    pd.testing.assert_frame_equal(a.labels, b.labels)


def test_writer_is_atomic_and_resumable(tmp_path):
    path = tmp_path / "survey.h5"
    partial = tmp_path / "survey.h5.partial"
    rng = np.random.default_rng(2)
    parts = [_chunk(0, 4, rng), _chunk(4, 4, rng), _chunk(8, 4, rng)]
    writer = SurveyWriter(path, frequency=FREQ)
    writer.append(labels=parts[0][0], **parts[0][1])
    assert partial.exists() and not path.exists()  # nothing at the final name until closed
    with pytest.raises(ValueError, match=r"unfinished survey collection \(4 stars"):
        SurveyReader(partial)
    writer.abort()  # as after a crash between appends
    assert partial.exists() and not path.exists()

    with (
        pytest.raises(RuntimeError, match=r"boom"),
        SurveyWriter(path, frequency=FREQ, resume=True) as w,
    ):
        assert w.n_stars == 4
        w.append(labels=parts[1][0], **parts[1][1])
        raise RuntimeError("boom")
    assert not path.exists()

    with SurveyWriter(path, frequency=FREQ, resume=True) as w:
        assert w.n_stars == 8
        w.append(labels=parts[2][0], **parts[2][1])
    assert path.exists() and not partial.exists()
    _write(tmp_path / "straight.h5", [4, 4, 4], seed=2)
    resumed, straight = read_survey(path), read_survey(tmp_path / "straight.h5")
    np.testing.assert_array_equal(resumed.spectra, straight.spectra)
    pd.testing.assert_frame_equal(resumed.labels, straight.labels)
    with pytest.raises(FileExistsError, match=r"already exists.*nothing to resume"):
        SurveyWriter(path, resume=True)


def test_resume_truncates_a_half_written_append(tmp_path):
    path = tmp_path / "survey.h5"
    rng = np.random.default_rng(4)
    labels, arrays = _chunk(0, 3, rng)
    writer = SurveyWriter(path, frequency=FREQ)
    writer.append(labels=labels, **arrays)
    writer.abort()
    with h5py.File(tmp_path / "survey.h5.partial", "r+") as h5:  # rows past n_stars
        h5["spectra"].resize(5, axis=0)
    with SurveyWriter(path, frequency=FREQ, resume=True) as w:
        assert w.n_stars == 3
    with SurveyReader(path) as survey:
        assert survey.read("spectra").shape == (3, N_PIXELS)


def test_writer_schema_errors(tmp_path):
    rng = np.random.default_rng(5)
    labels, arrays = _chunk(0, 3, rng)
    w = SurveyWriter(tmp_path / "s.h5", frequency=FREQ)
    w.append(labels=labels, **arrays)
    with pytest.raises(ValueError, match=r"holds arrays \['bitmask', 'psd', 'spectra'\]"):
        w.append(labels=labels, spectra=arrays["spectra"])
    with pytest.raises(ValueError, match=r"holds label columns"):
        w.append(labels=labels.drop(columns="teff"), **arrays)
    with pytest.raises(ValueError, match=r"spectra must have 7514 columns per star"):
        w.append(labels=labels, **{**arrays, "spectra": arrays["spectra"][:, :100]})
    with pytest.raises(ValueError, match=r"same rows"):
        w.append(labels=labels.iloc[:2], **arrays)
    with pytest.raises(TypeError, match=r"'kic' is stored as integers"):
        w.append(labels=labels.assign(kic=[1.5, 2.0, 3.0]), **arrays)
    with pytest.raises(TypeError, match=r"bitmask must hold integers"):
        w.append(labels=labels, **{**arrays, "bitmask": arrays["bitmask"].astype(float)})
    with pytest.raises(ValueError, match=r"'frequency' is reserved"):
        w.append(frequency=np.ones((3, 2)))
    w.close()
    with pytest.raises(ValueError, match=r"is closed"):
        w.append(labels=labels, **arrays)
    with pytest.raises(ValueError, match=r"psd needs the frequency grid"):
        SurveyWriter(tmp_path / "nofreq.h5").append(psd=np.zeros((2, 16)))
    with pytest.raises(ValueError, match=r"frequency must increase strictly"):
        SurveyWriter(tmp_path / "f.h5", frequency=FREQ[::-1])
    with pytest.raises(FileExistsError, match=r"already exists"):
        SurveyWriter(tmp_path / "s.h5")
    with pytest.raises(ValueError, match=r"compression must be"):
        SurveyWriter(tmp_path / "c.h5", compression="zstd")


def test_reader_rejects_foreign_and_future_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"survey file not found"):
        SurveyReader(tmp_path / "none.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"text.h5 is not an HDF5 file"):
        SurveyReader(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["data"] = np.ones(3)
    with pytest.raises(ValueError, match=r"other.h5 is not a skages survey collection"):
        SurveyReader(other)
    path = tmp_path / "future.h5"
    _write(path, [2])
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = SURVEY_FORMAT_VERSION + 1
    with pytest.raises(
        ValueError, match=r"format version 2; this skages .* reads version 1.*upgrade"
    ):
        SurveyReader(path)


def test_layout_is_the_documented_one(tmp_path):
    path = tmp_path / "survey.h5"
    _write(path, [3])
    with h5py.File(path, "r") as h5:
        assert h5.attrs["format"] == "skages-survey" and h5.attrs["complete"]
        assert h5.attrs["format_version"] == 1 and h5.attrs["n_stars"] == 3
        assert json.loads(h5.attrs["metadata"]) == {"seed": 0}
        assert h5["spectra"].dtype == np.float32 and h5["spectra"].compression == "gzip"
        assert h5["spectra"].chunks[1] == N_PIXELS and h5["spectra"].maxshape == (None, N_PIXELS)
        assert h5["frequency"].attrs["unit"] == "uHz"
        assert h5["wavelength"].attrs["unit"] == "Angstrom"
        assert json.loads(h5["labels"].attrs["columns"]) == [
            "apogee_id",
            "kic",
            "teff",
            "evstate",
            "has_age",
        ]
        assert h5["labels/teff"].attrs["unit"] == "K"
        assert h5["labels/apogee_id"].asstr()[0] == "2M000000"


def test_psd_collection_feeds_the_crossmatch(tmp_path):
    """A Kepler PSD collection (no spectra) matched to spectra ids through APOKASC-2."""
    apokasc = read_apokasc2()
    rng = np.random.default_rng(6)
    rows = rng.choice(len(apokasc), 40, replace=False)
    psd_path = tmp_path / "kepler_psd.h5"
    write_survey(
        psd_path,
        {
            "labels": pd.DataFrame({"kic": np.asarray(apokasc["kic"][rows])}),
            "psd": rng.normal(size=(40, FREQ.size)).astype(np.float32),
        },
        frequency=FREQ,
        chunk_size=16,
    )
    with SurveyReader(psd_path) as psds:
        assert psds.arrays == ("psd",) and psds.wavelength is None
        spectra_ids = apokasc["apogee_id"][rows[::-1][:25]]
        m = crossmatch_training_sample(spectra_ids, apokasc, psd_ids=psds.labels["kic"])
        assert m.n_matched == 25 and m.n_unmatched["psd"] == 15
        picked = psds.read("psd", m.psd_index)
        np.testing.assert_array_equal(picked[0], psds.read("psd")[39])  # rows were reversed
