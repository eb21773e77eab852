"""The entry point :func:`predict_catalogue`: inputs, progress, runners and writers in order."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from skages._atomic import atomic_path
from skages._version import __version__
from skages.catalogue._columns import (
    _FLAG_COLUMNS,
    _ID_COLUMNS,
    _TRAINING_COLUMN,
    CATALOGUE_FORMAT_VERSION,
    _content_sha256,
    _rows_sha256,
    _with_source_ids,
)
from skages.catalogue._cuts import _CUT_LABELS, CatalogueCuts, CatalogueFlag
from skages.catalogue._model import _encoder_class, _load, _model_id, _Predictor
from skages.catalogue._progress import _PROGRESS_FORMAT, _Progress
from skages.catalogue._runners import _run_dask, _run_local, dask_client
from skages.catalogue._sources import _prepare_inputs, _Task, _training_rows
from skages.catalogue._writers import (
    _output_format,
    _provenance,
    _sidecar,
    _table,
    _verify,
    _write,
)
from skages.io.sdss5 import SOURCE_ID_COLUMNS

logger = logging.getLogger("skages.catalogue")


def predict_catalogue(
    model: Any,
    spectra: str | os.PathLike,
    output: str | os.PathLike,
    *,
    labels: Any = None,
    chunk_size: int = 1024,
    format: str | None = None,
    cuts: CatalogueCuts | None = None,
    scheduler: Any = None,
    n_workers: int | None = None,
    bad_pixel_fill: float = float("nan"),
    latent_only: bool = False,
    overwrite: bool = False,
    restart: bool = False,
    keep_progress: bool = False,
    progress_dir: str | os.PathLike | None = None,
    trusted: bool | Sequence[str] | None = None,
    verbose: int = 0,
) -> Bunch:
    """Write the age catalogue of a survey, streaming in chunks and resumable.

    Parameters
    ----------
    model : Pipeline, SpectrumToPSDEncoder or path-like
        The fitted age model (:func:`skages.pipeline.fit_age_model`), a file written by
        :func:`skages.persistence.save_model`, or, for a latent-only catalogue, a fitted
        encoder or an astroNN model folder (read with
        :meth:`~skages.encoder.SpectrumToPSDEncoder.from_astronn`).
    spectra : path-like
        A skages HDF5 survey collection with a ``spectra`` array (continuum-normalised,
        7514 pixels), or a folder of apStar / aspcapStar files (searched recursively;
        APOGEE_ID, telescope and field from the file names and the DR17
        ``<telescope>/<field>/`` folders, else from the headers), which are
        continuum-normalised here.
    output : path-like
        The catalogue: ``.fits``, ``.csv`` (with a ``.csv.json`` sidecar holding units and
        provenance) or ``.parquet``.
    labels : path-like, astropy Table or DataFrame, optional
        An APOGEE allStar table (``read_allstar``'s columns). The catalogue then has one
        row per row of this table, in its order, matched to the spectra by APOGEE_ID
        (and telescope and field where known). Without it, the HDF5 survey's own label
        table is used (a folder of files needs it), with ``snr`` standing in for SNREV.
    chunk_size : int, default=1024
        Stars per chunk: sets the memory (about 75 kB per star on top of the model) and
        the granularity of resuming.
    format : {"fits", "csv", "parquet"}, optional
        Overrides the extension of ``output``.
    cuts : CatalogueCuts, optional
        Applicability cuts; the paper's by default, :meth:`CatalogueCuts.none` for none.
    scheduler : None, "local", str or dask.distributed.Client, optional
        None runs in this process. ``"local"`` starts a Dask LocalCluster of
        ``n_workers`` processes; an address (``"tcp://host:8786"``) or a Client uses an
        existing Dask cluster, whose workers must see ``spectra`` at the same path.
    n_workers : int, optional
        Workers of a LocalCluster.
    bad_pixel_fill : float, default=NaN
        For spectrum files: normalised flux of pixels with a bad APOGEE_PIXMASK bit
        (NaN = masked, skages' convention and the simulator's).
    latent_only : bool, default=False
        Write the latent columns only (``z0`` … and ``z0_Error`` …, no age columns, the
        FITS extension ``LATENT``), from the model's encoder; implied when ``model`` is
        an encoder or an astroNN folder. Age cuts and labels are then not needed.
    overwrite : bool, default=False
        Replace an existing ``output``.
    restart : bool, default=False
        Discard the chunks of an earlier, different run in the progress folder.
    keep_progress : bool, default=False
        Keep the progress folder after success (it is removed by default).
    progress_dir : path-like, optional
        Where finished chunks are kept; default ``<output>.progress`` beside the output.
    trusted : bool or sequence of str, optional
        As for :func:`skages.persistence.load_model`: True to load a ``.joblib``
        (pickle) model file, which runs any code it holds; for a ``.skops`` file, extra
        type names to trust.
    verbose : int, default=0
        Progress bar on stderr when > 0.

    Returns
    -------
    sklearn.utils.Bunch
        ``path`` (the catalogue), ``n_rows``, ``n_latent``, ``n_ages``, ``flag_counts``
        (flag name -> rows), ``n_chunks``, ``n_chunks_resumed``, ``seconds``.

    Raises
    ------
    FileExistsError
        If ``output`` exists and ``overwrite`` is False.
    skages._lock.OutputInUseError
        At once, if another run holds the lock of ``output`` (``<output>.lock``); the
        message names that process.
    ValueError
        For inputs that cannot be used (named in the message), or a progress folder of a
        different run (without ``restart``).
    OSError
        If a file cannot be written (e.g. a full disk); the message names the file.
    """
    t0 = time.perf_counter()
    output = Path(output)
    fmt = _output_format(output, format)
    if not isinstance(chunk_size, Integral) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    cuts = CatalogueCuts() if cuts is None else cuts
    if not isinstance(cuts, CatalogueCuts):
        raise TypeError(f"cuts must be a CatalogueCuts; got {type(cuts).__name__}")
    folder = Path(progress_dir) if progress_dir else output.with_name(output.name + ".progress")
    from skages._lock import output_lock

    # one run per output: the lock covers the catalogue and its progress folder (which has
    # a lock of its own when it is elsewhere)
    with (
        output_lock(output, folders=[folder]),
        output_lock(folder) if progress_dir else contextlib.nullcontext(),
    ):
        if output.exists() and not overwrite:  # finished while we waited to start
            raise FileExistsError(
                f"{output} exists; pass overwrite=True (--overwrite) to replace it"
            )
        return _predict_catalogue_locked(
            model, spectra, output, fmt, folder, t0,
            labels=labels, chunk_size=chunk_size, cuts=cuts, scheduler=scheduler,
            n_workers=n_workers, bad_pixel_fill=bad_pixel_fill, restart=restart,
            keep_progress=keep_progress, verbose=verbose, trusted=trusted,
            latent_only=latent_only,
        )  # fmt: skip


def _predict_catalogue_locked(
    model, spectra, output, fmt, folder, t0, *, labels, chunk_size, cuts, scheduler,
    n_workers, bad_pixel_fill, restart, keep_progress, verbose, trusted, latent_only,
) -> Bunch:  # fmt: skip
    """:func:`predict_catalogue` once the output's lock is held."""
    from tqdm.auto import tqdm

    fitted, model_path, model_meta = _load(model, trusted)
    if latent_only and not isinstance(fitted, _encoder_class()):
        fitted = _Predictor(fitted).encoder
    if isinstance(fitted, _encoder_class()) and not fitted.output_std:
        fitted = copy.copy(fitted).set_params(output_std=True)  # the σ columns
    predictor = _Predictor(fitted)
    has_ages = predictor.forest is not None
    model_info = _model_id(fitted, model_path)
    model_info["model_created"] = model_meta.get("created_utc", "")
    model_info["model_skages_version"] = model_meta.get("skages_version", "")
    needed = [*_CUT_LABELS, *predictor.label_names]
    rows, locator, source, describe = _prepare_inputs(spectra, labels, needed, bad_pixel_fill)
    if (model_meta.get("training") or {}).get("simulated"):
        model_info["model_simulated"] = True
        if not describe.get("simulated"):
            msg = (
                "this model was trained on simulated spectra (skages.datasets): its ages of "
                "real stars are untested; the catalogue header says so (MODELSIM)"
            )
            logger.warning(msg)
            warnings.warn(msg, UserWarning, stacklevel=3)
    n_rows = len(rows)
    if n_rows == 0:
        raise ValueError(f"no rows to predict: {describe.get('labels') or spectra} is empty")
    in_training, training_rows = _training_rows(model_meta, spectra, labels, n_rows)
    rows[_TRAINING_COLUMN] = in_training.astype(np.int64)

    bounds = [
        (i, a, min(a + chunk_size, n_rows)) for i, a in enumerate(range(0, n_rows, chunk_size))
    ]
    source_ids = [c for c in SOURCE_ID_COLUMNS if c in rows]
    keep = [*_ID_COLUMNS, *source_ids, *_FLAG_COLUMNS, _TRAINING_COLUMN, *needed]
    rows = rows[keep]
    manifest = {
        "format": _PROGRESS_FORMAT,
        # chunks of another layout (columns) must not be merged into this catalogue
        "catalogue_format": CATALOGUE_FORMAT_VERSION,
        "skages_version": __version__,
        "model_sha256": model_info["model_sha256"],
        "inputs": describe,
        # content, not only size and mtime: a table edited in place is another run
        "rows_sha256": _rows_sha256(rows, locator),
        "n_rows": n_rows,
        "chunk_size": int(chunk_size),
        "cuts": cuts.to_dict(),
        "bad_pixel_fill": None if math.isnan(bad_pixel_fill) else bad_pixel_fill,
        "latent_dim": predictor.latent_dim,
        "ages": has_ages,
        "labels_needed": needed,
    }
    progress = _Progress(folder, manifest, restart=restart)
    done = progress.finished(bounds)
    if done:
        # the spectra of every reused chunk are read again and compared with the checksum
        # stored when the chunk was written: a survey edited in place is recomputed
        progress.stale(
            done,
            bounds,
            lambda b: source.read_with_digest(locator[b[1] : b[2]], predictor.n_pixels)[2],
        )
    if done:
        logger.info(
            "resuming from %s: %d of %d chunks already done", folder, len(done), len(bounds)
        )

    def make_task(bounds: tuple[int, int, int]) -> _Task:
        i, a, b = bounds
        return _Task(i, a, b, rows.iloc[a:b].reset_index(drop=True), locator[a:b])

    todo = [t for t in bounds if t[0] not in done]
    rows_done = sum(b - a for i, a, b in bounds if i in done)
    logger.info(
        "predicting %d rows in %d chunks of %d (%d to do) from %s",
        n_rows, len(bounds), chunk_size, len(todo), describe["spectra"],
    )  # fmt: skip
    with tqdm(
        total=n_rows, initial=rows_done, unit="star", desc="catalogue", disable=not verbose
    ) as bar:
        if scheduler is None:
            _run_local(predictor, source, todo, make_task, cuts, progress, bar)
        else:
            with dask_client(scheduler, n_workers=n_workers) as client:
                _run_dask(fitted, source, todo, make_task, cuts, progress, bar, client)

    # assemble in order (each chunk verified again), write atomically, read back, rename
    ids = {c: rows[c].to_numpy(np.int64) for c in source_ids}
    rows = locator = None  # the label table is no longer needed
    columns = _with_source_ids(progress.assemble(bounds), ids)
    if len(columns["SKAGES_FLAG"]) != n_rows:
        raise OSError(f"{folder}: chunks hold {len(columns['SKAGES_FLAG'])} rows, not {n_rows}")
    flags = columns["SKAGES_FLAG"]
    counts = {
        "n_rows": n_rows,
        "n_latent": int(np.isfinite(columns["z0"]).sum()) if predictor.latent_dim else 0,
        "n_ages": int(np.isfinite(columns["LogAge"]).sum()) if has_ages else 0,
    }
    flag_counts = {bit.name: int(((flags & int(bit)) != 0).sum()) for bit in CatalogueFlag}
    checksum = _content_sha256(columns)
    provenance = _provenance(model_info, describe, cuts, chunk_size, counts)
    provenance["training_rows"] = training_rows
    provenance["content_sha256"] = checksum
    table = _table(columns, predictor.latent_dim, provenance, ages=has_ages)
    with atomic_path(output) as tmp:
        if fmt == "csv":
            sidecar = output.with_name(output.name + ".json")
            with atomic_path(sidecar) as tmp_side:
                tmp_side.write_text(json.dumps(_sidecar(table), indent=1))
        _write(table, tmp, fmt)
        _verify(tmp, fmt, columns, checksum)
    logger.info(
        "%d rows: %d with latent coordinates, %d with ages; flagged %s",
        n_rows, counts["n_latent"], counts["n_ages"],
        {k: v for k, v in flag_counts.items() if v},
    )  # fmt: skip
    bad = flag_counts["NO_SPECTRUM"] + flag_counts["BAD_SPECTRUM"] + flag_counts["MODEL_FAILED"]
    if bad:
        logger.warning(
            "%d rows without a usable spectrum or with a model failure (NaN, flagged): "
            "NO_SPECTRUM %d, BAD_SPECTRUM %d, MODEL_FAILED %d",
            bad, flag_counts["NO_SPECTRUM"], flag_counts["BAD_SPECTRUM"],
            flag_counts["MODEL_FAILED"],
        )  # fmt: skip
    if not keep_progress:
        progress.remove()
    return Bunch(
        path=output,
        n_rows=n_rows,
        n_latent=counts["n_latent"],
        n_ages=counts["n_ages"],
        flag_counts=flag_counts,
        n_chunks=len(bounds),
        n_chunks_resumed=len(done),
        seconds=time.perf_counter() - t0,
        checksum=checksum,
    )
