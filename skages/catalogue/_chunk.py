"""One chunk of catalogue rows: cuts, flags, latent coordinates, ages (driver or Dask worker)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from skages.catalogue._columns import (
    _FLAG_COLUMNS,
    _ID_COLUMNS,
    _SPECTRA_SHA256,
    _TRAINING_COLUMN,
    _empty_columns,
    _str_array,
)
from skages.catalogue._cuts import _QUALITY_BITS, CatalogueCuts, CatalogueFlag
from skages.catalogue._model import _Predictor
from skages.catalogue._sources import _Source, _Task
from skages.quality import quality_flags

logger = logging.getLogger("skages.catalogue")


def _predict_chunk(model: Any, source: _Source, task: _Task, cuts: CatalogueCuts) -> dict:
    """The catalogue rows of one chunk (runs in the driver or on a Dask worker)."""
    predictor = model if isinstance(model, _Predictor) else _Predictor(model)
    labels = task.labels
    n = len(labels)
    has_ages = predictor.forest is not None
    cols = _empty_columns(n, predictor.latent_dim, ages=has_ages)
    for name in _ID_COLUMNS:
        cols[name] = _str_array(labels[name].to_numpy())
    for name in _FLAG_COLUMNS:
        cols[name] = labels[name].to_numpy(dtype=np.int64)
    if _TRAINING_COLUMN in labels:
        cols[_TRAINING_COLUMN] = labels[_TRAINING_COLUMN].to_numpy(dtype=np.int64)
    spectra, flags, spectra_digest = source.read_with_digest(task.locator, predictor.n_pixels)
    flags = flags.copy()

    usable = flags == 0
    finite = np.isfinite(spectra)
    with np.errstate(invalid="ignore"):
        inf = np.isinf(spectra).any(axis=1)
    fraction = finite.mean(axis=1) if spectra.shape[1] else np.zeros(n)
    bad = usable & (inf | (fraction < max(cuts.min_finite_fraction, 1e-12)))
    flags[bad] |= CatalogueFlag.BAD_SPECTRUM
    usable &= ~bad

    logg = labels["logg"].to_numpy() if "logg" in labels else np.full(n, np.nan)
    snr = labels["snrev"].to_numpy() if "snrev" in labels else np.full(n, np.nan)
    if predictor.reference is not None and usable.any():
        q = quality_flags(
            spectra[usable], predictor.reference, snr=snr[usable], thresholds=cuts._quality(),
            ids=labels["APOGEE_ID"].to_numpy()[usable],
        )  # fmt: skip
        for qbit, bit in _QUALITY_BITS.items():
            flags[np.flatnonzero(usable)[(q & qbit) != 0]] |= bit
    have_cut_labels, in_latent = cuts._masks(logg, snr)
    flags[usable & ~have_cut_labels] |= CatalogueFlag.NO_CUT_LABELS
    flags[usable & have_cut_labels & ~in_latent] |= CatalogueFlag.LATENT_CUT
    latent_rows = usable & in_latent

    model_labels = labels[predictor.label_names].to_numpy(dtype=np.float64)
    errors = [n.endswith(("_err", "_std")) for n in predictor.label_names]
    with np.errstate(invalid="ignore"):
        ok_labels = np.isfinite(model_labels).all(axis=1) & ~(model_labels[:, errors] < 0).any(
            axis=1
        )
    in_age = cuts._age(logg) if has_ages else np.zeros(n, dtype=bool)
    flags[latent_rows & ~in_age & has_ages] |= CatalogueFlag.AGE_CUT
    flags[latent_rows & in_age & ~ok_labels] |= CatalogueFlag.NO_MODEL_LABELS
    age_rows = latent_rows & in_age & ok_labels

    d = predictor.latent_dim
    idx = np.flatnonzero(latent_rows)
    if idx.size:
        latent, failed = _guarded(predictor.latent, spectra[idx], what="encoder", task=task)
        flags[idx[failed]] |= CatalogueFlag.MODEL_FAILED
        for k in range(d):
            cols[f"z{k}"][idx] = latent[:, k]
            cols[f"z{k}_Error"][idx] = latent[:, d + k]
        age_rows &= ~np.isin(np.arange(n), idx[failed])
        pos = np.searchsorted(idx, np.flatnonzero(age_rows))
        if pos.size:
            sub = labels.iloc[np.flatnonzero(age_rows)]

            def forest(rows: np.ndarray) -> np.ndarray:
                return np.column_stack(predictor.ages(latent[pos][rows], sub.iloc[rows]))

            res, failed_age = _guarded(forest, np.arange(pos.size), what="forest", task=task)
            where = np.flatnonzero(age_rows)
            flags[where[failed_age]] |= CatalogueFlag.MODEL_FAILED
            cols["LogAge"][where] = res[:, 0]
            cols["LogAge_Error"][where] = res[:, 1]
            cols["LogAge_Lower"][where] = res[:, 2]
            cols["LogAge_Upper"][where] = res[:, 3]
            cols["Applicability"][where] = res[:, 4]
            if cuts.max_applicability is not None:
                with np.errstate(invalid="ignore"):
                    outside = where[res[:, 4] > cuts.max_applicability]
                flags[outside] |= CatalogueFlag.OUTSIDE_TRAINING
                if outside.size:
                    logger.warning("OUTSIDE_TRAINING on %d stars", outside.size)
    if has_ages:
        cols["Age"] = 10.0 ** cols["LogAge"]
        cols["Age_Error"] = np.log(10.0) * cols["Age"] * cols["LogAge_Error"]
        cols["Age_Lower"] = 10.0 ** cols["LogAge_Lower"]
        cols["Age_Upper"] = 10.0 ** cols["LogAge_Upper"]
    cols["SKAGES_FLAG"] = flags
    cols[_SPECTRA_SHA256] = spectra_digest  # stored in the chunk's metadata, not a column
    return cols


def _guarded(fn, rows: np.ndarray, *, what: str, task: _Task) -> tuple[np.ndarray, np.ndarray]:
    """``fn(rows)``; if it raises, retry row by row: NaN and a failure mark where it fails."""
    try:
        out = np.asarray(fn(rows), dtype=np.float64)
        return out, np.zeros(len(rows), dtype=bool)
    except (ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
        logger.warning(
            "chunk %d (rows %d-%d): the %s failed (%s); retrying row by row",
            task.index,
            task.start,
            task.stop - 1,
            what,
            exc,
        )
    parts, failed = [], np.zeros(len(rows), dtype=bool)
    for i in range(len(rows)):
        try:
            parts.append(np.asarray(fn(rows[i : i + 1]), dtype=np.float64))
        except (ValueError, TypeError, RuntimeError, FloatingPointError) as exc:
            failed[i] = True
            parts.append(None)
            logger.warning("row %d: the %s failed: %s", task.start + i, what, exc)
    width = next((p.shape[1] for p in parts if p is not None), 1)
    out = np.vstack([p if p is not None else np.full((1, width), np.nan) for p in parts])
    return out, failed


def _predict_chunk_task(model: Any, source: _Source, task: _Task, cuts: CatalogueCuts) -> dict:
    """Dask task: one chunk, with the worker's thread count left to Dask."""
    return _predict_chunk(model, source, task, cuts)
