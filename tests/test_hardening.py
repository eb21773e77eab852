"""Hostile and careless inputs: crafted model files, damaged files, two runs on one output."""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from functools import partial
from pathlib import Path

import h5py
import joblib
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table
from sklearn.utils import Bunch

from skages import persistence
from skages._lock import OutputInUseError, lock_path, output_lock
from skages.catalogue import CatalogueFlag, predict_catalogue, read_catalogue
from skages.cli import main
from skages.datasets import write_apokasc
from skages.encoder import SpectrumToPSDEncoder
from skages.forest import ProbabilisticForestRegressor
from skages.io import SurveyReader, read_apogee_spectra, read_apstar
from skages.persistence import SKOPS_TRUSTED_TYPES, load_model, save_model
from skages.pipeline import fit_age_model

TINY = dict(encoder_filters=(4, 8), hidden_units=8, decoder_filters=(4, 4), max_epochs=1)
IDS = ["2M00452143+1634446", "2M12241699+2453335", "2M19535443+4424541"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, small_survey):
    """A tiny age model saved in both formats, and a 60-star survey to predict."""
    model = fit_age_model(
        small_survey.spectra,
        small_survey.psd,
        small_survey.labels,
        encoder=SpectrumToPSDEncoder(**TINY, random_state=0),
        forest=ProbabilisticForestRegressor(n_estimators=5, random_state=0),
        forest_stars="aged",
    )
    folder = tmp_path_factory.mktemp("hardening")
    return Bunch(
        model=model,
        joblib=save_model(model, folder / "tiny.joblib"),
        skops=save_model(model, folder / "tiny.skops"),
        survey=write_apokasc(folder / "survey.h5", 60, psd=False, random_state=3, chunk_size=30),
        folder=folder,
    )


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _predict(model, survey, out, *extra):
    return main(["-q", "predict", "--model", str(model), "--spectra", str(survey),
                 "-o", str(out), *extra])  # fmt: skip


# ------------------------------------------------------------------- safe loading


def test_allow_list_is_exact_and_covers_every_skages_model(tiny, tmp_path):
    import skops.io as sio

    assert all("*" not in t and not t.endswith(".") for t in SKOPS_TRUSTED_TYPES)
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    from skages.spectra import ContinuumNormalizer

    flux = np.random.default_rng(0).uniform(0.9, 1.1, (4, 7514))
    normalizer = make_pipeline(ContinuumNormalizer(), PCA(2)).fit(flux)
    # the fitted age model, its encoder, its forest, a normaliser: nothing outside the list
    models = [("pipe", tiny.model), ("enc", tiny.model[0]), ("rf", tiny.model[-1])]
    for name, est in [*models, ("norm", normalizer)]:
        path = save_model(est, tmp_path / f"{name}.skops")
        assert set(sio.get_untrusted_types(file=path)) <= set(SKOPS_TRUSTED_TYPES)
        load_model(path)
    # a scikit-learn function outside the list is not trusted because of its prefix
    assert "sklearn.utils._testing.assert_run_python_script_without_output" not in (
        SKOPS_TRUSTED_TYPES
    )


def _crafted_skops(tiny, path: Path, marker: Path) -> Path:
    """The issue's attack: tree 0 becomes Pipeline([FunctionTransformer(partial(run, CODE)),
    tree]), where ``run`` is scikit-learn's helper that executes a string of Python."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils._testing import assert_run_python_script_without_output

    code = f"open({str(marker)!r}, 'w').write('code from the model file ran')"
    evil = copy.deepcopy(tiny.model)
    forest = evil[-1]
    hook = FunctionTransformer(func=partial(assert_run_python_script_without_output, code))
    forest.estimators_[0] = Pipeline([("hook", hook), ("tree", forest.estimators_[0])])
    return save_model(evil, path)


def test_crafted_skops_model_is_refused_and_runs_nothing(tiny, tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    path = _crafted_skops(tiny, tmp_path / "evil.skops", marker)
    with pytest.raises(ValueError, match=r"does not trust.*assert_run_python_script"):
        load_model(path)
    out = tmp_path / "ages.fits"
    assert _predict(path, tiny.survey, out) == 1
    _one_line_error(capsys.readouterr().err, "evil.skops", "does not trust", "--trust")
    assert not out.exists()
    assert not marker.exists()

    # the file is a real attack: trusted by name, it loads and the code runs on use
    name = "sklearn.utils._testing.assert_run_python_script_without_output"
    model, _ = load_model(path, trusted=[name])
    hook = model[-1].estimators_[0][0]
    with pytest.raises(Exception):  # noqa: B017 - the helper complains afterwards
        hook.transform(np.zeros((1, 2)))
    assert marker.read_text() == "code from the model file ran"


class _Marker:
    """Unpickles by calling exec on a line that writes a marker file (harmless)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle ran')",))


