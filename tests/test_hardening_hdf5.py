"""HDF5 surveys whose data live outside the file are refused, naming file and dataset."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from skages.io import SurveyReader, read_survey, write_survey
from skages.spectra import N_PIXELS


@pytest.fixture
def survey(tmp_path):
    rng = np.random.default_rng(0)
    n = 4
    labels = pd.DataFrame(
        {"apogee_id": [f"2M{i:08d}" for i in range(n)], "teff": 4800.0 + rng.normal(size=n)}
    )
    path = write_survey(
        tmp_path / "survey.h5",
        {"labels": labels, "spectra": rng.normal(1, 0.01, (n, N_PIXELS)).astype(np.float32)},
    )
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5["teff"] = np.full(n, 9999.0)
        h5["spectra"] = np.zeros((n, N_PIXELS), np.float32)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4)
    return path, other, secret, n


def _external_storage(h5, other, secret, n):
    del h5["labels/apogee_id"]
    h5["labels"].create_dataset(
        "apogee_id", shape=(n,), dtype="S8", external=[(str(secret), 0, 8 * n)]
    )


def _external_link(h5, other, secret, n):
    del h5["labels/teff"]
    h5["labels/teff"] = h5py.ExternalLink(str(other), "/teff")


def _soft_link_out(h5, other, secret, n):
    h5["outside"] = h5py.ExternalLink(str(other), "/")
    del h5["labels/teff"]
    h5["labels/teff"] = h5py.SoftLink("/outside/teff")


def _virtual_dataset(h5, other, secret, n):
    del h5["spectra"]
    layout = h5py.VirtualLayout(shape=(n, N_PIXELS), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(other), "spectra", shape=(n, N_PIXELS))
    h5.create_virtual_dataset("spectra", layout)


def _virtual_dataset_of_a_text_file(h5, other, secret, n):
    del h5["spectra"]
    layout = h5py.VirtualLayout(shape=(n, N_PIXELS), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(secret), "spectra", shape=(n, N_PIXELS))
    h5.create_virtual_dataset("spectra", layout, fillvalue=np.nan)


@pytest.mark.parametrize(
    ("edit", "dataset", "what"),
    [
        (_external_storage, "/labels/apogee_id", "stored outside the file"),
        (_external_link, "/labels/teff", "external link"),
        (_soft_link_out, "/outside", "external link"),
        (_virtual_dataset, "/spectra", "virtual dataset"),
        (_virtual_dataset_of_a_text_file, "/spectra", "virtual dataset"),
    ],
)
def test_data_outside_the_file_is_refused_naming_file_and_dataset(survey, edit, dataset, what):
    path, other, secret, n = survey
    with h5py.File(path, "r+") as h5:
        edit(h5, other, secret, n)
    with pytest.raises(ValueError) as info:
        read_survey(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert str(path) in message and repr(dataset) in message and what in message
    with pytest.raises(ValueError, match="self-contained"):
        SurveyReader(path)


def test_soft_links_inside_the_file_still_read(survey):
    path, *_ = survey
    with h5py.File(path, "r+") as h5:
        h5["alias"] = h5py.SoftLink("/labels")
    assert read_survey(path).labels.shape[0] == 4
