"""An applicability score: how far a star lies from the stars a model was trained on.

:class:`ApplicabilityScore` is fitted on the inputs a model saw (in the age pipeline: the
latent coordinates with their σ, Teff and [Fe/H] with their errors) and scores a new star
by its mean distance to its ``n_neighbors`` nearest training stars, each input scaled by
the robust spread of the training set. The score is divided by the same distance that
``outside_fraction`` of the training stars exceed (each measured without itself), so a
score above 1 means "further out than all but that fraction of the training set": the
catalogue's ``OUTSIDE_TRAINING`` flag. The age of such a star is still computed, but it
is an extrapolation.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["ApplicabilityScore"]


class ApplicabilityScore(BaseEstimator):
    """Distance of stars to a training set, calibrated on that set.

    Parameters
    ----------
    n_neighbors : int, default=10
        Number of nearest training stars whose mean distance is the raw score.
    outside_fraction : float, default=0.01
        Fraction of the training stars (each scored without itself) whose score exceeds
        1: the threshold of :meth:`predict` and of the ``OUTSIDE_TRAINING`` flag.

    Attributes
    ----------
    center_ : ndarray of shape (n_features,)
        Median of each input over the training set (units of the input).
    scale_ : ndarray of shape (n_features,)
        Robust spread (interquartile range / 1.349) of each input; 1 where it is 0.
    train_ : ndarray of shape (n_samples, n_features)
        The scaled training inputs.
    threshold_ : float
        Raw score (mean distance in scaled units) exceeded by ``outside_fraction`` of the
        training stars.
    training_scores_ : ndarray of shape (n_samples,)
        The score of each training star without itself (the calibration sample).
    offset_ : float
        -1: ``decision_function = score_samples - offset_`` (scikit-learn's convention).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only with a DataFrame at fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.applicability import ApplicabilityScore
    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(size=(500, 2))
    >>> score = ApplicabilityScore().fit(train)
    >>> score.applicability([[0.0, 0.0], [8.0, 0.0]]).round(1)
    array([0.1, 5.5])
    >>> score.predict([[0.0, 0.0], [8.0, 0.0]])
    array([ 1, -1])
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "outside_fraction": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(self, n_neighbors: int = 10, outside_fraction: float = 0.01) -> None:
        self.n_neighbors = n_neighbors
        self.outside_fraction = outside_fraction

    def fit(self, X: Any, y: Any = None) -> ApplicabilityScore:
        """Store the scaled training inputs and calibrate the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The inputs the model was trained on. No NaN.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        self.center_ = np.median(X, axis=0)
        q75, q25 = np.percentile(X, [75, 25], axis=0)
        scale = (q75 - q25) / 1.3489795003921634
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self.train_ = (X - self.center_) / self.scale_
        # every training star scored against the others (its own row dropped)
        raw = self._raw(self.train_, leave_one_out=True)
        self.threshold_ = float(np.quantile(raw, 1.0 - self.outside_fraction))
        if not self.threshold_ > 0:
            self.threshold_ = float(np.finfo(np.float64).tiny)
        self.training_scores_ = raw / self.threshold_
        self.offset_ = -1.0
        return self

    def _raw(self, Z: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        n_train = self.train_.shape[0]
        k = min(self.n_neighbors, n_train - 1 if leave_one_out else n_train)
        k = max(k, 1)
        nn = NearestNeighbors(n_neighbors=k + leave_one_out).fit(self.train_)
        dist, _ = nn.kneighbors(Z)
        if leave_one_out:
            dist = dist[:, 1:]
        return dist.mean(axis=1)

    def applicability(self, X: Any) -> np.ndarray:
        """The score: the raw distance over the training threshold (> 1: outside).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs with the columns seen at fit. No NaN.

        Returns
        -------
        ndarray of shape (n_samples,)
            Dimensionless; ``outside_fraction`` of the training stars score above 1.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._raw((X - self.center_) / self.scale_) / self.threshold_

    def score_samples(self, X: Any) -> np.ndarray:
        """Minus :meth:`applicability` (higher is more like the training set)."""
        return -self.applicability(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``1 - applicability``: negative outside the training set."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """1 inside the training set, -1 outside (score > 1)."""
        return np.where(self.decision_function(X) < 0, -1, 1)
