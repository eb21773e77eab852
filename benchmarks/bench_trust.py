"""How far to trust an age: coverage, warning flags and the cases a model never saw.

Trains the age Pipeline on a simulated survey (``--n-stars`` stars of
:func:`skages.datasets.make_apokasc`, 70 % training, ``--epochs`` encoder epochs), then on
the 30 % held out:

1. the coverage table per evolutionary state (|z| < 1, |z| < 2, z width; z against the
   survey's reference ages with their errors) for the forest's calibrations, on the one
   frozen encoder;
2. how many held-out stars the catalogue's cuts date (the paper's latent and age cuts),
   and the age scatter of the scored and of the dated stars;
3. the fraction of held-out stars inside the paper's cuts that get a warning bit
   (spectrum quality, applicability), per bit;
4. the flags of the out-of-population cases of issue 22: Teff 7000 K (label, and label
   with a spectrum whose lines are 30 % as deep), [Fe/H] −2.5, a flat spectrum, a
   constant 0.5, S/N ≈ 5 noise under an S/N label of 150, 45 % masked pixels and the real
   APOGEE M dwarfs of ``../shared/data/apogee_fixtures`` (aspcapStar r6) with giant labels;
5. the decoder check: νmax of the decoded PSD against the observed PSD's (mismatch rate).

It also writes ``trust_scores.npz`` (held-out and out-of-population applicability scores)
for the figure of the docs page (``--figure PATH``).

Usage::

    python benchmarks/bench_trust.py [--n-stars 3000] [--epochs 8] [--figure score.png]
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.stats import mad_std

from skages.catalogue import CatalogueCuts
from skages.datasets import make_apokasc
from skages.encoder import SpectrumToPSDEncoder
from skages.evaluation import coverage_table, decoder_numax_check, split_survey
from skages.forest import ProbabilisticForestRegressor
from skages.pipeline import age_trust, fit_age_model, make_age_frame
from skages.quality import QualityFlag


def _cases(test: pd.DataFrame, spectra: np.ndarray, ref: np.ndarray, rng) -> dict:
    """Out-of-population stars built from held-out giants: (spectra, labels, S/N)."""
    i = np.flatnonzero((test.logg > 2.6).to_numpy() & (test.snr > 100).to_numpy())[:20]
    base, lab = spectra[i].astype(np.float64), test.iloc[i].reset_index(drop=True)
    snr = np.full(len(i), 150.0)

    def with_(**values):
        out = lab.copy()
        for k, v in values.items():
            out[k] = v
        return out

    weak = 1.0 - 0.3 * (1.0 - base)  # lines at 30 % of their depth
    masked = base.copy()
    masked[rng.random(masked.shape) < 0.45] = np.nan
    cases = {
        "Teff 7000 K (label)": (base, with_(teff=7000.0), snr),
        "Teff 7000 K (label, weak lines)": (weak, with_(teff=7000.0), snr),
        "[Fe/H] -2.5 (label)": (base, with_(fe_h=-2.5), snr),
        "flat spectrum": (np.ones_like(base), lab, snr),
        "constant 0.5": (np.full_like(base, 0.5), lab, snr),
        "S/N 5 noise, S/N label 150": (base + rng.normal(size=base.shape) * 0.2, lab, snr),
        "45 % masked": (masked, lab, snr),
    }
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    root = Path(os.environ.get("SKAGES_SHARED_DATA", default))
    files = sorted(glob.glob(str(root / "apogee_fixtures" / "aspcapStar-r6-*.fits")))
    if files:
        from skages.io import read_normalized_spectra

        dwarfs = read_normalized_spectra(files)
        n = len(files)
        cases["real M dwarfs, giant labels"] = (
            np.asarray(dwarfs.spectra, dtype=np.float64),
            lab.iloc[:n].reset_index(drop=True),
            np.full(n, 150.0),
        )
    return cases


QUANTILES = (0.025, 0.16, 0.84, 0.975)


def _quantile_coverage(y, mean, std, y_err, q, state, table):
    """Fractions of z inside the 68 % and 95 % quantile intervals (bounds in σ), per row
    of ``table`` (index "all" then the states); the Gaussian within_1/within_2 beside."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (y - mean) / np.sqrt(std**2 + y_err**2)
        b = (q - mean[:, None]) / std[:, None]
    ok = np.isfinite(z)
    in68, in95 = (b[:, 1] < z) & (z < b[:, 2]), (b[:, 0] < z) & (z < b[:, 3])
    rows = [ok & ((state == g) if g != "all" else True) for g in table.index]
    return [in68[m].mean() for m in rows], [in95[m].mean() for m in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-stars", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--scores", default="trust_scores.npz", help="where the scores go")
    parser.add_argument("--figure", help="write the score figure there")
    args = parser.parse_args()
    logging.getLogger("skages.quality").setLevel(logging.ERROR)  # the table says it all
    t0 = time.perf_counter()
    survey = make_apokasc(args.n_stars, random_state=args.seed)
    train, test = split_survey(survey, test_size=0.3, random_state=args.seed)
    t_sim = time.perf_counter() - t0
    encoder = SpectrumToPSDEncoder(max_epochs=args.epochs, random_state=args.seed)
    forest = ProbabilisticForestRegressor(args.n_estimators, random_state=args.seed)
    model = fit_age_model(
        train.spectra, train.psd, train.labels, encoder=encoder, forest=forest,
        psd_weight=train.psd_weight,
    )  # fmt: skip
    t_fit = time.perf_counter() - t0 - t_sim
    labels = test.labels.reset_index(drop=True)
    X = make_age_frame(test.spectra, labels)
    y, y_err = labels.log_age.to_numpy(), labels.log_age_err.to_numpy()
    state = labels.evstate.astype(str).to_numpy()
    print(
        f"{args.n_stars} simulated stars ({len(train.labels)} training, {len(labels)} "
        f"held out), {args.epochs} encoder epochs, {args.n_estimators} trees; simulate "
        f"{t_sim:.0f} s, fit {t_fit:.0f} s"
    )

    # 1. coverage per state, each calibration on the same frozen encoder
    print(
        "\n1. held-out coverage (goals: within_1 / in_68 0.68±0.03, within_2 / in_95 "
        "0.95±0.02; within_*: Gaussian σ, in_*: quantile intervals)"
    )
    features_train = model[:-1].transform(make_age_frame(train.spectra, train.labels))
    features_test = model[:-1].transform(X)
    y_train = train.labels.log_age.to_numpy()
    e_train = train.labels.log_age_err.to_numpy()
    precise = np.isfinite(y_train) & train.labels.precise_age.to_numpy().astype(bool)
    for calibration in ("oob", "oob_coverage", "oob_local"):
        f = ProbabilisticForestRegressor(
            args.n_estimators, random_state=args.seed, calibration=calibration,
            error_columns="auto",
        ).fit(features_train[precise], y_train[precise], y_err=e_train[precise])  # fmt: skip
        mean, std, q = f.predict(features_test, return_std=True, quantiles=QUANTILES)
        table = coverage_table(y, mean, std, y_err, groups=state)
        table["in_68"], table["in_95"] = _quantile_coverage(y, mean, std, y_err, q, state, table)
        print(f"  calibration={calibration!r}")
        print("    " + table.round(3).to_string().replace("\n", "\n    "))

    # 2. what the catalogue's cuts date
    trust = age_trust(model, X, snr=labels.snr.to_numpy())
    cuts = CatalogueCuts()
    _, in_latent = cuts._masks(labels.logg.to_numpy(), labels.snr.to_numpy())
    dated = in_latent & cuts._age(labels.logg.to_numpy())
    scored = np.isfinite(y)
    print("\n2. held-out stars scored vs dated under the paper's cuts (latent, log g >= 2.5)")
    for name, m in (("scored", scored), ("dated", scored & dated)):
        ratio = 10 ** (trust.log_age.to_numpy()[m] - y[m])
        by_state = {s: int((m & (state == s)).sum()) for s in ("RGB", "RC")}
        print(f"  {name:7s} n {int(m.sum()):5d} {by_state}  scatter {100 * mad_std(ratio):.1f} %")

    # 3. warning bits on held-out stars inside the paper's cuts
    q = trust.quality_flags.to_numpy()
    outside = trust.outside_training.to_numpy()
    print(f"\n3. warning bits on the {int(dated.sum())} held-out stars the cuts date")
    for bit in QualityFlag:
        print(f"  {bit.name:22s} {100 * np.mean((q[dated] & bit) != 0):5.2f} %")
    print(f"  {'OUTSIDE_TRAINING':22s} {100 * np.mean(outside[dated]):5.2f} %")
    anyflag = (q != 0) | outside
    print(f"  {'any warning':22s} {100 * np.mean(anyflag[dated]):5.2f} %  (goal <= 5 %)")

    # 4. the out-of-population cases
    rng = np.random.default_rng(args.seed)
    spectra = np.asarray(test.spectra, dtype=np.float64)
    cases = _cases(labels, spectra, None, rng)
    print("\n4. out-of-population cases: stars with a non-zero flag (goal: all)")
    scores = {"held-out": trust.applicability.to_numpy()[dated]}
    for name, (spec, lab, snr) in cases.items():
        t = age_trust(model, make_age_frame(spec.astype(np.float32), lab), snr=snr)
        flagged = (t.quality_flags.to_numpy() != 0) | t.outside_training.to_numpy()
        bits = sorted(
            {b.name for f in t.quality_flags for b in QualityFlag if int(f) & b}
            | ({"OUTSIDE_TRAINING"} if t.outside_training.any() else set())
        )
        print(
            f"  {name:34s} {int(flagged.sum()):2d}/{len(t)}  median score "
            f"{np.median(t.applicability):6.2f}  bits {', '.join(bits)}"
        )
        scores[name] = t.applicability.to_numpy()
    # 5. the decoder as a check: νmax of the decoded PSD against the observed PSD's
    check = decoder_numax_check(model, test.spectra, psd=test.psd)
    r = np.abs(check["log_ratio"][np.isfinite(check["log_ratio"])])
    print(
        f"\n5. decoder νmax vs observed (same estimator), {r.size} held-out stars: |log10 "
        f"ratio| median {np.median(r):.3f}, 90 % {np.quantile(r, 0.9):.3f}, 99 % "
        f"{np.quantile(r, 0.99):.3f} dex; mismatch rate (> 0.1 dex) "
        f"{100 * check['mismatch_rate']:.1f} %"
    )
    np.savez(args.scores, **{k.replace(" ", "_"): v for k, v in scores.items()})
    if args.figure:
        from skages.plotting import plot_applicability

        plot_applicability(scores, path=args.figure)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