def test_crafted_joblib_model_needs_trust_on_the_command_line(tiny, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.joblib"
    meta = persistence.model_metadata(tiny.model)
    joblib.dump({"metadata": meta, "model": _Marker(marker)}, path, compress=3)
    monkeypatch.delenv("SKAGES_TRUST_JOBLIB", raising=False)
    out = tmp_path / "ages.fits"
    assert _predict(path, tiny.survey, out) == 1
    _one_line_error(
        capsys.readouterr().err, "evil.joblib", "pickle", "runs any code", "--trust-joblib"
    )
    evaluate = ["-q", "evaluate", "--model", str(path), "--survey", str(tiny.survey)]
    assert main([*evaluate, "-o", str(tmp_path / "report")]) == 1
    _one_line_error(capsys.readouterr().err, "--trust-joblib", "SKAGES_TRUST_JOBLIB")
    # reading the metadata first (the version check) builds no object
    assert persistence._peek_joblib_metadata(path)["skages_version"] == meta["skages_version"]
    assert not marker.exists() and not out.exists()
    assert "runs any code" in " ".join(
        a.help for a in _subparser("predict")._actions if a.dest == "trust_joblib"
    )

    # the attack is real: trusted, the pickle runs (and is then not a model)
    monkeypatch.setenv("SKAGES_TRUST_JOBLIB", "1")
    assert _predict(path, tiny.survey, out) == 1
    assert marker.read_text() == "pickle ran"


def _subparser(name):
    from skages.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


def test_trusted_joblib_and_skops_models_predict(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("SKAGES_TRUST_JOBLIB", raising=False)
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    assert _predict(tiny.joblib, tiny.survey, a, "--trust-joblib") == 0
    assert _predict(tiny.skops, tiny.survey, b) == 0  # skops: no flag needed
    assert read_catalogue(a).meta["content_sha256"] == read_catalogue(b).meta["content_sha256"]


@pytest.mark.parametrize(
    "damage",
    ["empty", "text", "bit-flip", "truncated"],
)
def test_damaged_joblib_is_one_clear_error(tiny, tmp_path, capsys, damage):
    data = tiny.joblib.read_bytes()
    path = tmp_path / "model.joblib"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("this is not a model\n" * 20)
    elif damage == "bit-flip":
        flipped = bytearray(data)
        for pos in range(len(flipped) // 3, len(flipped) // 3 + 64):
            flipped[pos] ^= 0xFF
        path.write_bytes(bytes(flipped))
    else:
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.joblib is not a readable joblib model"):
        load_model(path, trusted=True)
    assert _predict(path, tiny.survey, tmp_path / "a.fits", "--trust-joblib") == 1
    _one_line_error(capsys.readouterr().err, "model.joblib", "not a readable joblib model")


def test_truncated_skops_is_one_clear_error(tiny, tmp_path, capsys):
    path = tmp_path / "model.skops"
    path.write_bytes(tiny.skops.read_bytes()[:4000])
    with pytest.raises(ValueError, match=r"model\.skops is not a readable skops model"):
        load_model(path)
    assert _predict(path, tiny.survey, tmp_path / "a.fits") == 1
    _one_line_error(capsys.readouterr().err, "model.skops", "BadZipFile")


def test_version_is_checked_before_any_class_is_needed(tiny, tmp_path, monkeypatch):
    # a model whose class lives in a module this installation lacks
    module = tmp_path / "skages_gone_module.py"
    module.write_text("class Gone:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import skages_gone_module

    old = dict(persistence.model_metadata(tiny.model), skages_version="0.0.1")
    path = tmp_path / "old.joblib"
    joblib.dump({"metadata": old, "model": skages_gone_module.Gone()}, path, compress=3)
    now = tmp_path / "now.joblib"
    joblib.dump(
        {"metadata": persistence.model_metadata(tiny.model), "model": skages_gone_module.Gone()},
        now,
    )
    module.unlink()
    monkeypatch.delitem(sys.modules, "skages_gone_module")
    with pytest.raises(ModuleNotFoundError):  # the raw failure the check prevents
        joblib.load(path)
    with pytest.raises(ValueError, match=r"written by skages 0\.0\.1.*Install skages==0\.0\.1"):
        load_model(path)
    with pytest.raises(ValueError, match="names a class or function that this skages"):
        load_model(now, trusted=True)

    # skops: the metadata member is read before the types are even listed
    skops_old = tmp_path / "old.skops"
    with zipfile.ZipFile(tiny.skops) as src, zipfile.ZipFile(skops_old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == persistence._SKOPS_METADATA:
                data = json.dumps(dict(json.loads(data), skages_version="0.0.1")).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"written by skages 0\.0\.1"):
        load_model(skops_old)


def test_format_and_missing_skops_messages(tiny, tmp_path, capsys, monkeypatch):
    fits_model = tmp_path / "x.fits"
    fits_model.write_bytes(b"SIMPLE")
    assert _predict(fits_model, tiny.survey, tmp_path / "a.fits") == 1
    err = capsys.readouterr().err
    _one_line_error(err, "x.fits", ".joblib or .skops")
    assert "format=" not in err

    monkeypatch.setitem(sys.modules, "skops.io", None)  # as if skops were not installed
    monkeypatch.setitem(sys.modules, "skops", None)
    with pytest.raises(ImportError, match=r"pip install 'skages\[skops\]'"):
        load_model(tiny.skops)
    assert _predict(tiny.skops, tiny.survey, tmp_path / "a.fits") == 1
    _one_line_error(capsys.readouterr().err, "tiny.skops", "pip install 'skages[skops]'")
    assert (
        main(["-q", "train", "--survey", str(tiny.survey), "-o", str(tmp_path / "m.skops")]) == 1
    )
    _one_line_error(capsys.readouterr().err, "pip install 'skages[skops]'")


# ------------------------------------------------------------------ robust readers


def _truncated_apstar(src: Path, dst: Path) -> Path:
    """A copy of a real apStar file cut inside HDU 3 (the issue's case)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(src) as hdul:
            cut = hdul.fileinfo(3)["datLoc"] + 1000
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes()[:cut])
    return dst


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_apstar_is_named_and_flagged_in_survey_mode(tiny, shared_data, tmp_path):
    fixtures = shared_data / "apogee_fixtures"
    folder = tmp_path / "apStar"
    folder.mkdir()
    for i in (0, 1):
        name = f"apStar-r6-{IDS[i]}.fits"
        (folder / name).write_bytes((fixtures / name).read_bytes())
    bad = _truncated_apstar(
        fixtures / f"apStar-r6-{IDS[2]}.fits", folder / f"apStar-r6-{IDS[2]}.fits"
    )
    with pytest.raises(
        ValueError, match=re.escape(bad.name) + " is not a readable apStar .*TypeError"
    ):
        read_apstar(bad)
    batch = read_apogee_spectra(sorted(folder.iterdir()), on_error="nan")
    assert list(batch.errors) == [2] and bad.name in batch.errors[2]

    allstar = tmp_path / "allStar.fits"
    table = Table()
    table["APOGEE_ID"] = IDS
    table["TELESCOPE"], table["FIELD"] = ["apo25m"] * 3, ["F"] * 3
    for name, value in [("TEFF", 4800.0), ("TEFF_ERR", 80.0), ("FE_H", -0.1), ("FE_H_ERR", 0.02),
                        ("LOGG", 2.8), ("LOGG_ERR", 0.05), ("ALPHA_M", 0.0), ("ALPHA_M_ERR", 0.02),
                        ("SNREV", 150.0)]:  # fmt: skip
        table[name] = np.full(3, value)
    table["STARFLAG"], table["ASPCAPFLAG"] = np.zeros(3, dtype=np.int64), np.zeros(3, np.int64)
    table.write(allstar)
    out = tmp_path / "ages.fits"
    code = _predict(tiny.skops, folder, out, "--labels", str(allstar))
    assert code == 0  # one bad file never stops the survey
    flags = np.asarray(read_catalogue(out)["SKAGES_FLAG"])
    assert flags[2] & CatalogueFlag.BAD_SPECTRUM
    assert not (flags[:2] & CatalogueFlag.BAD_SPECTRUM).any()


def _drop_logg_from_the_column_list(h5) -> None:
    columns = json.loads(h5["labels"].attrs["columns"])
    h5["labels"].attrs["columns"] = json.dumps([c for c in columns if c != "logg"])


def _edited_survey(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as h5:
        edit(h5)
    return dst


@pytest.mark.parametrize(
    ("edit", "needles"),
    [
        (lambda h5: h5.__delitem__("labels"), ["no 'labels' group"]),
        (
            lambda h5: h5["labels"].__delitem__("logg"),
            ["lists column(s) ['logg']"],
        ),
        (_drop_logg_from_the_column_list, ["no column 'logg'"]),
        (lambda h5: h5["spectra"].resize(40, axis=0), ["records 60 stars", "spectra has 40"]),
    ],
    ids=["no-labels-group", "logg-listed-but-missing", "no-logg-column", "short-spectra"],
)
def test_malformed_surveys_are_one_clear_error(tiny, tmp_path, capsys, edit, needles):
    survey = _edited_survey(tiny.survey, tmp_path / "bad.h5", edit)
    assert _predict(tiny.skops, survey, tmp_path / "a.fits") == 1
    _one_line_error(capsys.readouterr().err, "bad.h5", *needles)


def test_damaged_hdf5_survey_names_the_file(tmp_path, tiny):
    bad = tmp_path / "cut.h5"
    bad.write_bytes(tiny.survey.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.h5"):
        SurveyReader(bad)


# ---------------------------------------------------------------------------- locks

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from skages._lock import output_lock
    with output_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def holder():
    """Start a real second process that holds an output's lock; kill it afterwards."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=30)


def test_a_second_run_on_one_output_fails_at_once_naming_the_first(tiny, tmp_path, capsys, holder):
    out = tmp_path / "ages.fits"
    proc = holder(out)
    t0 = time.monotonic()
    assert _predict(tiny.skops, tiny.survey, out) == 1
    assert time.monotonic() - t0 < 30
    _one_line_error(capsys.readouterr().err, "ages.fits", "in use", f"PID {proc.pid}")
    assert not out.exists() and not (tmp_path / "ages.fits.progress").exists()

    sim = tmp_path / "sim.h5"
    holder(sim)
    assert main(["-q", "simulate", "--n-stars", "8", "--no-psd", "-o", str(sim)]) == 1
    _one_line_error(capsys.readouterr().err, "sim.h5", "in use", "PID")
    assert not sim.with_name("sim.h5.partial").exists()

    model = tmp_path / "m.joblib"
    holder(model)
    assert main(["-q", "train", "--survey", str(tiny.survey), "-o", str(model)]) == 1
    _one_line_error(capsys.readouterr().err, "m.joblib", "in use", "PID")

    from skages.demo import run_demo

    demo = tmp_path / "demo"
    holder(demo)
    with pytest.raises(OutputInUseError, match="PID"):
        run_demo(demo, n_stars=8, verbose=0)
    assert not (demo / "survey.h5").exists()


def test_a_dead_runs_lock_is_taken_over_and_its_temporaries_removed(tmp_path, holder):
    out = tmp_path / "ages.fits"
    proc = holder(out)
    proc.kill()  # like kill -9: the lock file stays, naming a dead process
    proc.wait(timeout=30)
    assert str(proc.pid) in lock_path(out).read_text()
    orphans = [tmp_path / ".ages.fits.abc123.tmp", tmp_path / ".ages.fits.json.x1.tmp"]
    progress = tmp_path / "ages.fits.progress"
    progress.mkdir()
    orphans.append(progress / ".chunk-000003.npz.zz9.tmp")
    unrelated = tmp_path / ".other.fits.abc.tmp"
    for path in [*orphans, unrelated]:
        path.write_bytes(b"half")
    with output_lock(out, folders=[progress]) as lock:
        info = json.loads(lock.read_text())
        assert info["pid"] == os.getpid()
        assert not any(p.exists() for p in orphans)
        assert unrelated.exists()  # another output's temporary is not ours
    assert not lock.exists()  # released on exit


def test_finished_output_is_not_overwritten_without_overwrite(tiny, tmp_path, capsys):
    out = tmp_path / "ages.fits"
    assert _predict(tiny.skops, tiny.survey, out) == 0
    stamp = out.stat().st_mtime_ns
    assert _predict(tiny.skops, tiny.survey, out) == 1
    _one_line_error(capsys.readouterr().err, "ages.fits", "--overwrite")
    assert out.stat().st_mtime_ns == stamp
    assert _predict(tiny.skops, tiny.survey, out, "--overwrite") == 0


# ---------------------------------------------------------------------- loose ends


def test_simulate_resumes_by_default_and_restart_discards(tmp_path, capsys, monkeypatch):
    from skages.io import SurveyWriter

    original = SurveyWriter.append
    calls = {"n": 0}

    def append(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run is stopped after its first chunk
        return original(self, *args, **kwargs)

    out = tmp_path / "sim.h5"
    argv = ["-q", "simulate", "--n-stars", "20", "--no-psd", "--chunk-size", "8", "-o", str(out)]
    monkeypatch.setattr(SurveyWriter, "append", append)
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    partial = tmp_path / "sim.h5.partial"
    assert partial.exists() and not out.exists()
    # the same command again continues the partial: the first chunk is not written again
    calls["n"] = -100
    assert main(argv) == 0
    assert calls["n"] == -100 + 2  # two appends (rows 8-16, 16-20), not three
    with SurveyReader(out) as survey:
        assert survey.n_stars == 20
    assert main([*argv, "--restart", "--overwrite"]) == 0
    assert main([*argv, "--resume", "--restart", "--overwrite"]) == 1
    _one_line_error(capsys.readouterr().err, "--resume or --restart")


def test_demo_has_restart():
    parser = _subparser("demo")
    assert parser.parse_args(["--restart"]).restart is True
    assert parser.parse_args([]).restart is False


def test_a_survey_edited_in_place_is_not_resumed_from_stale_chunks(tiny, tmp_path, caplog):
    from skages.io import read_survey, write_survey

    # uncompressed, so that an edit in place keeps the file's size
    survey = write_survey(tmp_path / "survey.h5", read_survey(tiny.survey), compression=None)
    out = tmp_path / "ages.fits"
    kwargs = dict(chunk_size=20, keep_progress=True)
    predict_catalogue(tiny.model, survey, out, **kwargs)
    out.unlink()  # as if the run had died before writing the catalogue

    st = survey.stat()
    with h5py.File(survey, "r+") as h5:  # rows 25-29 (chunk 1) change, same size
        h5["spectra"][25:30] = h5["spectra"][0:5]
    os.utime(survey, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert survey.stat().st_size == st.st_size and survey.stat().st_mtime_ns == st.st_mtime_ns
    caplog.set_level("INFO", logger="skages.catalogue")
    res = predict_catalogue(tiny.model, survey, out, **kwargs)
    assert res.n_chunks_resumed == 2  # chunks 0 and 2 reused, chunk 1 recomputed
    assert "rows 20-39 changed" in caplog.text
    fresh = predict_catalogue(tiny.model, survey, tmp_path / "fresh.fits", chunk_size=20)
    assert res.checksum == fresh.checksum

    # a label edited in place: the run's identity (a checksum of the label table) changes
    out.unlink()
    with h5py.File(survey, "r+") as h5:
        h5["labels"]["teff"][3] += 100.0
    os.utime(survey, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ValueError, match="rows_sha256"):
        predict_catalogue(tiny.model, survey, out, **kwargs)
    assert predict_catalogue(tiny.model, survey, out, restart=True, **kwargs).n_chunks_resumed == 0


def test_pickle_peek_builds_nothing_from_an_old_layout(tiny, tmp_path):
    # model first (skages < this version): the metadata are not found, nothing is built
    marker = tmp_path / "m.txt"
    path = tmp_path / "old.joblib"
    joblib.dump({"model": _Marker(marker), "metadata": {"skages_version": "x"}}, path)
    assert persistence._peek_joblib_metadata(path) is None
    assert not marker.exists()
    raw = tmp_path / "raw.joblib"
    raw.write_bytes(pickle.dumps({"metadata": {"skages_version": "1.0"}, "model": 1}))
    assert persistence._peek_joblib_metadata(raw) == {"skages_version": "1.0"}


def test_truncated_gzipped_apokasc2_names_the_file(tmp_path):
    from skages._data import bundled_path
    from skages.io import read_apokasc2

    data = bundled_path("APOKASC2_Table5.txt.gz").read_bytes()
    bad = tmp_path / "APOKASC2_Table5.txt.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"APOKASC2_Table5\.txt\.gz is not a readable"):
        read_apokasc2(bad)


# ------------------------------------------------------------ label types, duplicates


def _survey_labels(tiny) -> pd.DataFrame:
    with SurveyReader(tiny.survey) as reader:
        frame = reader.labels.reset_index(drop=True)
    frame.columns = [c.upper() for c in frame.columns]
    frame["TELESCOPE"], frame["FIELD"] = "apo25m", "SIM"
    return frame


def test_label_strings_with_units_are_parsed_not_nan(tiny, tmp_path):
    frame = _survey_labels(tiny)
    plain = predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits", labels=frame)
    frame["TEFF"] = [f"{v} K" for v in frame["TEFF"]]
    frame["FE_H"] = [str(v) for v in frame["FE_H"]]
    text = predict_catalogue(tiny.model, tiny.survey, tmp_path / "b.fits", labels=frame)
    assert text.n_ages == plain.n_ages > 0
    a, b = read_catalogue(plain.path), read_catalogue(text.path)
    np.testing.assert_array_equal(np.asarray(a["LogAge"]), np.asarray(b["LogAge"]))


def test_non_numeric_label_text_and_numeric_ids_name_the_column(tiny, tmp_path):
    frame = _survey_labels(tiny)
    frame["TEFF"] = ["hot"] + [str(v) for v in frame["TEFF"].iloc[1:]]
    with pytest.raises(ValueError, match=r"column 'teff' holds text that is not a number in K"):
        predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits", labels=frame)
    frame = _survey_labels(tiny)
    frame["TEFF"] = [f"{v} km" for v in frame["TEFF"]]
    with pytest.raises(ValueError, match=r"column 'teff'"):
        predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits", labels=frame)
    frame = _survey_labels(tiny)
    frame["APOGEE_ID"] = np.arange(len(frame), dtype=float)
    with pytest.raises(ValueError, match=r"column 'APOGEE_ID' holds numbers \(float64\)"):
        predict_catalogue(tiny.model, tiny.survey, tmp_path / "a.fits", labels=frame)
    assert not (tmp_path / "a.fits").exists()


def test_duplicate_survey_rows_are_named(tiny, tmp_path, caplog):
    from skages.io import read_survey, write_survey

    data = read_survey(tiny.survey)
    data.labels = data.labels.reset_index(drop=True)
    data.labels.loc[1, "apogee_id"] = data.labels.loc[0, "apogee_id"]
    data.labels["telescope"], data.labels["field"] = "apo25m", "SIM"
    path = write_survey(tmp_path / "dup.h5", data)
    frame = _survey_labels(tiny).drop(index=1).reset_index(drop=True)
    with caplog.at_level("WARNING", logger="skages"):
        predict_catalogue(tiny.model, path, tmp_path / "a.fits", labels=frame)
    assert "2 spectra share APOGEE_ID/TELESCOPE/FIELD" in caplog.text
    assert data.labels.loc[0, "apogee_id"] in caplog.text


def test_rows_of_a_star_with_several_spectra_and_no_telescope_are_named(tiny, tmp_path, caplog):
    from skages.catalogue import CatalogueFlag, read_catalogue
    from skages.io import read_survey, write_survey

    data = read_survey(tiny.survey)
    data.labels = data.labels.reset_index(drop=True)
    star = data.labels.loc[0, "apogee_id"]
    data.labels.loc[1, "apogee_id"] = star  # the same star seen by two telescopes
    data.labels["telescope"], data.labels["field"] = "apo25m", "SIM"
    data.labels.loc[1, "telescope"] = "lco25m"
    path = write_survey(tmp_path / "two.h5", data)
    frame = _survey_labels(tiny).drop(index=1).drop(columns=["TELESCOPE", "FIELD"])
    with caplog.at_level("WARNING", logger="skages"):
        result = predict_catalogue(
            tiny.model, path, tmp_path / "a.fits", labels=frame.reset_index(drop=True)
        )
    assert "1 rows (" + star in caplog.text
    assert "no TELESCOPE/FIELD to choose one" in caplog.text
    table = read_catalogue(result.path)
    row = list(table["APOGEE_ID"]).index(star)
    assert table["SKAGES_FLAG"][row] & CatalogueFlag.NO_SPECTRUM
