"""Figures: power spectra, and (in later modules) the paper's diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "plot_age_comparison",
    "plot_alpha_sensitivity",
    "plot_confusion",
    "plot_latent_jacobian",
    "plot_latent_pairs",
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


#: How the report and the figures name the label columns and models of skages.
LABELS = {
    "fe_h": "[Fe/H]",
    "alpha_m": "[α/M]",
    "c_n": "[C/N]",
    "numax": "νmax",
    "dnu": "Δν",
    "excess_dnu": "excess Δν",
    "teff": "Teff",
    "logg": "log g",
}

#: Units of those columns, as axis labels show them.
UNITS = {
    "fe_h": "dex",
    "alpha_m": "dex",
    "c_n": "dex",
    "numax": "µHz",
    "dnu": "µHz",
    "excess_dnu": "µHz",
    "teff": "K",
    "logg": "dex",
}


def _label(name: str, unit: str | None = None) -> str:
    """``"[Fe/H] (dex)"`` for ``"fe_h"``: the name a reader expects, with its unit."""
    unit = UNITS.get(name, "") if unit is None else unit
    text = LABELS.get(name, name)
    return f"{text} ({unit})" if unit else text


def _age_axes(ax, lim) -> None:
    """Log age axes with labelled ticks at 1, 2, 5, 10 Gyr and minor ticks between."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_minor_locator(LogLocator(base=10, subs=np.arange(1, 10) * 1.0))
        axis.set_minor_formatter(NullFormatter())
    ax.set(xlim=lim, ylim=lim)
    ax.tick_params(which="both", direction="in", top=True, right=True)


