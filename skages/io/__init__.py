"""Readers and writers of real files: APOGEE spectra and allStar, catalogue tables and
cross-matches, and the skages HDF5 survey collection format.

One module per kind of file:

* :mod:`skages.io.apogee`: apStar, aspcapStar (one file or a folder) and allStar;
* :mod:`skages.io.tables`: APOKASC-2 and the cross-match of a training sample by id;
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
)
from skages.io.astronn import AstroNNModel, read_astronn_model, write_astronn_model
from skages.io.survey import (
    SURVEY_FORMAT_VERSION,
    SurveyReader,
    SurveyWriter,
    read_survey,
    write_survey,
)
from skages.io.tables import crossmatch_training_sample, read_apokasc2

__all__ = [
    "ALLSTAR_COLUMNS",
    "SURVEY_FORMAT_VERSION",
    "ApogeeSpectrum",
    "AstroNNModel",
    "SurveyReader",
    "SurveyWriter",
    "crossmatch_training_sample",
    "read_allstar",
    "read_apogee_spectra",
    "read_apokasc2",
    "read_apstar",
    "read_aspcapstar",
    "read_astronn_model",
    "read_survey",
    "write_astronn_model",
    "write_survey",
]
