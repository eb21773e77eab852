"""skages: precise ages of red-giant stars from their spectra.

A scikit-learn-compatible implementation of the variational encoder-decoder
method of Leung, Bovy, Mackereth & Miglio (2023, MNRAS 522, 4577): an encoder
learns to turn an APOGEE spectrum into the star's Kepler power spectrum through
a small latent space, and a probabilistic random forest maps that latent space,
Teff and [Fe/H] to an age with a calibrated uncertainty.

Public names are imported lazily, so ``import skages`` stays fast and the
``skages`` command does not load PyTorch until a subcommand needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from skages._version import __version__

# public name -> submodule that defines it
_LAZY: dict[str, str] = {
    # seismology: light curves -> power spectra
    "frequency_grid": "seismology",
    "frequency_edges": "seismology",
    "fine_frequency_grid": "seismology",
    "lomb_scargle_power": "seismology",
    "power_to_log_psd": "seismology",
    "lightcurve_to_psd": "seismology",
    "read_kepler_lightcurve": "seismology",
    "numax_weights": "seismology",
    "estimate_numax": "seismology",
    "expected_dnu": "seismology",
    "excess_dnu": "seismology",
    "scaling_mass": "seismology",
    "scaling_radius": "seismology",
    # spectra: APOGEE pixel layout and continuum normalisation
    "apogee_wavelength": "spectra",
    "chip_slices": "spectra",
    "remove_gaps": "spectra",
    "add_gaps": "spectra",
    "bad_pixel_mask": "spectra",
    "pixmask_from_astra_flags": "spectra",
    "fit_continuum": "spectra",
    "continuum_normalize": "spectra",
    "ContinuumNormalizer": "spectra",
    # io: readers of real files and the HDF5 survey collection
    "read_apstar": "io",
    "read_aspcapstar": "io",
    "read_apogee_spectra": "io",
    "read_allstar": "io",
    "read_labels": "io",
    "read_mwmstar": "io",
    "read_mwmvisit": "io",
    "read_apokasc2": "io",
    "crossmatch_training_sample": "io",
    "read_age_table": "io",
    "add_crossmatch_ids": "io",
    "load_kic_2mass_crossmatch": "io",
    "TrainingCuts": "io",
    "training_sample": "io",
    "lightcurves_to_survey": "io",
    "spectra_to_survey": "io",
    "read_normalized_spectra": "io",
    "read_kepler_star": "io",
    "group_kepler_files": "io",
    "find_lightcurve_files": "io",
    "LightCurveFlag": "io",
    "SurveyWriter": "io",
    "SurveyReader": "io",
    "write_survey": "io",
    "read_survey": "io",
    "read_astronn_model": "io",
    "write_astronn_model": "io",
    # datasets: the simulated APOKASC-like survey
    "make_apokasc": "datasets",
    "iter_apokasc": "datasets",
    "write_apokasc": "datasets",
    "simulate_lightcurve": "datasets",
    # encoder: the variational encoder-decoder
    "SpectrumToPSDEncoder": "encoder",
    "PSDNotRoutedWarning": "encoder",
    # forest: the probabilistic random forest
    "ProbabilisticForestRegressor": "forest",
    "z_score_width": "forest",
    "TargetErrorsOverCoverWarning": "forest",
    # applicability and spectrum quality: how far to trust an age
    "ApplicabilityScore": "applicability",
    "spectrum_quality": "quality",
    "quality_flags": "quality",
    "QualityFlag": "quality",
    "QualityThresholds": "quality",
    # pipeline: composition and scorers
    "make_age_pipeline": "pipeline",
    "fit_age_model": "pipeline",
    "make_age_frame": "pipeline",
    "spectrum_feature_names": "pipeline",
    "age_scatter": "pipeline",
    "age_bias": "pipeline",
    "age_scatter_scorer": "pipeline",
    "age_bias_scorer": "pipeline",
    "z_width_scorer": "pipeline",
    "applicability_score": "pipeline",
    "age_trust": "pipeline",
    # evaluation
    "evaluate_age_model": "evaluation",
    "split_survey": "evaluation",
    "split_indices": "evaluation",
    "evaluate_saved_model": "evaluation",
    "EvaluationReport": "evaluation",
    "coverage_table": "evaluation",
    # training: the two-stage training over surveys, files and configs
    "train_from_survey": "training",
    "train_from_files": "training",
    "train_from_config": "training",
    "read_train_config": "training",
    # catalogue: survey-scale streaming inference
    "predict_catalogue": "catalogue",
    "read_catalogue": "catalogue",
    "CatalogueCuts": "catalogue",
    "CatalogueFlag": "catalogue",
    "catalogue_columns": "catalogue",
    "dask_client": "catalogue",
    # demo: the whole workflow on a simulated survey
    "run_demo": "demo",
    # persistence
    "save_model": "persistence",
    "load_model": "persistence",
    "read_model_metadata": "persistence",
    "training_summary": "persistence",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'skages' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"skages.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
