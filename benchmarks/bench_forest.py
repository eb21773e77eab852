"""Benchmark and toy-problem figures of :class:`skages.forest.ProbabilisticForestRegressor`.

Speed (default): fit on 1,300 x 7 (the paper's training-set size) and predict 300,000 x 7
(catalogue scale), ours against scikit-learn's ``RandomForestRegressor`` measured in the same
run, at equal ``n_estimators`` and ``n_jobs``. Times are the best of ``--repeats`` runs,
interleaved between the two forests; peak memory is the peak of traced allocations
(tracemalloc) during one extra run of each. Other processes on the machine make timings noisy:
compare the ratios of one run, and repeat.

``--precise`` compares the defaults with a plain random forest on precise seismic inputs
(real APOKASC-2 and simulated). ``--options`` prints the effect of each option on a
heteroscedastic toy problem (the numbers quoted in docs/user_guide/forest.rst);
``--calibration`` prints held-out z-score widths over many seeds. ``--quick`` shrinks
everything for a smoke run.

Usage::

    python benchmarks/bench_forest.py [--quick] [--n-jobs 1] [--options] [--calibration]
                                      [--precise]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from skages.forest import ProbabilisticForestRegressor, z_score_width


def make_toy(n: int, rng: np.random.Generator, n_features: int = 7, x_err_max: float = 0.08):
    """Heteroscedastic toy: inputs and targets observed with per-star Gaussian errors.

    Returns observed X, X_err, observed y, y_err and the true y.
    """
    x = rng.uniform(size=(n, n_features))
    x_err = rng.uniform(0.0, x_err_max, size=(n, n_features))
    y_err = rng.uniform(0.03, 0.25, size=n)
    truth = np.sin(3 * x[:, 0]) + 0.7 * x[:, 1] ** 2 + 0.3 * x[:, 2]
    X = x + rng.normal(size=x.shape) * x_err
    y = truth + rng.normal(size=n) * y_err
    return X, x_err, y, y_err, truth


def _best_times(funcs, repeats: int) -> list[float]:
    """Best time of each function, the runs interleaved (a, b, c, a, b, c, ...) so that a
    change of load from other processes touches every function alike."""
    best = [np.inf] * len(funcs)
    for _ in range(repeats):
        for k, func in enumerate(funcs):
            gc.collect()
            start = time.perf_counter()
            func()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def _peak_mib(func) -> float:
    gc.collect()
    tracemalloc.start()
    func()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def speed(args) -> None:
    rng = np.random.default_rng(0)
    n_train = 300 if args.quick else 1300
    n_pred = 20_000 if args.quick else 300_000
    n_trees = 10 if args.quick else args.n_estimators
    repeats = 1 if args.quick else args.repeats
    X, X_err, y, y_err, _ = make_toy(n_train, rng)
    Xp, Xp_err, *_ = make_toy(n_pred, rng)
    common = dict(n_estimators=n_trees, n_jobs=args.n_jobs, random_state=0)

    rf = RandomForestRegressor(**common)
    plain = ProbabilisticForestRegressor(**common)
    errs = ProbabilisticForestRegressor(**common)
    rows = []

    def fit_rf():
        rf.fit(X, y)

    def fit_plain():
        plain.fit(X, y)

    def fit_errs():
        errs.fit(X, y, X_err=X_err, y_err=y_err)

    print(
        f"ProbabilisticForestRegressor vs RandomForestRegressor: n_estimators={n_trees}, "
        f"n_jobs={args.n_jobs}, best of {repeats}; fit {n_train} x 7, predict {n_pred} x 7"
    )
    fit_jobs = [
        ("fit  RandomForestRegressor (baseline)", fit_rf),
        ("fit  ours, no errors", fit_plain),
        ("fit  ours, X_err + y_err", fit_errs),
    ]
    times = _best_times([func for _, func in fit_jobs], repeats)
    rows += [(name, t, _peak_mib(func)) for (name, func), t in zip(fit_jobs, times, strict=True)]
    base_fit = rows[0][1]

    pred_jobs = [
        ("predict RandomForestRegressor (baseline)", lambda: rf.predict(Xp)),
        ("predict ours, mean only", lambda: plain.predict(Xp)),
        ("predict ours, mean + std", lambda: plain.predict(Xp, return_std=True)),
        (
            "predict ours, mean + std, X_err propagated",
            lambda: errs.predict(Xp, return_std=True, X_err=Xp_err),
        ),
    ]
    mad = ProbabilisticForestRegressor(spread="mad_std", **common).fit(X, y)
    pred_jobs.append(("predict ours, mean + mad_std", lambda: mad.predict(Xp, return_std=True)))
    times = _best_times([func for _, func in pred_jobs], repeats)
    rows += [(name, t, _peak_mib(func)) for (name, func), t in zip(pred_jobs, times, strict=True)]
    base_pred = rows[3][1]

    print(f"{'task':48s} {'time (s)':>9s} {'/ baseline':>10s} {'peak MiB':>9s}")
    for name, seconds, peak in rows:
        base = base_fit if name.startswith("fit") else base_pred
        print(f"{name:48s} {seconds:9.3f} {seconds / base:10.2f} {peak:9.1f}")
    print(f"size of predict input: {Xp.nbytes / 2**20:.1f} MiB (float64)")


def options(args) -> None:
    """Effect of each option on the toy problem: accuracy and held-out z-score width."""
    n_train, n_test = (400, 1000) if args.quick else (1300, 5000)
    n_trees = 20 if args.quick else 100
    seeds = range(1) if args.quick else range(5)
    paper = dict(perturb_inputs="fit_and_predict", target_weighting="inverse_variance")
    variants = {
        "default": {},
        "paper inputs and weights + calibration": paper,
        "calibration=None": dict(calibration=None),
        "calibration=None (paper)": dict(paper, calibration=None),
        "perturb_target=False": dict(perturb_target=False),
        "perturb_inputs='fit_and_predict'": dict(perturb_inputs="fit_and_predict"),
        "target_weighting='inverse_variance'": dict(target_weighting="inverse_variance"),
        "target_weighting='inverse_std'": dict(target_weighting="inverse_std"),
        "spread='mad_std'": dict(spread="mad_std"),
        "bias_correction='oob'": dict(bias_correction="oob"),
        "bias_correction='train'": dict(bias_correction="train"),
        "published code": dict(
            paper,
            perturb_target=False,
            bias_correction="train",
            spread="mad_std",
            calibration=None,
        ),
        "published code + calibration": dict(
            paper, perturb_target=False, bias_correction="train", spread="mad_std"
        ),
        "no input errors given": "no_x_err",
    }
    print(
        f"toy problem: {n_train} training / {n_test} held-out stars, 7 features, "
        f"{n_trees} trees, mean over {len(seeds)} seeds"
    )
    print(
        f"{'variant':40s} {'RMSE vs truth':>13s} {'z width':>8s} "
        f"{'z width (x_err>0.06)':>21s} {'median σ':>9s}"
    )
    for name, params in variants.items():
        results = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            X, X_err, y, y_err, _ = make_toy(n_train, rng)
            Xt, Xt_err, yt, yt_err, truth = make_toy(n_test, rng)
            use_x_err = params != "no_x_err"
            kw = params if use_x_err else {}
            model = ProbabilisticForestRegressor(
                n_trees, random_state=seed, n_jobs=args.n_jobs, **kw
            )
            model.fit(X, y, X_err=X_err if use_x_err else None, y_err=y_err)
            mean, std = model.predict(Xt, return_std=True, X_err=Xt_err if use_x_err else None)
            noisy = Xt_err[:, :3].max(axis=1) > 0.06
            results.append(
                (
                    np.sqrt(np.mean((mean - truth) ** 2)),
                    z_score_width(yt, mean, std, yt_err),
                    z_score_width(yt[noisy], mean[noisy], std[noisy], yt_err[noisy]),
                    np.median(std),
                )
            )
        rmse, width, width_noisy, med = np.mean(results, axis=0)
        print(f"{name:40s} {rmse:13.4f} {width:8.3f} {width_noisy:21.3f} {med:9.4f}")


def weighting_and_bias(args) -> None:
    """Two toy problems where weighting and bias correction matter."""
    seeds = range(1) if args.quick else range(5)
    n_trees = 20 if args.quick else 50
    rmse = {w: [] for w in ("inverse_variance", "inverse_std", None)}
    slopes = {c: [] for c in (None, "oob", "train")}
    for seed in seeds:
        # 10% of the stars are imprecise (error 0.8) and wrong (target off by +1).
        rng = np.random.default_rng(seed)
        X = rng.uniform(size=(800, 2))
        truth = np.sin(4 * X[:, 0]) + X[:, 1]
        wrong = rng.random(800) < 0.1
        y_err = np.where(wrong, 0.8, 0.05)
        y = truth + rng.normal(size=800) * 0.05 + np.where(wrong, 1.0, 0.0)
        Xt = rng.uniform(size=(2000, 2))
        truth_t = np.sin(4 * Xt[:, 0]) + Xt[:, 1]
        for weighting in rmse:
            model = ProbabilisticForestRegressor(
                n_trees, random_state=seed, target_weighting=weighting, perturb_target=False
            ).fit(X, y, y_err=y_err)
            rmse[weighting].append(np.sqrt(np.mean((model.predict(Xt) - truth_t) ** 2)))
        # Inputs with errors of 0.15 on a target of slope 3: the forest shrinks to the mean.
        x = rng.uniform(size=(1000, 2))
        X_err = np.full((1000, 2), 0.15)
        X = x + rng.normal(size=x.shape) * X_err
        y = 3 * x[:, 0] + rng.normal(size=1000) * 0.1
        xt = rng.uniform(size=(3000, 2))
        Xt = xt + rng.normal(size=xt.shape) * 0.15
        yt = 3 * xt[:, 0] + rng.normal(size=3000) * 0.1
        for correction in slopes:
            model = ProbabilisticForestRegressor(
                n_trees,
                random_state=seed,
                bias_correction=correction,
                perturb_inputs="fit_and_predict",
            ).fit(X, y, X_err=X_err, y_err=np.full(1000, 0.1))
            pred = model.predict(Xt, X_err=np.full_like(Xt, 0.15))
            slopes[correction].append(np.polyfit(pred, yt - pred, 1)[0])
    print(
        f"weighting: 800 stars, 10% imprecise (y_err 0.8) and off by +1, others y_err 0.05; "
        f"{n_trees} trees, perturb_target=False, mean over {len(seeds)} seeds"
    )
    for weighting, values in rmse.items():
        print(f"  target_weighting={weighting!r:20s} held-out RMSE vs truth {np.mean(values):.4f}")
    print(
        "bias correction: inputs with errors 0.15, target 3 x0 (errors 0.1), "
        "perturb_inputs='fit_and_predict'; slope of the held-out residual (y - prediction) "
        "against the prediction"
    )
    for correction, values in slopes.items():
        print(f"  bias_correction={correction!r:8s} slope {np.mean(values):+.3f}")


def calibration(args) -> None:
    """Held-out z-score width of the default forest over many seeds and training sizes."""
    seeds = range(2) if args.quick else range(20)
    n_trees = 20 if args.quick else 100
    for n_train in (300,) if args.quick else (1300, 3000):
        widths = []
        for seed in seeds:
            rng = np.random.default_rng(1000 + seed)
            X, X_err, y, y_err, _ = make_toy(n_train, rng)
            Xt, Xt_err, yt, yt_err, _ = make_toy(5000, rng)
            model = ProbabilisticForestRegressor(n_trees, random_state=seed, n_jobs=args.n_jobs)
            model.fit(X, y, X_err=X_err, y_err=y_err)
            mean, std = model.predict(Xt, return_std=True, X_err=Xt_err)
            widths.append(z_score_width(yt, mean, std, yt_err))
        widths = np.array(widths)
        inside = int(((widths >= 0.9) & (widths <= 1.1)).sum())
        print(
            f"held-out z-score width, {len(widths)} seeds, {n_train} training / 5000 held-out "
            f"stars, {n_trees} trees:"
        )
        print("  " + " ".join(f"{w:.3f}" for w in widths))
        print(
            f"  mean {widths.mean():.3f}, standard deviation {widths.std(ddof=1):.3f}, "
            f"min {widths.min():.3f}, max {widths.max():.3f}, inside [0.9, 1.1]: "
            f"{inside}/{len(widths)}"
        )


def precise(args) -> None:
    """Precise seismic inputs: νmax, Δν, Teff, [Fe/H] (with errors) -> log10 age, 1,200 stars.

    Real: APOKASC-2 Table 5 RGB and RC stars (its ages and errors), shuffled by seed, the
    first 1,200 train, the rest are held out. Simulated: the population of make_apokasc with
    pipeline reference ages (30 % precise), 5,000 stars. Scatter = mad_std of predicted /
    reference age per state; plain = scikit-learn's RandomForestRegressor, same n_estimators.
    """
    import pandas as pd
    from astropy.stats import mad_std

    from skages.datasets import _sim_population as pop
    from skages.io import read_apokasc2

    cols = ["numax", "dnu", "teff", "fe_h"]
    errs = [c + "_err" for c in cols]
    n_trees = 20 if args.quick else 100
    seeds = range(1) if args.quick else range(3)
    paper = dict(perturb_inputs="fit_and_predict", target_weighting="inverse_variance")
    variants = {"plain RandomForestRegressor": None, "default": {}, "paper + calibration": paper}
    real = read_apokasc2().to_pandas()
    real = real[real.evstate.isin(["RGB", "RC"])].dropna(
        subset=[*cols, *errs, "log_age", "log_age_err"]
    )
    print(f"precise inputs -> log age, 1,200 training stars, {n_trees} trees, seeds {seeds}")
    print(f"{'data':10s} {'variant':28s} {'RGB %':>6s} {'RC %':>6s} {'z width':>8s}")
    for kind in ("APOKASC-2", "simulated"):
        scores = {name: [] for name in variants}
        for seed in seeds:
            if kind == "simulated":
                config = pop.PopulationConfig(missing_age_fraction=0.0, precise_age_fraction=0.3)
                p = pd.DataFrame(pop.draw_population(np.random.default_rng(seed), 5000, config))
            else:
                p = real.sample(frac=1, random_state=seed).reset_index(drop=True)
            X, X_err = p[cols].to_numpy(), p[errs].to_numpy()
            y, y_err = p.log_age.to_numpy(), p.log_age_err.to_numpy()
            rc = (p.evstate == "RC").to_numpy()[1200:]
            for name, params in variants.items():
                if params is None:
                    rf = RandomForestRegressor(n_trees, random_state=seed, n_jobs=args.n_jobs)
                    mean, width = rf.fit(X[:1200], y[:1200]).predict(X[1200:]), np.nan
                else:
                    model = ProbabilisticForestRegressor(
                        n_trees, random_state=seed, n_jobs=args.n_jobs, **params
                    ).fit(X[:1200], y[:1200], X_err=X_err[:1200], y_err=y_err[:1200])
                    mean, std = model.predict(X[1200:], return_std=True, X_err=X_err[1200:])
                    width = z_score_width(y[1200:], mean, std, y_err[1200:])
                ratio = 10 ** (mean - y[1200:])
                scores[name].append((100 * mad_std(ratio[~rc]), 100 * mad_std(ratio[rc]), width))
        for name, values in scores.items():
            rgb, rc_, width = np.mean(values, axis=0)
            print(f"{kind:10s} {name:28s} {rgb:6.2f} {rc_:6.2f} {width:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--n-jobs", type=int, default=1, help="threads for both forests")
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best kept)")
    parser.add_argument("--options", action="store_true", help="toy-problem option table")
    parser.add_argument("--calibration", action="store_true", help="z-width over seeds")
    parser.add_argument("--precise", action="store_true", help="precise seismic inputs")
    args = parser.parse_args()
    if args.precise:
        precise(args)
    elif args.options:
        options(args)
        weighting_and_bias(args)
    elif args.calibration:
        calibration(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
