"""Coverage of the forest's intervals on held-out stars: which calibration to ship.

For precise seismic inputs (νmax, Δν, Teff, [Fe/H] with their errors → log10 age), the
real APOKASC-2 case (Pinsonneault et al. 2018 Table 5, RGB and RC, 1,200 training stars,
the rest held out) and the simulated population of :func:`skages.datasets.make_apokasc`
(5,000 stars, 1,200 training), every ``calibration`` of
:class:`skages.forest.ProbabilisticForestRegressor` and both forest variants, this prints
per evolutionary state the fraction of held-out stars with |z| < 1 and |z| < 2 and the z
width (mad_std) ("oob_local+state": ``oob_local`` with the training stars' states as
``calibration_groups``, as :func:`skages.pipeline.fit_age_model` does), with
z = (prediction − reference) / √(σ² + σ_ref²). Goals (issue 22):
68 ± 3 %, 95 ± 2 %, width 0.9–1.1.

Beside these Gaussian ones (the baseline), ``in_68`` and ``in_95`` are the coverage of
the forest's quantile intervals (``predict(quantiles=(0.16, 0.84))`` and
``(0.025, 0.975)``, from the out-of-bag normalised residuals), on the same z: a star
counts as inside when z lies between the interval's bounds expressed in σ, so the
reference error enters both in the same way. They need a calibration (NaN without).
``z_width_max`` is the z width with σ = 0, the widest any σ ≥ 0 can give: where it is below
0.9, the reference errors alone exceed the residuals and the width goal cannot be met.

Usage::

    python benchmarks/bench_intervals.py [--quick] [--seeds 3] [--n-estimators 100]
        [--calibrations oob oob_local] [--variants default]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from skages.evaluation import COVERAGE_QUANTILES, coverage_table
from skages.forest import ProbabilisticForestRegressor, TargetErrorsOverCoverWarning

COLS = ["numax", "dnu", "teff", "fe_h"]
ERRS = [c + "_err" for c in COLS]
N_TRAIN = 1200


def _data(kind: str, seed: int) -> pd.DataFrame:
    if kind == "simulated":
        from skages.datasets import _sim_population as pop

        config = pop.PopulationConfig(missing_age_fraction=0.0, precise_age_fraction=0.3)
        return pd.DataFrame(pop.draw_population(np.random.default_rng(seed), 5000, config))
    from skages.io import read_apokasc2

    real = read_apokasc2().to_pandas()
    real = real[real.evstate.isin(["RGB", "RC"])].dropna(
        subset=[*COLS, *ERRS, "log_age", "log_age_err"]
    )
    return real.sample(frac=1, random_state=seed).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 30 trees")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument(
        "--calibrations",
        nargs="+",
        default=["none", "oob", "oob_coverage", "oob_local", "oob_local+state"],
        choices=["none", "oob", "oob_coverage", "oob_local", "oob_local+state"],
    )
    parser.add_argument(
        "--variants", nargs="+", default=["default", "paper"], choices=["default", "paper"]
    )
    args = parser.parse_args()
    seeds = range(1) if args.quick else range(args.seeds)
    n_trees = 30 if args.quick else args.n_estimators
    paper = dict(perturb_inputs="fit_and_predict", target_weighting="inverse_variance")
    variants = {k: v for k, v in {"default": {}, "paper": paper}.items() if k in args.variants}
    calibrations = [None if c == "none" else c for c in args.calibrations]
    start = time.perf_counter()
    rows = []
    over_cover = []  # fits where y_err alone over-cover the out-of-bag residuals
    for kind in ("APOKASC-2", "simulated"):
        for seed in seeds:
            p = _data(kind, seed)
            X, X_err = p[COLS].to_numpy(), p[ERRS].to_numpy()
            y, y_err = p.log_age.to_numpy(), p.log_age_err.to_numpy()
            states = p.evstate.to_numpy().astype(str)
            state = states[N_TRAIN:]
            for vname, params in variants.items():
                for cal in calibrations:
                    # "oob_local+state": one σ scale per predicted evolutionary state
                    groups = states[:N_TRAIN] if cal == "oob_local+state" else None
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        model = ProbabilisticForestRegressor(
                            n_trees, random_state=seed, calibration=cal and cal.split("+")[0],
                            **params,
                        ).fit(X[:N_TRAIN], y[:N_TRAIN], X_err=X_err[:N_TRAIN],
                              y_err=y_err[:N_TRAIN], calibration_groups=groups)  # fmt: skip
                    for w in caught:
                        if issubclass(w.category, TargetErrorsOverCoverWarning):
                            over_cover.append(f"{kind}, seed {seed}, {vname}, {cal}: {w.message}")
                        else:
                            warnings.warn(w.message, w.category, stacklevel=1)
                    ask = {} if cal is None else {"quantiles": COVERAGE_QUANTILES}
                    mean, std, *q = model.predict(
                        X[N_TRAIN:], return_std=True, X_err=X_err[N_TRAIN:], **ask
                    )
                    table = coverage_table(
                        y[N_TRAIN:], mean, std, y_err[N_TRAIN:], groups=state,
                        quantiles=q[0] if q else None,
                    )  # fmt: skip
                    # the widest z any σ >= 0 allows: σ = 0, the reference errors alone
                    bound = coverage_table(
                        y[N_TRAIN:], mean, np.zeros_like(std), y_err[N_TRAIN:], groups=state
                    )["z_width"]
                    for group, row in table.iterrows():
                        rows.append(dict(data=kind, variant=vname, calibration=str(cal),
                                         seed=seed, state=group, **row.to_dict(),
                                         z_width_max=bound[group]))  # fmt: skip
    frame = pd.DataFrame(rows)
    for column in ("in_68", "in_95"):  # absent when no run had a calibration
        frame[column] = frame.get(column, np.nan)
    summary = (
        frame.groupby(["data", "variant", "calibration", "state"], sort=False)[
            ["n", "within_1", "in_68", "within_2", "in_95", "z_width", "z_width_max"]
        ]
        .mean()  # NaN (no quantile columns) where no calibration
        .round(3)
    )
    print(
        f"held-out coverage, {N_TRAIN} training stars, {n_trees} trees, mean over seeds "
        f"{list(seeds)} (goals: within_1 / in_68 0.68±0.03, within_2 / in_95 0.95±0.02, "
        "z_width 0.9-1.1; within_*: Gaussian σ, in_*: quantile intervals)"
    )
    with pd.option_context("display.width", 120, "display.max_rows", 200):
        print(summary.to_string())
    print(f"fits that warned that y_err alone over-cover their residuals: {len(over_cover)}")
    for line in over_cover:
        print("  " + line.split(". Their")[0])
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
