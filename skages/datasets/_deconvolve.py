"""One-dimensional extreme deconvolution (Bovy, Hogg & Roweis 2011) and its posteriors.

A Gaussian mixture ``p(x) = Σ_k w_k N(x; μ_k, V_k)`` is fitted to noisy values
``y_i = x_i + e_i``, ``e_i ~ N(0, s_i²)`` with known, star-by-star ``s_i``, by the
EM algorithm of extreme deconvolution. Drawing ``x_i`` from each star's posterior
``p(x | y_i, s_i)`` then gives a sample distributed as the deconvolved ``p(x)``
(if ``y_i`` follow the model), so resampled catalogue values lose the catalogue's
measurement noise while keeping their correlations with the other columns.
"""

from __future__ import annotations

import numpy as np


def fit_xd(y, s, n_components: int = 3, *, n_iter: int = 500, tol: float = 1e-9, seed: int = 0):
    """Fit a 1-D Gaussian mixture to noisy values by extreme deconvolution.

    Parameters
    ----------
    y : array-like of shape (n,)
        Measured values.
    s : array-like of shape (n,)
        Their 1-σ uncertainties (same unit as ``y``), > 0.
    n_components : int, default=3
        Number of Gaussians.
    n_iter, tol : int, float
        EM iterations at most, and stop when the mean log-likelihood changes by less.
    seed : int
        Seed of the initial means (quantiles of ``y`` plus a small random shift).

    Returns
    -------
    weights, means, variances : ndarray of shape (n_components,)
        The deconvolved mixture (``variances`` in the unit of ``y`` squared).
    """
    y = np.asarray(y, float)
    s2 = np.asarray(s, float) ** 2
    if y.ndim != 1 or y.shape != s2.shape or not np.all(np.isfinite(y) & (s2 > 0)):
        raise ValueError("y and s must be finite 1-D arrays of the same length, s > 0")
    rng = np.random.default_rng(seed)
    k = int(n_components)
    q = (np.arange(k) + 0.5) / k
    mu = np.quantile(y, q) + 1e-3 * np.std(y) * rng.standard_normal(k)
    var = np.full(k, np.var(y) / k)
    w = np.full(k, 1.0 / k)
    last = -np.inf
    for _ in range(n_iter):
        t = var[None, :] + s2[:, None]  # (n, k)
        logp = np.log(w)[None, :] - 0.5 * (np.log(2 * np.pi * t) + (y[:, None] - mu) ** 2 / t)
        top = logp.max(axis=1, keepdims=True)
        like = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
        r = np.exp(logp - like[:, None])  # responsibilities
        b = mu + var * (y[:, None] - mu) / t  # posterior means per component
        bvar = var - var**2 / t  # posterior variances per component
        nk = r.sum(axis=0)
        w = nk / y.size
        mu = (r * b).sum(axis=0) / nk
        var = (r * ((b - mu) ** 2 + bvar)).sum(axis=0) / nk
        var = np.maximum(var, 1e-8)
        ll = like.mean()
        if abs(ll - last) < tol:
            break
        last = ll
    order = np.argsort(mu)
    return w[order], mu[order], var[order]


def sample_posterior(rng: np.random.Generator, y, s, weights, means, variances) -> np.ndarray:
    """One draw per value from ``p(x | y, s)`` under the mixture prior.

    Parameters
    ----------
    rng : numpy.random.Generator
    y, s : array-like of shape (n,)
        Measured values and their 1-σ uncertainties.
    weights, means, variances : array-like of shape (k,)
        The prior mixture (from :func:`fit_xd`).

    Returns
    -------
    ndarray of shape (n,)
    """
    y = np.asarray(y, float)
    s2 = np.asarray(s, float) ** 2
    w, mu, var = (np.asarray(a, float) for a in (weights, means, variances))
    t = var[None, :] + s2[:, None]
    logp = np.log(w)[None, :] - 0.5 * (np.log(t) + (y[:, None] - mu) ** 2 / t)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(y.size)
    comp = np.minimum((np.cumsum(p, axis=1) < u[:, None]).sum(axis=1), w.size - 1)
    m = (mu[comp] * s2 + y * var[comp]) / t[np.arange(y.size), comp]
    v = var[comp] * s2 / t[np.arange(y.size), comp]
    return m + np.sqrt(v) * rng.standard_normal(y.size)
