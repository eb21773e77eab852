"""Out-of-bag against held-out: does the forest's calibration carry over to unseen stars?

For a model written by ``skages demo`` (its folder: ``model.skops`` and ``survey.h5``), per
evolutionary state: the age scatter (:func:`astropy.stats.mad_std` of predicted / reference
age, %) and the fraction within 1σ, first on the forest's own training stars from their
out-of-bag predictions (what the calibration is fitted to), then on the held-out stars of
the demo's split (what a user gets), and the out-of-bag coverage of the stars the
calibration was fitted on. A gap means the latent coordinates of the encoder's training
stars date better than those of stars it never saw.

Usage::

    python benchmarks/bench_calibration_gap.py skages-demo
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
