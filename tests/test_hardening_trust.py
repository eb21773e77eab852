"""No unpickling without trust: load_model, predict_catalogue and the demo's reuse check."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest

from skages import persistence
from skages.catalogue import predict_catalogue
from skages.demo import _same_model
from skages.persistence import load_model, read_model_metadata


class _Marker:
    """Unpickles by calling exec on a line that writes a marker file (harmless)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle ran')",))


@pytest.fixture
def planted(tmp_path):
    """A model.joblib with valid skages metadata first and a code-running payload after."""
    from sklearn.dummy import DummyRegressor

    marker = tmp_path / "marker.txt"
    path = tmp_path / "model.joblib"
    meta = persistence.model_metadata(DummyRegressor())
    meta["training"] = {"demo": {"n_stars": 10}}
    joblib.dump({"metadata": meta, "model": _Marker(marker)}, path, compress=3)
    return path, marker


def test_load_model_refuses_a_pickle_unless_trusted(planted):
    path, marker = planted
    for trusted in (None, False, ["numpy.ndarray"]):
        with pytest.raises(ValueError, match=r"model\.joblib.*pickle.*trusted=True"):
            load_model(path, trusted=trusted)
    assert not marker.exists()
    # the payload is real: trusted, it runs
    load_model(path, trusted=True)
    assert marker.read_text() == "pickle ran"


def test_predict_catalogue_refuses_an_untrusted_pickle(planted, tmp_path):
    path, marker = planted
    with pytest.raises(ValueError, match="pickle"):
        predict_catalogue(path, tmp_path / "survey.h5", tmp_path / "ages.fits")
    assert not marker.exists() and not (tmp_path / "ages.fits").exists()


def test_demo_reuse_check_reads_metadata_only(planted):
    path, marker = planted
    assert read_model_metadata(path)["training"]["demo"] == {"n_stars": 10}
    assert _same_model(path, {"n_stars": 10}) is True
    assert _same_model(path, {"n_stars": 11}) is False
    assert not marker.exists()
