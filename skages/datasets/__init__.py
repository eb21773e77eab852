"""Built-in data: the simulated APOKASC-like survey and the bundled real data files."""

from __future__ import annotations

import importlib
from typing import Any

from skages._data import (
    bundled_path,
    load_continuum_mask,
    load_example_lightcurve,
    load_reference_spectrum,
)

# the simulator (pandas, scikit-learn) loads on first use, so bundled_path stays light
_SIMULATOR_NAMES = (
    "LABEL_UNITS",
    "counterfactual_spectra",
    "iter_apokasc",
    "make_apokasc",
    "model_power",
    "simulate_lightcurve",
    "write_apokasc",
)

__all__ = [
    "LABEL_UNITS",
    "bundled_path",
    "counterfactual_spectra",
    "iter_apokasc",
    "load_continuum_mask",
    "load_example_lightcurve",
    "load_reference_spectrum",
    "make_apokasc",
    "model_power",
    "simulate_lightcurve",
    "write_apokasc",
]


def __getattr__(name: str) -> Any:
    if name in _SIMULATOR_NAMES:
        value = getattr(importlib.import_module("skages.datasets.simulator"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skages.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
