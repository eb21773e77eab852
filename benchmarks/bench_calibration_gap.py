"""Out-of-bag against held-out: does the forest's calibration carry over to unseen stars?

For a model written by ``skages demo`` (its folder: ``model.skops`` and ``survey.h5``), per
evolutionary state: the age scatter (:func:`astropy.stats.mad_std` of predicted / reference
age, %) and the fraction within 1σ, first on the forest's own training stars from their
out-of-bag predictions (what the calibration is fitted to), then on the held-out stars of
the demo's split (what a user gets), and the out-of-bag coverage of the stars the
calibration was fitted on. A gap means the latent coordinates of the encoder's training
stars date better than those of stars it never saw.

With ``--compare``, the forest is then refitted on the model's own training inputs and
calibration stars (recomputed from the seed and ``calibration_fraction`` in its metadata)
in two ways, per region of the inputs (``"oob_local"`` alone) and per evolutionary state
(``calibration_groups``, what :func:`skages.pipeline.fit_age_model` now does), and each
is scored per state on the held-out stars: against their reference ages (with σ_ref) and,
on a simulated survey, against the true ages of every held-out star.

Usage::

    python benchmarks/bench_calibration_gap.py skages-demo [--compare]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from astropy.stats import mad_std


def _row(name: str, pred, std, y, err) -> str:
    z = np.abs(pred - y) / np.sqrt(std**2 + err**2)
    scatter = 100 * mad_std(10 ** (pred - y))
    return f"  {name:10s} n={y.size:5d}  scatter {scatter:5.1f} %  |z| < 1: {np.mean(z < 1):.3f}"


def main(argv: list[str] | None = None) -> int:
    from skages.evaluation import held_out_split
    from skages.io import read_survey
    from skages.persistence import load_model
    from skages.pipeline import make_age_frame

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("demo", help="the folder of a skages demo run")
    p.add_argument("--compare", action="store_true", help="refit: per region vs per state")
    args = p.parse_args(argv)
    folder = Path(args.demo)
    # the demo's own model file, written by this machine's skages demo
    model, provenance = load_model(folder / "model.skops", trusted=True)
    forest = model.named_steps["forest"]
    survey = read_survey(folder / "survey.h5")
    labels = survey.labels
    train, test = held_out_split(provenance["training"], labels)
    for name, rows, oob in (("out-of-bag", train, True), ("held out", test, False)):
        lab = labels.iloc[rows]
        keep = np.isfinite(lab["log_age"].to_numpy()) & lab["precise_age"].to_numpy(bool)
        y, err = lab["log_age"].to_numpy()[keep], lab["log_age_err"].to_numpy()[keep]
        state = lab["evstate"].to_numpy().astype(str)[keep]
        if oob:
            pred, std = forest.oob_prediction_, forest.oob_std_
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = make_age_frame(survey.spectra[rows][keep], lab[keep])
                pred, std = model.predict(frame, return_std=True)
        print(f"{name} ({'training stars of the forest' if oob else 'the demo split'}):")
        for s in ("RGB", "RC"):
            k = (state == s) & np.isfinite(pred)
            print(_row(s, pred[k], std[k], y[k], err[k]))
    z = np.abs(forest.calibration_residuals_)
    print(
        f"calibration stars (fit_age_model's calibration_fraction: held out of the "
        f"encoder's training; all forest stars with 0): n={z.size}, out-of-bag |z| < 1: "
        f"{np.mean(z < 1):.3f}"
    )
    if args.compare:
        _compare(model, provenance["training"], survey, train, test)
    return 0


def _compare(model, training: dict, survey, train, test) -> None:
    """Refit the forest per region and per state on the model's calibration stars."""
    from sklearn.base import clone

    from skages.pipeline import _calibration_stars, make_age_frame

    features, forest = model.named_steps["features"], model.named_steps["forest"]
    lab_train = survey.labels.iloc[train].reset_index(drop=True)
    y = lab_train["log_age"].to_numpy(float)
    use = np.isfinite(y)
    if training.get("forest_stars", "precise") == "precise" and "precise_age" in lab_train:
        use &= lab_train["precise_age"].to_numpy(bool)
    fraction = float(training.get("calibration_fraction", 0.2))
    seed = training.get("encoder_params", {}).get("random_state", 0)
    held = _calibration_stars(use, fraction, seed)[use]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = features.transform(make_age_frame(survey.spectra[train][use], lab_train[use]))
        lab_test = survey.labels.iloc[test].reset_index(drop=True)
        X_test = features.transform(make_age_frame(survey.spectra[test], lab_test))
    y, y_err = y[use], lab_train["log_age_err"].to_numpy(float)[use]
    states = lab_train["evstate"].to_numpy().astype(str)[use]
    state_test = lab_test["evstate"].to_numpy().astype(str)
    ref = lab_test["log_age"].to_numpy(float)
    ref_err = lab_test["log_age_err"].to_numpy(float)
    precise = np.isfinite(ref) & lab_test.get("precise_age", np.isfinite(ref)).to_numpy(bool)
    true = lab_test["log_age_true"].to_numpy(float) if "log_age_true" in lab_test else None
    print(
        f"\nrefitted on the model's {held.sum()} calibration stars (calibration_fraction "
        f"{fraction}, seed {seed}) of its {use.sum()} forest stars; |z| < 1 / |z| < 2:"
    )
    for name, groups in (("per region", None), ("per state", states)):
        refit = clone(forest).fit(X, y, y_err=y_err, calibration_mask=held,
                                  calibration_groups=groups)  # fmt: skip
        pred, std = refit.predict(X_test, return_std=True)
        row = [f"  {name:10s}"]
        if refit.calibration_classifier_ is not None:
            values = X_test.to_numpy(float)[:, refit.value_columns_]
            guess = refit.calibration_classifier_.predict(values)
            row[0] += f" (state right for {np.mean(guess == state_test):.3f} held out)"
        for s in ("RGB", "RC"):
            k = (state_test == s) & precise
            zr = np.abs(pred[k] - ref[k]) / np.sqrt(std[k] ** 2 + ref_err[k] ** 2)
            row.append(f"{s} reference (n={k.sum()}) {np.mean(zr < 1):.3f}/{np.mean(zr < 2):.3f}")
            if true is not None:
                k = state_test == s
                zt = np.abs(pred[k] - true[k]) / std[k]
                row.append(f"true (n={k.sum()}) {np.mean(zt < 1):.3f}/{np.mean(zt < 2):.3f}")
        print("; ".join(row), flush=True)
    _split_check(forest, X, y, y_err, held, X_test, true, lab_train[use], lab_test, precise)