def plot_age_comparison(
    log_age_true: Any,
    log_age_pred: Any,
    log_age_std: Any = None,
    *,
    evstate: Any = None,
    ax: Any = None,
    title: str | None = None,
    by_state: bool | None = None,
):
    """Predicted against reference ages, by evolutionary state (the paper's Fig. 10).

    Each legend entry gives the state's scatter (robust std of predicted/true age) and
    bias (median ratio − 1), both in %.

    Parameters
    ----------
    log_age_true, log_age_pred : array-like of shape (n_stars,)
        Reference and predicted log10 ages, log10(Gyr); NaN references are skipped.
    log_age_std : array-like of shape (n_stars,), optional
        Predicted 1σ, log10(Gyr), drawn as error bars.
    evstate : array-like of str, optional
        "RGB" / "RC", coloured separately with their scatter and bias in the legend.
    ax : matplotlib.axes.Axes, optional
        Draw the combined panel only, on these axes.
    title : str, optional
    by_state : bool, optional
        Also draw RGB and RC in panels of their own beside the combined one; default:
        when ``evstate`` is given and ``ax`` is not.

    Returns
    -------
    matplotlib.axes.Axes
        The combined panel (``.figure`` is the whole figure).
    """
    import matplotlib.pyplot as plt

    from skages.pipeline import age_bias, age_scatter

    t = np.asarray(log_age_true, float)
    p = np.asarray(log_age_pred, float)
    s = None if log_age_std is None else np.asarray(log_age_std, float)
    ok = np.isfinite(t) & np.isfinite(p)
    states = np.full(t.shape, "all") if evstate is None else np.asarray(evstate).astype(str)
    if by_state is None:
        by_state = evstate is not None and ax is None
    if ax is None:
        n = 3 if by_state else 1
        _, axes = plt.subplots(
            1, n, figsize=(4.6 * n, 4.4), layout="constrained", squeeze=False, sharey=True
        )
        axes = list(axes[0])
    else:
        axes = [ax]
    panels = [(axes[0], ("RGB", "RC", "all"))]
    if by_state and len(axes) == 3:
        panels += [(axes[1], ("RGB",)), (axes[2], ("RC",))]
    lim = [0.5, 15]
    for panel, shown in panels:
        for state, colour in (("RGB", "C0"), ("RC", "C3"), ("all", "C0")):
            m = ok & (states == state)
            if state not in shown or m.sum() < 2:
                continue
            label = (
                f"{state}: scatter {age_scatter(t[m], p[m]):.1f} %, "
                f"bias {age_bias(t[m], p[m]):+.1f} % (n={m.sum()})"
            )
            panel.errorbar(
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
        panel.plot(lim, lim, "k--", lw=1)
        panel.set(xscale="log", yscale="log", xlabel="reference age (Gyr)")
        _age_axes(panel, lim)
        panel.legend(loc="upper left", fontsize="small")
    axes[0].set_ylabel("predicted age (Gyr)")
    if len(panels) > 1:
        axes[0].set_title("RGB and RC", fontsize="medium")
        axes[1].set_title("RGB", fontsize="medium")
        axes[2].set_title("RC", fontsize="medium")
    if title:
        if len(panels) > 1:
            axes[0].figure.suptitle(title)
        else:
            axes[0].set_title(title)
    return axes[0]


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
        ax.set_ylabel("ln(PSD / background)", fontsize="small")
        if labels is not None:
            ax.set_title(labels[i], fontsize="small", loc="left")
    axes[0, 0].legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("Frequency (µHz)")
    return fig


def plot_psd_from_latent(
    encoder: Any, z: Any, numax: Any, *, n_points: int = 6, track: dict | None = None
):
    """PSDs decoded from latent points traced along the data (the paper's Fig. 4).

    The stars are binned in log νmax; the median latent position of each bin (the
    paper's triangles) is decoded. Each curve's legend states the νmax it is meant to
    have (the median νmax of its bin's stars) and the one it has (νmax of the decoded
    PSD, :func:`skages.seismology.estimate_numax`), so a latent space that does not
    track νmax shows it.

    Parameters
    ----------
    encoder : SpectrumToPSDEncoder
        Fitted encoder.
    z : array-like of shape (n_stars, latent_dim)
        Latent means of some stars.
    numax : array-like of shape (n_stars,)
        Their νmax, µHz.
    n_points : int, default=6
        Number of νmax bins (decoded PSDs).
    track : dict, optional
        The output of :func:`skages.evaluation.latent_numax_track` for these stars
        (computed if None).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    from skages.seismology import frequency_grid

    if track is None:
        from skages._latent import latent_numax_track

        track = latent_numax_track(encoder, z, numax, n_points=n_points)
    psd = np.asarray(track["psd"], float)
    stated = np.asarray(track["stated"], float)
    found = np.asarray(track["obtained"], float)
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    f = frequency_grid()
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(psd)))
    for i in range(len(psd)):
        y = psd[i] + 0.8 * i
        ax.plot(
            f,
            y,
            color=colours[i],
            lw=0.8,
            label=f"meant {stated[i]:.0f} µHz, has {found[i]:.0f} µHz (n={track['n'][i]})",
        )
        ax.plot(stated[i], np.nanmax(y[np.isfinite(y)]), "v", color=colours[i], ms=6)
        if np.isfinite(found[i]):
            ax.plot(found[i], np.interp(found[i], f, y), "o", mfc="none", color=colours[i])
    ax.set(
        xscale="log",
        xlabel="Frequency (µHz)",
        ylabel="ln(PSD / background), offset",
        title="PSDs decoded from the median latent point of each νmax bin "
        "(▼ meant νmax, ○ decoded νmax)",
    )
    ax.title.set_fontsize("medium")
    ax.legend(fontsize="x-small", loc="upper left", title="νmax of the decoded PSD")
    return fig


def _scatter_values(ax, x, y, values, *, log: bool, rng, size: float = 3.0):
    """Scatter coloured by numbers (a colour bar) or categories (random drawing order).

    Returns the mappable for a colour bar, or None for categories (a legend is drawn).
    """
    from matplotlib.colors import LogNorm, Normalize

    values = np.asarray(values)
    order = rng.permutation(len(values))  # no class hidden under another
    if values.dtype.kind in "OUS":
        labels = values.astype(str)
        names = sorted(set(labels))
        fixed = {"RGB": "C0", "RC": "C3"}  # as in the age figures
        colours = {name: fixed.get(name, f"C{k + 4}") for k, name in enumerate(names)}
        ax.scatter(x[order], y[order], s=size, c=[colours[v] for v in labels[order]], lw=0)
        for name in names:
            ax.scatter([], [], s=12, color=colours[name], label=name)
        return None
    v = values.astype(float)
    finite = np.isfinite(v) & ((v > 0) if log else True)
    lo, hi = np.nanpercentile(v[finite], [2, 98])
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    order = order[finite[order]]
    return ax.scatter(x[order], y[order], c=v[order], s=size, norm=norm, cmap="viridis", lw=0)


def plot_latent_space(z: Any, colours: dict[str, Any], *, log: Any = (), random_state: Any = 0):
    """The latent space (first two principal components) coloured by several quantities.

    The paper's Fig. 5 colours the latent space by evolutionary state, νmax, [Fe/H]
    and excess Δν: seismic quantities vary smoothly across it, [Fe/H] does not. Points
    are drawn in random order, so neither state hides the other.

    Parameters
    ----------
    z : array-like of shape (n_stars, latent_dim)
        Latent means.
    colours : dict of str to array-like
        Panel title -> per-star values: numbers (a colour bar) or labels such as
        ``"RGB"``/``"RC"`` (one colour per label, with a legend).
    log : collection of str, default=()
        Titles of the panels whose colour scale is logarithmic (νmax spans 2 decades).
    random_state : int, optional
        Seeds the drawing order.

    Returns
    -------
    matplotlib.figure.Figure

    See Also
    --------
    plot_latent_pairs : every pair of latent dimensions, as in the paper.
    """
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    z = np.asarray(z, float)
    pcs = PCA(n_components=2).fit_transform(z)
    rng = np.random.default_rng(random_state)
    n = len(colours)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.3), layout="constrained", squeeze=False)
    for ax, (title, values) in zip(axes[0], colours.items(), strict=True):
        ax.set(title=title, xlabel="latent PC 1", ylabel="latent PC 2")
        sc = _scatter_values(ax, pcs[:, 0], pcs[:, 1], values, log=title in log, rng=rng)
        if sc is None:
            ax.legend(markerscale=1, fontsize="small")
        else:
            fig.colorbar(sc, ax=ax, shrink=0.8)
    return fig


def plot_latent_pairs(
    z: Any, values: Any, *, label: str = "", log: bool = False, random_state: Any = 0
):
    """Every pair of latent dimensions, coloured by one quantity (the paper's Fig. 5).

    Parameters
    ----------
    z : array-like of shape (n_stars, latent_dim)
        Latent means.
    values : array-like of shape (n_stars,)
        Numbers (a colour bar, e.g. νmax in µHz) or labels (``"RGB"``/``"RC"``).
    label : str, optional
        What ``values`` are, with their unit (the colour bar's label).
    log : bool, default=False
        Logarithmic colour scale.
    random_state : int, optional
        Seeds the drawing order.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    z = np.asarray(z, float)
    d = z.shape[1]
    rng = np.random.default_rng(random_state)
    n = max(d - 1, 1)
    fig, axes = plt.subplots(
        n, n, figsize=(2.3 * n + 1.2, 2.3 * n), layout="constrained", squeeze=False
    )
    mappable = None
    for row in range(n):
        for col in range(n):
            ax = axes[row, col]
            i, j = col, row + 1  # x: dimension i, y: dimension j > i
            if d < 2 or i >= j:
                ax.set_visible(False)
                continue
            mappable = _scatter_values(ax, z[:, i], z[:, j], values, log=log, rng=rng, size=2)
            ax.tick_params(labelsize="x-small")
            if row == n - 1:
                ax.set_xlabel(f"z{i}")
            if col == 0:
                ax.set_ylabel(f"z{j}")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.6, label=label)
    else:
        axes[0, 0].legend(fontsize="small", markerscale=1, title=label or None)
    fig.suptitle(f"latent dimensions pairwise{', coloured by ' + label if label else ''}")
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
            xlabel=f"true {_label(name, r.get('unit'))}",
            ylabel=f"from the latent space: {_label(name, r.get('unit'))}",
            title=(
                f"{LABELS.get(name, name)}: R² = {r['r2']:.2f}, scatter {r['scatter']:.3g} {unit}"
            ),
        )
        ax.title.set_fontsize("medium")
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
        xlabel="predicted state (from the latent space)",
        ylabel="true state",
        title=f"RC vs RGB: {100 * np.trace(c) / c.sum():.1f} % correct",
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


def _z_bin_width(n: int) -> float:
    """A regular bin width for n z-scores: Scott's rule for unit width, on a 0.1 grid."""
    return float(np.clip(np.round(3.5 / max(n, 1) ** (1 / 3), 1), 0.2, 1.0))


def plot_z_scores(
    log_age_true: Any, log_age_pred: Any, log_age_std: Any, log_age_err: Any = None, *, ax=None
):
    """Distribution of normalised age residuals against a unit Gaussian.

    z = (predicted − reference) / sqrt(σ² + σ_ref²); calibrated uncertainties give a
    width (astropy ``mad_std``) of 1 and unbiased ages a median of 0. The paper's
    width was 0.75: too wide uncertainties. Bins are regular, one centred on 0, with
    a width that suits the number of stars; the median is marked and stated.

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
    step = _z_bin_width(z.size)
    half = step * (np.ceil(4.0 / step - 0.5) + 0.5)
    bins = np.arange(-half, half + step / 2, step)
    outside = int(np.sum(np.abs(z) > half))
    ax.hist(
        np.clip(z, -half, half),
        bins=bins,
        density=True,
        alpha=0.6,
        label=f"width {width:.2f} (n={m.sum()}"
        + (f"; {outside} beyond ±{half:.1f} in the end bins)" if outside else ")"),
    )
    x = np.linspace(-half, half, 200)
    ax.plot(x, np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    centre = float(np.median(z)) if z.size else float("nan")
    ax.axvline(0, color="k", lw=0.6)
    ax.axvline(
        centre,
        color="C3",
        lw=1.2,
        label=f"median {centre:+.2f}"
        + (
            " (ages biased high)"
            if centre > 0.1
            else " (ages biased low)"
            if centre < -0.1
            else ""
        ),
    )
    ax.set(xlabel="z = Δ log10 age / σ (dimensionless)", ylabel="density", xlim=(-half, half))
    ax.legend(fontsize="x-small", loc="upper left")
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
