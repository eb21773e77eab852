"""The paper's diagnostics of a fitted age model, with baselines, as a report.

:func:`evaluate_age_model` takes a fitted age Pipeline and a train/test split of a
survey (spectra, PSDs, labels) and measures, on the held-out stars:

- ages against their seismic ages (Leung et al. 2023, Fig. 10), overall, RGB and RC;
- PSD reconstructions (Fig. 3) and PSDs decoded from latent points (Fig. 4);
- the latent space coloured by state, νmax, [Fe/H] and excess Δν (Fig. 5);
- the abundance information left in the latent space (Fig. 7): random forests from
  the latent space to [Fe/H], [α/M] and [C/N];
- seismic parameters from the latent space (Fig. 8): νmax, Δν, excess Δν;
- red clump vs RGB from the latent space (Fig. 9);
- ablations of the age forest's inputs (Figs. 16-17);
- the calibration of the age uncertainties (z-scores);
- two baselines on the same split: a direct spectrum -> age model (PCA + the same
  forest), whose [α/M] leakage it shows, and a "seismic oracle" (the same forest on
  νmax, Δν, Teff and [Fe/H] with their errors), the ceiling of a spectroscopic method.

:meth:`EvaluationReport.write` saves a Markdown report, the figures (PNG) and the
numbers (JSON) to a folder; ``skages evaluate`` does the same from the shell.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from astropy.stats import mad_std
from sklearn.utils import Bunch

from skages._atomic import atomic_path
from skages._latent import latent_numax_track
from skages._version import __version__
from skages.pipeline import age_bias, age_scatter, make_age_frame

__all__ = [
    "EvaluationReport",
    "age_metrics",
    "alpha_residual_slope",
    "alpha_sensitivity",
    "coverage_table",
    "decoder_numax_check",
    "evaluate_age_model",
    "evaluate_saved_model",
    "held_out_split",
    "latent_classification",
    "latent_numax_track",
    "latent_regression",
    "split_indices",
    "split_record",
    "split_survey",
]

logger = logging.getLogger(__name__)

#: Quantities the latent space is asked to predict (Figs. 7 and 8): label column, unit,
#: whether the regression works on log10 of the quantity.
ABUNDANCES = (("fe_h", "dex", False), ("alpha_m", "dex", False), ("c_n", "dex", False))
SEISMIC = (("numax", "µHz", True), ("dnu", "µHz", True), ("excess_dnu", "µHz", False))


#: Leung et al. (2023)'s figures that the report sets this model against: age scatter
#: of RGB and RC stars against APOKASC-2 (Fig. 10), RC vs RGB accuracy from the latent
#: space (Fig. 9), νmax and Δν scatter from the latent space (Fig. 8) and the width of
#: the age z-scores. Each entry: (label, path to the value in the metrics, scale, unit,
#: the paper's value).
PAPER_FIGURES = (
    ("RGB age scatter", ("ages", "latent", "RGB", "scatter_pct"), 1.0, "%", 22.0),
    ("RC age scatter", ("ages", "latent", "RC", "scatter_pct"), 1.0, "%", 11.0),
    ("RC vs RGB accuracy from the latent space", ("state", "accuracy"), 100.0, "%", 94.0),
    ("νmax scatter from the latent space", ("seismic", "numax", "scatter"), 1.0, "%", 10.0),
    ("Δν scatter from the latent space", ("seismic", "dnu", "scatter"), 1.0, "%", 7.0),
    ("age z-score width", ("ages", "latent", "all", "z_width"), 1.0, "", 0.75),
)

#: R² of [α/M] from νmax, Δν and the state alone on the real APOKASC-2 stars (5-fold
#: forest, ``python benchmarks/bench_realism.py``): what a latent space that keeps the
#: seismology knows of [α/M] without reading any abundance.
REAL_ALPHA_R2_FROM_SEISMOLOGY = 0.44

#: How the report names the models whose ages it compares.
MODEL_LABELS = {
    "latent": "this model (latent + Teff + [Fe/H])",
    "latent_vs_true_age": "this model, against the true (simulated) ages",
    "oracle": "seismic oracle (νmax, Δν, Teff, [Fe/H])",
    "mass oracle": "mass oracle (seismic mass, [Fe/H], state)",
    "direct": "direct baseline (PCA of the spectrum)",
}


def _md(text: Any) -> str:
    """Text for one Markdown table cell: ``|`` escaped, no line breaks."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_row(*cells: Any) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def _model_label(name: str) -> str:
    if name.startswith("ablation: "):
        return "ablation: " + name.removeprefix("ablation: ")
    return MODEL_LABELS.get(name, name)