def _split_check(forest, X, y, y_err, held, X_test, true, lab_cal, lab_test, precise) -> None:
    """Split-conformal check of exchangeability: a forest grown without the calibration
    stars, its raw spread scaled to cover them, scored on them and on the held-out stars
    (both predicted alike, neither seen by the encoder or this forest)."""
    from scipy.stats import ks_2samp
    from sklearn.base import clone

    from skages.forest import _fit_calibration_scale

    raw = clone(forest).set_params(calibration=None)
    raw.fit(X[~held], y[~held], y_err=y_err[~held])
    pred_cal, std_cal = raw.predict(X[held], return_std=True)
    r, e = y[held] - pred_cal, y_err[held]
    # the forest's own coverage-matched scale of σ = k × spread (no 1/T term: all trees)
    always = np.full(r.size, np.inf)
    k = _fit_calibration_scale(r, std_cal**2, always, e, 0, statistic="oob_coverage")
    z_cal = np.abs(r) / np.sqrt((k * std_cal) ** 2 + e**2)
    line = (
        f"split check: forest on the {int((~held).sum())} other forest stars, σ scale {k:.3f} "
        f"fitted on the {int(held.sum())} calibration stars, which it covers "
        f"{np.mean(z_cal < 1):.3f}/{np.mean(z_cal < 2):.3f}"
    )
    pred, std = raw.predict(X_test, return_std=True)
    ref, ref_err = lab_test["log_age"].to_numpy(float), lab_test["log_age_err"].to_numpy(float)
    z = np.abs(ref - pred)[precise] / np.sqrt((k * std[precise]) ** 2 + ref_err[precise] ** 2)
    line += f"; the held-out precise stars, reference ages (n={z.size}): "
    line += f"{np.mean(z < 1):.3f}/{np.mean(z < 2):.3f}"
    if true is not None:
        for name, m in (("precise", precise), ("all", np.ones_like(precise))):
            z = np.abs(true - pred)[m] / (k * std[m])
            line += f"; true ages, {name} (n={z.size}): {np.mean(z < 1):.3f}/{np.mean(z < 2):.3f}"
    print(line)
    held_labels = lab_cal[held]
    tests = []
    for col in ("teff", "fe_h", "log_age", "numax", "snr"):
        if col in held_labels and col in lab_test:
            a = held_labels[col].to_numpy(float)
            b = lab_test[col].to_numpy(float)[precise]
            p = ks_2samp(a[np.isfinite(a)], b[np.isfinite(b)]).pvalue
            tests.append(f"{col} {p:.2f}")
    print("  calibration vs held-out precise stars, Kolmogorov-Smirnov p: " + ", ".join(tests))


if __name__ == "__main__":
    raise SystemExit(main())
