"""Sensitivity check, not a fit the simulator uses: errors-in-variables Teff and [C/N].

``tools/fit_sim_population.py`` fits the Teff and [C/N] relations of the simulated
population by least squares on APOKASC-3 Gold's *observed* masses, whose ~4 % errors
dilute the ln M coefficients. This script refits both with the same designs and clipping
and the mass-error variance removed from the normal equations (the errors-in-variables
moment correction, ``_lstsq(..., noise=...)``), patches them into the population model in
memory only, and prints issue 21's label rows (labels -> mass on Gold-like stars,
labels -> reference and true age on the Gold-like sample of ``bench_realism`` and on all
stars with an age) before and after::

    PYTHONPATH=$PWD python tools/eiv_sensitivity.py [--shared ../shared/data]
        [--seismic-errors agreement] [--states RGB] [--demo DIR]

It also prints the seismic-oracle rows (the forest's Teff enters them), and with
``--demo DIR`` runs ``skages demo`` on a survey simulated with the patched relations and
seismic errors (in this process; nothing on disk is patched).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def corrected_relations(
    gold: pd.DataFrame, relations: dict, states: tuple[str, ...] = ("RGB", "RC")
) -> dict:
    """``relations`` with the Teff and [C/N] fits of ``fit_sim_population`` redone with
    the mass errors in variables (same designs, same clipping), for ``states``."""
    import fit_sim_population as fit

    out = copy.deepcopy(relations)
    for state in states:
        g = gold[gold.Evol_State == state]
        e2 = float(np.mean((g.S_Mass / g.Mass).to_numpy() ** 2))
        coef, sig, _ = fit._lstsq(
            fit.teff_design(g), g.Teff.to_numpy(), noise=(fit.TEFF_LN_MASS, e2)
        )
        out["teff"][state].update(coef=coef.tolist(), residual_mad_std=sig)
        # d tanh(1.2 x) / dx is about 1.2 over Gold's masses: the regressor's noise variance
        coef, sig, _ = fit._lstsq(
            fit.c_n_design(g, state), g["[C/N]"].to_numpy(), noise=(fit.C_N_MASS, 1.44 * e2)
        )
        out["c_n"][state].update(coef=coef.tolist(), residual_mad_std=sig)
    return out


def label_rows(n_stars: int, n_like: int, sizes: dict, seismic_errors: str) -> dict:
    import bench_realism as br

    lab = br.sim_labels_only(n_stars, seismic_errors=seismic_errors)
    rc, gold_like = (lab.evstate == "RC").to_numpy(), br.gold_like(lab)
    reference = br.labels_age_figures(lab)
    many = br.sim_labels_only(n_like, seismic_errors=seismic_errors)
    like = br.gold_like_age_figures(many, sizes)
    out = {}
    for state, sel in (("RGB", ~rc), ("RC", rc)):
        g = lab[sel & gold_like]
        out[f"labels -> mass, Gold-like, {state} (%)"] = br.mass_scatter(
            g[br.SIM_FEATURES].to_numpy(), np.log(g.mass_true.to_numpy())
        )
        out[f"labels -> reference age, Gold-like, {state} (%)"] = like[f"gl_labels_age_{state}"]
        out[f"labels -> true age, Gold-like, {state} (%)"] = like[f"gl_true_labels_age_{state}"]
        out[f"labels -> reference age, all stars, {state} (%)"] = reference[f"labels_age_{state}"]
    p, is_rc, observed = br._precise_stars(many)
    rgb, rc = br.oracle_scatter(observed, p.log_age.to_numpy(), is_rc)
    out["seismic oracle -> reference age, RGB (%)"] = rgb
    out["seismic oracle -> reference age, RC (%)"] = rc
    return out


def run_patched_demo(output: Path, seismic_errors: str) -> None:
    """``skages demo`` (its defaults, seed 0) on a survey simulated with the patched
    relations and ``seismic_errors``: what the README's command would report."""
    import functools

    import skages.datasets
    from skages.demo import run_demo

    write = skages.datasets.write_apokasc
    skages.datasets.write_apokasc = functools.partial(write, seismic_errors=seismic_errors)
    try:  # the demo simulates in this process (n_jobs=None), so the patch reaches it
        run_demo(output, restart=True)
    finally:
        skages.datasets.write_apokasc = write


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--n-stars", type=int, default=6000)
    parser.add_argument(
        "--n-like", type=int, default=30000, help="stars to draw the Gold-like age sample from"
    )
    parser.add_argument("--seismic-errors", default="apokasc2", choices=("apokasc2", "agreement"))
    parser.add_argument(
        "--states", nargs="+", default=["RGB", "RC"], choices=("RGB", "RC"),
        help="the states whose relations are refitted (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--demo", type=Path, default=None, metavar="DIR",
        help="then run skages demo on the patched survey into DIR (a fresh folder; ~15 min)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "benchmarks"), str(root / "tools")]
    import fit_sim_population as fit

    from skages.datasets import _sim_population as pop

    gold = pd.read_csv(Path(args.shared) / "apokasc3" / "Table4_Apoor_RGB+RC_Gold.csv")
    vendored = pop.relations()
    patched = corrected_relations(gold, vendored, tuple(args.states))
    for name in ("teff", "c_n"):
        for state in ("RGB", "RC"):
            term = fit.TEFF_LN_MASS if name == "teff" else fit.C_N_MASS
            print(f"{name} {state}: ln M coefficient {vendored[name][state]['coef'][term]:.3f} "
                  f"-> {patched[name][state]['coef'][term]:.3f}")  # fmt: skip
    import bench_realism as br

    sizes = br.real_labels_age_sizes(Path(args.shared))
    rows = (args.n_stars, args.n_like, sizes, args.seismic_errors)
    before = label_rows(*rows)
    pop.relations = lambda: patched  # in memory only; the vendored file is untouched
    after = label_rows(*rows)
    print(f"seismic_errors={args.seismic_errors!r}; Gold-like age sample: {sizes}")
    for key, value in before.items():
        print(f"{key:48s} {value:6.2f} -> {after[key]:6.2f}")
    if args.demo is not None:
        run_patched_demo(args.demo, args.seismic_errors)


if __name__ == "__main__":
    main()
