"""Probabilistic random forest with calibrated uncertainties.

:class:`ProbabilisticForestRegressor` is the random forest of Leung et al. (2023, §3.2) that
maps the encoder's latent space, Teff and [Fe/H] to log10 age. Each tree is grown on a
bootstrap sample of stars whose inputs are drawn from N(X, X_err) and whose targets are drawn
from N(y, y_err), afresh for every tree; stars are weighted by their target uncertainty; the
prediction is the mean over trees and its uncertainty the spread of the trees. Beyond the
paper, that spread is calibrated on out-of-bag residuals so that z-scores on held-out stars
have unit width (:func:`z_score_width`).

The forest is built from public scikit-learn parts (:class:`~sklearn.tree.DecisionTreeRegressor`
and joblib threads). Every tree draws from its own seed derived from ``random_state``, so a fit
is identical for any ``n_jobs``.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
from astropy.stats import mad_std
from joblib import Parallel, delayed
from scipy.optimize import brentq
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils import check_random_state

# The constraint vocabulary of ``_parameter_constraints`` lives only in this module.
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from skages._warnings import warn
from skages.applicability import ApplicabilityScore

__all__ = ["ProbabilisticForestRegressor", "TargetErrorsOverCoverWarning", "z_score_width"]

logger = logging.getLogger(__name__)


class TargetErrorsOverCoverWarning(UserWarning):
    """``fit``: the target errors alone over-cover the out-of-bag residuals of some stars.

    There the calibration sets σ to the trees' sampling error, and z-scores against those
    ``y_err`` stay narrower than 1 whatever σ is: either the errors are overstated
    (published ones can be, as APOKASC-2's clump ages are), or the targets were computed
    from the inputs and share their errors. Silence it where that is known with
    ``warnings.simplefilter("ignore", TargetErrorsOverCoverWarning)``.
    """


_MAX_INT = np.iinfo(np.int32).max
# Per-tree predictions held at once (rows x trees) while predicting: bounds memory to
# about 8 MiB per thread. The chunk size depends on n_estimators only, never on n_jobs,
# because the input-error draws of a chunk come from a stream keyed by the chunk's index.
_CHUNK_VALUES = 2**20
_CHUNK_ROWS_MIN, _CHUNK_ROWS_MAX = 1024, 65536
# Error-column suffixes recognised by ``error_columns="auto"`` (compared case-insensitively).
_ERROR_SUFFIXES = ("_std", "_err")
# Stream identifiers mixed into a tree's seed (see ``_tree_rng``).
_STREAM_FIT, _STREAM_OOB = 1, 2
# At prediction, tree t reads normal draws from row offsets[t] of a per-chunk table; the
# offsets are distinct picks among this many per tree.
_OFFSETS_PER_TREE = 4
# Stars enter the calibration with at least n_estimators // 10 out-of-bag trees (2 to 10):
# a spread from a handful of trees is too noisy and would inflate the fitted scale.
_MIN_OOB_TREES = (2, 10)
# Fractions of a unit normal within ±1 and ±2: the coverages "oob_coverage" calibrates to.
_ONE_SIGMA = 0.6826894921370859
_TWO_SIGMA = 0.9544997361036416
# "oob_local": at most this many regions, each with at least this many out-of-bag stars.
_LOCAL_LEAVES, _LOCAL_MIN_STARS = 8, 100
# ``calibration_groups``: the group classifier's trees and least leaf size, and the
# calibration stars a predicted group needs for a scale of its own (else the global one).
_GROUP_TREES, _GROUP_MIN_LEAF, _GROUP_MIN_STARS = 50, 5, 30
# ``predict(quantiles=...)`` reads the quantiles of a region's out-of-bag normalised
# residuals when it holds at least this many stars, else those of every calibration star.
_QUANTILE_MIN_STARS = 10


def _oob_calibrated(forest: Any) -> bool:
    """Whether ``forest`` calibrates σ on out-of-bag residuals (``bootstrap=True`` and a
    ``calibration``), and so gives quantiles; fitted or not (any other estimator: False)."""
    calibration = getattr(forest, "calibration", None)
    return bool(getattr(forest, "bootstrap", False)) and calibration is not None


def _missing_groups(groups: np.ndarray) -> np.ndarray:
    """Which labels of ``calibration_groups`` are missing: None, NaN (float or ``pd.NA``)
    or a blank string. Numbers and non-blank strings are labels."""

    def missing(g: Any) -> bool:
        if g is None:
            return True
        if isinstance(g, str):
            return g.strip() == ""
        try:
            return bool(g != g)  # NaN
        except TypeError:  # pandas.NA: its comparisons are NA too
            return True

    return np.array([missing(g) for g in np.asarray(groups, dtype=object)], dtype=bool)


def _calibrates_per_region(forest: Any) -> bool:
    """Whether ``forest`` fits a σ scale per region (``calibration="oob_local"`` with
    bootstrap), and so accepts ``calibration_groups``."""
    return _oob_calibrated(forest) and forest.calibration == "oob_local"


# --------------------------------------------------------------------------------------------
# Public helper
# --------------------------------------------------------------------------------------------
def z_score_width(
    y_true: Any,
    y_pred: Any,
    y_std: Any,
    y_err: Any = None,
) -> float:
    """Robust width of the z-scores of predictions with uncertainties.

    The z-score of a star is

    .. math:: z = (\\hat y - y) / \\sqrt{\\sigma^2 + \\sigma_y^2},

    where :math:`\\hat y` is the prediction, :math:`\\sigma` its uncertainty (``y_std``, the
    error of the prediction about the *true* value), :math:`y` the reference value and
    :math:`\\sigma_y` the uncertainty of that reference value (``y_err``, zero when not
    given). The width is :func:`astropy.stats.mad_std` of the z-scores, the statistic of
    Leung et al. (2023): 1 for well-calibrated uncertainties, below 1 when they are too wide.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Reference values (e.g. seismic log10 age, log10(Gyr)).
    y_pred : array-like of shape (n_samples,)
        Predicted values, same units as ``y_true``.
    y_std : array-like of shape (n_samples,)
        Uncertainty (standard deviation) of each prediction, same units; non-negative.
    y_err : array-like of shape (n_samples,), default=None
        Uncertainty (standard deviation) of each reference value, same units; non-negative.

    Returns
    -------
    float
        The robust standard deviation of the z-scores. Stars with a NaN in any input are
        ignored (NaN means masked); NaN if no star is left.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.forest import z_score_width
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=20_000)
    >>> y = truth + rng.normal(scale=0.1, size=truth.size)   # references with 0.1 errors
    >>> pred = truth + rng.normal(scale=0.2, size=truth.size)  # predictions with 0.2 errors
    >>> round(z_score_width(y, pred, np.full(truth.size, 0.2), np.full(truth.size, 0.1)), 2)
    1.0
    """
    arrays = {"y_true": y_true, "y_pred": y_pred, "y_std": y_std}
    if y_err is not None:
        arrays["y_err"] = y_err
    checked = {}
    n = None
    for name, value in arrays.items():
        arr = _as_float_array(value, name)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D of shape (n_samples,), got shape {arr.shape}")
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ValueError(
                f"{name} must have the length of y_true ({n} values), got {arr.shape[0]}"
            )
        if np.isinf(arr).any():
            raise ValueError(f"{name} must be finite or NaN (masked), got infinite values")
        if name in ("y_std", "y_err") and (arr < 0).any():
            raise ValueError(
                f"{name} must be non-negative (it is a standard deviation), got "
                f"{int((arr < 0).sum())} negative values (min {np.nanmin(arr):g})"
            )
        checked[name] = arr
    err2 = checked["y_err"] ** 2 if "y_err" in checked else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (checked["y_pred"] - checked["y_true"]) / np.sqrt(checked["y_std"] ** 2 + err2)
    z = z[np.isfinite(z)]
    if z.size == 0:
        return float("nan")
    return float(mad_std(z))


# --------------------------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------------------------
class ProbabilisticForestRegressor(RegressorMixin, BaseEstimator):
    """Random forest that propagates input and target uncertainties, with calibrated σ.

    The method of Leung et al. (2023, §3.2), built on scikit-learn trees:

    1. for every tree, each star's target is drawn from N(y, y_err) (if ``perturb_target``)
       and, with ``perturb_inputs="fit_and_predict"`` (the paper), its inputs from
       N(X, X_err), afresh;
    2. the tree is grown on a bootstrap sample in which a star is drawn with probability
       proportional to its weight (``sample_weight`` times the ``target_weighting`` of its
       ``y_err``), the same weighted bootstrap as scikit-learn's random forest;
    3. a prediction is the mean over trees; its uncertainty is the spread of the trees
       (``spread``), each tree predicting on its own draw of N(X, X_err) so that input errors
       widen σ. With ``perturb_inputs="sigma"`` (default) the mean is taken on X itself and
       the draws only widen σ;
    4. (beyond the paper, ``calibration="oob"``) the spread is calibrated on out-of-bag
       residuals so that σ is the error of the prediction about the *true* value: held-out
       z-scores (:func:`z_score_width`) have unit width.

    Read more in the :doc:`user guide </user_guide/forest>`.

    Parameters
    ----------
    n_estimators : int, default=100
        Number of trees.
    criterion : {"squared_error", "friedman_mse", "absolute_error"}, default="squared_error"
        Split quality measure of each tree (see :class:`~sklearn.tree.DecisionTreeRegressor`).
    max_depth : int, default=None
        Maximum depth of a tree; None grows until leaves are pure or hold fewer than
        ``min_samples_split`` stars.
    min_samples_split : int or float, default=2
        Minimum number (int) or fraction (float) of stars needed to split a node.
    min_samples_leaf : int or float, default=1
        Minimum number (int) or fraction (float) of stars in a leaf.
    min_weight_fraction_leaf : float, default=0.0
        Minimum fraction of a tree's total bootstrap count in a leaf.
    max_features : {"sqrt", "log2"}, int, float or None, default=1.0
        Number (int) or fraction (float) of value features (see ``error_columns``) tried at
        each split; 1.0 or None tries all.
    max_leaf_nodes : int, default=None
        Grow trees with at most this many leaves, best first.
    min_impurity_decrease : float, default=0.0
        A node is split only if the split decreases impurity by at least this much.
    ccp_alpha : float, default=0.0
        Complexity parameter of minimal cost-complexity pruning.
    monotonic_cst : array-like of int of shape (n_value_features,), default=None
        Monotonicity constraint (-1, 0 or 1) of the prediction on each value feature, in the
        order of ``value_columns_``.
    bootstrap : bool, default=True
        Grow each tree on a weighted bootstrap sample of the stars. Needed for out-of-bag
        predictions and hence for ``calibration="oob"`` and ``bias_correction="oob"``. If
        False every tree sees every star once, with its weight, and trees differ only
        through the perturbations and ``max_features``.
    max_samples : int or float, default=None
        Bootstrap sample size: None draws as many stars as there are; an int draws that
        many; a float draws that fraction of the stars (at least one).
    error_columns : None, "auto", dict or sequence of pairs, default=None
        Columns of ``X`` that hold the uncertainties (standard deviations, units of their
        value column) of other columns. A dict ``{value: error}`` or a sequence of
        ``(value, error)`` pairs names each column by its name (needs ``X`` with column
        names, e.g. a DataFrame, at fit) or by its integer position. ``"auto"`` pairs every
        column named ``<name>_std`` or ``<name>_err`` (suffix compared case-insensitively)
        with a column named ``<name>``; it needs column names and fails if it finds no pair.
        Error columns are never split on: the trees see the other columns only
        (``value_columns_``), and error columns act as ``X_err`` for their value column.
        Value columns without an error column have zero error. When error columns are
        used, ``X_err`` must not also be passed (to ``fit`` or ``predict``): one source of
        input errors only.
    perturb_target : bool, default=True
        Draw each tree's targets from N(y, y_err) (the paper). False keeps y as given (the
        published code). Has no effect without ``y_err``.
    perturb_inputs : {"sigma", "fit_and_predict"}, default="sigma"
        Where the input errors act. "fit_and_predict" (the paper): every tree is grown on a
        draw of N(X, X_err) and the prediction is the mean over trees each predicting on its
        own draw. Inputs that are already measured with these errors are then blurred twice,
        which costs accuracy on precise inputs. "sigma": the trees are grown on X as given
        and the prediction is the mean of the trees on X itself (as a plain random forest);
        the draws of N(X, X_err) only give the spread, so input errors still widen σ.
        No effect without input errors.
    target_weighting : {"inverse_variance", "inverse_std"} or None, default=None
        Weight of a star from its target uncertainty: 1/y_err² (the published code),
        1/y_err, or None for no weighting (default: every star counts alike, as in a plain
        random forest; 1/y_err² costs accuracy when the precise stars are not spread like
        the rest, e.g. when age errors grow with mass). Multiplies ``sample_weight``; the
        product is the star's bootstrap probability (or its tree weight when
        ``bootstrap=False``). Needs strictly positive ``y_err``; no effect without
        ``y_err``. 1/y_err² concentrates the bootstrap on the most precise stars when errors
        span a wide range.
    bias_correction : {"oob", "train"} or None, default=None
        Add a linear model of the residual ``y - prediction`` on the value features,
        weighted by the star weights. "oob" fits it on out-of-bag residuals (honest; needs
        ``bootstrap``); "train" on the whole forest's predictions of the training stars (the
        published code; nearly no correction for fully grown trees, which reproduce their
        training targets). None (the paper) adds nothing.
    spread : {"std", "mad_std"}, default="std"
        Spread of the trees' predictions: the sample standard deviation (the paper) or
        :func:`astropy.stats.mad_std`, a robust one (the published code; predicting with it
        costs about 1.5 times more).
    calibration : {"oob", "oob_coverage", "oob_local"} or None, default="oob_local"
        "oob": σ = spread × sqrt(s² + 1/T), with T the number of trees averaged and the scale
        s fitted so that out-of-bag z-scores, ``(prediction - y) / sqrt(σ² + y_err²)``,
        have unit :func:`z_score_width` (needs ``bootstrap``). The 1/T term is the
        Monte-Carlo error of averaging T trees, so that σ of an out-of-bag prediction (about
        0.37 T trees) and of a full prediction (T trees) mean the same. Stars enter the fit
        if at least ``n_estimators // 10`` trees (2 to 10) left them out. σ then estimates
        the error of a prediction about the true value. "oob_coverage" fits s instead to
        the coverage of the out-of-bag stars at 1σ and 2σ (split-conformal on the
        normalised out-of-bag residuals, as in jackknife+-after-bootstrap): the 68.27 %
        quantile of :math:`|z|` over 1 and the 95.45 % quantile over 2 have a geometric
        mean of 1. Where the residuals' tails are heavier than Gaussian, no one σ covers
        68.27 % at 1σ and 95.45 % at 2σ; this scale errs by equal factors at both (the
        quantile intervals of ``predict(quantiles=...)`` are exact at each level).
        "oob_local" first fits that scale, then a shallow tree on the inputs (at most 8
        leaves of at least 100 out-of-bag stars) splits where the out-of-bag :math:`|z|`
        differ and each leaf gets its own coverage-matched scale: a heteroscedastic calibration
        (e.g. red-clump and red-giant-branch stars miscalibrated in opposite ways). With
        ``fit(..., calibration_groups=...)`` (e.g. the evolutionary state of each star) the
        regions are instead the groups as a classifier predicts them from the inputs, each
        with its own scale (Mondrian calibration). None returns the raw spread of the trees
        (the paper).
    outside_fraction : float or None, default=0.01
        Fit an applicability score on the training inputs (:meth:`applicability`),
        calibrated so that this fraction of the training stars score above 1 (the
        catalogue's ``OUTSIDE_TRAINING`` flag). None fits none.
    missing_target : {"error", "ignore"}, default="error"
        What a NaN target means. "error" rejects it. "ignore" drops those stars before
        growing the forest: in an age :class:`~sklearn.pipeline.Pipeline` fitted on every
        spectrum-PSD pair, the stars without a seismic age (NaN y) then train the encoder
        only, and the forest learns from the aged stars, as in the paper's two stages.
    n_jobs : int, default=None
        Threads for fitting (over trees) and predicting (over chunks of rows). None means 1
        unless in a :func:`joblib.parallel_backend` context; -1 uses all processors.
        Results do not depend on it.
    random_state : int, RandomState instance, numpy Generator or None, default=None
        Seeds the per-tree random streams (bootstrap, tree features, perturbations).
    verbose : int, default=0
        If positive, show tqdm progress bars (on stderr) while fitting and predicting.

    Attributes
    ----------
    estimators_ : list of DecisionTreeRegressor
        The fitted trees; they see the value columns only.
    n_features_in_ : int
        Number of columns of ``X`` seen at fit, error columns included.
    feature_names_in_ : ndarray of str of shape (n_features,)
        Column names of ``X`` seen at fit (all columns, error columns included). Only
        defined if ``X`` had string column names.
    value_columns_ : ndarray of int of shape (n_value_features,)
        Positions in ``X`` of the columns the trees split on (all but the error columns).
    error_columns_ : ndarray of int of shape (n_value_features,)
        Position in ``X`` of the error column of each value column, -1 for none.
    value_feature_names_ : ndarray of str of shape (n_value_features,)
        Names of the value columns; only defined with ``feature_names_in_``.
    feature_importances_ : ndarray of shape (n_value_features,)
        Impurity-based importance of each value column (order of ``value_columns_``),
        the mean of the trees' importances, summing to 1.
    oob_prediction_ : ndarray of shape (n_samples,)
        Out-of-bag prediction of each training star (bias correction included); NaN for a
        star that was in the bootstrap of every tree. Only with ``bootstrap``.
    oob_std_ : ndarray of shape (n_samples,)
        σ of ``oob_prediction_`` (calibrated as in ``predict`` for the star's number of
        out-of-bag trees); NaN where fewer than ``n_estimators // 10`` trees (at least 2, at
        most 10) left the star out. These are the stars the calibration is fitted on.
    calibration_scale_ : float or None
        The fitted global scale s (``calibration`` "oob", "oob_coverage" or
        "oob_local"); None without calibration.
    applicability_ : ApplicabilityScore or None
        The applicability score fitted on the training inputs (every column of X);
        None with ``outside_fraction=None``. See :meth:`applicability`.
    calibration_tree_ : DecisionTreeRegressor or None
        ``calibration="oob_local"``: the tree whose leaves are the calibration regions
        (None with fewer than 200 usable out-of-bag stars: the global scale is used).
    calibration_classifier_ : RandomForestClassifier or None
        ``calibration="oob_local"`` fitted with ``calibration_groups``: the classifier of
        the group from the value columns, whose predicted class is a star's calibration
        region; None otherwise.
    calibration_scales_ : ndarray or None
        ``calibration="oob_local"``: the scale of each node of ``calibration_tree_`` or of
        each class of ``calibration_classifier_``.
    calibration_residuals_ : ndarray of shape (n_calibration,) or None
        The out-of-bag normalised residuals (y − ŷ) / √(σ² + y_err²) of the calibration
        stars, with the fitted σ; ``predict(quantiles=...)`` reads their empirical
        quantiles. None without calibration or bootstrap.
    calibration_regions_ : ndarray of shape (n_calibration,) or None
        The region (``calibration_tree_`` leaf or ``calibration_classifier_`` class index,
        out-of-bag) of each of ``calibration_residuals_``; None unless
        ``calibration="oob_local"`` fitted regions.
    bias_model_ : LinearRegression or None
        The bias-correction model of ``bias_correction``, on the value features.

    See Also
    --------
    sklearn.ensemble.RandomForestRegressor : the forest without uncertainties.
    z_score_width : width of normalised residuals.

    Notes
    -----
    NaN in ``X`` is rejected (a masked input must be imputed or the star dropped upstream).
    The input-error draws at prediction come from a stream fixed at fit, keyed by the chunk
    of rows a star falls in: predictions are reproducible for the same ``X``, whatever
    ``n_jobs``, but a star's draws (not its expected prediction) depend on its row position.

    References
    ----------
    Leung, Bovy, Mackereth & Miglio (2023), MNRAS 522, 4577.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.forest import ProbabilisticForestRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(400, 2))
    >>> y_err = rng.uniform(0.05, 0.2, size=400)
    >>> y = np.sin(3 * X[:, 0]) + X[:, 1] + rng.normal(scale=y_err)
    >>> forest = ProbabilisticForestRegressor(n_estimators=50, random_state=0)
    >>> forest = forest.fit(X, y, X_err=np.full_like(X, 0.02), y_err=y_err)
    >>> mean, std = forest.predict(X[:3], return_std=True, X_err=np.full((3, 2), 0.02))
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_estimators": [Interval(numbers.Integral, 1, None, closed="left")],
        "criterion": [StrOptions({"squared_error", "friedman_mse", "absolute_error"})],
        "max_depth": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "min_samples_split": [
            Interval(numbers.Integral, 2, None, closed="left"),
            Interval(numbers.Real, 0.0, 1.0, closed="right"),
        ],
        "min_samples_leaf": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Interval(numbers.Real, 0.0, 1.0, closed="neither"),
        ],
        "min_weight_fraction_leaf": [Interval(numbers.Real, 0.0, 0.5, closed="both")],
        "max_features": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Interval(numbers.Real, 0.0, 1.0, closed="right"),
            StrOptions({"sqrt", "log2"}),
            None,
        ],
        "max_leaf_nodes": [Interval(numbers.Integral, 2, None, closed="left"), None],
        "min_impurity_decrease": [Interval(numbers.Real, 0.0, None, closed="left")],
        "ccp_alpha": [Interval(numbers.Real, 0.0, None, closed="left")],
        "monotonic_cst": ["array-like", None],
        "bootstrap": ["boolean"],
        "max_samples": [
            None,
            Interval(numbers.Real, 0.0, 1.0, closed="right"),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "error_columns": [None, StrOptions({"auto"}), dict, list, tuple],
        "perturb_target": ["boolean"],
        "perturb_inputs": [StrOptions({"sigma", "fit_and_predict"})],
        "target_weighting": [StrOptions({"inverse_variance", "inverse_std"}), None],
        "bias_correction": [StrOptions({"oob", "train"}), None],
        "spread": [StrOptions({"std", "mad_std"})],
        "calibration": [StrOptions({"oob", "oob_coverage", "oob_local"}), None],
        "n_jobs": [numbers.Integral, None],
        "random_state": ["random_state", np.random.Generator],
        "verbose": ["verbose"],
        "missing_target": [StrOptions({"error", "ignore"})],
        "outside_fraction": [Interval(numbers.Real, 0, 1, closed="neither"), None],
    }

    def __init__(
        self,
        n_estimators: int = 100,
        *,
        criterion: str = "squared_error",
        max_depth: int | None = None,
        min_samples_split: int | float = 2,
        min_samples_leaf: int | float = 1,
        min_weight_fraction_leaf: float = 0.0,
        max_features: int | float | str | None = 1.0,
        max_leaf_nodes: int | None = None,
        min_impurity_decrease: float = 0.0,
        ccp_alpha: float = 0.0,
        monotonic_cst: Any = None,
        bootstrap: bool = True,
        max_samples: int | float | None = None,
        error_columns: Any = None,
        perturb_target: bool = True,
        perturb_inputs: str = "sigma",
        target_weighting: str | None = None,
        bias_correction: str | None = None,
        spread: str = "std",
        calibration: str | None = "oob_local",
        outside_fraction: float | None = 0.01,
        missing_target: str = "error",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.min_weight_fraction_leaf = min_weight_fraction_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.min_impurity_decrease = min_impurity_decrease
        self.ccp_alpha = ccp_alpha
        self.monotonic_cst = monotonic_cst
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.error_columns = error_columns
        self.perturb_target = perturb_target
        self.perturb_inputs = perturb_inputs
        self.target_weighting = target_weighting
        self.bias_correction = bias_correction
        self.spread = spread
        self.calibration = calibration
        self.outside_fraction = outside_fraction
        self.missing_target = missing_target
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        return tags

    # ----------------------------------------------------------------------------- fit
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        X_err: Any = None,
        y_err: Any = None,
        sample_weight: Any = None,
        calibration_mask: Any = None,
        calibration_groups: Any = None,
    ) -> ProbabilisticForestRegressor:
        """Grow the forest, then fit the bias correction and the σ calibration.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs (for skages: latent coordinates, Teff in K, [Fe/H] in dex),
            including any error columns named by ``error_columns``. No NaN.
        y : array-like of shape (n_samples,)
            Targets (for skages: log10 age, log10(Gyr)).
        X_err : array-like of shape (n_samples, n_features) or (n_features,), default=None
            Uncertainty (standard deviation, units of each column) of every input; a 1-D
            array gives every star the same errors. Zero means exact. Not allowed together
            with ``error_columns``. Routable as metadata.
        y_err : array-like of shape (n_samples,), default=None
            Uncertainty (standard deviation, units of y) of every target. Used to perturb
            targets (``perturb_target``), to weight stars (``target_weighting``) and in the
            out-of-bag z-scores of the calibration. Routable as metadata.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative star weights, multiplied with the target weighting. Stars of zero
            weight are never drawn and do not enter the calibration. Routable as metadata.
        calibration_mask : array-like of bool, shape (n_samples,), default=None
            The stars whose out-of-bag residuals fit the σ calibration and the quantiles
            (default: every star). Give the stars whose inputs came from an upstream model
            that never saw them, e.g. latent coordinates from an encoder trained without
            them: the out-of-bag residuals of stars the upstream model was fitted on
            understate the error of new stars (:func:`skages.pipeline.fit_age_model`
            holds such stars out). Every star still grows the trees. Routable as metadata.
        calibration_groups : array-like of shape (n_samples,), default=None
            A known class of every star whose errors may differ in kind, e.g. the
            evolutionary state ("RGB", "RC"). With ``calibration="oob_local"``, a
            classifier learns the group from the value columns and every predicted group
            gets its own σ scale, fitted on the calibration stars it predicts into that
            group (out-of-bag predictions, as for a new star; a group with fewer than 30
            calibration stars keeps the global scale). A new star's σ takes the scale of
            its predicted group, so no group is needed at prediction. Routable as metadata.

        Returns
        -------
        self : ProbabilisticForestRegressor
            The fitted forest.
        """
        self._validate_params()
        if self.missing_target == "ignore":
            X, y, X_err, y_err, sample_weight, calibration_mask, calibration_groups = (
                _drop_missing_targets(
                    X, y, X_err, y_err, sample_weight, calibration_mask, calibration_groups
                )
            )
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        n_samples = X.shape[0]
        calibration_mask = _check_calibration_mask(calibration_mask, n_samples)
        calibration_groups = self._check_calibration_groups(calibration_groups, n_samples)
        self._resolve_error_columns(X)
        X_values, errors = self._values_and_errors(X, X_err, "fit")
        y_err = _check_y_err(y_err, n_samples)
        sample_weight = _validate_sample_weight(sample_weight, n_samples)
        weights = self._star_weights(y_err, sample_weight)

        self._check_forest_options(n_samples)
        n_value = X_values.shape[1]
        if self.monotonic_cst is not None:
            cst = np.asarray(self.monotonic_cst)
            if cst.shape != (n_value,):
                raise ValueError(
                    f"monotonic_cst must have one entry per value feature ({n_value}, error "
                    f"columns excluded), got shape {cst.shape}"
                )
        n_bootstrap = self._n_bootstrap(n_samples) if self.bootstrap else None

        tree_seeds, self._predict_seed = _draw_seeds(self.random_state, self.n_estimators)
        X32 = np.ascontiguousarray(X_values, dtype=np.float32)
        errors32 = None if errors is None else np.asarray(errors, dtype=np.float32)
        y_pert = y_err if (self.perturb_target and y_err is not None) else None
        err_cols = _error_column_mask(errors)
        tree_params = self._tree_params()

        jobs = (
            delayed(_fit_tree)(
                DecisionTreeRegressor(random_state=int(seed), **tree_params),
                int(seed),
                X32,
                y,
                errors32,
                err_cols,
                y_pert,
                weights,
                n_bootstrap,
                self.perturb_inputs == "fit_and_predict",
            )
            for seed in tree_seeds
        )
        results = list(
            tqdm(
                Parallel(n_jobs=self.n_jobs, prefer="threads", return_as="generator")(jobs),
                total=self.n_estimators,
                desc="growing trees",
                disable=not self.verbose,
            )
        )
        self.estimators_ = [result[0] for result in results]

        self.applicability_ = None
        if self.outside_fraction is not None:
            keep = np.ones(n_samples, bool) if sample_weight is None else sample_weight > 0
            self.applicability_ = ApplicabilityScore(outside_fraction=self.outside_fraction).fit(
                X_values[keep] if keep.sum() >= 2 else X_values
            )
        self.bias_model_ = None
        self.calibration_scale_ = None
        self.calibration_tree_ = None
        self.calibration_classifier_ = None
        self.calibration_scales_ = None
        self.calibration_residuals_ = None
        self.calibration_regions_ = None
        fit_mask = np.ones(n_samples, bool) if sample_weight is None else sample_weight > 0
        if self.bootstrap:
            oob = self._oob_summary(results, n_samples)
            if self.bias_correction == "oob":
                use = (oob.count > 0) & fit_mask
                self.bias_model_ = _fit_bias(
                    X_values[use],
                    y[use] - oob.mean[use],
                    None if weights is None else weights[use],
                )
        if self.bias_correction == "train":
            train = self._predict_stats(X_values, errors)
            self.bias_model_ = _fit_bias(
                X_values[fit_mask],
                y[fit_mask] - train.mean[fit_mask],
                None if weights is None else weights[fit_mask],
            )
        if self.bootstrap:
            min_trees = int(np.clip(self.n_estimators // 10, *_MIN_OOB_TREES))
            with np.errstate(invalid="ignore"):
                self.oob_prediction_ = oob.mean + self._bias(X_values)
            cal_mask = fit_mask if calibration_mask is None else fit_mask & calibration_mask
            regions = None  # each training star's calibration region, out-of-bag for groups
            if self.calibration is not None:
                statistic = "oob" if self.calibration == "oob" else "oob_coverage"
                cal_args = (
                    y[cal_mask] - self.oob_prediction_[cal_mask],
                    oob.var[cal_mask],
                    oob.count[cal_mask],
                    None if y_err is None else y_err[cal_mask],
                    min_trees,
                )
                self.calibration_scale_ = _fit_calibration_scale(*cal_args, statistic=statistic)
                logger.info(
                    "calibration scale s = %.4g (%d stars)",
                    self.calibration_scale_,
                    int(cal_mask.sum()),
                )
                if self.calibration == "oob_local" and calibration_groups is not None:
                    self.calibration_classifier_, regions = _fit_group_classifier(
                        X_values, calibration_groups, fit_mask, self._predict_seed
                    )
                    self.calibration_scales_ = _fit_group_scales(
                        regions[cal_mask],
                        len(self.calibration_classifier_.classes_),
                        *cal_args,
                        self.calibration_scale_,
                    )
                elif self.calibration == "oob_local":
                    self.calibration_tree_, self.calibration_scales_ = _fit_local_scales(
                        X_values[cal_mask], *cal_args, self.calibration_scale_
                    )
                    if self.calibration_tree_ is not None:
                        regions = self.calibration_tree_.apply(X_values)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.oob_std_ = np.where(
                    oob.count >= min_trees,
                    self._sigma(oob.var, oob.count, X_values, regions),
                    np.nan,
                )
            if self.calibration is not None:
                self._store_calibration_residuals(y, y_err, cal_mask, regions)
                if y_err is not None:
                    self._warn_if_y_err_over_covers(y, y_err, cal_mask, regions)
        return self

    def _warn_if_y_err_over_covers(self, y, y_err, cal_mask, regions) -> None:
        """Warn where the target errors alone over-cover the out-of-bag residuals.

        There the calibration sets σ to the trees' sampling error alone (scale 0), and
        z-scores against ``y_err`` are narrower than 1 whatever σ is.
        """
        scale = self.calibration_scale_
        if regions is not None and self.calibration_scales_ is not None:
            scale = self.calibration_scales_[regions]
        floor = cal_mask & np.broadcast_to(np.asarray(scale) == 0.0, cal_mask.shape)
        floor &= np.isfinite(self.oob_prediction_) & (y_err > 0)
        n = int(floor.sum())
        if n == 0:
            return
        inside = float(np.mean(np.abs(y - self.oob_prediction_)[floor] < y_err[floor]))
        # σ negligible beside correct errors gives 68 % within 1: warn only beyond 3 binomial
        # standard errors of that
        if inside <= _ONE_SIGMA + 3.0 * np.sqrt(_ONE_SIGMA * (1.0 - _ONE_SIGMA) / n):
            return
        warn(
            f"the target errors y_err alone over-cover the out-of-bag residuals of {n} of "
            f"{int(cal_mask.sum())} calibration stars: with σ = 0, {100 * inside:.0f} % of "
            "them lie within 1 y_err (68 % expected). Their σ is only the trees' sampling "
            "error, and z-scores against these y_err stay narrower than 1 whatever σ is. "
            "Either y_err are overstated (published errors can be: the user guide's 'How far "
            "to trust an age' shows APOKASC-2's red clump), or the targets were computed from "
            "the inputs and share their errors (an age from the seismic mass the forest reads).",
            TargetErrorsOverCoverWarning,
        )

    def _check_calibration_groups(self, groups: Any, n_samples: int) -> np.ndarray | None:
        if groups is None:
            return None
        if not _calibrates_per_region(self):
            raise ValueError(
                "calibration_groups need calibration='oob_local' and bootstrap=True (the "
                f"groups get their own σ scales); this forest has calibration="
                f"{self.calibration!r}, bootstrap={self.bootstrap!r}"
            )
        groups = np.asarray(groups, dtype=object)
        if groups.shape != (n_samples,):
            raise ValueError(
                f"calibration_groups must have shape ({n_samples},), one label per star; got "
                f"shape {groups.shape}"
            )
        missing = _missing_groups(groups)
        if missing.any():
            raise ValueError(
                f"calibration_groups is missing for {int(missing.sum())} stars (None, NaN or "
                "a blank string): give every star its group (e.g. its evolutionary state)"
            )
        return groups.astype(str)

    def _store_calibration_residuals(self, y, y_err, fit_mask, regions=None) -> None:
        err2 = 0.0 if y_err is None else y_err**2
        with np.errstate(invalid="ignore", divide="ignore"):  # σ = 0 (trees agree): not used
            z = (y - self.oob_prediction_) / np.sqrt(self.oob_std_**2 + err2)
        use = fit_mask & np.isfinite(z)
        if use.sum() < _QUANTILE_MIN_STARS:
            return  # predict(quantiles=...) falls back to the normal quantiles, with a warning
        self.calibration_residuals_ = z[use]
        if regions is not None:
            self.calibration_regions_ = regions[use]

    # ------------------------------------------------------------------------- predict
    def predict(
        self,
        X: Any,
        return_std: bool = False,
        X_err: Any = None,
        quantiles: Sequence[float] | None = None,
    ):
        """Predict the mean over trees and, optionally, its uncertainty and quantiles.

        Each tree predicts on its own draw of N(X, X_err), so input errors widen σ.

        ``quantiles`` gives intervals from the empirical quantiles of the out-of-bag
        normalised residuals z = (y − ŷ) / √(σ² + y_err²) of the training stars
        (split-conformal on the out-of-bag residuals, as in jackknife+-after-bootstrap),
        taken per calibration region with ``calibration="oob_local"``: the quantile p of a
        star is ŷ + z_p σ. Where the residuals' tails are heavier than Gaussian these
        intervals keep their nominal coverage, which ŷ ± 2σ does not.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs with the columns seen at fit (error columns included). No NaN.
        return_std : bool, default=False
            Also return σ: the calibrated uncertainty (``calibration="oob"``) or the raw
            spread of the trees (``calibration=None``), in the units of y.
        X_err : array-like of shape (n_samples, n_features) or (n_features,), default=None
            Uncertainty of every input, as in :meth:`fit`. Not allowed with
            ``error_columns`` (the errors are read from X). Without any input errors the
            trees predict on X itself and σ holds no input-error term.
        quantiles : sequence of float in (0, 1), default=None
            Also return these quantiles of each star's prediction, in the units of y (as
            ``predict(X, quantiles=[0.16, 0.84])`` of quantile-forest): ``(0.16, 0.84)``
            is the central 68 % interval, ``(0.025, 0.975)`` the 95 % one. Needs a
            forest fitted with ``bootstrap=True`` and a ``calibration``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Mean prediction over trees (bias correction included), units of y.
        y_std : ndarray of shape (n_samples,)
            σ of each prediction; only if ``return_std``.
        y_quantiles : ndarray of shape (n_samples, len(quantiles))
            The quantiles, in the order asked, units of y; only if ``quantiles`` is given.

        Raises
        ------
        ValueError
            If a quantile is outside (0, 1), or ``quantiles`` is asked of a forest fitted
            without bootstrap or without calibration (it has no calibrated residuals).
        """
        check_is_fitted(self)
        probs = self._check_quantiles(quantiles)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        X_values, errors = self._values_and_errors(X, X_err, "predict")
        need_var = return_std or probs is not None
        stats = self._predict_stats(X_values, errors, need_var=need_var)
        if not need_var:
            return stats.mean
        regions = self._calibration_regions(X_values)  # once, for σ and the quantiles
        std = self._sigma(stats.var, stats.count, X_values, regions)
        out = (stats.mean, std) if return_std else (stats.mean,)
        if probs is not None:
            z = self._z_quantiles(len(X_values), probs, regions)
            out += (stats.mean[:, None] + z * std[:, None],)
        return out

    def _check_quantiles(self, quantiles) -> np.ndarray | None:
        if quantiles is None:
            return None
        probs = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
        if probs.ndim != 1 or probs.size == 0 or not np.all((probs > 0) & (probs < 1)):
            raise ValueError(
                f"quantiles must be a non-empty sequence of probabilities in (0, 1), such "
                f"as (0.16, 0.84); got {quantiles!r}"
            )
        if not _oob_calibrated(self):
            raise ValueError(
                "quantiles come from the calibrated out-of-bag residuals: fit the forest "
                "with bootstrap=True and a calibration ('oob', 'oob_coverage' or "
                f"'oob_local'); this one has bootstrap={self.bootstrap!r}, "
                f"calibration={self.calibration!r}"
            )
        return probs

    def _z_quantiles(self, n: int, probs: np.ndarray, leaves: np.ndarray | None) -> np.ndarray:
        """(n, n_probs) quantiles of the normalised residuals for every star, per its
        calibration region ``leaves`` (:meth:`_calibration_regions`)."""
        z = getattr(self, "calibration_residuals_", None)
        if z is None:
            from scipy.stats import norm

            warnings.warn(
                "too few out-of-bag stars to take quantiles of their residuals; the "
                "intervals are the normal quantiles of the calibrated σ",
                UserWarning,
                stacklevel=3,
            )
            return np.broadcast_to(norm.ppf(probs), (n, probs.size)).copy()
        whole = _conformal_quantiles(z, probs)
        out = np.broadcast_to(whole, (n, probs.size)).copy()
        regions = getattr(self, "calibration_regions_", None)
        if regions is None or leaves is None:
            return out
        for leaf in np.unique(leaves):
            z_leaf = z[regions == leaf]
            if z_leaf.size >= _QUANTILE_MIN_STARS:
                out[leaves == leaf] = _conformal_quantiles(z_leaf, probs)
        return out

    def applicability(self, X: Any) -> np.ndarray:
        """How far each star lies from the training stars (> 1: outside the training set).

        The mean distance to the nearest training stars over every input column (error
        columns included: in the age pipeline the latent coordinates with their σ, Teff and
        [Fe/H] with their errors), scaled so that ``outside_fraction`` of the training
        stars score above 1 (:class:`~skages.applicability.ApplicabilityScore`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs with the columns seen at fit. No NaN.

        Returns
        -------
        ndarray of shape (n_samples,)
            The dimensionless score.

        Raises
        ------
        ValueError
            If the forest was fitted with ``outside_fraction=None``.
        """
        check_is_fitted(self)
        if self.applicability_ is None:
            raise ValueError(
                "this forest was fitted with outside_fraction=None and has no applicability "
                "score; refit it with outside_fraction=0.01 (for example)"
            )
        X = validate_data(self, X, dtype=np.float64, reset=False)
        X_values = X[:, self.value_columns_] if (self.error_columns_ >= 0).any() else X
        return self.applicability_.applicability(X_values)

    def predict_trees(self, X: Any, X_err: Any = None) -> np.ndarray:
        """Predictions of every tree (bias correction included), with the same input draws
        as :meth:`predict`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs with the columns seen at fit. No NaN.
        X_err : array-like of shape (n_samples, n_features) or (n_features,), default=None
            Uncertainty of every input, as in :meth:`predict`.

        Returns
        -------
        ndarray of shape (n_samples, n_estimators)
            Prediction of each tree, units of y. Its row spreads are the uncalibrated σ;
            its row means equal :meth:`predict` with ``perturb_inputs="fit_and_predict"``
            or without input errors (with ``"sigma"``, :meth:`predict` averages the trees on
            X itself).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        X_values, errors = self._values_and_errors(X, X_err, "predict")
        return np.concatenate(
            self._map_chunks(X_values, errors, _chunk_trees, "predicting trees"), axis=1
        ).T

    @property
    def feature_importances_(self) -> np.ndarray:
        """Mean impurity-based importance of each value column (see ``value_columns_``)."""
        check_is_fitted(self)
        per_tree = [t.feature_importances_ for t in self.estimators_ if t.tree_.node_count > 1]
        if not per_tree:
            return np.zeros(len(self.value_columns_))
        mean = np.mean(per_tree, axis=0)
        return mean / mean.sum()

    # ------------------------------------------------------------------- internals
    def _tree_params(self) -> dict:
        return {
            "criterion": self.criterion,
            "max_depth": self.max_depth,
            "min_samples_split": self.min_samples_split,
            "min_samples_leaf": self.min_samples_leaf,
            "min_weight_fraction_leaf": self.min_weight_fraction_leaf,
            "max_features": self.max_features,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_impurity_decrease": self.min_impurity_decrease,
            "ccp_alpha": self.ccp_alpha,
            "monotonic_cst": self.monotonic_cst,
        }

    def _check_forest_options(self, n_samples: int) -> None:
        if not self.bootstrap:
            for name, value in (
                ("max_samples", self.max_samples),
                ("calibration", self.calibration),
            ):
                if value is not None:
                    raise ValueError(
                        f"{name}={value!r} needs bootstrap=True (out-of-bag stars); got "
                        f"bootstrap=False. Set {name}=None or bootstrap=True."
                    )
            if self.bias_correction == "oob":
                raise ValueError(
                    "bias_correction='oob' needs bootstrap=True (out-of-bag stars); got "
                    "bootstrap=False. Use bias_correction='train' or None."
                )
        if isinstance(self.max_samples, numbers.Integral) and self.max_samples > n_samples:
            raise ValueError(
                f"max_samples must be at most the number of samples ({n_samples}), got "
                f"{self.max_samples}"
            )

    def _n_bootstrap(self, n_samples: int) -> int:
        if self.max_samples is None:
            return n_samples
        if isinstance(self.max_samples, numbers.Integral):
            return int(self.max_samples)
        return max(round(n_samples * self.max_samples), 1)

    def _star_weights(self, y_err, sample_weight) -> np.ndarray | None:
        """Bootstrap weights: sample_weight × target weighting; None means all equal."""
        weights = sample_weight
        if y_err is not None and self.target_weighting is not None:
            if (y_err == 0).any():
                raise ValueError(
                    f"y_err must be strictly positive with target_weighting="
                    f"{self.target_weighting!r} (weights 1/y_err or 1/y_err²); got "
                    f"{int((y_err == 0).sum())} zero values. Pass target_weighting=None "
                    "or positive errors."
                )
            power = 2 if self.target_weighting == "inverse_variance" else 1
            target = 1.0 / y_err**power
            weights = target if weights is None else weights * target
        return weights

    def _resolve_error_columns(self, X: np.ndarray) -> None:
        """Set value_columns_, error_columns_ (and value_feature_names_) from error_columns."""
        n_features = X.shape[1]
        names = getattr(self, "feature_names_in_", None)
        spec = self.error_columns
        pairs: list[tuple[int, int]] = []
        if spec is None:
            pass
        elif isinstance(spec, str):  # "auto"
            if names is None:
                raise ValueError(
                    "error_columns='auto' needs column names (fit on a DataFrame); X has "
                    "none. Give error_columns as integer (value, error) pairs instead."
                )
            lookup = {str(name): i for i, name in enumerate(names)}
            for j, name in enumerate(names):
                name = str(name)
                for suffix in _ERROR_SUFFIXES:
                    if name.lower().endswith(suffix) and name[: -len(suffix)] in lookup:
                        pairs.append((lookup[name[: -len(suffix)]], j))
            if not pairs:
                raise ValueError(
                    "error_columns='auto' found no pair of columns '<name>' and "
                    f"'<name>_std' or '<name>_err' among {list(map(str, names))}"
                )
        else:
            items = list(spec.items()) if isinstance(spec, Mapping) else list(spec)
            for item in items:
                if (
                    isinstance(item, str)
                    or not isinstance(item, Sequence | np.ndarray)
                    or len(item) != 2
                ):
                    raise ValueError(
                        "error_columns must be None, 'auto', a dict {value: error} or a "
                        f"sequence of (value, error) pairs; got the entry {item!r}"
                    )
                pairs.append(
                    (
                        _column_index(item[0], names, n_features),
                        _column_index(item[1], names, n_features),
                    )
                )
        error_of = {}
        used_as_error = set()
        for value, error in pairs:
            label = _column_label(value, names)
            if value == error:
                raise ValueError(f"error_columns pairs column {label} with itself")
            if value in error_of:
                raise ValueError(
                    f"error_columns gives column {label} two error columns "
                    f"({_column_label(error_of[value], names)} and {_column_label(error, names)})"
                )
            if error in used_as_error:
                raise ValueError(
                    f"error_columns uses column {_column_label(error, names)} as the error "
                    "of two columns"
                )
            error_of[value] = error
            used_as_error.add(error)
        clash = used_as_error & set(error_of)
        if clash:
            raise ValueError(
                "error_columns uses column(s) "
                f"{[_column_label(c, names) for c in sorted(clash)]} both as a value and as an "
                "error"
            )
        values = np.array([j for j in range(n_features) if j not in used_as_error], dtype=np.intp)
        self.value_columns_ = values
        self.error_columns_ = np.array([error_of.get(j, -1) for j in values], dtype=np.intp)
        if names is not None:
            self.value_feature_names_ = np.asarray(names)[values]
        elif hasattr(self, "value_feature_names_"):
            del self.value_feature_names_

    def _values_and_errors(self, X: np.ndarray, X_err: Any, method: str):
        """Split validated X into value columns and their errors (None if all exact)."""
        has_columns = (self.error_columns_ >= 0).any()
        # No error columns: the value columns are all of X, in order (no copy needed).
        X_values = X[:, self.value_columns_] if has_columns else X
        if X_err is not None and has_columns:
            raise ValueError(
                f"X_err was passed to {method} but error_columns={self.error_columns!r} "
                "already reads the input errors from columns of X; give one or the other"
            )
        if has_columns:
            errors = np.zeros_like(X_values)
            for k, col in enumerate(self.error_columns_):
                if col < 0:
                    continue
                errors[:, k] = X[:, col]
                bad = errors[:, k] < 0
                if bad.any():
                    label = _column_label(col, getattr(self, "feature_names_in_", None))
                    raise ValueError(
                        f"error column {label} of X must be non-negative (standard "
                        f"deviations); got {int(bad.sum())} negative values (min "
                        f"{errors[:, k].min():g})"
                    )
            return X_values, errors
        if X_err is None:
            return X_values, None
        X_err = _check_error_array(X_err, "X_err", X.shape)
        return X_values, np.broadcast_to(X_err, X.shape)

    def _oob_summary(self, results, n_samples: int) -> _Stats:
        """Out-of-bag mean, tree variance and number of trees of each training star."""
        oob = np.full((len(results), n_samples), np.nan)
        drawn = np.full((len(results), n_samples), np.nan)
        for t, (_, rows, pred, pred_drawn) in enumerate(results):
            oob[t, rows] = pred
            drawn[t, rows] = pred_drawn
        count = np.sum(~np.isnan(oob), axis=0)
        mean, var = np.full((2, n_samples), np.nan)
        seen = count > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean[seen] = np.nanmean(oob[:, seen], axis=0)
            var[seen] = _spread(drawn[:, seen], self.spread, nan=True) ** 2
        n_never = int((~seen).sum())
        if n_never:
            # one star in thousands: it only drops out of the out-of-bag bias and calibration fits
            logger.debug(
                "%d of %d training star(s) were drawn into every tree's bootstrap sample, so no "
                "tree left them out to check them; the uncertainty calibration uses the others",
                n_never,
                n_samples,
            )
        return _Stats(mean, var, count)

    def _bias(self, X_values: np.ndarray) -> np.ndarray | float:
        if self.bias_model_ is None:
            return 0.0
        return self.bias_model_.predict(X_values)

    def _sigma(self, var, n_trees, X_values, regions=None):
        """σ from the variance of the trees' predictions and the number of trees averaged
        (``regions``: the calibration region of each row, if not those of its inputs)."""
        if self.calibration_scale_ is None:
            return np.sqrt(var)
        scale = self.calibration_scale_
        if regions is None:
            regions = self._calibration_regions(X_values)
        if regions is not None:
            scale = self.calibration_scales_[regions]
        return np.sqrt(var * (scale**2 + 1.0 / n_trees))

    def _calibration_regions(self, X_values: np.ndarray) -> np.ndarray | None:
        """The calibration region of each row (index into ``calibration_scales_``)."""
        classifier = getattr(self, "calibration_classifier_", None)
        if classifier is not None:
            return np.argmax(classifier.predict_proba(X_values), axis=1)
        tree = getattr(self, "calibration_tree_", None)
        return None if tree is None else tree.apply(X_values)

    def _map_chunks(self, X_values, errors, func, desc, need_var=True):
        n = X_values.shape[0]
        size = int(
            np.clip(_CHUNK_VALUES // len(self.estimators_), _CHUNK_ROWS_MIN, _CHUNK_ROWS_MAX)
        )
        starts = range(0, n, size)
        ctx = {
            "trees": self.estimators_,
            "err_cols": _error_column_mask(errors),
            "bias": self.bias_model_,
            "spread": self.spread,
            "need_var": need_var,
            "clean_mean": self.perturb_inputs == "sigma",
        }
        jobs = (
            delayed(func)(
                ctx,
                X_values[a : a + size],
                None if errors is None else errors[a : a + size],
                np.random.default_rng([self._predict_seed, a // size]),
            )
            for a in starts
        )
        return list(
            tqdm(
                Parallel(n_jobs=self.n_jobs, prefer="threads", return_as="generator")(jobs),
                total=len(starts),
                desc=desc,
                disable=not self.verbose,
            )
        )

    def _predict_stats(self, X_values, errors, need_var: bool = True) -> _Stats:
        parts = self._map_chunks(X_values, errors, _chunk_stats, "predicting", need_var)
        mean = np.concatenate([m for m, _ in parts])
        var = np.concatenate([v for _, v in parts]) if need_var else None
        return _Stats(mean, var, len(self.estimators_))


class _Stats(NamedTuple):
    """Mean over trees, variance of the trees' predictions, number of trees averaged."""

    mean: np.ndarray
    var: np.ndarray
    count: Any  # int, or a per-star array out of bag


# --------------------------------------------------------------------------------------------
# Workers (run in joblib threads; tree fitting and prediction release the GIL)
# --------------------------------------------------------------------------------------------
def _check_calibration_mask(mask: Any, n_samples: int) -> np.ndarray | None:
    if mask is None:
        return None
    values = np.asarray(mask)
    if values.shape != (n_samples,) or values.dtype.kind not in "bui":
        raise ValueError(
            f"calibration_mask must be a boolean array of shape ({n_samples},), one entry "
            f"per star; got shape {values.shape}, dtype {values.dtype}"
        )
    values = values.astype(bool)
    if not values.any():
        raise ValueError("calibration_mask selects no star: the calibration needs some")
    return values


def _drop_missing_targets(
    X, y, X_err, y_err, sample_weight, calibration_mask=None, calibration_groups=None
):
    """Rows of every per-star argument whose target is finite (missing_target="ignore")."""
    from sklearn.utils.validation import column_or_1d

    def take(value, mask):
        return value.iloc[mask] if hasattr(value, "iloc") else np.asarray(value)[mask]

    y = column_or_1d(np.asarray(y, dtype=np.float64), warn=True)
    keep = np.isfinite(y)
    if keep.all():
        return X, y, X_err, y_err, sample_weight, calibration_mask, calibration_groups
    if not keep.any():
        raise ValueError("y is NaN for every star: no target to learn from")
    n = y.shape[0]

    def rows(value):
        if value is None or np.ndim(value) == 0 or np.shape(value)[0] != n:
            return value  # None, scalars and per-feature 1-D X_err apply to every star
        return take(value, keep)

    logger.info("missing_target='ignore': %d of %d stars have no target", n - keep.sum(), n)
    return (
        take(X, keep),
        y[keep],
        rows(X_err),
        rows(y_err),
        rows(sample_weight),
        rows(calibration_mask),
        rows(calibration_groups),
    )


def _fit_tree(tree, seed, X32, y, errors, err_cols, y_err, weights, n_bootstrap, blur_fit=True):
    """Grow one tree; return it with its out-of-bag rows, their predictions for the mean and
    their predictions on a draw of N(X, X_err) for the spread.

    With ``blur_fit`` (perturb_inputs="fit_and_predict") the tree grows on a draw of
    N(X, X_err) and both predictions are the drawn ones; otherwise it grows on X and the
    mean comes from X itself.
    """
    rng = np.random.default_rng([seed, _STREAM_FIT])
    X_tree = _perturb(X32, errors, err_cols, rng) if blur_fit else X32
    y_tree = y if y_err is None else y + rng.standard_normal(y.shape[0]) * y_err
    if n_bootstrap is None:
        tree.fit(X_tree, y_tree, sample_weight=weights, check_input=False)
        return tree, np.empty(0, np.intp), np.empty(0), np.empty(0)
    # Same draw as scikit-learn's forest for a tree of this seed: uniform, or weighted.
    state = np.random.RandomState(seed)
    n = X32.shape[0]
    if weights is None:
        drawn = state.randint(0, n, n_bootstrap)
    else:
        drawn = state.choice(n, n_bootstrap, replace=True, p=weights / weights.sum())
    counts = np.bincount(drawn, minlength=n).astype(np.float64)
    tree.fit(X_tree, y_tree, sample_weight=counts, check_input=False)
    oob_rows = np.flatnonzero(counts == 0)
    if oob_rows.size == 0:
        return tree, oob_rows, np.empty(0), np.empty(0)
    X_oob = _perturb(
        X32[oob_rows],
        None if errors is None else errors[oob_rows],
        err_cols,
        np.random.default_rng([seed, _STREAM_OOB]),
    )
    drawn = tree.predict(X_oob, check_input=False)
    if blur_fit or X_oob is X32 or errors is None or not err_cols.any():
        return tree, oob_rows, drawn, drawn
    return tree, oob_rows, tree.predict(X32[oob_rows], check_input=False), drawn


def _iter_tree_predictions(ctx, X_values, errors, rng):
    """Yield each tree's predictions (without bias correction) for one chunk of rows, each
    tree predicting on its own draw of N(X, X_err).

    The draws come from one table of standard normals per chunk; each tree reads a window
    of it starting at its own offset, the offsets all distinct, so that every star gets
    independent draws in different trees at a fraction of the cost of fresh draws.
    """
    trees, err_cols = ctx["trees"], ctx["err_cols"]
    X32 = np.ascontiguousarray(X_values, dtype=np.float32)
    if errors is None or not err_cols.any():
        for tree in trees:
            yield tree.predict(X32, check_input=False)
        return
    n_rows, n_trees = X32.shape[0], len(trees)
    cols = np.flatnonzero(err_cols)
    err32 = np.ascontiguousarray(errors[:, cols], dtype=np.float32)
    n_offsets = _OFFSETS_PER_TREE * n_trees
    offsets = rng.choice(n_offsets, n_trees, replace=False)
    table = rng.standard_normal((n_rows + n_offsets, cols.size), dtype=np.float32)
    X_draw = X32.copy()
    every_column = cols.size == X32.shape[1]
    X_sub = X32 if every_column else np.ascontiguousarray(X32[:, cols])
    noise = X_draw if every_column else np.empty_like(err32)
    for offset, tree in zip(offsets, trees, strict=True):
        np.multiply(table[offset : offset + n_rows], err32, out=noise)
        noise += X_sub
        if not every_column:
            X_draw[:, cols] = noise
        yield tree.predict(X_draw, check_input=False)


def _chunk_trees(ctx, X_values, errors, rng):
    """Per-tree predictions of one chunk of rows, shape (n_trees, n_rows)."""
    preds = np.empty((len(ctx["trees"]), X_values.shape[0]))
    for t, pred in enumerate(_iter_tree_predictions(ctx, X_values, errors, rng)):
        preds[t] = pred
    if ctx["bias"] is not None:
        preds += ctx["bias"].predict(X_values)
    return preds


def _chunk_stats(ctx, X_values, errors, rng):
    """Mean over trees and variance of the trees' predictions for one chunk of rows."""
    n_trees = len(ctx["trees"])
    blurred = errors is not None and ctx["err_cols"].any()
    if ctx["clean_mean"] and blurred:
        # perturb_inputs="sigma": the mean of the trees on X itself, the spread from draws
        clean = dict(ctx, need_var=False)
        mean, _ = _chunk_stats(clean, X_values, None, rng)
        if not ctx["need_var"]:
            return mean, None
        _, var = _chunk_stats(dict(ctx, clean_mean=False), X_values, errors, rng)
        return mean, var
    if not ctx["need_var"]:
        total = np.zeros(X_values.shape[0])
        for pred in _iter_tree_predictions(ctx, X_values, errors, rng):
            total += pred
        mean, var = total / n_trees, None
    elif ctx["spread"] == "std":
        # Running sums keep memory at a few rows' worth per tree; deviations are taken from
        # the first tree's prediction to avoid cancellation.
        total = ref = sq = None
        for pred in _iter_tree_predictions(ctx, X_values, errors, rng):
            if total is None:
                total, ref, sq = pred.copy(), pred, np.zeros_like(pred)
                continue
            total += pred
            pred -= ref
            pred *= pred
            sq += pred
        mean = total / n_trees
        var = np.maximum(sq - n_trees * (mean - ref) ** 2, 0.0) / max(n_trees - 1, 1)
    else:
        preds = _chunk_trees(ctx, X_values, errors, rng)
        mean = preds.mean(axis=0)
        var = _spread(preds, "mad_std") ** 2
        return mean, var
    if ctx["bias"] is not None:
        mean += ctx["bias"].predict(X_values)
    return mean, var


def _spread(preds, kind: str, nan: bool = False) -> np.ndarray:
    """Spread over trees (axis 0): sample standard deviation or astropy's mad_std."""
    if kind == "std":
        ddof = 1 if preds.shape[0] > 1 else 0
        return np.nanstd(preds, axis=0, ddof=ddof) if nan else preds.std(axis=0, ddof=ddof)
    # Rows contiguous: medians along the last axis are faster.
    rows = np.ascontiguousarray(preds.T)
    return np.asarray(mad_std(rows, axis=1, ignore_nan=nan), dtype=np.float64)


def _perturb(X32, errors, err_cols, rng):
    """One draw of N(X, errors) on the columns that have errors (X itself if none)."""
    if errors is None or not err_cols.any():
        return X32
    out = X32.copy()
    noise = rng.standard_normal((X32.shape[0], int(err_cols.sum())), dtype=np.float32)
    out[:, err_cols] += noise * errors[:, err_cols]
    return out


# --------------------------------------------------------------------------------------------
# Fitting helpers
# --------------------------------------------------------------------------------------------
def _draw_seeds(random_state, n_estimators: int) -> tuple[np.ndarray, int]:
    """Per-tree seeds (as scikit-learn's forest draws them) and one prediction seed."""
    if isinstance(random_state, np.random.Generator):
        seeds = random_state.integers(_MAX_INT, size=n_estimators + 1)
    elif random_state is None:
        # Fresh OS entropy, never the global numpy state.
        seeds = np.random.default_rng().integers(_MAX_INT, size=n_estimators + 1)
    else:
        seeds = check_random_state(random_state).randint(_MAX_INT, size=n_estimators + 1)
    return seeds[:-1], int(seeds[-1])


def _fit_bias(X_values, residual, weights) -> LinearRegression | None:
    if residual.shape[0] < 2:
        warnings.warn(
            "bias correction skipped: fewer than two stars have an out-of-bag residual",
            UserWarning,
            stacklevel=3,
        )
        return None
    return LinearRegression().fit(X_values, residual, sample_weight=weights)


def _z_spread(z: np.ndarray, statistic: str) -> float:
    """mad_std of z ("oob") or, for "oob_coverage", the geometric mean of the 68.27 %
    quantile of |z| and half its 95.45 % quantile; 1 when calibrated."""
    if statistic == "oob_coverage":
        one, two = np.quantile(np.abs(z), [_ONE_SIGMA, _TWO_SIGMA])
        return float(np.sqrt(one * two / 2.0))
    return float(mad_std(z))


def _fit_calibration_scale(residual, var, n_trees, y_err, min_trees, statistic="oob") -> float:
    """Scale s giving out-of-bag z-scores of unit spread, with σ² = var (s² + 1/T).

    The spread is mad_std (``statistic="oob"``) or the geometric mean of the 68.27 %
    quantile of |z| and half its 95.45 % quantile (``"oob_coverage"``: split-conformal on
    the normalised out-of-bag residuals, at 1σ and 2σ).
    """
    err2 = np.zeros_like(residual) if y_err is None else y_err**2
    with np.errstate(invalid="ignore", divide="ignore"):
        a = var
        b = var / n_trees + err2
    ok = (n_trees >= min_trees) & np.isfinite(residual) & np.isfinite(a) & np.isfinite(b)
    ok &= (a > 0) | (b > 0)
    if ok.sum() < 10:
        warnings.warn(
            f"calibration skipped: only {int(ok.sum())} stars have {min_trees} or more "
            "out-of-bag trees (at least 10 such stars needed); calibration_scale_ set to 1. "
            "Use more trees or stars, or calibration=None.",
            UserWarning,
            stacklevel=3,
        )
        return 1.0
    r, a, b = residual[ok], a[ok], b[ok]
    if not (a > 0).any():
        return 1.0  # every tree agrees on every star: s has nothing to scale

    def excess_width(s):
        return _z_spread(r / np.sqrt(a * s * s + b), statistic) - 1.0

    if excess_width(0.0) <= 0:
        # The target errors and the finite number of trees explain the residuals.
        return 0.0
    hi = 1.0
    while excess_width(hi) > 0 and hi < 1e9:
        hi *= 2.0
    return float(brentq(excess_width, 0.0, hi, xtol=1e-6))


def _conformal_quantiles(z: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Split-conformal quantiles of z: the order statistic ⌈(n + 1) p⌉ for p > 1/2 and
    ⌊(n + 1) p⌋ for p < 1/2, so a new star falls beyond each bound with probability at
    most min(p, 1 − p) (clipped to the extreme residual where n is too small)."""
    z = np.sort(z)
    n = z.size
    rank = np.where(probs > 0.5, np.ceil((n + 1) * probs), np.floor((n + 1) * probs))
    rank = np.where(probs == 0.5, np.round((n + 1) * probs), rank)
    return z[np.clip(rank.astype(int), 1, n) - 1]


def _fit_local_scales(X_values, residual, var, n_trees, y_err, min_trees, scale):
    """Per-region scales: a shallow tree on the inputs splits where the out-of-bag |z| of
    the global ``scale`` differs, and each leaf gets its own coverage-matched scale.

    Returns the tree and the scale of every node (indexed by ``tree.apply``), or
    (None, None) when fewer than ``2 * _LOCAL_MIN_STARS`` stars can be used.
    """
    err2 = np.zeros_like(residual) if y_err is None else y_err**2
    with np.errstate(invalid="ignore", divide="ignore"):
        z = residual / np.sqrt(var * (scale**2 + 1.0 / n_trees) + err2)
    ok = (n_trees >= min_trees) & np.isfinite(z)
    n_ok = int(ok.sum())
    if n_ok < 2 * _LOCAL_MIN_STARS:
        return None, None  # too few stars for two regions: the global scale stands
    tree = DecisionTreeRegressor(
        max_leaf_nodes=_LOCAL_LEAVES,
        min_samples_leaf=max(_LOCAL_MIN_STARS, n_ok // (2 * _LOCAL_LEAVES)),
        random_state=0,
    ).fit(X_values[ok], np.abs(z[ok]))
    leaves = tree.apply(X_values)
    scales = np.full(tree.tree_.node_count, float(scale))
    for leaf in np.unique(leaves[ok]):
        scales[leaf] = _subset_scale(leaves == leaf, residual, var, n_trees, y_err, min_trees)
    return tree, scales


def _subset_scale(m, residual, var, n_trees, y_err, min_trees) -> float:
    """The coverage-matched scale ("oob_coverage") of the stars selected by ``m``."""
    err = None if y_err is None else y_err[m]
    return _fit_calibration_scale(
        residual[m], var[m], n_trees[m], err, min_trees, statistic="oob_coverage"
    )


def _fit_group_classifier(X_values, groups, fit_mask, seed):
    """The classifier of ``groups`` from the inputs (on the ``fit_mask`` stars), and the
    class index of every star: out-of-bag for the stars it learned from (what a new star
    of the same kind would get), predicted for the others."""
    from sklearn.ensemble import RandomForestClassifier

    classifier = RandomForestClassifier(
        n_estimators=_GROUP_TREES,
        min_samples_leaf=_GROUP_MIN_LEAF,
        oob_score=True,
        random_state=int(seed) % (2**32 - 1),
    ).fit(X_values[fit_mask], groups[fit_mask])
    regions = np.argmax(classifier.predict_proba(X_values), axis=1)
    oob = np.nan_to_num(classifier.oob_decision_function_, nan=0.0)
    seen = oob.sum(axis=1) > 0  # left out by some tree (nearly every star)
    regions[np.flatnonzero(fit_mask)[seen]] = np.argmax(oob[seen], axis=1)
    return classifier, regions


def _fit_group_scales(regions, n_groups, residual, var, n_trees, y_err, min_trees, scale):
    """Coverage-matched scale of each predicted group from its calibration stars; a group
    with fewer than ``_GROUP_MIN_STARS`` usable ones keeps the global ``scale``."""
    scales = np.full(n_groups, float(scale))
    usable = (n_trees >= min_trees) & np.isfinite(residual)
    for group in range(n_groups):
        m = regions == group
        if (m & usable).sum() >= _GROUP_MIN_STARS:
            scales[group] = _subset_scale(m, residual, var, n_trees, y_err, min_trees)
    return scales


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------
def _as_float_array(value, name: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric array-like, got {type(value).__name__}") from exc


def _check_error_array(value, name: str, shape: tuple[int, int]) -> np.ndarray:
    arr = _as_float_array(value, name)
    if arr.shape not in (shape, shape[1:]):
        raise ValueError(
            f"{name} must have the shape of X {shape} (or {shape[1:]}, the same errors for "
            f"every star), got shape {arr.shape}"
        )
    _check_finite_non_negative(arr, name)
    return arr


def _check_y_err(y_err, n_samples: int) -> np.ndarray | None:
    if y_err is None:
        return None
    arr = _as_float_array(y_err, "y_err")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n_samples,):
        raise ValueError(f"y_err must have shape ({n_samples},) like y, got shape {arr.shape}")
    _check_finite_non_negative(arr, "y_err")
    return arr


def _validate_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    arr = _as_float_array(sample_weight, "sample_weight")
    if arr.ndim == 0:
        arr = np.full(n_samples, float(arr))
    if arr.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},) like y, got shape {arr.shape}"
        )
    _check_finite_non_negative(arr, "sample_weight")
    if arr.sum() <= 0:
        raise ValueError("sample_weight must have a positive sum, got all zeros")
    return arr


def _check_finite_non_negative(arr: np.ndarray, name: str) -> None:
    n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    if n_nan or n_inf:
        raise ValueError(f"{name} must be finite, got {n_nan} NaN and {n_inf} infinite values")
    if (arr < 0).any():
        raise ValueError(
            f"{name} must be non-negative, got {int((arr < 0).sum())} negative values "
            f"(min {arr.min():g})"
        )


def _error_column_mask(errors) -> np.ndarray:
    if errors is None:
        return np.zeros(0, dtype=bool)
    return np.asarray(errors).any(axis=0)


def _column_index(key, names, n_features: int) -> int:
    if isinstance(key, bool | np.bool_):
        raise ValueError(f"error_columns entries must be column names or indices, got {key!r}")
    if isinstance(key, numbers.Integral):
        if not 0 <= key < n_features:
            raise ValueError(
                f"error_columns refers to column index {key}, but X has {n_features} columns "
                f"(valid indices 0 to {n_features - 1})"
            )
        return int(key)
    if isinstance(key, str):
        if names is None:
            raise ValueError(
                f"error_columns names column {key!r}, but X has no column names (fit on a "
                "DataFrame, or use integer indices)"
            )
        matches = np.flatnonzero(np.asarray(names) == key)
        if matches.size == 0:
            raise ValueError(
                f"error_columns names column {key!r}, which is not a column of X "
                f"{list(map(str, names))}"
            )
        return int(matches[0])
    raise ValueError(
        f"error_columns entries must be column names (str) or indices (int), got {key!r}"
    )


def _column_label(index: int, names) -> str:
    return repr(str(names[index])) if names is not None else f"at index {index}"
