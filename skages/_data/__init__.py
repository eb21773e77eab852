"""Access to the real data files bundled in ``skages/_data/data`` (see PROVENANCE.md there)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "bundled_path",
    "load_continuum_mask",
    "load_example_lightcurve",
    "load_kic_2mass_crossmatch",
    "load_reference_spectrum",
]


def bundled_path(name: str) -> Path:
    """Path of a bundled data file.

    Parameters
    ----------
    name : str
        File name inside ``skages/_data/data``.

    Returns
    -------
    pathlib.Path
    """
    path = Path(str(resources.files("skages._data") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(f"skages has no bundled data file {name!r} (looked at {path})")
    return path


def load_example_lightcurve() -> tuple[np.ndarray, np.ndarray]:
    """The bundled real Kepler light curve of the red giant KIC 11618103.

    599 days of long-cadence photometry (published νmax 106.3 µHz, Δν 9.33 µHz).

    Returns
    -------
    time : ndarray of shape (n_cadences,)
        Time in days.
    flux : ndarray of shape (n_cadences,)
        Relative flux (dimensionless, about 1).
    """
    data = np.loadtxt(bundled_path("KIC11618103_LC.txt.gz"))
    return data[:, 0], data[:, 1]


@cache
def _reference_spectrum() -> tuple[np.ndarray, np.ndarray]:
    with np.load(bundled_path("reference_spectrum.npz")) as npz:
        return npz["mean"], npz["std"]


def load_reference_spectrum() -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and standard deviation of the published model's training spectra.

    Returns
    -------
    mean, std : ndarray of shape (7514,)
        Continuum-normalised flux (dimensionless) on the gap-removed APOGEE grid.
    """
    mean, std = _reference_spectrum()
    return mean.copy(), std.copy()


def load_continuum_mask() -> np.ndarray:
    """The APOGEE DR17 continuum-pixel mask on the gap-removed 7514-pixel grid.

    Returns
    -------
    ndarray of bool, shape (7514,)
        True on the 532 continuum pixels.
    """
    return np.load(bundled_path("dr17_contmask.npy")).astype(bool)


@cache
def _kic_2mass() -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    frame = pd.read_csv(
        bundled_path("id_xmatch_apokasc.csv.gz"), dtype={"KEPLER_INT": np.int64, "2MASS_ID": str}
    )
    kic = frame["KEPLER_INT"].to_numpy(np.int64)
    ids = frame["2MASS_ID"].str.strip().to_numpy(dtype=object)
    kic.setflags(write=False)
    ids.setflags(write=False)
    return kic, ids


def load_kic_2mass_crossmatch() -> tuple[np.ndarray, np.ndarray]:
    """The KIC <-> 2MASS id (= APOGEE_ID) cross-match of Kepler targets observed by APOGEE.

    23,363 stars, one row each (no KIC or id repeats), from the APOGEE team's
    ``data/apokasc/id_xmatch_apokasc.csv`` (GitHub sdss/apogee, BSD-3-Clause).

    Returns
    -------
    kic : ndarray of int64, shape (23363,)
        Kepler Input Catalogue numbers.
    apogee_id : ndarray of str (object), shape (23363,)
        The matching 2MASS ids, e.g. ``"2M19241533+3638089"``.
    """
    kic, ids = _kic_2mass()
    return kic.copy(), ids.copy()
