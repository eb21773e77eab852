"""Figures: power spectra, and (in later modules) the paper's diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "plot_age_comparison",
    "plot_alpha_sensitivity",
    "plot_confusion",
    "plot_latent_jacobian",
    "plot_latent_regressions",
    "plot_latent_space",
    "plot_psd",
    "plot_psd_from_latent",
    "plot_psd_reconstruction",
    "plot_scatter_bars",
    "plot_z_scores",
]


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


# ------------------------------------------------------- the paper's diagnostics


def _axes(ax, figsize=(5.5, 4.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_age_comparison(
    log_age_true: Any,
    log_age_pred: Any,
    log_age_std: Any = None,
    *,
    evstate: Any = None,
    ax: Any = None,
    title: str | None = None,
):
    """Predicted against reference ages, by evolutionary state (the paper's Fig. 10).

    Parameters
    ----------
    log_age_true, log_age_pred : array-like of shape (n_stars,)
        Reference and predicted log10 ages, log10(Gyr); NaN references are skipped.
    log_age_std : array-like of shape (n_stars,), optional
        Predicted 1σ, log10(Gyr), drawn as error bars.
    evstate : array-like of str, optional
        "RGB" / "RC", coloured separately with their scatter in the legend.
    ax : matplotlib.axes.Axes, optional
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from skages.pipeline import age_scatter

    ax = _axes(ax)
    t = np.asarray(log_age_true, float)
    p = np.asarray(log_age_pred, float)
    s = None if log_age_std is None else np.asarray(log_age_std, float)
    ok = np.isfinite(t) & np.isfinite(p)
    states = np.full(t.shape, "all") if evstate is None else np.asarray(evstate).astype(str)
    for state, colour in (("RGB", "C0"), ("RC", "C3"), ("all", "C0")):
        m = ok & (states == state)
        if m.sum() < 2:
            continue
        label = f"{state}: scatter {age_scatter(t[m], p[m]):.1f} % (n={m.sum()})"
        ax.errorbar(
            10 ** t[m],
            10 ** p[m],
            yerr=None
            if s is None
            else [10 ** p[m] - 10 ** (p[m] - s[m]), 10 ** (p[m] + s[m]) - 10 ** p[m]],
            fmt="o",
            ms=2.5,
            alpha=0.5,
            elinewidth=0.4,
            color=colour,
            label=label,
        )
    lim = [0.5, 15]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=lim,
        ylim=lim,
        xlabel="reference age (Gyr)",
        ylabel="predicted age (Gyr)",
    )
    ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def plot_psd_reconstruction(psd_true: Any, psd_pred: Any, *, labels: Any = None, frequency=None):
    """True and reconstructed PSDs of a few stars (the paper's Fig. 3).

    Parameters
    ----------
    psd_true, psd_pred : array-like of shape (n_stars, n_pixels)
        Natural-log PSDs; one panel per star.
    labels : sequence of str, optional
        Panel titles.
    frequency : array-like, optional
        µHz; defaults to the 2092-pixel grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if frequency is None:
        from skages.seismology import frequency_grid

        frequency = frequency_grid()
    t, p = np.atleast_2d(psd_true), np.atleast_2d(psd_pred)
    fig, axes = plt.subplots(
        len(t), 1, figsize=(8, 1.9 * len(t)), sharex=True, layout="constrained", squeeze=False
    )
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(frequency, t[i], lw=0.5, color="0.5", label="true")
        ax.plot(frequency, p[i], lw=1.2, color="C3", label="reconstructed")
        ax.set_xscale("log")
        ax.set_ylabel("ln PSD")
        if labels is not None:
            ax.set_title(labels[i], fontsize="small", loc="left")
    axes[0, 0].legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("Frequency (µHz)")
    return fig


def plot_psd_from_latent(encoder: Any, z: Any, numax: Any, *, n_points: int = 6):
    """PSDs decoded from latent points along the νmax direction (the paper's Fig. 4).

    A linear model finds the latent direction that tracks log νmax among the given
    stars; points along it, from the 5th to the 95th percentile, are decoded.

    Parameters
    ----------
    encoder : SpectrumToPSDEncoder
        Fitted encoder.
    z : array-like of shape (n_stars, latent_dim)
        Latent means of some stars.
    numax : array-like of shape (n_stars,)
        Their νmax, µHz.
    n_points : int, default=6

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LinearRegression

    from skages.seismology import estimate_numax, frequency_grid

    z = np.asarray(z, float)
    nu = np.asarray(numax, float)
    m = np.isfinite(nu)
    reg = LinearRegression().fit(z[m], np.log10(nu[m]))
    direction = reg.coef_ / np.sum(reg.coef_**2)
    centre = z[m].mean(axis=0)
    lo, hi = np.percentile(np.log10(nu[m]), [5, 95])
    targets = np.linspace(lo, hi, n_points)
    base = reg.predict(centre[None])[0]
    points = centre[None] + (targets - base)[:, None] * direction[None]
    psd = encoder.decode(points)
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    f = frequency_grid()
    colours = plt.cm.viridis(np.linspace(0, 1, n_points))
    for i in range(n_points):
        est = estimate_numax(psd[i])
        ax.plot(
            f,
            psd[i] + 0.8 * i,
            color=colours[i],
            lw=0.8,
            label=f"target νmax {10 ** targets[i]:.0f}, found {est:.0f} µHz",
        )
    ax.set(
        xscale="log",
        xlabel="Frequency (µHz)",
        ylabel="ln PSD (offset)",
        title="PSDs decoded along the latent νmax direction",
    )
    ax.legend(fontsize="x-small", loc="upper left")
    return fig


def plot_latent_space(z: Any, colours: dict[str, Any]):
    """The latent space (first two principal components) coloured by several quantities.

    The paper's Fig. 5 colours the latent space by evolutionary state, νmax, [Fe/H]
    and excess Δν: seismic quantities vary smoothly across it, [Fe/H] does not.

    Parameters
    ----------
    z : array-like of shape (n_stars, latent_dim)
        Latent means.
    colours : dict of str to array-like
        Panel title -> per-star values: numbers (a colour bar) or labels such as
        ``"RGB"``/``"RC"`` (one colour per label, with a legend).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    z = np.asarray(z, float)
    pcs = PCA(n_components=2).fit_transform(z)
    n = len(colours)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.3), layout="constrained", squeeze=False)
    for ax, (title, values) in zip(axes[0], colours.items(), strict=True):
        values = np.asarray(values)
        ax.set(title=title, xlabel="latent PC 1", ylabel="latent PC 2")
        if values.dtype.kind in "OUS":  # categories: one colour each, with a legend
            for k, label in enumerate(sorted(set(values.astype(str)))):
                m = values.astype(str) == label
                ax.scatter(pcs[m, 0], pcs[m, 1], s=3, color=f"C{k}", label=label)
            ax.legend(markerscale=4, fontsize="small")
            continue
        v = values.astype(float)
        lo, hi = np.nanpercentile(v, [2, 98])
        sc = ax.scatter(pcs[:, 0], pcs[:, 1], c=v, s=3, vmin=lo, vmax=hi, cmap="viridis")
        fig.colorbar(sc, ax=ax, shrink=0.8)
    return fig


def plot_latent_regressions(results: dict[str, dict[str, Any]], *, title: str = ""):
    """Predicted against true quantities from the latent space (the paper's Figs. 7-8).

    Parameters
    ----------
    results : dict
        Name -> the output of :func:`skages.evaluation.latent_regression`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    n = max(len(results), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), layout="constrained", squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=False):
        t, p = np.asarray(r["truth"]), np.asarray(r["prediction"])
        ax.scatter(t, p, s=3, alpha=0.5)
        lim = [np.nanpercentile(t, 1), np.nanpercentile(t, 99)]
        ax.plot(lim, lim, "k--", lw=1)
        unit = "%" if r.get("log") else r.get("unit", "")
        ax.set(
            xlabel=f"true {name}",
            ylabel=f"from latent {name}",
            title=f"R² = {r['r2']:.2f}, scatter {r['scatter']:.3g} {unit}",
        )
        if r.get("log"):
            ax.set(xscale="log", yscale="log")
    fig.suptitle(title)
    return fig


def plot_confusion(confusion: Any, labels: Any):
    """Confusion matrix of red clump vs RGB (the paper's Fig. 9).

    Parameters
    ----------
    confusion : array-like of shape (2, 2)
        Counts, rows true, columns predicted.
    labels : sequence of str

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    c = np.asarray(confusion, float)
    frac = c / c.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(3.8, 3.4), layout="constrained")
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            ax.text(
                j,
                i,
                f"{int(c[i, j])}\n{100 * frac[i, j]:.1f} %",
                ha="center",
                va="center",
                color="white" if frac[i, j] > 0.5 else "black",
            )
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=f"{100 * np.trace(c) / c.sum():.1f} % correct",
    )
    return fig


def plot_scatter_bars(ages: dict[str, dict[str, Any]]):
    """Age scatter of several models, overall, RGB and RC (the paper's Figs. 16-17).

    Parameters
    ----------
    ages : dict
        Model name -> the output of :func:`skages.evaluation.age_metrics`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    names = list(ages)
    states = ["all", "RGB", "RC"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5), layout="constrained")
    y = np.arange(len(names))
    for k, state in enumerate(states):
        vals = [ages[n].get(state, {}).get("scatter_pct", np.nan) for n in names]
        ax.barh(y + (k - 1) * 0.27, vals, height=0.27, label=state)
    ax.set(yticks=y, yticklabels=names, xlabel="age scatter (%)")
    ax.invert_yaxis()
    ax.legend(fontsize="small")
    return fig


def plot_z_scores(
    log_age_true: Any, log_age_pred: Any, log_age_std: Any, log_age_err: Any = None, *, ax=None
):
    """Distribution of normalised age residuals against a unit Gaussian.

    z = (predicted − reference) / sqrt(σ² + σ_ref²); calibrated uncertainties give a
    width (astropy ``mad_std``) of 1. The paper's were 0.75: too wide uncertainties.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from skages.forest import z_score_width

    ax = _axes(ax, (5, 3.6))
    t, p, s = (np.asarray(v, float) for v in (log_age_true, log_age_pred, log_age_std))
    e = np.zeros_like(t) if log_age_err is None else np.asarray(log_age_err, float)
    m = np.isfinite(t) & np.isfinite(p) & np.isfinite(s) & np.isfinite(e)
    z = (p[m] - t[m]) / np.sqrt(s[m] ** 2 + e[m] ** 2)
    width = z_score_width(t[m], p[m], s[m], e[m])
    ax.hist(
        z,
        bins=np.linspace(-5, 5, 51),
        density=True,
        alpha=0.6,
        label=f"width {width:.2f} (n={m.sum()})",
    )
    x = np.linspace(-5, 5, 200)
    ax.plot(x, np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    ax.set(xlabel="z = Δ log age / σ", ylabel="density")
    ax.legend(fontsize="small")
    return ax


def plot_alpha_sensitivity(derivatives: dict[str, Any]):
    """Per-star d log10 age / d[α/M] of several models, when only the α lines change.

    Parameters
    ----------
    derivatives : dict of str to array-like
        Model name -> per-star derivatives (dex per dex), from
        :func:`skages.evaluation.alpha_sensitivity`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    values = [np.asarray(v, float) for v in derivatives.values()]
    lo, hi = np.percentile(np.concatenate(values), [1, 99])
    bins = np.linspace(min(lo, -0.1), max(hi, 0.1), 50)
    for k, (name, v) in enumerate(zip(derivatives, values, strict=True)):
        ax.hist(
            v, bins=bins, alpha=0.5, color=f"C{k}", label=f"{name}: median {np.median(v):+.2f}"
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set(
        xlabel="d log10 age / d[α/M] (dex per dex)",
        ylabel="stars",
        title="[α/M] leakage: the α lines alone changed",
    )
    ax.legend(fontsize="small")
    return fig


def plot_latent_jacobian(jacobian: Any, wavelength: Any = None, *, ax=None):
    """Mean absolute ∂z_k/∂flux of each latent dimension across the spectrum (Fig. 6).

    Parameters
    ----------
    jacobian : array-like of shape (n_stars, latent_dim, n_pixels)
        From :meth:`skages.encoder.SpectrumToPSDEncoder.latent_jacobian`.
    wavelength : array-like of shape (n_pixels,), optional
        Å; defaults to the gap-removed APOGEE grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if wavelength is None:
        from skages.spectra import apogee_wavelength

        wavelength = apogee_wavelength()
    jac = np.abs(np.asarray(jacobian, float)).mean(axis=0)
    fig, axes = plt.subplots(
        jac.shape[0],
        1,
        figsize=(9, 1.3 * jac.shape[0] + 0.5),
        sharex=True,
        layout="constrained",
        squeeze=False,
    )
    for k, ax in enumerate(axes[:, 0]):
        ax.plot(wavelength, jac[k], lw=0.4)
        ax.set_ylabel(f"|∂z{k}/∂f|", fontsize="small")
    axes[-1, 0].set_xlabel("Wavelength (Å)")
    return fig
