"""The spectrum-quality checks: what normal spectra show, and what the checks cost.

Prints, for the thresholds of :class:`skages.quality.QualityThresholds`:

* the range of each statistic (masked fraction, median flux, line depth, noise ratio) on
  simulated giants of :func:`skages.datasets.make_apokasc` (``--n-stars``, S/N 30-1,100;
  the training mean spectrum of the first half is the reference for the second half),
  on the real continuum-normalised DR14 giant 2M08002084+4044415 (its error array) and on
  the three real APOGEE M dwarfs of the shared data (aspcapStar r6, no noise stated);
* the time per star of :func:`~skages.quality.spectrum_quality` (every statistic, a
  median per star and check) and of :func:`~skages.quality.quality_flags` (the same
  flags, which the catalogue uses), best of ``--repeats`` on the same 1,024 spectra in
  one process, with a check that their flags agree.

Usage::

    python benchmarks/bench_quality.py [--n-stars 600] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np


def _ranges(name: str, stats: dict[str, np.ndarray]) -> None:
    cells = []
    for key in ("masked_fraction", "level", "line_depth", "noise_ratio"):
        v = stats[key][np.isfinite(stats[key])]
        cells.append(f"{v.min():.2f}-{v.max():.2f}" if v.size else "n/a")
    print(f"{name:38s} " + " ".join(f"{c:>12s}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    from skages.datasets import make_apokasc
    from skages.io import read_normalized_spectra
    from skages.quality import quality_flags, spectrum_quality

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-stars", type=int, default=600)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--shared",
        default=os.environ.get("SKAGES_SHARED_DATA", Path(__file__).parents[2] / "shared/data"),
    )
    args = p.parse_args(argv)
    logging.getLogger("skages.quality").setLevel(logging.ERROR)  # the table says it all

    survey = make_apokasc(args.n_stars, psd=False, random_state=0)
    spectra = np.asarray(survey.spectra, dtype=np.float64)
    half = args.n_stars // 2
    reference = np.nanmean(spectra[:half], axis=0)
    snr = survey.labels["snr"].to_numpy(dtype=float)[half:]
    heads = ("masked", "median flux", "line depth", "noise ratio")
    print(f"{'':38s} " + " ".join(f"{h:>12s}" for h in heads))
    _, stats = spectrum_quality(spectra[half:], reference, snr=snr)
    _ranges(f"simulated giants ({args.n_stars - half}, S/N label)", stats)
    err = np.asarray(survey.spectra_err, dtype=np.float64)[half:]
    _, stats = spectrum_quality(spectra[half:], reference, spectra_err=err)
    _ranges("same, error arrays", stats)
    shared = Path(args.shared) / "apogee_fixtures"
    giant = np.load(shared / "apogee_dr14_2M08002084+4044415_normalized.npz")
    good = giant["good_pixel_mask"].astype(bool)
    flux = np.where(good, giant["normalized_flux"], np.nan)[None]
    err = np.where(good, giant["normalized_error"], 0.0)[None]
    _, stats = spectrum_quality(flux, reference, spectra_err=err)
    _ranges("real DR14 giant 2M08002084+4044415", stats)
    dwarfs = read_normalized_spectra(sorted(shared.glob("aspcapStar-r6-*.fits")))
    _, stats = spectrum_quality(dwarfs.spectra, reference)
    _ranges("real M dwarfs (3, aspcapStar r6)", stats)

    rows = np.resize(np.arange(half, args.n_stars), 1024)
    batch = np.asarray(survey.spectra, dtype=np.float32)[rows]
    batch[np.random.default_rng(0).random(batch.shape) < 0.03] = np.nan  # masked pixels
    batch_snr = survey.labels["snr"].to_numpy(dtype=float)[rows]

    def full():
        return spectrum_quality(batch, reference, snr=batch_snr)[0]

    def fast():
        return quality_flags(batch, reference, snr=batch_snr)

    times = {}
    for name, fn in (
        ("spectrum_quality (all statistics)", full),
        ("quality_flags (the catalogue's)", fast),
    ):
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            flags = fn()
            best = min(best, time.perf_counter() - t0)
        times[name] = (best, flags)
    (a, fa), (b, fb) = times.values()
    print(f"\ntime per star, best of {args.repeats}, 1,024 spectra (3 % masked pixels):")
    for name, (t, _) in times.items():
        print(f"  {name:36s} {1e3 * t / len(batch):.3f} ms")
    print(f"  quality_flags is {a / b:.1f}x faster; flags identical: {bool(np.all(fa == fb))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