def _lookup(metrics: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


# ----------------------------------------------------------------------- data


#: Survey keys that describe the survey, not its stars: never split.
_SHARED_KEYS = frozenset({"frequency", "wavelength", "metadata", "DESCR"})


def _take(survey: Any, index: np.ndarray) -> Bunch:
    out = Bunch()
    for key, value in survey.items():
        if key == "labels":
            out[key] = value.iloc[index].reset_index(drop=True)
        elif (
            key not in _SHARED_KEYS
            and isinstance(value, np.ndarray)
            and value.ndim >= 1
            and value.shape[0] == len(survey["labels"])
        ):
            out[key] = value[index]
        else:
            out[key] = value
    return out


def split_indices(
    labels: Any, *, test_size: float = 0.3, random_state: Any = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the train and test stars of :func:`split_survey`.

    The split is stratified by evolutionary state and by whether a star has a precise
    age, so both halves keep the survey's mix; it depends only on the labels, the
    fraction and the seed, which is how ``skages evaluate`` recovers the stars that
    ``skages train --test-size`` held out.

    Parameters
    ----------
    labels : pandas.DataFrame
        One row per star with ``evstate`` and optionally ``precise_age``.
    test_size : float, default=0.3
        Fraction of the stars held out, in (0, 1).
    random_state : int, optional
        Seed of the split.

    Returns
    -------
    train, test : ndarray of int
        Sorted row numbers.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be a fraction between 0 and 1; got {test_size}")
    strata = labels["evstate"].astype(str)
    if "precise_age" in labels:
        strata = strata + labels["precise_age"].astype(str)
    index = np.arange(len(labels))
    train, test = train_test_split(
        index, test_size=test_size, random_state=random_state, stratify=strata
    )
    return np.sort(train), np.sort(test)


def split_survey(survey: Any, *, test_size: float = 0.3, random_state: Any = 0):
    """Split a survey Bunch (spectra, psd, labels, ...) into train and test stars.

    The split is stratified by evolutionary state and by whether a star has a precise
    age, so both halves keep the survey's mix (see :func:`split_indices`).

    Parameters
    ----------
    survey : Bunch
        As returned by :func:`skages.datasets.make_apokasc` or
        :func:`skages.io.read_survey` (per-star arrays and a ``labels`` DataFrame).
    test_size : float, default=0.3
        Fraction of the stars held out.
    random_state : int, optional
        Seed of the split.

    Returns
    -------
    train, test : Bunch
        Same keys as ``survey``; per-star arrays and labels restricted to each part.
    """
    train, test = split_indices(survey["labels"], test_size=test_size, random_state=random_state)
    return _take(survey, train), _take(survey, test)


def _encoder(model: Any):
    """The fitted SpectrumToPSDEncoder inside an age Pipeline (unwrapping FrozenEstimator)."""
    from skages.encoder import SpectrumToPSDEncoder

    if isinstance(model, SpectrumToPSDEncoder):
        return model
    encoder = model.named_steps["features"].named_transformers_["encoder"]
    return getattr(encoder, "estimator", encoder)


def _encoder_input(encoder: Any, spectra: Any):
    """Spectra as the encoder was fitted: a named frame if it saw column names."""
    from skages.pipeline import spectrum_feature_names

    spectra = np.asarray(spectra, dtype=np.float32)
    if hasattr(encoder, "feature_names_in_"):
        import pandas as pd

        return pd.DataFrame(spectra, columns=spectrum_feature_names(spectra.shape[1]), copy=False)
    return spectra


def _latent(encoder: Any, spectra: Any) -> np.ndarray:
    """Latent means and σ as a numpy array, whatever the encoder's output container."""
    return np.asarray(encoder.transform(_encoder_input(encoder, spectra)), dtype=float)


def _col(labels: Any, name: str) -> np.ndarray | None:
    return np.asarray(labels[name], dtype=float) if name in labels else None


# ----------------------------------------------------------------- measures


def age_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    y_std: Any = None,
    y_err: Any = None,
    evstate: Any = None,
) -> dict[str, Any]:
    """Age scatter and bias (the paper's statistics), overall and per evolutionary state.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_stars,)
        Reference and predicted log10 ages, log10(Gyr). NaN references are skipped.
    y_std : array-like of shape (n_stars,), optional
        Predicted 1σ (log10 Gyr); adds the z-score width.
    y_err : array-like of shape (n_stars,), optional
        1σ of the reference ages, used in the z-scores.
    evstate : array-like of str, optional
        "RGB" / "RC" per star; adds per-state entries.

    Returns
    -------
    dict
        For ``"all"`` and each state: ``n``, ``scatter_pct`` (robust std of
        predicted/true age, %), ``bias_pct`` (median ratio − 1, %), ``scatter_gyr`` and
        ``bias_gyr`` (robust std and median of predicted − true age, Gyr) and, with
        ``y_std``, ``z_width``.
    """
    from skages.forest import z_score_width

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    groups = {"all": np.isfinite(y) & np.isfinite(p)}
    if evstate is not None:
        states = np.asarray(evstate).astype(str)
        for state in ("RGB", "RC"):
            groups[state] = groups["all"] & (states == state)
    out: dict[str, Any] = {}
    for name, m in groups.items():
        if m.sum() < 3:
            continue
        diff = 10 ** p[m] - 10 ** y[m]
        entry = {
            "n": int(m.sum()),
            "scatter_pct": age_scatter(y[m], p[m]),
            "bias_pct": age_bias(y[m], p[m]),
            "scatter_gyr": float(mad_std(diff)),
            "bias_gyr": float(np.median(diff)),
        }
        if y_std is not None:
            s = np.asarray(y_std, dtype=float)[m]
            e = None if y_err is None else np.asarray(y_err, dtype=float)[m]
            entry["z_width"] = float(z_score_width(y[m], p[m], s, e))
        out[name] = entry
    return out


#: Probabilities of the quantiles :func:`coverage_table` reads: the central 95 % and
#: 68 % intervals.
COVERAGE_QUANTILES = (0.025, 0.16, 0.84, 0.975)


def coverage_table(
    y_true: Any,
    y_pred: Any,
    y_std: Any,
    y_err: Any = None,
    *,
    groups: Any = None,
    quantiles: Any = None,
) -> Any:
    """Coverage of 1σ and 2σ intervals on stars with reference values.

    With z = (prediction − reference) / √(σ² + σ_ref²), the fraction of stars with
    :math:`|z| < 1` and :math:`|z| < 2` (0.683 and 0.954 for calibrated Gaussian
    uncertainties) and the z width (:func:`~skages.forest.z_score_width`), overall and
    per group; with ``quantiles``, also the coverage of the central 68 % and 95 %
    quantile intervals.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_stars,)
        Reference and predicted values (e.g. log10 age, log10(Gyr)). NaN is skipped.
    y_std : array-like of shape (n_stars,)
        1σ of the predictions, units of ``y_pred``; non-negative.
    y_err : array-like of shape (n_stars,), optional
        1σ of the references, same units; zero when not given.
    groups : array-like of shape (n_stars,), optional
        A group label per star (e.g. the evolutionary state "RGB" / "RC").
    quantiles : array-like of shape (n_stars, 4), optional
        The prediction's quantiles at :data:`COVERAGE_QUANTILES` (0.025, 0.16, 0.84,
        0.975), units of ``y_pred``, e.g. from ``predict(X, return_std=True,
        quantiles=COVERAGE_QUANTILES)``. A star is inside an interval when its z lies
        between the interval's bounds expressed in units of σ, so that the reference's
        error widens it as it widens the Gaussian one (with ``y_err`` zero: when the
        reference lies between the bounds).

    Returns
    -------
    pandas.DataFrame
        Index ``"all"`` then each group (sorted); columns ``n``, ``within_1``,
        ``within_2`` (fractions), ``z_width`` and, with ``quantiles``, ``in_68`` and
        ``in_95`` (fractions).

    Examples
    --------
    >>> import numpy as np
    >>> from skages.evaluation import coverage_table
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=20_000)
    >>> table = coverage_table(truth, truth + rng.normal(size=truth.size), np.ones(truth.size))
    >>> table.loc["all", ["within_1", "within_2"]].round(2).tolist()
    [0.68, 0.95]
    """
    import pandas as pd

    from skages.forest import z_score_width

    y, p, s = (np.asarray(a, dtype=float) for a in (y_true, y_pred, y_std))
    e = np.zeros_like(y) if y_err is None else np.asarray(y_err, dtype=float)
    if not y.shape == p.shape == s.shape == e.shape or y.ndim != 1:
        raise ValueError(
            "y_true, y_pred, y_std and y_err must be 1-D of one length; got shapes "
            f"{y.shape}, {p.shape}, {s.shape}, {e.shape}"
        )
    if (s < 0).any() or (e < 0).any():
        raise ValueError("y_std and y_err must be non-negative (standard deviations)")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p - y) / np.sqrt(s**2 + e**2)
    ok = np.isfinite(z)
    inside = {}
    if quantiles is not None:
        q = np.asarray(quantiles, dtype=float)
        if q.shape != (y.size, len(COVERAGE_QUANTILES)):
            raise ValueError(
                f"quantiles must have shape ({y.size}, {len(COVERAGE_QUANTILES)}) (the "
                f"prediction's quantiles at {COVERAGE_QUANTILES}); got {q.shape}"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            bounds = (q - p[:, None]) / s[:, None]  # in σ, about the prediction
        ok &= np.isfinite(bounds).all(axis=1)
        inside = {
            "in_68": (bounds[:, 1] < -z) & (-z < bounds[:, 2]),
            "in_95": (bounds[:, 0] < -z) & (-z < bounds[:, 3]),
        }
    masks = {"all": ok}
    if groups is not None:
        g = np.asarray(groups).astype(str)
        if g.shape != y.shape:
            raise ValueError(f"groups must have shape {y.shape}; got {g.shape}")
        masks.update({name: ok & (g == name) for name in sorted(set(g[ok]))})
    rows = {}
    for name, m in masks.items():
        n = int(m.sum())
        rows[name] = {
            "n": n,
            "within_1": float(np.mean(np.abs(z[m]) < 1)) if n else np.nan,
            "within_2": float(np.mean(np.abs(z[m]) < 2)) if n else np.nan,
            "z_width": z_score_width(y[m], p[m], s[m], e[m]) if n else np.nan,
        }
        for key, values in inside.items():
            rows[name][key] = float(np.mean(values[m])) if n else np.nan
    return pd.DataFrame.from_dict(rows, orient="index")


def decoder_numax_check(
    encoder: Any,
    spectra: Any,
    *,
    psd: Any = None,
    numax: Any = None,
    max_log_ratio: float = 0.1,
) -> dict[str, Any]:
    """The decoder as a check (Leung et al. 2023, §6.1): νmax of the decoded PSD against
    the observed one.

    A star whose spectrum decodes to a PSD with another νmax than its own light curve's
    is one the encoder reads wrongly; the rate of such mismatches on stars with a PSD
    (training, evaluation) says how often that happens.

    Parameters
    ----------
    encoder : SpectrumToPSDEncoder or age Pipeline
        The fitted encoder (or a Pipeline holding it).
    spectra : array-like of shape (n_stars, n_pixels)
        Continuum-normalised spectra.
    psd : array-like of shape (n_stars, 2092), optional
        Observed natural-log PSDs; νmax is measured on them with the same estimator
        (:func:`~skages.seismology.estimate_numax`), so that its bias cancels.
    numax : array-like of shape (n_stars,), optional
        Observed νmax (µHz) when no PSD is given.
    max_log_ratio : float, default=0.1
        A mismatch is ``|log10(νmax_decoded / νmax_observed)| > max_log_ratio`` (dex).

    Returns
    -------
    dict
        ``numax_decoded``, ``numax_observed`` (µHz), ``log_ratio`` (dex), ``mismatch``
        (bool per star) and ``mismatch_rate`` (over stars with both values).
    """
    from skages.seismology import estimate_numax

    if (psd is None) == (numax is None):
        raise ValueError("give exactly one of psd (observed log PSDs) or numax (µHz)")
    enc = _encoder(encoder)
    decoded = np.atleast_2d(estimate_numax(enc.predict_psd(_encoder_input(enc, spectra))))
    decoded = decoded.reshape(-1)
    if psd is not None:
        observed = np.asarray(estimate_numax(np.asarray(psd, dtype=float)), float).reshape(-1)
    else:
        observed = np.asarray(numax, dtype=float).reshape(-1)
    if observed.shape != decoded.shape:
        raise ValueError(
            f"psd/numax must have one entry per spectrum ({decoded.size}); got {observed.size}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log10(decoded / observed)
    ok = np.isfinite(log_ratio)
    mismatch = ok & (np.abs(log_ratio) > max_log_ratio)
    return {
        "numax_decoded": decoded,
        "numax_observed": observed,
        "log_ratio": log_ratio,
        "mismatch": mismatch,
        "mismatch_rate": float(mismatch.sum() / ok.sum()) if ok.any() else float("nan"),
    }


def latent_regression(
    z_train: Any,
    target_train: Any,
    z_test: Any,
    target_test: Any,
    *,
    log: bool = False,
    random_state: Any = 0,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """How well the latent space predicts a quantity (the paper's Figs. 7 and 8).

    A random forest (scikit-learn, 200 trees) learns the quantity from the latent
    means of the training stars and predicts the test stars.

    Parameters
    ----------
    z_train, z_test : array-like of shape (n, latent_dim)
        Latent means.
    target_train, target_test : array-like of shape (n,)
        The quantity (NaN skipped), in its unit.
    log : bool, default=False
        Learn log10 of the quantity and report the scatter as a fractional (%) one.
    random_state : int, optional
    n_jobs : int, optional

    Returns
    -------
    dict
        ``r2`` (coefficient of determination on the test stars; ≤ 0 means no better
        than the mean), ``scatter`` (robust std of predicted − true, in the quantity's
        unit, or % with ``log``), ``n_test`` and the test ``prediction``/``truth``.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    zt, tt = np.asarray(z_train, float), np.asarray(target_train, float)
    zs, ts = np.asarray(z_test, float), np.asarray(target_test, float)
    if log:
        tt, ts = np.log10(tt), np.log10(ts)
    mt, ms = np.isfinite(tt), np.isfinite(ts)
    forest = RandomForestRegressor(
        n_estimators=200, min_samples_leaf=5, random_state=random_state, n_jobs=n_jobs
    ).fit(zt[mt], tt[mt])
    pred = forest.predict(zs[ms])
    resid = pred - ts[ms]
    scatter = 100 * mad_std(10**resid - 1) if log else mad_std(resid)
    return {
        "r2": float(r2_score(ts[ms], pred)),
        "scatter": float(scatter),
        "n_test": int(ms.sum()),
        "prediction": 10**pred if log else pred,
        "truth": 10 ** ts[ms] if log else ts[ms],
    }


def latent_classification(
    z_train: Any,
    state_train: Any,
    z_test: Any,
    state_test: Any,
    *,
    random_state: Any = 0,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """Red clump vs RGB from the latent space (the paper's Fig. 9).

    Parameters
    ----------
    z_train, z_test : array-like of shape (n, latent_dim)
        Latent means.
    state_train, state_test : array-like of str
        "RGB" or "RC".
    random_state, n_jobs
        Of the random-forest classifier (300 trees).

    Returns
    -------
    dict
        ``accuracy``, ``confusion`` (rows true, columns predicted, order ``labels``) and
        ``labels``.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, confusion_matrix

    labels = ["RGB", "RC"]
    clf = RandomForestClassifier(
        n_estimators=300, min_samples_leaf=3, random_state=random_state, n_jobs=n_jobs
    ).fit(np.asarray(z_train, float), np.asarray(state_train).astype(str))
    truth = np.asarray(state_test).astype(str)
    pred = clf.predict(np.asarray(z_test, float))
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "confusion": confusion_matrix(truth, pred, labels=labels).tolist(),
        "labels": labels,
    }


def alpha_residual_slope(residual: Any, alpha_m: Any, log_age_true: Any) -> dict[str, float]:
    """Slope of age residuals against [α/M] at fixed true age.

    Fits ``residual = a + b·[α/M] + c·log_age_true`` by least squares. Beware: any age
    model that regresses towards the mean shows b ≠ 0 when [α/M] correlates with age
    in the population, even one that never sees an abundance (the seismic oracle
    does); compare models with each other, or use :func:`alpha_sensitivity`.

    Parameters
    ----------
    residual : array-like
        Predicted − true log10 age, log10(Gyr).
    alpha_m : array-like
        [α/M], dex.
    log_age_true : array-like
        True log10 age, log10(Gyr).

    Returns
    -------
    dict
        ``slope`` (log10 age per dex), its standard error ``slope_err`` and
        ``significance``.
    """
    r, a, t = (np.asarray(v, dtype=float) for v in (residual, alpha_m, log_age_true))
    m = np.isfinite(r) & np.isfinite(a) & np.isfinite(t)
    design = np.column_stack([np.ones(m.sum()), a[m], t[m]])
    coef, *_ = np.linalg.lstsq(design, r[m], rcond=None)
    resid = r[m] - design @ coef
    cov = np.linalg.inv(design.T @ design) * (resid @ resid) / max(m.sum() - 3, 1)
    slope, err = float(coef[1]), float(np.sqrt(cov[1, 1]))
    return {"slope": slope, "slope_err": err, "significance": slope / err}


def alpha_sensitivity(
    predict: Any, spectra: Any, labels: Any, *, delta: float = 0.1
) -> dict[str, Any]:
    """How much an age model's answer moves when only a star's [α/M] lines change.

    Simulated stars are re-observed with [α/M] raised by ``delta`` and everything else
    (Teff, log g, [Fe/H], [C/N], noise, masks) unchanged
    (:func:`skages.datasets.counterfactual_spectra`). A model that learned age from
    the spectrum's [α/M] (an abundance that correlates with age in the Galaxy, but
    does not set a star's age) predicts α-enhanced stars older: a positive derivative.
    A model that reads age through the seismic bottleneck should not move.

    Parameters
    ----------
    predict : callable
        ``predict(spectra) -> log10 ages`` (log10 Gyr) of the model under test.
    spectra : array-like of shape (n_stars, 7514)
        Simulated spectra.
    labels : pandas.DataFrame
        Their simulator labels (with the true-label columns).
    delta : float, default=0.1
        The [α/M] shift, dex.

    Returns
    -------
    dict
        ``derivative`` (median d log10 age / d[α/M], dex per dex), ``mean``, its
        standard error ``sem``, ``significance`` (mean / sem), the ``delta`` used and
        the per-star ``per_star`` derivatives.
    """
    from skages.datasets import counterfactual_spectra

    shifted = counterfactual_spectra(spectra, labels, alpha_m=delta)
    d = (np.asarray(predict(shifted), float) - np.asarray(predict(spectra), float)) / delta
    d = d[np.isfinite(d)]
    sem = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    mean = float(np.mean(d))
    return {
        "derivative": float(np.median(d)),
        "mean": mean,
        "sem": sem,
        "significance": mean / sem
        if sem > 0
        else (0.0 if mean == 0 else np.copysign(np.inf, mean)),
        "delta": float(delta),
        "per_star": d,
    }


def _seismic_reference(lab_t, lab_s, mu_train, mu_test, *, random_state, n_jobs):
    """How much [α/M] seismology alone implies, and what the latent space adds to it.

    In a Galaxy where α-rich stars are old and hence of low mass, νmax, Δν and the
    evolutionary state predict [α/M] in part. A latent space that has learned the
    seismology inherits that; abundance information *beyond* it is what must be absent.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import r2_score

    def seismic(lab):
        return np.column_stack(
            [
                np.log10(_col(lab, "numax")),
                np.log10(_col(lab, "dnu")),
                (lab["evstate"].astype(str) == "RC").to_numpy(float),
            ]
        )

    a_t, a_s = _col(lab_t, "alpha_m"), _col(lab_s, "alpha_m")
    S_t, S_s = seismic(lab_t), seismic(lab_s)
    mt = np.isfinite(a_t) & np.isfinite(S_t).all(axis=1)
    ms = np.isfinite(a_s) & np.isfinite(S_s).all(axis=1)
    forest = RandomForestRegressor(
        n_estimators=200, min_samples_leaf=5, random_state=random_state, n_jobs=n_jobs
    ).fit(S_t[mt], a_t[mt])
    r2_seismic = float(r2_score(a_s[ms], forest.predict(S_s[ms])))
    # out-of-bag-free residuals on the training stars: cross-validated predictions
    from sklearn.model_selection import cross_val_predict

    resid_t = np.full(a_t.shape, np.nan)
    resid_t[mt] = a_t[mt] - cross_val_predict(forest, S_t[mt], a_t[mt], cv=5)
    resid_s = np.full(a_s.shape, np.nan)
    resid_s[ms] = a_s[ms] - forest.predict(S_s[ms])
    beyond = latent_regression(
        mu_train, resid_t, mu_test, resid_s, random_state=random_state, n_jobs=n_jobs
    )
    return {"r2_from_seismology": r2_seismic, "r2_beyond_seismology": beyond["r2"]}


# ----------------------------------------------------------------- baselines


def _label_frame(labels: Any, columns: list[tuple[str, str | None]]):
    import pandas as pd

    data = {}
    for value, error in columns:
        data[value] = np.asarray(labels[value], dtype=float)
        if error is not None:
            data[f"{value}_err"] = np.asarray(labels[error], dtype=float)
    return pd.DataFrame(data)


def _fit_predict_forest(forest: Any, X_train, y, y_err, X_test):
    from sklearn.base import clone

    has_errors = any(str(c).endswith(("_err", "_std")) for c in X_train.columns)
    f = clone(forest).set_params(
        error_columns="auto" if has_errors else None, missing_target="error"
    )
    f.fit(X_train, y, y_err=y_err)
    return f.predict(X_test, return_std=True)


def _direct_baseline(train, test, use, forest, n_components, random_state):
    """PCA of the spectra + the same forest, trained on the same aged stars.

    Returns the test predictions (mean, σ) and a ``spectra -> log age`` predictor.
    """
    import pandas as pd
    from sklearn.base import clone
    from sklearn.decomposition import PCA

    def clean(spectra):
        return np.nan_to_num(np.asarray(spectra, dtype=np.float32), nan=1.0)

    pca = PCA(n_components=n_components, random_state=random_state).fit(clean(train.spectra))
    cols = [f"pc{i}" for i in range(n_components)]

    def features(spectra):
        return pd.DataFrame(pca.transform(clean(spectra)), columns=cols)

    lab = train.labels.iloc[np.flatnonzero(use)]
    fitted = clone(forest).set_params(error_columns=None, missing_target="error")
    fitted.fit(
        features(train.spectra[use]),
        lab["log_age"].to_numpy(),
        y_err=lab["log_age_err"].to_numpy(),
    )
    mean, std = fitted.predict(features(test.spectra), return_std=True)
    return (mean, std), (lambda spectra: fitted.predict(features(spectra)))


def _oracle_baseline(train, test, use, forest):
    """The same forest on νmax, Δν (observed, with errors), Teff and [Fe/H]."""
    cols = [("numax", "numax_err"), ("dnu", "dnu_err"), ("teff", "teff_err"), ("fe_h", "fe_h_err")]
    lab = train.labels.iloc[np.flatnonzero(use)]
    Xt = _label_frame(lab, cols)
    Xs = _label_frame(test.labels, cols)
    return _fit_predict_forest(
        forest, Xt, lab["log_age"].to_numpy(), lab["log_age_err"].to_numpy(), Xs
    )


def _state_references(train, test, *, random_state, n_jobs) -> dict[str, float]:
    """RC vs RGB accuracy of the same classifier on other inputs, for scale.

    ``psd``: 20 principal components of the PSDs themselves (what the encoder is asked
    to reproduce); ``labels``: Teff, log g, [C/N] and [Fe/H] (what the spectra say
    about the state through their labels).
    """
    from sklearn.decomposition import PCA

    out = {}
    state_t, state_s = train.labels["evstate"], test.labels["evstate"]
    if "psd" in train and "psd" in test:

        def filled(psd):
            return np.where(np.isfinite(psd), psd, 0.0)

        pca = PCA(n_components=20, random_state=random_state).fit(filled(train.psd))
        out["psd"] = latent_classification(
            pca.transform(filled(train.psd)),
            state_t,
            pca.transform(filled(test.psd)),
            state_s,
            random_state=random_state,
            n_jobs=n_jobs,
        )["accuracy"]
    cols = ["teff", "logg", "c_n", "fe_h"]
    if set(cols) <= set(train.labels.columns) & set(test.labels.columns):
        Xt, Xs = (np.asarray(lab[cols], dtype=float) for lab in (train.labels, test.labels))
        ok_t, ok_s = np.isfinite(Xt).all(axis=1), np.isfinite(Xs).all(axis=1)
        out["labels"] = latent_classification(
            Xt[ok_t],
            np.asarray(state_t)[ok_t],
            Xs[ok_s],
            np.asarray(state_s)[ok_s],
            random_state=random_state,
            n_jobs=n_jobs,
        )["accuracy"]
    return out


def _mass_oracle_baseline(train, test, use, forest):
    """The forest on the seismic mass (with its error), [Fe/H] and the true state.

    A stronger reference than :func:`_oracle_baseline`: the scaling relations combine
    νmax, Δν and Teff into a mass that trees cannot rebuild from ~1,000 stars, and the
    state is given. Its scatter is the floor set by the seismic mass errors.
    """
    lab_t = train.labels.iloc[np.flatnonzero(use)].assign(
        is_rc=lambda d: (d["evstate"].astype(str) == "RC").astype(float)
    )
    lab_s = test.labels.assign(is_rc=(test.labels["evstate"].astype(str) == "RC").astype(float))
    from skages.forest import TargetErrorsOverCoverWarning

    cols = [("mass", "mass_err"), ("fe_h", "fe_h_err"), ("is_rc", None)]
    with warnings.catch_warnings():
        # the reference ages are computed from the very mass this forest reads, so their
        # errors over-cover its residuals by construction: the forest's warning says nothing
        # the report does not
        warnings.simplefilter("ignore", TargetErrorsOverCoverWarning)
        return _fit_predict_forest(
            forest,
            _label_frame(lab_t, cols),
            lab_t["log_age"].to_numpy(),
            lab_t["log_age_err"].to_numpy(),
            _label_frame(lab_s, cols),
        )


def _ablation(z_train, z_test, train, test, use, forest):
    """The age forest on other input sets than the model's (Figs. 16-17)."""
    import pandas as pd

    latent_dim = z_train.shape[1] // 2
    steps = [
        ("latent", []),
        ("latent + Teff", [("teff", "teff_err")]),
        # latent + Teff + [Fe/H] is the model itself (reported as "latent"): not refitted
        (
            "latent + Teff + [Fe/H] + [α/M]",
            [("teff", "teff_err"), ("fe_h", "fe_h_err"), ("alpha_m", "alpha_m_err")],
        ),
    ]
    names = [f"z{i}" for i in range(latent_dim)] + [f"z{i}_std" for i in range(latent_dim)]
    lab_t = train.labels.iloc[np.flatnonzero(use)].reset_index(drop=True)
    out = {}
    for name, cols in steps:
        if any(c not in train.labels or e not in train.labels for c, e in cols):
            continue
        Xt = pd.concat(
            [pd.DataFrame(z_train[use], columns=names), _label_frame(lab_t, cols)], axis=1
        )
        Xs = pd.concat(
            [pd.DataFrame(z_test, columns=names), _label_frame(test.labels, cols)], axis=1
        )
        out[name] = _fit_predict_forest(
            forest, Xt, lab_t["log_age"].to_numpy(), lab_t["log_age_err"].to_numpy(), Xs
        )
    return out


# -------------------------------------------------------------------- report


@dataclass
class EvaluationReport:
    """Numbers and figures of :func:`evaluate_age_model`.

    Attributes
    ----------
    metrics : dict
        Nested, JSON-serialisable numbers (see :func:`evaluate_age_model`).
    figures : dict of str to matplotlib.figure.Figure
        One figure per diagnostic, keyed by a short name (the PNG's file name).
    """

    metrics: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines with the headline numbers."""
        m = self.metrics
        lines = []
        ages = m["ages"]["latent"]
        for state in ("all", "RGB", "RC"):
            if state in ages:
                a = ages[state]
                lines.append(
                    f"age scatter {state:>3}: {a['scatter_pct']:5.1f} % "
                    f"(bias {a['bias_pct']:+5.1f} %, n = {a['n']})"
                )
        if "oracle" in m["ages"]:
            lines.append(
                f"seismic oracle scatter: {m['ages']['oracle']['all']['scatter_pct']:.1f} % "
                f"(latent / oracle = {m['goals']['scatter_over_oracle']:.2f})"
            )
        if "mass oracle" in m["ages"]:
            lines.append(
                "mass oracle (seismic mass, [Fe/H], state) scatter: "
                f"{m['ages']['mass oracle']['all']['scatter_pct']:.1f} %"
            )
        if "z_width" in ages["all"]:
            lines.append(f"z-score width: {ages['all']['z_width']:.2f}")
        refs = m["state"].get("references", {})
        lines.append(
            f"RC vs RGB from the latent space: {100 * m['state']['accuracy']:.1f} %"
            + "".join(
                f"; from the {name}: {100 * acc:.1f} %"
                for name, acc in (
                    ("PSDs", refs.get("psd")),
                    ("labels Teff, log g, [C/N], [Fe/H]", refs.get("labels")),
                )
                if acc is not None
            )
        )
        if "alpha_m" in m["abundances"]:
            lines.append(
                f"[α/M] from the latent space: R² = {m['abundances']['alpha_m']['r2']:.3f}"
            )
        return "\n".join(lines)

    def paper_comparison(self) -> list[dict[str, Any]]:
        """This model's figures beside Leung et al. (2023)'s (:data:`PAPER_FIGURES`).

        Returns
        -------
        list of dict
            ``quantity``, ``value`` (None where not measured), ``paper`` and ``unit``.
        """
        rows = []
        for label, path, scale, unit, paper in PAPER_FIGURES:
            value = _lookup(self.metrics, path)
            rows.append(
                {
                    "quantity": label,
                    "value": None if value is None else scale * value,
                    "paper": paper,
                    "unit": unit,
                }
            )
        return rows

    def figure_notes(self) -> list[str]:
        """Sentences on what the figures show, above all the goals they show missed."""
        m = self.metrics
        notes = []
        where = {
            "latent age scatter / oracle scatter": "ablation.png",
            "[α/M] R² from the latent space": "latent_abundances.png",
            "[α/M] R² beyond what νmax, Δν and state imply": "latent_abundances.png",
            "z-score width": "z_scores.png",
            "RC vs RGB accuracy": "state_confusion.png",
            "direct baseline: |d log age / d[α/M]| significance": "alpha_leakage.png",
            "latent / direct |d log age / d[α/M]|": "alpha_leakage.png",
        }
        for name, g in m["goal_checks"].items():
            if not g["met"]:
                notes.append(
                    f"Missed ({where.get(name, 'see the figures')}): {name} is "
                    f"{g['value']:.3g}, against the goal {g['target']}."
                )
        track = m.get("psd_from_latent")
        if track and track.get("stated"):
            stated = np.asarray(track["stated"], float)
            got = np.asarray(track["obtained"], float)
            off = np.abs(got / stated - 1)
            sentence = (
                f"psd_from_latent.png: PSDs decoded along the data are meant to have νmax "
                f"from {stated.min():.0f} to {stated.max():.0f} µHz and have "
                f"{np.nanmin(got):.0f} to {np.nanmax(got):.0f} µHz"
            )
            if not np.all(off <= 0.2):
                sentence += (
                    f"; {int(np.sum(~(off <= 0.2)))} of {len(off)} are more than 20 % off, so "
                    "the latent space does not carry νmax to the decoder over the whole range "
                    "(missed)."
                )
            else:
                sentence += ", each within 20 %."
            notes.append(sentence)
        ages = m["ages"]["latent"]
        for state in ("RGB", "RC"):
            if state in ages and abs(ages[state]["bias_pct"]) > 10:
                a = ages[state]
                notes.append(
                    f"ages.png: {state} ages are biased by {a['bias_pct']:+.1f} % (median "
                    "predicted / reference age − 1): their points lie "
                    f"{'below' if a['bias_pct'] < 0 else 'above'} the diagonal."
                )
        z = m.get("z_score_median")
        if z is not None and abs(z) > 0.1:
            notes.append(
                f"z_scores.png: the z-scores centre on {z:+.2f}, not 0: the predicted ages "
                f"are {'older' if z > 0 else 'younger'} than the reference ages on average, "
                "by more than a tenth of their uncertainty."
            )
        return notes

    def to_markdown(self, figure_dir: str = "figures") -> str:
        """The report as Markdown, linking the PNGs in ``figure_dir``."""
        from skages.plotting import LABELS

        m = self.metrics
        out = [
            "# skages evaluation report",
            "",
            f"skages {m['skages_version']}; {m['n_train']} training stars "
            f"({m['n_forest']} with ages for the forest), {m['n_test']} held-out stars "
            f"({m['n_test_aged']} with reference ages).",
            "",
            "## This model vs the paper",
            "",
            "| quantity | this model | Leung et al. (2023) |",
            "|---|---|---|",
        ]
        for row in self.paper_comparison():
            unit = f" {row['unit']}" if row["unit"] else ""
            value = "not measured" if row["value"] is None else f"{row['value']:.3g}{unit}"
            out.append(_md_row(row["quantity"], value, f"{row['paper']:g}{unit}"))
        out += [
            "",
            "The paper's figures are for its released model (150 encoder epochs, about "
            "10,000 APOGEE DR17 - Kepler stars, ages from APOKASC-2); this model's are "
            "measured on the held-out stars of this run.",
            "",
            "```",
            self.summary(),
            "```",
            "",
            "## Ages (Fig. 10)",
            "",
            "| model | stars | scatter (%) | bias (%) | scatter (Gyr) | bias (Gyr) | z width |",
            "|---|---|---|---|---|---|---|",
        ]
        for model, per_state in m["ages"].items():
            for state, a in per_state.items():
                out.append(
                    _md_row(
                        _model_label(model),
                        f"{state} (n={a['n']})",
                        f"{a['scatter_pct']:.1f}",
                        f"{a['bias_pct']:+.1f}",
                        f"{a['scatter_gyr']:.2f}",
                        f"{a['bias_gyr']:+.2f}",
                        f"{a.get('z_width', float('nan')):.2f}",
                    )
                )
        out += _coverage_markdown(m)
        out += ["", "## Goals", "", "| goal | value | target | met |", "|---|---|---|---|"]
        for name, g in m["goal_checks"].items():
            out.append(
                _md_row(name, f"{g['value']:.3f}", g["target"], "yes" if g["met"] else "no")
            )
        notes = self.figure_notes()
        if notes:
            out += ["", "What the figures show:", ""] + [f"- {note}" for note in notes]
        out += ["", "## Latent space", "", "| quantity | R² | scatter |", "|---|---|---|"]
        for group in ("abundances", "seismic"):
            for name, r in m[group].items():
                unit = "%" if r.get("log") else r.get("unit", "")
                out.append(
                    _md_row(LABELS.get(name, name), f"{r['r2']:.3f}", f"{r['scatter']:.3g} {unit}")
                )
        alpha = m["abundances"].get("alpha_m", {})
        if "r2_from_seismology" in alpha:
            out += [
                "",
                f"νmax, Δν and evolutionary state alone predict [α/M] with R² = "
                f"{alpha['r2_from_seismology']:.3f} (old stars are α-rich and of low mass; "
                f"on the real APOKASC-2 stars {REAL_ALPHA_R2_FROM_SEISMOLOGY}, "
                "benchmarks/bench_realism.py): the more precisely a latent space carries "
                "the seismology (the mass above all), the more [α/M] it predicts without "
                f"reading an α line. What it knows of [α/M] beyond them: R² = "
                f"{alpha['r2_beyond_seismology']:.3f}.",
            ]
        s = m["state"]
        labels = list(s["labels"])
        out += [
            "",
            f"RC vs RGB from the latent space: {100 * s['accuracy']:.1f} % correct "
            "(stars; rows: true state, columns: predicted state):",
            "",
            _md_row("true \\ predicted", *labels),
            "|---" * (len(labels) + 1) + "|",
        ]
        for label, counts in zip(labels, s["confusion"], strict=True):
            out.append(_md_row(label, *counts))
        out += [
            "",
            "## [α/M] leakage: d log10 age / d[α/M] when only the α lines change",
            "",
            "| model | median (dex/dex) | mean ± sem | significance |",
            "|---|---|---|---|",
        ]
        for name, leak in m["alpha_sensitivity"].items():
            out.append(
                _md_row(
                    _model_label(name),
                    f"{leak['derivative']:+.3f}",
                    f"{leak['mean']:+.3f} ± {leak['sem']:.3f}",
                    f"{leak['significance']:+.1f}",
                )
            )
        if m.get("alpha_residual_slope"):
            out += [
                "",
                "Residual slope against [α/M] at fixed true age (all held-out stars; the "
                "oracle, which sees no abundance, shows what regression to the mean alone "
                "produces):",
                "",
                "| model | slope (dex/dex) | σ |",
                "|---|---|---|",
            ]
            for name, sl in m["alpha_residual_slope"].items():
                out.append(
                    _md_row(_model_label(name), f"{sl['slope']:+.3f}", f"{sl['slope_err']:.3f}")
                )
        out += ["", "## Figures", ""]
        for name in self.figures:
            out += [f"### {name}", "", f"![{name}]({figure_dir}/{name}.png)", ""]
        return "\n".join(out)

    def write(self, output_dir: str | PathLike, *, dpi: int = 110) -> Path:
        """Write ``report.md``, ``metrics.json`` and ``figures/*.png`` to a folder.

        Returns
        -------
        pathlib.Path
            The Markdown report.
        """
        output_dir = Path(output_dir)
        fig_dir = output_dir / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        for name, fig in self.figures.items():
            with atomic_path(fig_dir / f"{name}.png") as tmp:
                fig.savefig(tmp, dpi=dpi, format="png")
        with atomic_path(output_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(self.metrics, indent=1, default=_jsonable))
        report = output_dir / "report.md"
        with atomic_path(report) as tmp:
            tmp.write_text(self.to_markdown())
        return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


# ---------------------------------------------------------------------- main


def evaluate_age_model(
    model: Any,
    train: Any,
    test: Any,
    *,
    baselines: bool = True,
    figures: bool = True,
    n_components: int = 20,
    random_state: Any = 0,
    n_jobs: int | None = None,
    cuts: Any = None,
) -> EvaluationReport:
    """Run the paper's diagnostics of a fitted age model on held-out stars.

    Parameters
    ----------
    model : sklearn.pipeline.Pipeline
        A fitted age model (:func:`skages.pipeline.fit_age_model`).
    train : Bunch
        The stars the model was trained on (``spectra``, ``psd``, ``labels``; see
        :func:`split_survey`); the latent-space regressions and the baselines learn
        from them.
    test : Bunch
        Held-out stars. Ages are scored on those with a finite ``log_age`` (and, if the
        column exists, against ``log_age_true`` too).
    baselines : bool, default=True
        Also fit the direct spectrum -> age baseline and the seismic oracle.
    figures : bool, default=True
        Make the figures (matplotlib).
    n_components : int, default=20
        Principal components of the direct baseline.
    random_state : int, optional
        Seeds the auxiliary forests.
    n_jobs : int, optional
        Threads of the auxiliary forests.
    cuts : skages.catalogue.CatalogueCuts, optional
        The catalogue's cuts (``CatalogueCuts()`` for the paper's): the report then also
        counts the held-out stars that a catalogue would date under them and scores both
        sets (``metrics["catalogue_cuts"]``). ``skages evaluate`` and ``skages demo``
        pass the default cuts.

    Returns
    -------
    EvaluationReport
        ``metrics`` holds ``ages`` (per model: ``latent``, ``oracle``, ``direct``,
        ``latent_vs_true_age``, ablations; each with all/RGB/RC statistics),
        ``abundances`` and ``seismic`` (R² and scatter from the latent space),
        ``state`` (RC vs RGB), ``alpha_sensitivity`` (simulated surveys only),
        ``goals`` and ``goal_checks`` (the issue's quality goals, with whether each is
        met).
    """
    from sklearn.base import clone

    from skages.forest import _oob_calibrated

    encoder = _encoder(model)
    forest = model.named_steps["forest"]
    lab_t, lab_s = train.labels, test.labels
    if "precise_age" in lab_t:
        use = np.isfinite(_col(lab_t, "log_age")) & lab_t["precise_age"].to_numpy(bool)
    else:
        use = np.isfinite(_col(lab_t, "log_age"))

    logger.info("encoding %d training and %d test spectra", len(lab_t), len(lab_s))
    z_train = _latent(encoder, train.spectra)
    z_test = _latent(encoder, test.spectra)
    latent_dim = encoder.latent_dim
    mu_train, mu_test = z_train[:, :latent_dim], z_test[:, :latent_dim]

    y_s, y_err_s = _col(lab_s, "log_age"), _col(lab_s, "log_age_err")
    if "precise_age" in lab_s:
        # score against the precise ages only, the kind the forest learned from; the
        # others carry errors too large to measure a 10-20 % scatter against
        y_s = np.where(lab_s["precise_age"].to_numpy(bool), y_s, np.nan)
    state_s = lab_s["evstate"].astype(str).to_numpy()
    X_test = make_age_frame(test.spectra, lab_s)
    quantiles = None
    if _oob_calibrated(forest):
        mean, std, quantiles = model.predict(X_test, return_std=True, quantiles=COVERAGE_QUANTILES)
    else:  # no out-of-bag residuals to take quantiles from
        mean, std = model.predict(X_test, return_std=True)
    ages: dict[str, Any] = {
        "latent": age_metrics(y_s, mean, y_std=std, y_err=y_err_s, evstate=state_s)
    }
    preds: dict[str, tuple[np.ndarray, np.ndarray]] = {"latent": (mean, std)}
    true_age = _col(lab_s, "log_age_true")
    if true_age is not None:
        ages["latent_vs_true_age"] = age_metrics(true_age, mean, y_std=std, evstate=state_s)

    if baselines:
        base_forest = clone(forest)
        logger.info("baselines: seismic oracle and direct spectrum -> age")
        preds["oracle"] = _oracle_baseline(train, test, use, base_forest)
        preds["direct"], direct_predict = _direct_baseline(
            train, test, use, base_forest, n_components, random_state
        )
        if {"mass", "mass_err"} <= set(lab_t.columns) & set(lab_s.columns):
            preds["mass oracle"] = _mass_oracle_baseline(train, test, use, base_forest)
        for name in ("oracle", "mass oracle", "direct"):
            if name not in preds:
                continue
            m, s = preds[name]
            ages[name] = age_metrics(y_s, m, y_std=s, y_err=y_err_s, evstate=state_s)
        for name, (m, s) in _ablation(z_train, z_test, train, test, use, base_forest).items():
            ages[f"ablation: {name}"] = age_metrics(
                y_s, m, y_std=s, y_err=y_err_s, evstate=state_s
            )
            preds[f"ablation: {name}"] = (m, s)

    abundances, seismic = {}, {}
    for group, items in ((abundances, ABUNDANCES), (seismic, SEISMIC)):
        for name, unit, log in items:
            if name in lab_t and name in lab_s:
                r = latent_regression(
                    mu_train,
                    _col(lab_t, name),
                    mu_test,
                    _col(lab_s, name),
                    log=log,
                    random_state=random_state,
                    n_jobs=n_jobs,
                )
                r.update(unit=unit, log=log)
                group[name] = r
    if "alpha_m" in abundances and {"numax", "dnu"} <= set(lab_t.columns):
        seismic_info = _seismic_reference(
            lab_t, lab_s, mu_train, mu_test, random_state=random_state, n_jobs=n_jobs
        )
        abundances["alpha_m"].update(seismic_info)
    state = latent_classification(
        mu_train, lab_t["evstate"], mu_test, state_s, random_state=random_state, n_jobs=n_jobs
    )
    if baselines:
        state["references"] = _state_references(
            train, test, random_state=random_state, n_jobs=n_jobs
        )

    leakage = {}
    if baselines and "alpha_m_true" in lab_s and "alpha_m" in lab_s:
        # the counterfactual test needs simulated stars; real surveys skip it
        aged = np.flatnonzero(np.isfinite(y_s))
        spectra_aged, lab_aged = test.spectra[aged], lab_s.iloc[aged].reset_index(drop=True)

        def latent_predict(spectra):
            return model.predict(make_age_frame(spectra, lab_aged))

        for name, predict in (("latent", latent_predict), ("direct", direct_predict)):
            leakage[name] = alpha_sensitivity(predict, spectra_aged, lab_aged)
    slopes = {}
    if true_age is not None and "alpha_m" in lab_s:
        for name in ("latent", "direct", "oracle"):
            if name in preds:
                slopes[name] = alpha_residual_slope(
                    preds[name][0] - true_age, _col(lab_s, "alpha_m"), true_age
                )

    goals = {}
    checks = {}
    if "oracle" in ages:
        ratio = ages["latent"]["all"]["scatter_pct"] / ages["oracle"]["all"]["scatter_pct"]
        goals["scatter_over_oracle"] = ratio
        checks["latent age scatter / oracle scatter"] = {
            "value": ratio,
            "target": "≤ 1.2",
            "met": bool(ratio <= 1.2),
        }
    if "alpha_m" in abundances:
        r2 = abundances["alpha_m"]["r2"]
        checks["[α/M] R² from the latent space"] = {
            "value": r2,
            "target": "≤ 0.05",
            "met": bool(r2 <= 0.05),
        }
        if "r2_beyond_seismology" in abundances["alpha_m"]:
            beyond = abundances["alpha_m"]["r2_beyond_seismology"]
            checks["[α/M] R² beyond what νmax, Δν and state imply"] = {
                "value": beyond,
                "target": "≤ 0.05",
                "met": bool(beyond <= 0.05),
            }
    if "z_width" in ages["latent"]["all"]:
        w = ages["latent"]["all"]["z_width"]
        checks["z-score width"] = {"value": w, "target": "0.9-1.1", "met": bool(0.9 <= w <= 1.1)}
    checks["RC vs RGB accuracy"] = {
        "value": state["accuracy"],
        "target": "≥ 0.90",
        "met": bool(state["accuracy"] >= 0.9),
    }
    if "direct" in leakage:
        sig = abs(leakage["direct"]["significance"])
        checks["direct baseline: |d log age / d[α/M]| significance"] = {
            "value": sig,
            "target": "> 3 (plainly visible)",
            "met": bool(sig > 3),
        }
        ratio = abs(leakage["latent"]["derivative"]) / max(
            abs(leakage["direct"]["derivative"]), 1e-12
        )
        checks["latent / direct |d log age / d[α/M]|"] = {
            "value": ratio,
            "target": "< 1 (less leakage than the direct model)",
            "met": bool(ratio < 1),
        }

    track = None
    numax_s = _col(lab_s, "numax")
    if numax_s is not None and np.isfinite(numax_s).sum() >= 2:
        track = latent_numax_track(encoder, mu_test, numax_s)
    z_median = None
    if "z_width" in ages["latent"].get("all", {}):
        ok = np.isfinite(y_s) & np.isfinite(mean) & np.isfinite(std)
        e = np.zeros_like(y_s) if y_err_s is None else np.nan_to_num(y_err_s)
        z = (mean[ok] - y_s[ok]) / np.sqrt(std[ok] ** 2 + e[ok] ** 2)
        z_median = float(np.median(z)) if z.size else None

    metrics = {
        "skages_version": __version__,
        "n_train": len(lab_t),
        "n_forest": int(use.sum()),
        "n_test": len(lab_s),
        "n_test_aged": int(np.isfinite(y_s).sum()),
        "ages": ages,
        "abundances": {k: _strip(v) for k, v in abundances.items()},
        "seismic": {k: _strip(v) for k, v in seismic.items()},
        "state": state,
        "alpha_sensitivity": {k: _strip(v) for k, v in leakage.items()},
        "alpha_residual_slope": slopes,
        "goals": goals,
        "goal_checks": checks,
        "z_score_median": z_median,
    }
    if track is not None:
        metrics["psd_from_latent"] = {k: track[k] for k in ("stated", "obtained", "n")}
    metrics["coverage"] = _coverage_metrics(y_s, mean, std, y_err_s, state_s, quantiles)
    if true_age is not None:  # a simulated survey: every held-out star, no reference noise
        metrics["coverage_true_age"] = _coverage_metrics(
            true_age, mean, std, None, state_s, quantiles
        )
    dated = {} if cuts is None else _catalogue_cut_metrics(cuts, lab_s, y_s, mean, state_s)
    if dated:
        metrics["catalogue_cuts"] = dated
    report = EvaluationReport(metrics=metrics)
    if figures:
        report.figures = _figures(
            encoder,
            test,
            lab_s,
            y_s,
            preds,
            mu_test,
            abundances,
            seismic,
            state,
            ages,
            leakage,
            random_state,
            track,
        )
        if metrics["coverage"].get("all", {}).get("n"):
            from skages.plotting import plot_reliability

            report.figures["reliability"] = plot_reliability(
                y_s, mean, std, y_err_s, groups=state_s
            ).figure
    return report


def _coverage_markdown(m: dict[str, Any]) -> list[str]:
    """The report's coverage table and the counts under the catalogue's cuts."""
    out: list[str] = []
    coverage = m.get("coverage") or {}
    if coverage:
        out += [
            "",
            "## Coverage of the uncertainties (held-out stars with reference ages)",
            "",
            "z = (predicted − reference) / √(σ² + σ_ref²); calibrated: 68.3 % within 1, "
            "95.4 % within 2 (goals 68 ± 3 % and 95 ± 2 % per state). The quantile "
            "intervals are the forest's `predict(quantiles=...)` (LogAge_Lower / "
            "LogAge_Upper in the catalogue), widened by the reference's error as σ is.",
            "",
            *_coverage_rows(coverage),
        ]
    true_coverage = m.get("coverage_true_age") or {}
    if true_coverage:
        n_all = true_coverage.get("all", {}).get("n", 0)

        def binomial(table: dict) -> float:  # 1σ of a 68 % fraction, smallest state, %
            n = min((c["n"] for k, c in table.items() if k != "all"), default=0) or n_all
            return 100 * np.sqrt(0.683 * 0.317 / max(n, 1))

        out += [
            "",
            f"Against the true (simulated) ages of all {n_all} held-out stars (σ_ref = 0): "
            "the same test without reference-age noise on every held-out star, so each "
            f"fraction is good to ±{binomial(true_coverage):.1f} % (binomial 1σ at 68 %, "
            f"per state) against ±{binomial(coverage):.1f} % above.",
            "",
            *_coverage_rows(true_coverage),
        ]
    cuts = m.get("catalogue_cuts")
    if cuts:
        scored, dated = cuts["scored"], cuts["dated"]
        out += [
            "",
            f"Under the catalogue's default cuts ({cuts['cuts']}), {dated['n']} of the "
            f"{scored['n']} scored stars would get an age ({dated['n_RGB']} of "
            f"{scored['n_RGB']} RGB, {dated['n_RC']} of {scored['n_RC']} RC); age scatter "
            f"{_pct(scored['scatter_pct'])} over the scored stars, {_pct(dated['scatter_pct'])} "
            "over the dated ones.",
        ]
    return out


def _coverage_rows(coverage: dict[str, Any]) -> list[str]:
    """A coverage table (:func:`_coverage_metrics`) as markdown lines, header first."""
    rows = [
        "| state | stars | \\|z\\| < 1 (%) | 68 % interval (%) | \\|z\\| < 2 (%) "
        "| 95 % interval (%) | z width |",
        "|---|---|---|---|---|---|---|",
    ]
    for state, c in coverage.items():
        rows.append(
            _md_row(
                state,
                c["n"],
                f"{100 * c['within_1']:.1f}",
                _pct_or_na(c.get("in_68")),
                f"{100 * c['within_2']:.1f}",
                _pct_or_na(c.get("in_95")),
                f"{c['z_width']:.2f}",
            )
        )
    return rows


def _pct_or_na(fraction: Any) -> str:
    return "n/a" if fraction is None or not np.isfinite(fraction) else f"{100 * fraction:.1f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _coverage_metrics(y, mean, std, y_err, state, quantiles=None) -> dict[str, Any]:
    """:func:`coverage_table` of the held-out stars with reference ages, as a dict."""
    ok = np.isfinite(y)
    if not ok.any():
        return {}
    e = None if y_err is None else np.nan_to_num(y_err)[ok]
    q = None if quantiles is None else np.asarray(quantiles)[ok]
    table = coverage_table(y[ok], mean[ok], std[ok], e, groups=state[ok], quantiles=q)
    return {
        str(k): {c: int(v) if c == "n" else float(v) for c, v in row.items()}
        for k, row in table.iterrows()
    }


def _catalogue_cut_metrics(cuts, labels, y, mean, state) -> dict[str, Any]:
    """How many scored held-out stars the catalogue's cuts would date, and the age
    scatter of both sets (the report scores every star with a reference age)."""
    logg = _col(labels, "logg")
    snr = _col(labels, "snrev")
    snr = _col(labels, "snr") if snr is None else snr
    if logg is None or snr is None:
        return {}
    _, dated = cuts.select(logg, snr)
    scored = np.isfinite(y) & np.isfinite(mean)
    out: dict[str, Any] = {
        "cuts": {k: v for k, v in cuts.to_dict().items() if "logg" in k or "snr" in k}
    }
    for name, m in (("scored", scored), ("dated", scored & dated)):
        entry: dict[str, Any] = {"n": int(m.sum())}
        for st in ("RGB", "RC"):
            entry[f"n_{st}"] = int((m & (state == st)).sum())
        entry["scatter_pct"] = age_scatter(y[m], mean[m]) if m.sum() >= 3 else None
        out[name] = entry
    return out


def _read_rows(path: Path, max_stars: int | None) -> Bunch:
    """Spectra, PSDs and labels of a survey file (or its first ``max_stars`` rows)."""
    from skages.io import SurveyReader, read_survey

    with SurveyReader(path) as reader:
        missing = [a for a in ("spectra", "psd") if a not in reader.arrays]
    if missing:
        raise ValueError(
            f"{path} has no {missing} array(s); the evaluation compares latent space and "
            "PSDs, so it needs a survey simulated with PSDs (skages simulate without --no-psd)"
        )
    return read_survey(path, rows=slice(0, max_stars), arrays=("spectra", "psd"))


def held_out_split(training: dict[str, Any], labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Recover the train/test rows a model was trained with, from its metadata.

    Parameters
    ----------
    training : dict
        The ``training`` entry of the model's metadata, as written by
        ``skages train --test-size`` or :func:`skages.demo.run_demo`: ``split`` holds
        ``test_size``, ``seed``, ``n_train`` and ``train_sha256``.
    labels : pandas.DataFrame
        Labels of the survey the model was trained from (its first ``max_stars`` rows).

    Returns
    -------
    train, test : ndarray of int

    Raises
    ------
    ValueError
        If the model records no held-out split, or the survey is not the one it was
        trained on.
    """
    split = training.get("split")
    if not split:
        raise ValueError(
            "this model records no held-out stars (it was trained on the whole survey), "
            "so evaluating it on that survey would be optimistic: train it with "
            "'skages train --test-size 0.3', or give a separate survey with --test-survey"
        )
    train, test = split_indices(
        labels, test_size=float(split["test_size"]), random_state=int(split["seed"])
    )
    if len(train) != int(split["n_train"]) or _rows_digest(train) != split["train_sha256"]:
        raise ValueError(
            "this survey does not reproduce the model's training split (different stars, "
            "order or size): evaluate the model on the survey it was trained from"
        )
    return train, test


def _rows_digest(rows: np.ndarray) -> str:
    """SHA-256 of a set of row numbers: identifies a training split."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


def split_record(labels: Any, *, test_size: float, seed: int) -> tuple[np.ndarray, dict]:
    """Train rows and the metadata that lets :func:`held_out_split` recover the split."""
    train, test = split_indices(labels, test_size=test_size, random_state=seed)
    record = {
        "test_size": float(test_size),
        "seed": int(seed),
        "n_train": len(train),
        "n_test": len(test),
        "train_sha256": _rows_digest(train),
    }
    return train, record


def evaluate_saved_model(
    model: str | PathLike,
    survey: str | PathLike,
    output_dir: str | PathLike | None = None,
    *,
    test_survey: str | PathLike | None = None,
    baselines: bool = True,
    random_state: Any = 0,
    n_jobs: int | None = None,
    trusted: Sequence[str] | None = None,
    cuts: Any = None,
) -> EvaluationReport:
    """Evaluate a saved model on the stars it did not see, and write the report.

    Parameters
    ----------
    model : path-like
        A model file from :func:`skages.persistence.save_model` (``skages train``).
    survey : path-like
        The HDF5 survey the model was trained from (spectra, psd, labels). Unless
        ``test_survey`` is given, the held-out stars are the ones the model's metadata
        records (``skages train --test-size``).
    output_dir : path-like, optional
        Where to write ``report.md``, ``metrics.json`` and ``figures/``.
    test_survey : path-like, optional
        A separate held-out survey; then every star of ``survey`` counts as training.
    baselines, random_state, n_jobs, cuts
        As for :func:`evaluate_age_model`.
    trusted : bool or sequence of str, optional
        As for :func:`skages.persistence.load_model`: True to load a ``.joblib``
        (pickle) model file; for a ``.skops`` file, extra type names to trust.

    Returns
    -------
    EvaluationReport
    """
    from skages.persistence import load_model

    fitted, metadata = load_model(model, trusted=trusted)
    training = metadata.get("training") or {}
    max_stars = training.get("max_stars")
    data = _read_rows(Path(survey), max_stars)
    if test_survey is not None:
        train, test = data, _read_rows(Path(test_survey), None)
    else:
        train_idx, test_idx = held_out_split(training, data.labels)
        train, test = _take(data, train_idx), _take(data, test_idx)
    logger.info(
        "evaluating on %d held-out stars (%d training)", len(test.labels), len(train.labels)
    )
    report = evaluate_age_model(
        fitted,
        train,
        test,
        baselines=baselines,
        random_state=random_state,
        n_jobs=n_jobs,
        cuts=cuts,
    )
    if output_dir is not None:
        report.write(output_dir)
    return report


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("prediction", "truth", "per_star")}


def _figures(
    encoder,
    test,
    lab_s,
    y_s,
    preds,
    mu_test,
    abundances,
    seismic,
    state,
    ages,
    leakage,
    random_state,
    track=None,
) -> dict[str, Any]:
    from skages import plotting

    figs = {}
    state_s = lab_s["evstate"].astype(str).to_numpy()
    figs["ages"] = plotting.plot_age_comparison(
        y_s, preds["latent"][0], preds["latent"][1], evstate=state_s, title=MODEL_LABELS["latent"]
    ).figure
    rng = np.random.default_rng(random_state)
    numax = _col(lab_s, "numax")
    order = np.argsort(numax)
    picks = order[np.linspace(0, len(order) - 1, 4).astype(int)]
    picks = np.array([p if np.isfinite(numax[p]) else rng.integers(len(order)) for p in picks])
    figs["psd_reconstruction"] = plotting.plot_psd_reconstruction(
        test.psd[picks],
        encoder.predict_psd(_encoder_input(encoder, test.spectra[picks])),
        labels=[f"νmax = {numax[p]:.0f} µHz, {state_s[p]}" for p in picks],
    )
    figs["psd_from_latent"] = plotting.plot_psd_from_latent(encoder, mu_test, numax, track=track)
    colours = {
        "state": np.asarray(state_s, dtype=str),
        "νmax (µHz)": numax,
        "[Fe/H] (dex)": _col(lab_s, "fe_h"),
    }
    if "excess_dnu" in lab_s:
        colours["excess Δν (µHz)"] = _col(lab_s, "excess_dnu")
    figs["latent_space"] = plotting.plot_latent_space(
        mu_test, colours, log={"νmax (µHz)"}, random_state=random_state
    )
    figs["latent_pairs_state"] = plotting.plot_latent_pairs(
        mu_test, colours["state"], label="state", random_state=random_state
    )
    figs["latent_pairs_numax"] = plotting.plot_latent_pairs(
        mu_test, numax, label="νmax (µHz)", log=True, random_state=random_state
    )
    figs["latent_abundances"] = plotting.plot_latent_regressions(
        abundances, title="abundances from the latent space"
    )
    figs["latent_seismic"] = plotting.plot_latent_regressions(
        seismic, title="seismic parameters from the latent space"
    )
    figs["state_confusion"] = plotting.plot_confusion(state["confusion"], state["labels"])
    ablations = {
        _model_label(k): v
        for k, v in ages.items()
        if k.startswith("ablation") or k in ("latent", "oracle", "mass oracle", "direct")
    }
    figs["ablation"] = plotting.plot_scatter_bars(ablations)
    figs["z_scores"] = plotting.plot_z_scores(
        y_s, preds["latent"][0], preds["latent"][1], _col(lab_s, "log_age_err")
    ).figure
    if leakage:
        figs["alpha_leakage"] = plotting.plot_alpha_sensitivity(
            {_model_label(k): v["per_star"] for k, v in leakage.items()}
        )
    return figs
