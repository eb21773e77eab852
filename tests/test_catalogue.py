"""Survey catalogues: the data model, the cuts, bad rows, resuming, spectrum files, Dask."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from sklearn.utils import Bunch

from skages.catalogue import (
    CATALOGUE_FORMAT_VERSION,
    WARNING_FLAGS,
    CatalogueCuts,
    CatalogueFlag,
    _chunk,
    _model,
    _progress,
    catalogue_columns,
    predict_catalogue,
    read_catalogue,
)
from skages.catalogue import _columns as _data_model
from skages.datasets import make_apokasc, write_apokasc
from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.io import SurveyReader, SurveyWriter
from skages.persistence import save_model
from skages.pipeline import fit_age_model, make_age_frame
from skages.spectra import N_PIXELS_APSTAR, continuum_normalize

TINY = dict(encoder_filters=(4, 8), hidden_units=8, decoder_filters=(4, 4), max_epochs=1)
LABELS = ["teff", "fe_h", "teff_err", "fe_h_err"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, small_survey):
    """A tiny age model trained once, saved, and a 240-star survey to predict."""
    model = fit_age_model(
        small_survey.spectra,
        small_survey.psd,
        small_survey.labels,
        encoder=SpectrumToPSDEncoder(**TINY, random_state=0),
        forest=ProbabilisticForestRegressor(n_estimators=20, random_state=0),
        forest_stars="aged",
    )
    folder = tmp_path_factory.mktemp("catalogue")
    model_path = save_model(model, folder / "tiny.joblib")
    survey = write_apokasc(folder / "survey.h5", 240, psd=False, random_state=11, chunk_size=100)
    with SurveyReader(survey) as reader:
        spectra = reader.read("spectra")
        labels = reader.labels.reset_index(drop=True)
    return Bunch(model=model, model_path=model_path, survey=survey, spectra=spectra, labels=labels)


def _columns(table) -> dict[str, np.ndarray]:
    return {name: np.asarray(table[name]) for name in table.colnames}


def _same(a, b) -> bool:
    return _data_model._content_sha256(_columns(a)) == _data_model._content_sha256(_columns(b))


# ------------------------------------------------------------------ the data model


def test_catalogue_matches_the_pipeline_and_the_papers_cuts(tiny, tmp_path):
    out = tmp_path / "ages.fits"
    result = predict_catalogue(tiny.model_path, tiny.survey, out, chunk_size=1000, trusted=True)
    table = read_catalogue(out)
    assert table.colnames == [name for name, _, _ in catalogue_columns(5)]
    assert len(table) == result.n_rows == 240
    assert list(table["APOGEE_ID"]) == list(tiny.labels["apogee_id"])  # row-matched

    logg, snr = tiny.labels["logg"].to_numpy(), tiny.labels["snr"].to_numpy()
    latent = (logg > 1.5) & (logg < 3.6) & (snr > 30)
    aged = latent & (logg >= 2.5)
    assert latent.any() and (~latent).any() and (latent & ~aged).any()
    selected = CatalogueCuts().select(logg, snr)  # what the evaluation report counts
    np.testing.assert_array_equal(selected[0], latent)
    np.testing.assert_array_equal(selected[1], aged)
    z = np.column_stack([table[f"z{k}"] for k in range(5)])
    assert np.isfinite(z[latent]).all() and np.isnan(z[~latent]).all()
    assert np.isfinite(table["LogAge"][aged]).all() and np.isnan(table["LogAge"][~aged]).all()

    # the same numbers as the Pipeline itself, on the same rows in the same order
    frame = make_age_frame(tiny.spectra, tiny.labels)
    features = tiny.model[:-1].transform(frame[latent])
    np.testing.assert_array_equal(z[latent], features[[f"encoder__z{k}" for k in range(5)]])
    np.testing.assert_array_equal(
        table["z2_Error"][latent], features["encoder__z2_std"].to_numpy()
    )
    mean, std = tiny.model.predict(frame[aged], return_std=True)
    np.testing.assert_array_equal(table["LogAge"][aged], mean)
    np.testing.assert_array_equal(table["LogAge_Error"][aged], std)
    np.testing.assert_allclose(table["Age"][aged], 10**mean, rtol=1e-12)
    np.testing.assert_allclose(table["Age_Error"][aged], np.log(10) * 10**mean * std, rtol=1e-12)
    _, bounds = tiny.model.predict(frame[aged], quantiles=(0.16, 0.84))
    np.testing.assert_array_equal(table["LogAge_Lower"][aged], bounds[:, 0])
    np.testing.assert_array_equal(table["LogAge_Upper"][aged], bounds[:, 1])
    np.testing.assert_allclose(table["Age_Lower"][aged], 10 ** bounds[:, 0], rtol=1e-12)
    np.testing.assert_array_equal(
        table["Applicability"][aged],
        tiny.model[-1].applicability(tiny.model[:-1].transform(frame[aged])),
    )

    flags = np.asarray(table["SKAGES_FLAG"])
    # aged rows carry no error bit; warning bits (e.g. OUTSIDE_TRAINING) keep the age
    assert np.all(flags[aged] & ~WARNING_FLAGS == 0)
    assert np.all(flags[~latent] == CatalogueFlag.LATENT_CUT)
    assert np.all(flags[latent & ~aged] == CatalogueFlag.AGE_CUT)
    assert result.n_ages == aged.sum() and result.flag_counts["AGE_CUT"] == (latent & ~aged).sum()

    # units, provenance and checksums
    assert table["LogAge"].unit == u.dex(u.Gyr) and table["Age_Error"].unit == u.Gyr
    header = fits.getheader(out, "AGES")
    assert "CHECKSUM" in header and "DATASUM" in header
    assert header["MODELSHA"] == hashlib.sha256(tiny.model_path.read_bytes()).hexdigest()
    assert header["SKAGESV"] and header["DATE"] and header["CHUNKSZ"] == 1000
    assert (header["LGLATMIN"], header["LGLATMAX"], header["SNRLAT"]) == (1.5, 3.6, 30.0)
    assert header["LGAGEMIN"] == 2.5
    comments = [header[k] for k in header if k.startswith("TCOMM")]
    assert any("dex(Gyr)" in c for c in comments)
    assert table.meta["content_sha256"] == result.checksum
    assert not out.with_name(out.name + ".progress").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_latents_do_not_depend_on_the_chunk_size(tiny, tmp_path):
    one = read_catalogue(predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits").path)
    many = predict_catalogue(tiny.model, tiny.survey, tmp_path / "b.fits", chunk_size=37)
    assert many.n_chunks == math.ceil(240 / 37)
    many = read_catalogue(many.path)
    for name in ("APOGEE_ID", "SKAGES_FLAG"):
        np.testing.assert_array_equal(one[name], many[name])
    # the encoder runs in mini-batches of 8: a row in a shorter batch may differ by an ulp
    for name in ("z0", "z4", "z1_Error"):
        np.testing.assert_allclose(one[name], many[name], rtol=1e-6, atol=0)
    assert np.array_equal(np.isnan(one["LogAge"]), np.isnan(many["LogAge"]))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_hold_the_same_catalogue(tiny, tmp_path, fmt):
    ref = read_catalogue(predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits").path)
    out = tmp_path / f"ages.{fmt}"
    predict_catalogue(tiny.model, tiny.survey, out)
    table = read_catalogue(out)
    assert _same(table, ref)
    assert table["LogAge"].unit == u.dex(u.Gyr) and table["Age"].unit == u.Gyr
    assert table.meta["age_logg_min"] == 2.5
    if fmt == "csv":
        assert (tmp_path / "ages.csv.json").is_file()
        assert pd.read_csv(out).shape == (240, len(ref.colnames))  # a plain CSV


def test_cuts_are_configurable_and_checked():
    cuts = CatalogueCuts.from_strings(["latent_snr_min=50", "age_logg_min=none"])
    assert cuts.latent_snr_min == 50 and cuts.age_logg_min is None
    cuts = ["latent_logg_min", "latent_logg_max", "latent_snr_min", "age_logg_min"]
    checks = ["max_masked_fraction", "max_level_offset", "min_line_depth", "max_line_depth"]
    checks += ["max_noise_ratio", "max_applicability"]
    assert CatalogueCuts.none().to_dict() == dict.fromkeys([*cuts, *checks]) | {
        "min_finite_fraction": 0.0
    }
    with pytest.raises(ValueError, match="NAME=VALUE"):
        CatalogueCuts.from_strings(["logg=2"])
    with pytest.raises(ValueError, match="must be a number"):
        CatalogueCuts.from_strings(["latent_snr_min=lots"])
    with pytest.raises(ValueError, match="below latent_logg_max"):
        CatalogueCuts(latent_logg_min=3.0, latent_logg_max=2.0)
    # a missing label fails the cuts on it, and only those
    latent, dated = CatalogueCuts().select([np.nan, 2.7, 2.7], [100.0, np.nan, 100.0])
    assert latent.tolist() == dated.tolist() == [False, False, True]
    latent, dated = CatalogueCuts.none().select([np.nan, 2.7], [np.nan, 5.0])
    assert latent.all() and dated.all()
    with pytest.raises(ValueError, match="1-D of one length"):
        CatalogueCuts().select([2.7, 2.8], [100.0])


def test_no_cuts_give_ages_to_every_usable_star(tiny, tmp_path):
    res = predict_catalogue(
        tiny.model, tiny.survey, tmp_path / "a.fits", cuts=CatalogueCuts.none()
    )
    assert res.n_latent == res.n_ages == 240
    assert read_catalogue(res.path).meta["latent_snr_min"] == "none"


def test_bad_inputs_are_refused_with_clear_messages(tiny, tmp_path):
    out = tmp_path / "a.fits"
    out.write_text("old")
    with pytest.raises(FileExistsError, match="overwrite"):
        predict_catalogue(tiny.model, tiny.survey, out)
    with pytest.raises(ValueError, match=r"\.fits, \.csv or \.parquet"):
        predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.txt")
    with pytest.raises(TypeError, match="fitted age Pipeline"):
        predict_catalogue(ProbabilisticForestRegressor(), tiny.survey, tmp_path / "b.fits")
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5"):
        predict_catalogue(tiny.model, tmp_path / "nothere.h5", tmp_path / "b.fits")
    with pytest.raises(FileNotFoundError, match=r"nomodel\.joblib"):
        predict_catalogue(tmp_path / "nomodel.joblib", tiny.survey, tmp_path / "b.fits")
    with pytest.raises(ValueError, match="chunk_size"):
        predict_catalogue(tiny.model, tiny.survey, tmp_path / "b.fits", chunk_size=0)


# ---------------------------------------------------------------------- bad rows


def test_bad_rows_become_flagged_nan_never_a_crash(tiny, tmp_path, caplog):
    spectra = tiny.spectra[:12].copy()
    labels = tiny.labels.iloc[:12][["apogee_id", *LABELS, "logg", "snr"]].copy()
    labels[["logg", "snr"]] = [2.9, 100.0]  # all inside the cuts, unless changed below
    spectra[0] = np.nan  # masked everywhere
    spectra[1, 5] = np.inf
    spectra[2, : int(0.6 * spectra.shape[1])] = np.nan  # 40 % finite
    labels.loc[labels.index[3], "teff"] = np.nan
    labels.loc[labels.index[4], "fe_h_err"] = -0.1
    labels.loc[labels.index[5], "logg"] = np.nan
    labels.loc[labels.index[6], "logg"] = 1.0
    labels.loc[labels.index[7], "snr"] = 10.0
    labels.loc[labels.index[8], "logg"] = 2.0
    path = tmp_path / "bad.h5"
    with SurveyWriter(path) as writer:
        writer.append(spectra=spectra, labels=labels)
    caplog.set_level(logging.INFO, logger="skages.catalogue")
    res = predict_catalogue(tiny.model, path, tmp_path / "a.fits", chunk_size=5)
    table = read_catalogue(res.path)
    F = CatalogueFlag
    expected = [F.BAD_SPECTRUM] * 3 + [F.NO_MODEL_LABELS] * 2 + [F.NO_CUT_LABELS]
    expected += [F.LATENT_CUT, F.LATENT_CUT, F.AGE_CUT, 0, 0, 0]
    assert list(table["SKAGES_FLAG"]) == [int(f) for f in expected]
    assert np.isnan(table["LogAge"][:9]).all() and np.isfinite(table["LogAge"][9:]).all()
    assert np.isnan(table["z0"][[0, 1, 2, 5, 6, 7]]).all()
    assert np.isfinite(table["z0"][[3, 4, 8]]).all()  # latent without an age
    assert res.flag_counts["BAD_SPECTRUM"] == 3 and res.flag_counts["NO_MODEL_LABELS"] == 2
    assert "BAD_SPECTRUM 3" in caplog.text


def test_model_failure_on_one_row_is_isolated(tiny, tmp_path, monkeypatch, caplog):
    original = _model._Predictor.latent

    def flaky(self, spectra):
        if np.any(spectra[:, 0] == 123.0):
            raise ValueError("boom")
        return original(self, spectra)

    monkeypatch.setattr(_model._Predictor, "latent", flaky)
    spectra = tiny.spectra[:6].copy()
    spectra[2, 0] = 123.0
    labels = tiny.labels.iloc[:6][["apogee_id", *LABELS]].assign(logg=2.9, snr=100.0)
    path = tmp_path / "s.h5"
    with SurveyWriter(path) as writer:
        writer.append(spectra=spectra, labels=labels)
    table = read_catalogue(predict_catalogue(tiny.model, path, tmp_path / "a.fits").path)
    assert list(table["SKAGES_FLAG"]) == [0, 0, int(CatalogueFlag.MODEL_FAILED), 0, 0, 0]
    assert np.isnan(table["LogAge"][2]) and np.isfinite(np.delete(table["LogAge"], 2)).all()
    assert "boom" in caplog.text


# ------------------------------------------------------------------------ resuming


def _interrupt_after(monkeypatch, n_chunks: int) -> None:
    """Make the n-th chunk write raise KeyboardInterrupt, as if the run were killed."""
    original = _progress._Progress.write
    calls = {"n": 0}

    def write(self, task, columns):
        if calls["n"] == n_chunks:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, task, columns)

    monkeypatch.setattr(_progress._Progress, "write", write)


def _count_chunks(monkeypatch) -> list[int]:
    seen: list[int] = []
    original = _chunk._predict_chunk

    def counting(model, source, task, cuts):
        seen.append(task.index)
        return original(model, source, task, cuts)

    monkeypatch.setattr(_chunk, "_predict_chunk", counting)
    return seen


def test_interrupted_run_resumes_without_recomputing(tiny, tmp_path, monkeypatch, caplog):
    ref = predict_catalogue(
        tiny.model_path, tiny.survey, tmp_path / "ref.fits", chunk_size=40, trusted=True
    )
    out = tmp_path / "ages.fits"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            predict_catalogue(tiny.model_path, tiny.survey, out, chunk_size=40, trusted=True)
    assert not out.exists()  # nothing half-written under the final name
    progress = tmp_path / "ages.fits.progress"
    assert sorted(p.name for p in progress.glob("chunk-*.npz")) == [
        "chunk-000000.npz", "chunk-000001.npz", "chunk-000002.npz"
    ]  # fmt: skip

    # a damaged chunk file is found by its checksum and computed again
    damaged = progress / "chunk-000001.npz"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (progress / ".chunk-000003.npz.abc.tmp").write_bytes(b"half a file")  # killed mid-write

    seen = _count_chunks(monkeypatch)
    caplog.set_level(logging.INFO, logger="skages.catalogue")
    res = predict_catalogue(tiny.model_path, tiny.survey, out, chunk_size=40, trusted=True)
    assert sorted(seen) == [1, 3, 4, 5]  # chunks 0 and 2 were not recomputed
    assert "damaged" in caplog.text and "2 of 6 chunks already done" in caplog.text
    assert res.n_chunks_resumed == 2
    assert res.checksum == ref.checksum  # nothing lost, nothing duplicated
    assert _same(read_catalogue(out), read_catalogue(ref.path))
    assert not progress.exists()


def test_progress_of_another_run_is_refused(tiny, tmp_path, monkeypatch):
    out = tmp_path / "ages.fits"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            predict_catalogue(tiny.model, tiny.survey, out, chunk_size=40)
    with pytest.raises(ValueError, match=r"another run .*chunk_size.*restart"):
        predict_catalogue(tiny.model, tiny.survey, out, chunk_size=50)
    seen = _count_chunks(monkeypatch)
    res = predict_catalogue(tiny.model, tiny.survey, out, chunk_size=50, restart=True)
    assert sorted(seen) == list(range(5)) and res.n_chunks_resumed == 0


def test_progress_of_an_older_catalogue_layout_is_refused(tiny, tmp_path, monkeypatch):
    # chunks written before the interval and Applicability columns must not be merged
    out = tmp_path / "ages.fits"
    with monkeypatch.context() as m:
        _interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            predict_catalogue(tiny.model, tiny.survey, out, chunk_size=40)
    manifest = out.with_name(out.name + ".progress") / "manifest.json"
    stored = json.loads(manifest.read_text())
    assert stored["catalogue_format"] == CATALOGUE_FORMAT_VERSION
    stored["catalogue_format"] = CATALOGUE_FORMAT_VERSION - 1
    manifest.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"another run .*catalogue_format"):
        predict_catalogue(tiny.model, tiny.survey, out, chunk_size=40)


def test_a_full_disk_names_the_file(tiny, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_progress.np, "savez", full)
    with pytest.raises(OSError, match=r"could not write .*chunk-000000\.npz.*No space left"):
        predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits")


# ----------------------------------------------------------- folders of spectrum files


def _write_apstar(path, flux, err, bitmask, apogee_id, telescope=None, field=None):
    primary = fits.PrimaryHDU()
    primary.header["OBJID"] = apogee_id
    if telescope:
        primary.header["TELESCOP"] = telescope
    if field:
        primary.header["FIELD"] = field
    primary.header["NVISITS"] = 1
    images = [
        fits.ImageHDU(np.nan_to_num(flux, nan=0.0).astype(np.float32)),
        fits.ImageHDU(np.nan_to_num(err, nan=1e10).astype(np.float32)),
        fits.ImageHDU(bitmask.astype(np.int16)),
    ]
    for hdu in images:
        hdu.header["CRVAL1"], hdu.header["CDELT1"] = 4.179, 6e-6
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, *images]).writeto(path)


def _allstar(path, ids, telescopes, fields, n):
    rng = np.random.default_rng(0)
    table = Table()
    table["APOGEE_ID"] = ids
    table["TELESCOPE"] = telescopes
    table["FIELD"] = fields
    for name, value in [("TEFF", 4800.0), ("TEFF_ERR", 80.0), ("FE_H", -0.1), ("FE_H_ERR", 0.02)]:
        table[name] = value + rng.normal(0, 0.01, n)
    table["LOGG"], table["LOGG_ERR"] = np.full(n, 2.8), np.full(n, 0.05)
    table["ALPHA_M"], table["ALPHA_M_ERR"] = np.zeros(n), np.full(n, 0.02)
    table["SNREV"] = np.full(n, 150.0)
    table["STARFLAG"] = np.arange(n, dtype=np.int64)
    table["ASPCAPFLAG"] = np.arange(n, dtype=np.int64) * 2
    table.write(path)


def test_folder_of_apstar_files_with_an_allstar(tiny, tmp_path, caplog):
    sim = make_apokasc(4, psd=False, raw_flux=True, random_state=5)
    ids = [f"2M0000000{i}+0000000" for i in range(6)]
    folder = tmp_path / "spectra"
    for i in range(3):  # DR17 layout: telescope/field/apStar-dr17-<id>.fits
        _write_apstar(
            folder / "apo25m" / "K21" / f"apStar-dr17-{ids[i]}.fits",
            sim.raw_flux[i], sim.raw_flux_err[i], np.zeros(N_PIXELS_APSTAR), ids[i],
        )  # fmt: skip
    # a flat file whose telescope comes from its header
    _write_apstar(
        folder / f"apStar-dr17-{ids[3]}.fits",
        sim.raw_flux[3], sim.raw_flux_err[3], np.zeros(N_PIXELS_APSTAR), ids[3], "lco25m", "X",
    )  # fmt: skip
    (folder / f"apStar-dr17-{ids[4]}.fits").write_bytes(b"not a FITS file at all")
    allstar = tmp_path / "allStar.fits"
    # rows in another order, a star with no file (5), one with an unreadable file (4)
    order = [5, 2, 4, 0, 3, 1]
    tels = ["apo25m" if i != 3 else "lco25m" for i in order]
    _allstar(allstar, [ids[i] for i in order], tels, ["K21"] * 6, 6)
    caplog.set_level(logging.INFO, logger="skages.catalogue")
    res = predict_catalogue(tiny.model, folder, tmp_path / "a.fits", labels=allstar)
    table = read_catalogue(res.path)
    assert list(table["APOGEE_ID"]) == [ids[i] for i in order]  # the allStar's rows
    assert list(table["STARFLAG"]) == list(range(6))
    F = CatalogueFlag
    # error bits; these re-normalised spectra may also carry a warning bit
    errors = np.asarray(table["SKAGES_FLAG"]) & ~WARNING_FLAGS
    assert list(errors) == [F.NO_SPECTRUM, 0, F.BAD_SPECTRUM, 0, 0, 0]
    assert f"apStar-dr17-{ids[4]}.fits" in caplog.text  # the unreadable file is named

    # the latents are those of the continuum-normalised spectra
    norm, _ = continuum_normalize(
        np.nan_to_num(sim.raw_flux[:4], nan=0.0),
        np.nan_to_num(sim.raw_flux_err[:4], nan=1e10),
        np.zeros((4, N_PIXELS_APSTAR), dtype=np.int32),
        fill_value=np.nan,
        on_failure="nan",
    )
    norm[norm <= 0] = np.nan
    z = _model._Predictor(tiny.model).latent(norm.astype(np.float32))
    rows = {ids[i]: k for k, i in enumerate(order)}
    for i in range(4):
        np.testing.assert_allclose(
            [table[f"z{k}"][rows[ids[i]]] for k in range(5)], z[i, :5], rtol=1e-6
        )


def test_folder_without_labels_is_refused(tiny, tmp_path):
    (tmp_path / "spectra").mkdir()
    with pytest.raises(ValueError, match="give the allStar table"):
        predict_catalogue(tiny.model, tmp_path / "spectra", tmp_path / "a.fits")


def test_real_apogee_files(tiny, shared_data, tmp_path):
    """Real apStar and aspcapStar files (three M dwarfs): read, normalised, matched."""
    folder = tmp_path / "spectra"
    folder.mkdir()
    for path in (shared_data / "apogee_fixtures").glob("*.fits"):
        shutil.copy(path, folder / path.name)
    ids = ["2M00452143+1634446", "2M12241699+2453335", "2M19535443+4424541"]
    allstar = tmp_path / "allStar.fits"
    _allstar(allstar, [*ids, "2M99999999+9999999"], [""] * 4, [""] * 4, 4)
    res = predict_catalogue(tiny.model, folder, tmp_path / "a.fits", labels=allstar)
    table = read_catalogue(res.path)
    assert list(table["SKAGES_FLAG"][:3] & CatalogueFlag.NO_SPECTRUM) == [0, 0, 0]
    assert table["SKAGES_FLAG"][3] == CatalogueFlag.NO_SPECTRUM
    assert res.n_rows == 4


# ----------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_run_equals_the_single_process_run(tiny, tmp_path, dask_client):
    local = predict_catalogue(
        tiny.model_path, tiny.survey, tmp_path / "a.fits", chunk_size=60, trusted=True
    )
    remote = predict_catalogue(
        tiny.model_path, tiny.survey, tmp_path / "b.fits", chunk_size=60, scheduler=dask_client,
        trusted=True,
    )  # fmt: skip
    assert remote.checksum == local.checksum
    assert _same(read_catalogue(remote.path), read_catalogue(local.path))
    assert remote.n_ages > 0


@pytest.mark.usefixtures("metadata_routing")
def test_gridsearch_through_joblibs_dask_backend(tiny, small_survey, dask_client):
    import joblib
    from sklearn.model_selection import GridSearchCV

    from skages.pipeline import make_age_pipeline

    encoder = tiny.model.named_steps["features"].named_transformers_["encoder"].estimator
    pipe = make_age_pipeline(
        encoder,
        ProbabilisticForestRegressor(n_estimators=10, random_state=0),
        freeze_encoder=True,
    )
    lab = small_survey.labels
    aged = np.isfinite(lab["log_age"].to_numpy())
    X = make_age_frame(small_survey.spectra, lab)[aged]
    y, y_err = lab["log_age"].to_numpy()[aged], lab["log_age_err"].to_numpy()[aged]
    # joblib sends the inner Parallel calls (ColumnTransformer, forest) to the cluster too,
    # which costs seconds per fit on 2 cores: keep the grid small
    grid = {"forest__min_samples_leaf": [1, 5]}
    serial = GridSearchCV(pipe, grid, cv=2).fit(X, y, y_err=y_err)
    with joblib.parallel_backend("dask"):
        on_dask = GridSearchCV(pipe, grid, cv=2, n_jobs=-1).fit(X, y, y_err=y_err)
    assert len(dask_client.run(lambda: 1)) == 2  # the workers that ran it
    np.testing.assert_array_equal(
        on_dask.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"]
    )
    assert on_dask.best_params_ == serial.best_params_


def _close_workers_after_a_chunk(cluster, output, *, back: bool):
    """A thread that closes every worker of ``cluster`` once a chunk of ``output`` is done."""
    import threading
    import time

    progress = output.with_name(output.name + ".progress")

    def run():
        deadline = time.monotonic() + 60
        while not any(progress.glob("chunk-*.npz")) and time.monotonic() < deadline:
            time.sleep(0.005)
        cluster.scale(0)
        if back:
            time.sleep(0.5)
            cluster.scale(1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _one_worker_cluster():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    return cluster, distributed.Client(cluster)


def test_losing_every_dask_worker_is_one_line_and_the_rerun_resumes(tiny, tmp_path, monkeypatch):
    from skages.catalogue import _runners

    monkeypatch.setattr(_runners, "_WORKER_WAIT_S", 1.0)
    out = tmp_path / "lost.fits"
    cluster, client = _one_worker_cluster()
    try:
        thread = _close_workers_after_a_chunk(cluster, out, back=False)
        with pytest.raises(OSError, match="all Dask workers were lost") as info:
            predict_catalogue(
                tiny.model_path, tiny.survey, out, chunk_size=10, scheduler=client,
                trusted=True,
            )  # fmt: skip
        thread.join()
    finally:
        client.close()
        cluster.close()
    message = str(info.value)
    assert "\n" not in message and "rerun the same command to resume" in message
    assert str(out) + ".progress" in message
    kept = len(list(out.with_name(out.name + ".progress").glob("chunk-*.npz")))
    assert 1 <= kept < 24
    assert not out.exists()

    cluster, client = _one_worker_cluster()
    try:
        resumed = predict_catalogue(
            tiny.model_path, tiny.survey, out, chunk_size=10, scheduler=client, trusted=True
        )
    finally:
        client.close()
        cluster.close()
    local = predict_catalogue(
        tiny.model_path, tiny.survey, tmp_path / "local.fits", chunk_size=10, trusted=True
    )
    assert resumed.checksum == local.checksum


def test_dask_workers_that_come_back_get_the_model_again(tiny, tmp_path):
    out = tmp_path / "back.fits"
    cluster, client = _one_worker_cluster()
    try:
        thread = _close_workers_after_a_chunk(cluster, out, back=True)
        remote = predict_catalogue(
            tiny.model_path, tiny.survey, out, chunk_size=10, scheduler=client, trusted=True
        )
        thread.join()
    finally:
        client.close()
        cluster.close()
    local = predict_catalogue(
        tiny.model_path, tiny.survey, tmp_path / "local.fits", chunk_size=10, trusted=True
    )
    assert remote.checksum == local.checksum
    assert _same(read_catalogue(remote.path), read_catalogue(local.path))
