"""The age pipeline: encoder + Teff/[Fe/H] passthrough + probabilistic forest, and age scorers.

:func:`make_age_pipeline` returns a plain :class:`sklearn.pipeline.Pipeline`::

    Pipeline([
        ("features", ColumnTransformer([
            ("encoder", SpectrumToPSDEncoder(output_std=True), <spectrum columns>),
            ("passthrough", "passthrough", [teff, fe_h, teff_err, fe_h_err]),
        ])),
        ("forest", ProbabilisticForestRegressor(error_columns=<z*_std, *_err pairs>)),
    ])

Its input ``X`` holds the spectrum's pixels first and then the label columns, as
:func:`make_age_frame` builds it (a DataFrame with columns ``flux_0000`` … and
``teff, fe_h, teff_err, fe_h_err``) or the same layout as a numpy array. Its
target ``y`` is log10 of the age in Gyr. The PSDs reach the encoder and the age
uncertainties reach the forest through scikit-learn's metadata routing, which
must be enabled (``sklearn.set_config(enable_metadata_routing=True)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from astropy.stats import mad_std
from sklearn import get_config
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRequest

from skages._units import _check_teff, _is_quantity, _to_value

__all__ = [
    "LABEL_COLUMNS",
    "LABEL_ERROR_COLUMNS",
    "age_bias",
    "age_bias_scorer",
    "age_scatter",
    "age_scatter_scorer",
    "age_trust",
    "applicability_score",
    "fit_age_model",
    "make_age_frame",
    "make_age_pipeline",
    "spectrum_feature_names",
    "z_width_scorer",
]

logger = logging.getLogger(__name__)

#: Label columns passed to the forest beside the latent space, and their errors.
LABEL_COLUMNS: tuple[str, ...] = ("teff", "fe_h")
LABEL_ERROR_COLUMNS: tuple[str, ...] = ("teff_err", "fe_h_err")

_ROUTING_HELP = (
    "the age pipeline routes the PSDs to the encoder and the age errors to the forest "
    "through scikit-learn's metadata routing; enable it first with "
    "sklearn.set_config(enable_metadata_routing=True)"
)


def _require_routing() -> None:
    if not get_config()["enable_metadata_routing"]:
        raise RuntimeError(_ROUTING_HELP)


# ------------------------------------------------------------------ the inputs


def spectrum_feature_names(n_pixels: int = 7514) -> list[str]:
    """Column names of the spectrum pixels in an age frame: ``flux_0000`` …

    Parameters
    ----------
    n_pixels : int, default=7514
        Number of pixels (the gap-removed APOGEE grid has 7514).

    Returns
    -------
    list of str
    """
    width = max(4, len(str(n_pixels - 1)))
    return [f"flux_{i:0{width}d}" for i in range(n_pixels)]


def make_age_frame(
    spectra: Any,
    labels: Any,
    *,
    label_columns: Sequence[str] = LABEL_COLUMNS,
    error_columns: Sequence[str] = LABEL_ERROR_COLUMNS,
):
    """Build the pipeline's input: spectrum pixels, then labels, then their errors.

    Parameters
    ----------
    spectra : array-like of shape (n_stars, n_pixels)
        Continuum-normalised spectra (dimensionless); NaN = masked pixel.
    labels : pandas.DataFrame or mapping of arrays
        Must hold ``label_columns`` (Teff in K, [Fe/H] in dex by default) and
        ``error_columns`` (their 1σ uncertainties, same units), one row per star.
        astropy Quantities are converted to those units (Teff in °C too); a Teff
        outside 2,500-10,000 K is refused (°C? -9999 sentinel?).
    label_columns, error_columns : sequence of str
        Names of the label columns and of their error columns, in matching order.

    Returns
    -------
    pandas.DataFrame of shape (n_stars, n_pixels + 2 * n_labels)
        Float32 pixel columns ``flux_0000`` … followed by the label and error
        columns (float64).
    """
    import pandas as pd

    spectra = np.asarray(spectra, dtype=np.float32)
    if spectra.ndim != 2:
        raise ValueError(f"spectra must be 2-D (n_stars, n_pixels); got shape {spectra.shape}")
    if len(label_columns) != len(error_columns):
        raise ValueError(
            f"label_columns {list(label_columns)} and error_columns {list(error_columns)} "
            "must pair one error column with each label"
        )
    missing = [c for c in (*label_columns, *error_columns) if c not in labels]
    if missing:
        raise ValueError(
            f"labels has no column(s) {missing}; it needs {list(label_columns)} "
            f"and their errors {list(error_columns)}"
        )
    lab = {
        c: _label_values(labels[c], c, interval=c in error_columns)
        for c in (*label_columns, *error_columns)
    }
    for name, values in lab.items():
        if values.shape != (spectra.shape[0],):
            raise ValueError(
                f"labels[{name!r}] has shape {values.shape}; expected ({spectra.shape[0]},), "
                "one value per spectrum"
            )
    for name in error_columns:
        if np.any(lab[name] < 0):
            raise ValueError(f"labels[{name!r}] has negative uncertainties")
    if "teff" in label_columns:
        _check_teff(lab["teff"], "labels['teff']")
    pixels = pd.DataFrame(spectra, columns=spectrum_feature_names(spectra.shape[1]), copy=False)
    return pd.concat([pixels, pd.DataFrame(lab)], axis=1)


#: Units of the label columns skages knows (astropy spelling), for Quantity inputs.
_LABEL_UNITS = {"teff": "K", "teff_err": "K", "fe_h": "dex", "fe_h_err": "dex"}


def _label_values(values: Any, name: str, *, interval: bool) -> np.ndarray:
    """A label column as float64 in its unit; Quantities converted, unknown ones refused."""
    unit = _LABEL_UNITS.get(name)
    if _is_quantity(values) and unit is None:
        raise ValueError(
            f"labels[{name!r}] is a Quantity in {values.unit}, but skages knows the unit "
            f"only of {sorted(_LABEL_UNITS)}; pass plain numbers in the model's unit"
        )
    return _to_value(values, unit or "", f"labels[{name!r}]", interval=interval)


# --------------------------------------------------------------- the pipeline


def make_age_pipeline(
    encoder: Any = None,
    forest: Any = None,
    *,
    n_pixels: int = 7514,
    label_columns: Sequence[str] = LABEL_COLUMNS,
    error_columns: Sequence[str] = LABEL_ERROR_COLUMNS,
    freeze_encoder: bool = False,
) -> Pipeline:
    """The paper's age model as one scikit-learn Pipeline.

    Parameters
    ----------
    encoder : SpectrumToPSDEncoder, optional
        The encoder-decoder; a default :class:`~skages.encoder.SpectrumToPSDEncoder`
        if None. It is cloned unless ``freeze_encoder``, and always set to
        ``output_std=True`` so that the latent σ reaches the forest.
    forest : ProbabilisticForestRegressor, optional
        The age forest; a default :class:`~skages.forest.ProbabilisticForestRegressor`
        if None. Cloned; its ``error_columns`` are set to ``"auto"``, which pairs each
        latent mean with its σ and each label with its error by name, and
        ``missing_target="ignore"`` so that stars without an age (NaN ``y``) train the
        encoder only.
    n_pixels : int, default=7514
        Number of spectrum columns at the start of ``X``.
    label_columns, error_columns : sequence of str
        Names of the label columns that follow the spectrum in ``X`` (Teff in K and
        [Fe/H] in dex by default) and of their error columns, which follow the labels
        (:func:`make_age_frame`'s layout). With a numpy ``X`` the same layout is assumed
        and these names label the features. Each error column name must be its label's
        name plus ``_err`` (or ``_std``).
    freeze_encoder : bool, default=False
        Wrap an already fitted ``encoder`` in :class:`sklearn.frozen.FrozenEstimator`:
        fitting the pipeline then fits the forest only, and a
        :class:`~sklearn.model_selection.GridSearchCV` over it tunes the forest
        (the paper's two-stage training). With False, fitting the pipeline fits the
        encoder too (on every row, aged or not, with ``psd`` routed) and a search can
        tune it by cross-validation.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``features`` (a ColumnTransformer with transformers ``encoder`` and
        ``passthrough``) and ``forest``. ``fit(X, y, psd=..., psd_weight=..., y_err=...)``
        routes ``psd`` and ``psd_weight`` to the encoder and ``y_err`` to the forest;
        ``predict(X, return_std=True)`` returns log10 ages (log10 Gyr) and their
        calibrated 1σ uncertainties; ``predict(X, quantiles=(0.16, 0.84))`` adds the
        bounds of the 68 % interval (log10 Gyr), from the out-of-bag residuals.

    Raises
    ------
    RuntimeError
        If scikit-learn's metadata routing is not enabled.
    """
    from sklearn.frozen import FrozenEstimator
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils.validation import check_is_fitted

    from skages.encoder import SpectrumToPSDEncoder
    from skages.forest import ProbabilisticForestRegressor

    _require_routing()
    if n_pixels < 1:
        raise ValueError(f"n_pixels must be >= 1; got {n_pixels}")
    encoder = SpectrumToPSDEncoder() if encoder is None else encoder
    forest = ProbabilisticForestRegressor() if forest is None else clone(forest)
    if freeze_encoder:
        check_is_fitted(
            encoder,
            msg="freeze_encoder=True needs an encoder that is already "
            "fitted: call encoder.fit(spectra, psd=psd) first",
        )
        if not encoder.output_std:
            raise ValueError(
                "the frozen encoder was built with output_std=False; the forest needs the "
                "latent σ: create it with SpectrumToPSDEncoder(output_std=True, ...)"
            )
        encoder_step: Any = FrozenEstimator(encoder)
    else:
        encoder_step = clone(encoder).set_params(output_std=True)
        encoder_step.set_fit_request(psd=True, psd_weight=True)
    # The forest pairs its value and error columns by name ("auto": encoder__z0 with
    # encoder__z0_std, passthrough__teff with passthrough__teff_err), so a search may vary
    # latent_dim; the feature step therefore always hands the forest a DataFrame.
    forest.set_params(error_columns="auto", missing_target="ignore")
    forest.set_fit_request(
        y_err=True,
        sample_weight=True,
        calibration_mask=True,
        calibration_groups=True,
        X_err=False,
    )
    forest.set_predict_request(return_std=True, X_err=False, quantiles=True)

    names = _label_feature_names(label_columns, error_columns)
    passthrough = FunctionTransformer(
        feature_names_out=partial(_fixed_feature_names, names=names), validate=False
    )
    features = ColumnTransformer(
        [
            ("encoder", encoder_step, slice(0, n_pixels)),
            ("passthrough", passthrough, slice(n_pixels, n_pixels + len(names))),
        ],
        remainder="drop",
    ).set_output(transform="pandas")
    return Pipeline([("features", features), ("forest", forest)])


def _label_feature_names(label_columns: Sequence[str], error_columns: Sequence[str]) -> list[str]:
    labels, errors = list(label_columns), list(error_columns)
    if len(labels) != len(errors):
        raise ValueError(
            f"label_columns {labels} and error_columns {errors} must pair one error column "
            "with each label"
        )
    for label, err in zip(labels, errors, strict=True):
        if err.lower() not in (f"{label}_err".lower(), f"{label}_std".lower()):
            raise ValueError(
                f"error column {err!r} must be named {label + '_err'!r} (or '_std') so that "
                f"the forest pairs it with {label!r}"
            )
    return labels + errors


def _fixed_feature_names(transformer: Any, input_features: Any, *, names: Sequence[str]):
    """``feature_names_out`` of the label passthrough: the label names, whatever X is."""
    return np.asarray(names, dtype=object)


def fit_age_model(
    spectra: Any,
    psd: Any,
    labels: Any,
    *,
    encoder: Any = None,
    forest: Any = None,
    psd_weight: Any = None,
    forest_stars: str = "precise",
    random_state: Any = None,
    verbose: int = 0,
    freeze_encoder: bool = False,
    calibration_fraction: float = 0.2,
) -> Pipeline:
    """Train the age model in the paper's two stages and return it as one Pipeline.

    1. The encoder learns from every spectrum-PSD pair but those of the calibration stars.
    2. The forest learns latent space + Teff + [Fe/H] -> log10 age from the stars with a
       (precise) seismic age, with the latent σ and the label errors as input errors and
       ``log_age_err`` as target errors. Its σ is calibrated on the out-of-bag residuals
       of the calibration stars only: a random ``calibration_fraction`` of its stars
       that the encoder never saw, whose latent coordinates are as good as a new star's.
       With an ``evstate`` label for every forest star, each evolutionary state, as a
       classifier predicts it from the forest's inputs, gets its own σ scale
       (``calibration_groups`` of :meth:`ProbabilisticForestRegressor.fit
       <skages.forest.ProbabilisticForestRegressor.fit>`).

    Parameters
    ----------
    spectra : array-like of shape (n_stars, n_pixels)
        Continuum-normalised spectra; NaN = masked pixel.
    psd : array-like of shape (n_stars, 2092)
        Natural-log PSDs on :func:`skages.seismology.frequency_grid`; NaN = masked.
    labels : pandas.DataFrame
        One row per star with ``teff`` (K), ``fe_h`` (dex), ``teff_err``, ``fe_h_err``,
        ``log_age`` (log10 Gyr; NaN without a seismic age), ``log_age_err``, and
        optionally ``numax`` (µHz, for the loss weights), ``precise_age`` (bool) and
        ``evstate`` (the seismic evolutionary state, e.g. "RGB" or "RC").
    encoder : SpectrumToPSDEncoder, optional
        Unfitted encoder to train (cloned); the released defaults if None.
    forest : ProbabilisticForestRegressor, optional
        Forest to train (cloned); defaults if None.
    psd_weight : array-like of shape (n_stars, 2092), optional
        Loss weights; from :func:`skages.seismology.numax_weights` of ``labels["numax"]``
        (µHz) when that column exists (then ``psd`` must be on the 2092-bin grid), else
        uniform.
    forest_stars : {"precise", "aged"}, default="precise"
        Train the forest on the stars flagged ``precise_age`` (the paper's ~1,200
        stars with precise ages; falls back to all aged stars if the column is absent)
        or on every star with a finite ``log_age``.
    random_state : int, optional
        Seeds the encoder and the forest when they are created here.
    verbose : int, default=0
        Progress of the encoder's training.
    freeze_encoder : bool, default=False
        ``encoder`` is already fitted (e.g. the published model through
        :meth:`SpectrumToPSDEncoder.from_astronn
        <skages.encoder.SpectrumToPSDEncoder.from_astronn>`): skip stage 1 and train
        the forest only, on top of it. ``psd`` and ``psd_weight`` are then unused (may
        be None). The encoder is not modified (a copy gets ``output_std=True``).
    calibration_fraction : float, default=0.2
        Fraction of the forest's stars held out of the encoder's training to calibrate
        σ and the quantile intervals (they still train the forest). The out-of-bag
        residuals of stars the encoder was trained on understate a new star's error (on
        the default demo: out-of-bag age scatter 39 % on the red giant branch against 46 %
        held out), so σ calibrated on them is too small. 0 calibrates on every forest
        star (the paper's setting); ignored with ``freeze_encoder`` (the encoder saw
        none of these stars, or all: skages cannot tell) and for a forest without
        bootstrap or calibration. Fewer than 50 calibration stars: every star is used,
        with a logged warning.

    Returns
    -------
    sklearn.pipeline.Pipeline
        The fitted pipeline of :func:`make_age_pipeline`, with a frozen encoder.
    """
    import sklearn

    from skages._ages import training_log_ages
    from skages.encoder import SpectrumToPSDEncoder
    from skages.forest import ProbabilisticForestRegressor, _oob_calibrated
    from skages.seismology import N_BINS, numax_weights

    if forest_stars not in ("precise", "aged"):
        raise ValueError(f"forest_stars must be 'precise' or 'aged'; got {forest_stars!r}")
    for col in ("log_age", "log_age_err", *LABEL_COLUMNS, *LABEL_ERROR_COLUMNS):
        if col not in labels:
            raise ValueError(f"labels has no column {col!r}, which the age model needs")
    # before the encoder's (long) training: ages in the wrong unit are refused at once
    y = training_log_ages(labels["log_age"], where="fit_age_model", column="labels['log_age']")
    spectra = np.asarray(spectra, dtype=np.float32)
    if forest is None:
        forest = ProbabilisticForestRegressor(random_state=random_state)
    if not 0.0 <= calibration_fraction < 1.0:
        raise ValueError(f"calibration_fraction must be in [0, 1); got {calibration_fraction!r}")
    names = spectrum_feature_names(spectra.shape[1])
    X = make_age_frame(spectra, labels)
    use = np.isfinite(y)
    if forest_stars == "precise" and "precise_age" in labels:
        use &= np.asarray(labels["precise_age"], dtype=bool)
    if not use.any():
        raise ValueError("no star has an age to train the forest on")
    held = np.zeros(len(X), dtype=bool)
    if not freeze_encoder and _oob_calibrated(forest) and calibration_fraction > 0:
        held = _calibration_stars(use, calibration_fraction, random_state)
    if freeze_encoder:
        encoder = _frozen_copy(encoder, names)
    else:
        if encoder is None:
            encoder = SpectrumToPSDEncoder(random_state=random_state, verbose=verbose)
        encoder = clone(encoder).set_params(output_std=True)
        if psd_weight is None and "numax" in labels:
            n_psd = np.shape(psd)[-1] if np.ndim(psd) == 2 else None
            if n_psd != N_BINS:
                raise ValueError(
                    f"psd must be the natural-log PSDs on skages' {N_BINS}-bin grid "
                    f"(skages.seismology.frequency_grid) to derive the loss weights from "
                    f"labels['numax']; got shape {np.shape(psd)}. Compute the PSDs with "
                    "skages.seismology.lightcurve_to_psd, or pass psd_weight= for your grid"
                )
            psd_weight = numax_weights(_to_value(labels["numax"], "uHz", "labels['numax']"))
        seen = ~held if held.any() else slice(None)  # no copies when none is held out
        logger.info(
            "stage 1: encoder on %d spectrum-PSD pairs (%d calibration stars held out)",
            len(X) - int(held.sum()),
            int(held.sum()),
        )
        encoder.fit(
            X.loc[seen, names],
            psd=np.asarray(psd)[seen],
            psd_weight=None if psd_weight is None else np.asarray(psd_weight)[seen],
        )

    logger.info("stage 2: forest on %d stars with ages", int(use.sum()))
    y_err = np.asarray(labels["log_age_err"], dtype=float)
    fit_params = {"y_err": y_err[use]}
    if held.any():
        fit_params["calibration_mask"] = held[use]
    groups = _calibration_groups(forest, labels, use)
    if groups is not None:
        fit_params["calibration_groups"] = groups
    with sklearn.config_context(enable_metadata_routing=True):
        model = make_age_pipeline(encoder, forest, n_pixels=spectra.shape[1], freeze_encoder=True)
        model.fit(X[use], y[use], **fit_params)
    return model


def _calibration_groups(forest: Any, labels: Any, use: np.ndarray) -> np.ndarray | None:
    """The evolutionary states of the forest's stars, for a σ scale per predicted state
    (``calibration_groups``), when the forest calibrates per region and every one of them
    has a state."""
    from skages.forest import _calibrates_per_region, _missing_groups

    if not _calibrates_per_region(forest) or "evstate" not in labels:
        return None
    states = np.asarray(labels["evstate"], dtype=object)[use]
    known = ~_missing_groups(states)
    if not known.all():
        logger.warning(
            "%d of the forest's %d stars have no evolutionary state (labels['evstate']): "
            "σ is calibrated per region of the inputs instead of per state",
            int((~known).sum()),
            states.size,
        )
        return None
    return states.astype(str)


#: Fewer calibration stars than this: the forest calibrates on all its stars instead.
_MIN_CALIBRATION_STARS = 50


def _calibration_stars(use: np.ndarray, fraction: float, random_state: Any) -> np.ndarray:
    """A seeded random ``fraction`` of the ``use`` stars (bool mask over all stars)."""
    from sklearn.utils import check_random_state

    idx = np.flatnonzero(use)
    n = round(fraction * idx.size)
    held = np.zeros(use.size, dtype=bool)
    if n < _MIN_CALIBRATION_STARS:
        logger.warning(
            "calibration_fraction=%s of %d stars with ages is %d stars, fewer than %d: the "
            "encoder trains on every star and σ is calibrated on stars it has seen (likely "
            "too small for new stars)",
            fraction,
            idx.size,
            n,
            _MIN_CALIBRATION_STARS,
        )
        return held
    held[check_random_state(random_state).choice(idx, n, replace=False)] = True
    return held


def _frozen_copy(encoder: Any, names: Sequence[str]) -> Any:
    """A shallow copy of a fitted encoder with ``output_std=True`` that reads the pixel
    columns of :func:`make_age_frame` (an encoder fitted on an array, or read from an
    astroNN folder, has no column names)."""
    import copy

    from sklearn.utils.validation import check_is_fitted

    if encoder is None:
        raise ValueError("freeze_encoder=True needs a fitted encoder")
    check_is_fitted(
        encoder,
        msg="freeze_encoder=True needs an encoder that is already fitted: call "
        "encoder.fit(spectra, psd=psd) first, or SpectrumToPSDEncoder.from_astronn(folder)",
    )
    if encoder.n_features_in_ != len(names):
        raise ValueError(
            f"the encoder reads spectra of {encoder.n_features_in_} pixels; these have "
            f"{len(names)}"
        )
    out = copy.copy(encoder).set_params(output_std=True)
    if not hasattr(out, "feature_names_in_"):
        out.feature_names_in_ = np.asarray(names, dtype=object)
    return out


# -------------------------------------------------------------------- scorers


def applicability_score(model: Any, X: Any) -> np.ndarray:
    """The applicability score of each star under a fitted age Pipeline.

    The forest's :meth:`~skages.forest.ProbabilisticForestRegressor.applicability` on the
    features the Pipeline gives it (latent coordinates, Teff, [Fe/H]): above 1, the star
    lies further from the training stars than all but ``outside_fraction`` of them, and
    its age is an extrapolation.

    Parameters
    ----------
    model : sklearn.pipeline.Pipeline
        A fitted :func:`make_age_pipeline` (or :func:`fit_age_model`) Pipeline.
    X : array-like or DataFrame
        Its inputs, as for ``model.predict`` (:func:`make_age_frame`'s layout).

    Returns
    -------
    ndarray of shape (n_stars,)
        Dimensionless score.
    """
    from sklearn.utils.validation import check_is_fitted

    forest = model[-1]
    check_is_fitted(forest)
    if not hasattr(forest, "applicability"):
        raise TypeError(f"the model's last step has no applicability score: {forest!r}")
    return forest.applicability(model[:-1].transform(X))


def age_trust(
    model: Any,
    X: Any,
    *,
    snr: Any = None,
    thresholds: Any = None,
    max_applicability: float | None = 1.0,
) -> Any:
    """log10 age, its 1σ, the applicability score and the warning flags of each star.

    The Python side of the catalogue's warning bits: the spectrum-quality checks of
    :func:`skages.quality.spectrum_quality` against the encoder's training mean spectrum
    and the applicability score (:func:`applicability_score`).

    Parameters
    ----------
    model : sklearn.pipeline.Pipeline
        A fitted age Pipeline.
    X : DataFrame or ndarray
        Its inputs (:func:`make_age_frame`'s layout: the spectrum then the labels).
    snr : array-like of shape (n_stars,), optional
        S/N of each spectrum (e.g. SNREV) for the noise check; skipped if None.
    thresholds : skages.quality.QualityThresholds, optional
        The quality bounds; the defaults if None.
    max_applicability : float or None, default=1.0
        ``outside_training`` above this score; None never sets it.

    Returns
    -------
    pandas.DataFrame
        Columns ``log_age`` (log10 Gyr), ``log_age_err`` (dex), ``applicability``,
        ``quality_flags`` (:class:`skages.quality.QualityFlag` bits) and
        ``outside_training`` (bool), one row per star.
    """
    import pandas as pd
    from sklearn.frozen import FrozenEstimator

    from skages.quality import spectrum_quality

    encoder = model.named_steps["features"].named_transformers_["encoder"]
    if isinstance(encoder, FrozenEstimator):
        encoder = encoder.estimator
    values = X.to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)
    spectra = values[:, : encoder.n_features_in_].astype(np.float64)
    flags, _ = spectrum_quality(spectra, encoder.mean_, snr=snr, thresholds=thresholds)
    mean, std = model.predict(X, return_std=True)
    score = applicability_score(model, X)
    outside = np.zeros(len(score), bool)
    if max_applicability is not None:
        outside = score > max_applicability
    return pd.DataFrame(
        {
            "log_age": mean,
            "log_age_err": std,
            "applicability": score,
            "quality_flags": flags,
            "outside_training": outside,
        }
    )


def _finite_pairs(y_true: Any, *arrays: Any) -> list[np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    keep = np.isfinite(y)
    if not keep.any():
        raise ValueError("no star with a finite age to score (y_true is all NaN)")
    return [y[keep], *(None if a is None else np.asarray(a, dtype=float)[keep] for a in arrays)]


def age_scatter(y_true: Any, y_pred: Any) -> float:
    """The paper's age scatter: robust std of predicted/true age, in per cent.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_stars,)
        True and predicted log10 ages, log10(Gyr). Stars with NaN ``y_true`` are
        skipped.

    Returns
    -------
    float
        ``100 · mad_std(10**y_pred / 10**y_true)``, %.
    """
    y, p = _finite_pairs(y_true, y_pred)
    return float(100.0 * mad_std(10.0 ** (p - y)))


def age_bias(y_true: Any, y_pred: Any) -> float:
    """Median fractional age offset, ``100 · (median(10**y_pred / 10**y_true) - 1)``, %.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_stars,)
        True and predicted log10 ages, log10(Gyr); NaN ``y_true`` skipped.

    Returns
    -------
    float
    """
    y, p = _finite_pairs(y_true, y_pred)
    return float(100.0 * (np.median(10.0 ** (p - y)) - 1.0))


class _AgeScorer:
    """A scorer (``scorer(estimator, X, y, y_err=None)``) with metadata-routing requests."""

    def __init__(self, kind: str, *, y_err_request: Any = None) -> None:
        self.kind = kind
        self.y_err_request = y_err_request

    def set_score_request(self, *, y_err: Any = None) -> _AgeScorer:
        """Request ``y_err`` (True, False, None or an alias) when used inside a search."""
        return _AgeScorer(self.kind, y_err_request=y_err)

    def get_metadata_routing(self) -> MetadataRequest:
        request = MetadataRequest(owner=type(self).__name__)
        if self.kind == "z_width":
            request.score.add_request(param="y_err", alias=self.y_err_request)
        return request

    def __call__(self, estimator: Any, X: Any, y_true: Any, y_err: Any = None) -> float:
        if self.kind == "z_width":
            from skages.forest import z_score_width

            mean, std = estimator.predict(X, return_std=True)
            y, m, s, e = _finite_pairs(y_true, mean, std, y_err)
            return -abs(z_score_width(y, m, s, e) - 1.0)
        pred = estimator.predict(X)
        if self.kind == "scatter":
            return -age_scatter(y_true, pred)
        return -abs(age_bias(y_true, pred))

    def __repr__(self) -> str:
        return f"{self.kind}_scorer"


#: GridSearchCV scorer: minus :func:`age_scatter` (higher is better).
age_scatter_scorer = _AgeScorer("scatter")
#: GridSearchCV scorer: minus the absolute :func:`age_bias` (higher is better).
age_bias_scorer = _AgeScorer("bias")
#: GridSearchCV scorer: minus |z-score width − 1| (higher is better). Uses the forest's
#: ``predict(X, return_std=True)``; call ``.set_score_request(y_err=True)`` to include
#: the targets' own errors in the z-scores.
z_width_scorer = _AgeScorer("z_width")
