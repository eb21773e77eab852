"""Sensitivity check, not a fit the simulator uses: errors-in-variables Teff and [C/N].

``tools/fit_sim_population.py`` fits the Teff and [C/N] relations of the simulated
population by least squares on APOKASC-3 Gold's *observed* masses, whose ~4 % errors
dilute the ln M coefficients. This script refits both with the mass-error variance
removed from the normal equations (the errors-in-variables moment correction), patches
them into the population model in memory only, and prints issue 21's label rows
(labels -> mass on Gold-like stars, labels -> reference and true age) before and after::

    PYTHONPATH=$PWD python tools/eiv_sensitivity.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.stats import mad_std


def _eiv(design, y, column, error_variance):
    """Least squares with ``error_variance`` removed from one regressor's variance."""
    n = len(y)
    correction = np.zeros((design.shape[1], design.shape[1]))
    correction[column, column] = error_variance
    coef = np.linalg.solve(design.T @ design / n - correction, design.T @ y / n)
    return coef, float(mad_std(y - design @ coef))


def corrected_relations(gold: pd.DataFrame, relations: dict) -> dict:
    """``relations`` with the Teff and [C/N] fits redone by errors in variables."""
    from skages.datasets._sim_population import mixing_index

    out = copy.deepcopy(relations)
    for state in ("RGB", "RC"):
        g = gold[gold.Evol_State == state]
        lnm, logg = np.log(g.Mass.to_numpy()), g.Logg_Seis.to_numpy()
        feh, alpha = g["[Fe/H]"].to_numpy(), g["[Alp/Fe]"].to_numpy()
        e2 = float(np.mean((g.S_Mass / g.Mass).to_numpy() ** 2))
        design = np.column_stack([np.ones(len(g)), logg - 2.5, (logg - 2.5) ** 2, feh, lnm, alpha])
        coef, sig = _eiv(design, g.Teff.to_numpy(), 4, e2)
        out["teff"][state].update(coef=coef.tolist(), residual_mad_std=sig)
        mixing = mixing_index(g.Mass.to_numpy(), logg, np.full(len(g), state == "RC"))
        design = np.column_stack([np.ones(len(g)), np.tanh(1.2 * lnm), feh, alpha, mixing])
        # d tanh(1.2 x) / dx is about 1.2 over Gold's masses: the regressor's noise variance
        coef, sig = _eiv(design, g["[C/N]"].to_numpy(), 1, 1.44 * e2)
        out["c_n"][state].update(coef=coef.tolist(), residual_mad_std=sig)
    return out


def label_rows(n_stars: int) -> dict:
    import bench_realism as br

    lab = br.sim_labels_only(n_stars)
    rc, gold_like = (lab.evstate == "RC").to_numpy(), br.gold_like(lab)
    out = {}
    for state, sel in (("RGB", ~rc), ("RC", rc)):
        g = lab[sel & gold_like]
        out[f"labels -> mass, Gold-like, {state} (%)"] = br.mass_scatter(
            g[br.SIM_FEATURES].to_numpy(), np.log(g.mass_true.to_numpy())
        )
        a = lab[sel & lab.log_age.notna().to_numpy()]
        x = np.column_stack([a.teff, br.noisy_logg(a.logg_true), a.fe_h, a.c_n])
        out[f"labels -> reference age, {state} (%)"] = br.age_scatter(x, a.log_age.to_numpy())
        out[f"labels -> true age, {state} (%)"] = br.age_scatter(x, a.log_age_true.to_numpy())
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--n-stars", type=int, default=6000)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from skages.datasets import _sim_population as pop

    gold = pd.read_csv(Path(args.shared) / "apokasc3" / "Table4_Apoor_RGB+RC_Gold.csv")
    vendored = pop.relations()
    patched = corrected_relations(gold, vendored)
    for name in ("teff", "c_n"):
        for state in ("RGB", "RC"):
            term = 4 if name == "teff" else 1
            print(f"{name} {state}: ln M coefficient {vendored[name][state]['coef'][term]:.3f} "
                  f"-> {patched[name][state]['coef'][term]:.3f}")  # fmt: skip
    before = label_rows(args.n_stars)
    pop.relations = lambda: patched  # in memory only; the vendored file is untouched
    after = label_rows(args.n_stars)
    for key, value in before.items():
        print(f"{key:40s} {value:6.2f} -> {after[key]:6.2f}")


if __name__ == "__main__":
    main()
