"""Survey-scale age catalogues: streaming, resumable inference, locally or on Dask.

:func:`predict_catalogue` runs a fitted age model (the Pipeline of
:func:`skages.pipeline.fit_age_model`) over a whole survey in chunks of stars and writes
the catalogue of Leung et al. (2023, Table 1): one row per row of the input table, with
the star's identity and APOGEE flags, its latent coordinates, and its age.

* **Inputs.** Spectra come from a skages HDF5 survey collection
  (:class:`skages.io.SurveyWriter`) or from a folder of apStar / aspcapStar files
  (continuum-normalised here with :func:`skages.spectra.continuum_normalize`). Labels
  (log g, SNREV, Teff, [Fe/H] and their errors, telescope, field, flags) come from the
  survey's own label table or from an APOGEE allStar file matched by APOGEE_ID; given an
  allStar file, the catalogue is row-matched to it.
* **Applicability cuts** (:class:`CatalogueCuts`, the paper's by default): latent
  coordinates only for 1.5 < log g < 3.6 and SNREV > 30; ages only where also
  log g >= 2.5 and Teff, [Fe/H] exist. Everything else is NaN, with the reason in the
  ``SKAGES_FLAG`` bitmask (:class:`CatalogueFlag`).
* **Nothing lost.** Every finished chunk is written to a progress folder beside the
  output, atomically and with a SHA-256 checksum. A run that dies (even ``kill -9``)
  resumes from its finished chunks, verifying each, with no row recomputed, lost or
  duplicated. The catalogue is written to a temporary file, read back and checked (row
  count, content checksum, FITS CHECKSUM/DATASUM), then renamed into place.
* **One run per output.** The run holds ``<output>.lock`` (:mod:`skages._lock`): a second
  run on the same output fails at once, naming the first; a finished output is never
  replaced without ``overwrite``. A run's identity includes checksums of the label table
  and of the spectra of every chunk it reuses, not only file sizes and times.
* **Bad rows never stop a survey**: missing or unreadable spectra, NaN spectra, missing
  labels become NaN rows with a flag, counted in the log.
* **Scale.** Memory is set by ``chunk_size``, not by the survey; reading the next chunk
  overlaps with the model's work on the current one. With ``scheduler=`` the chunks run
  as dask.distributed tasks (each reads its own chunk from the file path), and the
  driver stores their results with the same progress machinery: the output equals the
  single-process run.

Results depend on ``chunk_size`` at the level of the forest's Monte-Carlo noise (the
forest draws its input perturbations per call), so the chunk size is part of a run's
identity and is recorded in the output.

The package keeps one job per module: ``_cuts`` (cuts and flags), ``_columns`` (the
data model and checksums), ``_model`` (the fitted model as the catalogue calls it),
``_sources`` (input rows, row matching, spectrum sources), ``_chunk`` (one chunk's
work), ``_progress`` (the resumable progress store), ``_runners`` (local and Dask),
``_writers`` (FITS, Parquet and CSV, :func:`read_catalogue`) and ``_predict``
(:func:`predict_catalogue`). The public names are re-exported here.
"""

from skages.catalogue._columns import CATALOGUE_FORMAT_VERSION, catalogue_columns
from skages.catalogue._columns import SIMULATED_FIELD as SIMULATED_FIELD  # not in __all__
from skages.catalogue._columns import SIMULATED_TELESCOPE as SIMULATED_TELESCOPE
from skages.catalogue._cuts import CatalogueCuts, CatalogueFlag
from skages.catalogue._predict import predict_catalogue
from skages.catalogue._runners import dask_client
from skages.catalogue._writers import read_catalogue

__all__ = [
    "CATALOGUE_FORMAT_VERSION",
    "CatalogueCuts",
    "CatalogueFlag",
    "catalogue_columns",
    "dask_client",
    "predict_catalogue",
    "read_catalogue",
]
