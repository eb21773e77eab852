"""Figures: power spectra, and (in later modules) the paper's diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_psd"]


def plot_psd(
    log_psd: Any,
    frequency: Any = None,
    *,
    numax: float | None = None,
    ax: Any = None,
    label: str | None = None,
    **kwargs: Any,
):
    """Plot a 2092-pixel log PSD against frequency, marking νmax.

    Parameters
    ----------
    log_psd : array-like of shape (n_pixels,)
        Natural-log PSD (background-divided power).
    frequency : array-like of shape (n_pixels,), optional
        Frequencies in µHz; defaults to :func:`skages.seismology.frequency_grid`.
    numax : float, optional
        νmax in µHz, drawn as a vertical line.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if None.
    label : str, optional
        Legend label of the PSD curve.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if frequency is None:
        from skages.seismology import frequency_grid

        frequency = frequency_grid()
    y = np.asarray(log_psd, dtype=float)
    f = np.asarray(frequency, dtype=float)
    if y.shape != f.shape:
        raise ValueError(f"log_psd has shape {y.shape} but frequency has shape {f.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    kwargs.setdefault("lw", 0.6)
    ax.plot(f, y, label=label, **kwargs)
    if numax is not None:
        ax.axvline(numax, color="C3", ls="--", lw=1, label=f"νmax = {numax:.1f} µHz")
    ax.set_xscale("log")
    ax.set_xlabel("Frequency (µHz)")
    ax.set_ylabel("ln(PSD / background)")
    if label is not None or numax is not None:
        ax.legend(loc="upper left", fontsize="small")
    return ax
