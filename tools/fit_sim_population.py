"""Fit, once, the smooth relations and deconvolved mass distributions of the simulated population.

Reruns from the repository root (reads the real tables in ``../shared/data`` or the
paths given, writes the two vendored files)::

    PYTHONPATH=$PWD python tools/fit_sim_population.py [--shared ../shared/data]

Writes ``skages/_data/data/sim_population.json`` (coefficients) and
``skages/_data/data/APOKASC3_Table4_Gold_trimmed.csv.gz`` (the columns of APOKASC-3
Table 4 the simulator resamples). What is fitted, and from which table:

- ln M of every (state, [α/M] sequence): a 1-D Gaussian mixture deconvolved by the
  stated mass errors (extreme deconvolution, ``skages.datasets._deconvolve``): APOKASC-3
  Gold (α-poor) and APOKASC-2 Table 5 (α-poor and α-rich, [α/Fe] > ``ALPHA_RICH``);
- Teff(log g, [Fe/H], ln M, [α/Fe]) and [C/N](M, [Fe/H], [α/Fe], mixing index) per state,
  least squares on APOKASC-3 Gold (DR17 ASPCAP Teff, [C/N]), with their residual scatter;
- log10 age(ln M, [Fe/H], [α/Fe]) per state on APOKASC-2 (its grid-based ages, which are
  functions of the catalogue's own mass, [Fe/H] and [α/Fe]), with residual scatter;
- fdnu(νmax, Teff, M, [Fe/H]) per state on APOKASC-2 (its Δν correction factors);
- ASPCAP raw and calibrated log g minus seismic log g per state, from the preliminary
  APOKASC-3 calibration table (median and robust scatter; the scatter also separately for
  the stars of APOKASC-3 Gold and for the others).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.stats import mad_std

ALPHA_RICH = 0.12  # [α/Fe] above which an APOKASC-2 star is on the α-rich sequence
GOLD_WINDOW = (0.9, 1.8)  # the mass range of APOKASC-3 Table 4 Gold (M☉)
N_COMPONENTS = 3


def _lstsq(design, y, clip=4.0, noise=None):
    """Least squares, iteratively clipping residuals beyond ``clip`` robust σ.

    ``noise=(column, variance)``: that regressor carries measurement noise of that
    variance, removed from the normal equations (the errors-in-variables moment
    correction; ``tools/eiv_sensitivity.py``). None: ordinary least squares.
    """
    keep = np.isfinite(y) & np.isfinite(design).all(axis=1)
    for _ in range(5):
        if noise is None:
            coef = np.linalg.lstsq(design[keep], y[keep], rcond=None)[0]
        else:
            d, n = design[keep], int(keep.sum())
            gram = d.T @ d / n
            gram[noise[0], noise[0]] -= noise[1]
            coef = np.linalg.solve(gram, d.T @ y[keep] / n)
        res = y - design @ coef
        sig = mad_std(res[keep])
        new = np.isfinite(y) & np.isfinite(design).all(axis=1) & (np.abs(res) < clip * sig)
        if (new == keep).all():
            break
        keep = new
    return coef, float(mad_std(res[keep])), int(keep.sum())


def teff_design(g: pd.DataFrame) -> np.ndarray:
    """Design of the Teff relation on Gold rows ``g``; ln M is column ``TEFF_LN_MASS``."""
    lnm, logg = np.log(g.Mass.to_numpy()), g.Logg_Seis.to_numpy()
    feh, alpha = g["[Fe/H]"].to_numpy(), g["[Alp/Fe]"].to_numpy()
    return np.column_stack([np.ones(len(g)), logg - 2.5, (logg - 2.5) ** 2, feh, lnm, alpha])


def c_n_design(g: pd.DataFrame, state: str) -> np.ndarray:
    """Design of the [C/N] relation on Gold rows ``g`` of ``state``; the mass term,
    tanh(1.2 ln M), is column ``C_N_MASS``."""
    from skages.datasets._sim_population import mixing_index

    lnm = np.log(g.Mass.to_numpy())
    feh, alpha = g["[Fe/H]"].to_numpy(), g["[Alp/Fe]"].to_numpy()
    x = mixing_index(g.Mass.to_numpy(), g.Logg_Seis.to_numpy(), np.full(len(g), state == "RC"))
    return np.column_stack([np.ones(len(g)), np.tanh(1.2 * lnm), feh, alpha, x])


TEFF_LN_MASS, C_N_MASS = 4, 1


def seismic_noise(a2: pd.DataFrame, cal: pd.DataFrame) -> dict:
    """How far quoted νmax errors overstate real ones, per state (APOKASC-2 vs APOKASC-3).

    ``a2``: APOKASC-2 (``read_apokasc2``, RGB and RC); ``cal``: the preliminary APOKASC-3
    table. If both catalogues' errors were their quoted errors times one fraction f, the
    robust width of the νmax differences of the same stars in units of the quoted errors
    in quadrature would be f. Both analyse the same light curves, so a shared part of the
    error cancels in the difference: f is a lower bound.
    """
    a3 = cal[(cal.NUMAX_WTCOR > 0) & (cal.SIG_NUM_WTCOR > 0)]
    both = a2.merge(a3, left_on="kic", right_on="KIC_ID")
    out = {}
    for code, state in ((1, "RGB"), (2, "RC")):
        b = both[(both.evstate == state) & (code == both.ES_AST)]
        d = np.log(b.NUMAX_WTCOR / b.numax).to_numpy()
        q2 = (b.numax_err / b.numax).to_numpy()
        q3 = b.SIG_NUM_WTCOR.to_numpy()  # fractional
        out[state] = {
            "numax_ln_ratio_mad_std": float(mad_std(d)),
            "median_quoted_apokasc2": float(np.median(q2)),
            "median_quoted_apokasc3": float(np.median(q3)),
            "fraction": float(mad_std((d - np.median(d)) / np.hypot(q2, q3))),
            "n": len(b),
        }
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--out", default="skages/_data/data")
    args = parser.parse_args(argv)
    from skages.datasets._deconvolve import fit_xd
    from skages.io import read_apokasc2

    shared, out = Path(args.shared), Path(args.out)
    gold = pd.read_csv(shared / "apokasc3" / "Table4_Apoor_RGB+RC_Gold.csv")
    a2 = read_apokasc2().to_pandas()
    a2 = a2[a2.evstate.isin(["RGB", "RC"])].dropna(
        subset=["teff", "fe_h", "alpha_fe", "numax", "dnu", "fdnu", "mass", "mass_err", "log_age"]
    )
    result: dict = {
        "source": {
            "apokasc3_gold": "APOKASC-3 (Pinsonneault et al. 2025) Table 4, alpha-poor Gold, "
            "GitHub kailicao/mesa_apokasc (MIT)",
            "apokasc2": "APOKASC-2 (Pinsonneault et al. 2018, ApJS 239, 32) Table 5",
            "logg_cal": "preliminary APOKASC-3 log g calibration sample, GitHub sdss/apogee "
            "data/apokasc/logg_cal.fits (BSD-3-Clause)",
            "script": "tools/fit_sim_population.py",
        },
        "alpha_rich": ALPHA_RICH,
        "gold_window": list(GOLD_WINDOW),
        "mass_prior": {},
        "teff": {},
        "c_n": {},
        "log_age": {},
        "fdnu": {},
        "logg_offset": {},
        "seismic_noise": {},
    }
    # ---- deconvolved ln M
    groups = {}
    for state in ("RGB", "RC"):
        g = gold[gold.Evol_State == state]
        groups[f"gold_{state}"] = (np.log(g.Mass), g.S_Mass / g.Mass)
        s = a2[a2.evstate == state]
        rich = s.alpha_fe > ALPHA_RICH
        for name, sel in (("poor", ~rich), ("rich", rich)):
            d = s[sel]
            groups[f"a2_{name}_{state}"] = (np.log(d.mass), d.mass_err / d.mass)
    for name, (y, e) in groups.items():
        w, m, v = fit_xd(np.asarray(y), np.asarray(e), N_COMPONENTS)
        result["mass_prior"][name] = {
            "weights": w.tolist(),
            "means": m.tolist(),
            "variances": v.tolist(),
            "n": len(y),
            "observed_mad_std": float(mad_std(y)),
            "median_error": float(np.median(e)),
        }
    # ---- Teff and [C/N] on Gold
    for state in ("RGB", "RC"):
        g = gold[gold.Evol_State == state]
        coef, sig, n = _lstsq(teff_design(g), g.Teff.to_numpy())
        result["teff"][state] = {
            "terms": ["1", "logg-2.5", "(logg-2.5)^2", "fe_h", "ln_mass", "alpha_m"],
            "coef": coef.tolist(), "residual_mad_std": sig, "n": n,
        }  # fmt: skip
        coef, sig, n = _lstsq(c_n_design(g, state), g["[C/N]"].to_numpy())
        result["c_n"][state] = {
            "terms": ["1", "tanh(1.2 ln_mass)", "fe_h", "alpha_m", "mixing"],
            "coef": coef.tolist(), "residual_mad_std": sig, "n": n,
        }  # fmt: skip
    # ---- age and fdnu on APOKASC-2
    for state in ("RGB", "RC"):
        s = a2[a2.evstate == state]
        lnm, feh, alpha = np.log(s.mass.to_numpy()), s.fe_h.to_numpy(), s.alpha_fe.to_numpy()
        design = np.column_stack([np.ones(len(s)), lnm, lnm**2, feh, alpha, lnm * feh])
        coef, sig, n = _lstsq(design, s.log_age.to_numpy())
        result["log_age"][state] = {
            "terms": ["1", "ln_mass", "ln_mass^2", "fe_h", "alpha_m", "ln_mass*fe_h"],
            "coef": coef.tolist(), "residual_mad_std": sig, "n": n,
        }  # fmt: skip
        lnu = np.log(s.numax.to_numpy() / 30.0)
        design = np.column_stack(
            [np.ones(len(s)), lnu, lnu**2, s.teff.to_numpy() / 1000 - 4.8, lnm, feh]
        )
        coef, sig, n = _lstsq(design, s.fdnu.to_numpy())
        result["fdnu"][state] = {
            "terms": ["1", "ln(numax/30)", "ln(numax/30)^2", "teff/1000-4.8", "ln_mass", "fe_h"],
            "coef": coef.tolist(), "residual_mad_std": sig, "n": n,
        }  # fmt: skip
    # ---- spectroscopic log g signature
    from astropy.table import Table

    cal = Table.read(shared / "apokasc3" / "apokasc3_preliminary_logg_cal.fits").to_pandas()
    for code, state in ((1, "RGB"), (2, "RC")):
        c = cal[code == cal.ES_AST]
        raw = (c.LOGG_FIT - c.LOGG_SEIS).to_numpy()
        cor = (c.LOGG_COR - c.LOGG_SEIS).to_numpy()
        # the calibrated log g is better for APOKASC-3 Gold stars (the precise α-poor
        # sample the rest of the population is drawn from) than for the others
        in_gold = c.KIC_ID.isin(gold.KIC).to_numpy()
        result["logg_offset"][state] = {
            "raw_minus_seismic_median": float(np.nanmedian(raw)),
            "raw_minus_seismic_mad_std": float(mad_std(raw, ignore_nan=True)),
            "calibrated_minus_seismic_mad_std": float(mad_std(cor, ignore_nan=True)),
            "calibrated_minus_seismic_mad_std_gold": float(mad_std(cor[in_gold], ignore_nan=True)),
            "calibrated_minus_seismic_mad_std_other": float(
                mad_std(cor[~in_gold], ignore_nan=True)
            ),
            "n": int(np.isfinite(raw).sum()),
            "n_gold": int(np.isfinite(cor[in_gold]).sum()),
        }
    result["seismic_noise"] = seismic_noise(a2, cal)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim_population.json").write_text(json.dumps(result, indent=1) + "\n")
    trimmed = gold[["KIC", "Evol_State", "Mass", "S_Mass", "Logg_Seis", "Teff", "[Fe/H]",
                    "[Alp/Fe]", "[C/N]"]]  # fmt: skip
    with gzip.GzipFile(out / "APOKASC3_Table4_Gold_trimmed.csv.gz", "wb", mtime=0) as fh:
        fh.write(trimmed.to_csv(index=False).encode())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
