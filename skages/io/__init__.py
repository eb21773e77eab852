"""Readers and writers of real files: APOGEE spectra and allStar, catalogue tables and
cross-matches, and the skages HDF5 survey collection format.

One module per kind of file:

* :mod:`skages.io.apogee`: apStar, aspcapStar (one file or a folder) and allStar;
* :mod:`skages.io.sdss5`: SDSS-V DR19 Astra mwmStar / mwmVisit spectra and the
  astraAllStarASPCAP / allStar-1.3 label tables (:func:`read_labels`);
* :mod:`skages.io.kepler`: Kepler light-curve files of many stars (grouping per KIC,
  a fast reader equal to lightkurve's default, the batch to a PSD survey);
* :mod:`skages.io.tables`: APOKASC-2 and other age tables as published, the KIC <-> 2MASS
  cross-match, and the training sample (matches and the paper's cuts, counted);
* :mod:`skages.io.survey`: the HDF5 survey collection (resumable writer, chunked reader);
* :mod:`skages.io.astronn`: astroNN model folders (the published model's format).

Every public name is re-exported here, so ``from skages.io import read_apstar`` works
whichever module holds it. Bad input raises a ``ValueError`` (or ``FileNotFoundError``
/ ``TypeError``) whose message names the file or argument, what was expected and what
was found.
"""

from skages.io.apogee import (
    ALLSTAR_COLUMNS,
    ApogeeSpectrum,
    read_allstar,
    read_apogee_spectra,
    read_apstar,
    read_aspcapstar,
    read_normalized_spectra,
    spectra_to_survey,
)
from skages.io.astronn import AstroNNModel, read_astronn_model, write_astronn_model
from skages.io.kepler import (
    KEPLER_DEFAULT_BITMASK,
    LightCurveFlag,
    find_lightcurve_files,
    group_kepler_files,
    lightcurves_to_survey,
    read_kepler_star,
)
from skages.io.sdss5 import (
    ALLSTAR13_COLUMN_MAP,
    ASTRA_ASPCAP_COLUMN_MAP,
    read_labels,
    read_mwmstar,
    read_mwmvisit,
)
from skages.io.survey import (
    SURVEY_FORMAT_VERSION,
    SurveyReader,
    SurveyWriter,
    read_survey,
    write_survey,
)
from skages.io.tables import (
    AGE_TABLE_FORMATS,
    TrainingCuts,
    add_crossmatch_ids,
    crossmatch_training_sample,
    load_kic_2mass_crossmatch,
    read_age_table,
    read_apokasc2,
    training_sample,
)

__all__ = [
    "AGE_TABLE_FORMATS",
    "ALLSTAR13_COLUMN_MAP",
    "ALLSTAR_COLUMNS",
    "ASTRA_ASPCAP_COLUMN_MAP",
    "KEPLER_DEFAULT_BITMASK",
    "SURVEY_FORMAT_VERSION",
    "ApogeeSpectrum",
    "AstroNNModel",
    "LightCurveFlag",
    "SurveyReader",
    "SurveyWriter",
    "TrainingCuts",
    "add_crossmatch_ids",
    "crossmatch_training_sample",
    "find_lightcurve_files",
    "group_kepler_files",
    "lightcurves_to_survey",
    "load_kic_2mass_crossmatch",
    "read_age_table",
    "read_allstar",
    "read_apogee_spectra",
    "read_apokasc2",
    "read_apstar",
    "read_aspcapstar",
    "read_astronn_model",
    "read_kepler_star",
    "read_labels",
    "read_mwmstar",
    "read_mwmvisit",
    "read_normalized_spectra",
    "read_survey",
    "spectra_to_survey",
    "training_sample",
    "write_astronn_model",
    "write_survey",
]
