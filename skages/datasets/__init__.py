"""Built-in data: the simulated APOKASC-like survey and the bundled real data files."""

from skages.datasets._bundled import (
    bundled_path,
    load_continuum_mask,
    load_example_lightcurve,
    load_reference_spectrum,
)

__all__ = [
    "bundled_path",
    "load_continuum_mask",
    "load_example_lightcurve",
    "load_reference_spectrum",
]
