"""Diagnostics of a fitted encoder's latent space needed by both the report and the figures.

:mod:`skages.evaluation` (which draws through :mod:`skages.plotting`) and
:mod:`skages.plotting` both use :func:`latent_numax_track`; it lives here, below both,
so neither imports the other back. Its public name is
:func:`skages.evaluation.latent_numax_track`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["latent_numax_track"]


def latent_numax_track(encoder: Any, z: Any, numax: Any, *, n_points: int = 6) -> dict:
    """Decode the median latent point of stars in bins of νmax (the paper's Fig. 4).

    The stars are split into ``n_points`` bins of equal width in log νmax between the
    2nd and 98th percentiles; the median latent position of each bin is decoded into a
    PSD, whose νmax is measured (:func:`skages.seismology.estimate_numax`). A latent
    space that has learned νmax gives decoded PSDs with the νmax of their stars.

    Parameters
    ----------
    encoder : SpectrumToPSDEncoder
        Fitted encoder.
    z : array-like of shape (n_stars, latent_dim)
        Latent means.
    numax : array-like of shape (n_stars,)
        The stars' νmax, µHz (NaN skipped).
    n_points : int, default=6
        Number of bins.

    Returns
    -------
    dict
        ``stated`` (median νmax of each bin's stars, µHz: what the decoded PSD is meant
        to have), ``obtained`` (νmax of the decoded PSD, µHz), ``n`` (stars per bin),
        ``points`` (the latent points) and ``psd`` (the decoded ln PSDs); empty bins are
        left out.
    """
    from skages.seismology import estimate_numax

    z = np.asarray(z, float)
    nu = np.asarray(numax, float)
    ok = np.isfinite(nu) & (nu > 0) & np.isfinite(z).all(axis=1)
    log_nu = np.log10(nu[ok])
    edges = np.linspace(*np.percentile(log_nu, [2, 98]), n_points + 1)
    which = np.clip(np.searchsorted(edges, log_nu, side="right") - 1, 0, n_points - 1)
    points, stated, counts = [], [], []
    for k in range(n_points):
        members = which == k
        if not members.any():
            continue
        points.append(np.median(z[ok][members], axis=0))
        stated.append(float(10 ** np.median(log_nu[members])))
        counts.append(int(members.sum()))
    points = np.asarray(points)
    psd = np.asarray(encoder.decode(points), float)
    obtained = [float(estimate_numax(row)) for row in psd]
    return {
        "stated": stated,
        "obtained": obtained,
        "n": counts,
        "points": points,
        "psd": psd,
    }
