"""Light curve -> 2092-pixel log PSD: skages' NUFFT path vs the published astropy path.

Workload of the foundation issue: a 4-year Kepler long-cadence light curve
(~65,000 cadences) evaluated on the 29,779-frequency grid, for one star and
for a batch. Both paths share the background, smoothing and binning steps
(skages.seismology.power_to_log_psd); the baseline computes the periodogram
with astropy.timeseries.LombScargle as the released code does.

Run:  python benchmarks/bench_psd.py [--quick] [--batch N] [--n-jobs J]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import max_rss_mib, measure, print_table

from skages import seismology as seis

CADENCE = 29.4244 / 1440.0


def kepler_like(seed: int, baseline: float = 1461.0) -> tuple[np.ndarray, np.ndarray]:
    """Four years of long cadence with quarterly gaps, red noise and p modes near 80 µHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, baseline, CADENCE)
    keep = (np.mod(t, 93.0) > 1.5) & (rng.random(t.size) > 0.03)
    t = t[keep]
    nu = 80.0 * 1e-6 * 86400.0
    flux = 1e6 + 80 * rng.standard_normal(t.size) + 30 * np.sin(2 * np.pi * nu * t)
    flux += np.cumsum(rng.standard_normal(t.size)) * 0.5
    return t, flux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch, one repeat")
    parser.add_argument("--batch", type=int, default=16, help="stars in the batch run")
    parser.add_argument("--n-jobs", type=int, default=2, help="workers for the batch run")
    args = parser.parse_args()
    batch = 4 if args.quick else args.batch
    repeat = 1 if args.quick else 3
    warnings.simplefilter("ignore", UserWarning)

    t, y = kepler_like(0)
    print(
        f"one star: {t.size} cadences over {t[-1] - t[0]:.0f} d, "
        f"{seis.fine_frequency_grid().size} frequencies, {os.cpu_count()} CPUs"
    )
    rows = []
    results = {}
    for method in ("astropy", "nufft"):
        sec, mem, psd = measure(
            lambda m=method: seis.lightcurve_to_psd(t, y, method=m), repeat=repeat
        )
        p_sec, _, _ = measure(
            lambda m=method: seis.lomb_scargle_power(t, y, method=m), repeat=repeat
        )
        results[method] = (sec, psd)
        rows.append((method, f"{p_sec * 1e3:.1f}", f"{sec * 1e3:.1f}", f"{mem:.0f}"))
    print_table("one star", rows, ("method", "periodogram ms", "total ms", "peak traced MiB"))
    ratio = results["astropy"][0] / results["nufft"][0]
    diff = np.nanmax(np.abs(results["astropy"][1] - results["nufft"][1]))
    print(f"speed-up (total): {ratio:.1f}x   max |Δ log PSD| = {diff:.2e}")

    lcs = [kepler_like(s) for s in range(batch)]
    times, fluxes = [a for a, _ in lcs], [b for _, b in lcs]
    rows = []
    bres = {}
    for method in ("astropy", "nufft"):
        sec, mem, psd = measure(
            lambda m=method: seis.lightcurve_to_psd(times, fluxes, method=m, n_jobs=args.n_jobs),
            repeat=1,
        )
        bres[method] = (sec, psd)
        rows.append((method, f"{sec:.2f}", f"{batch / sec:.1f}", f"{mem:.0f}"))
    print_table(
        f"batch of {batch} stars, n_jobs={args.n_jobs}",
        rows,
        ("method", "seconds", "stars/s", "peak traced MiB"),
    )
    ratio_b = bres["astropy"][0] / bres["nufft"][0]
    diff_b = np.nanmax(np.abs(bres["astropy"][1] - bres["nufft"][1]))
    print(f"speed-up (batch): {ratio_b:.1f}x   max |Δ log PSD| = {diff_b:.2e}")
    print(
        f"10,000 training stars: astropy {1e4 / (batch / bres['astropy'][0]) / 3600:.2f} h, "
        f"skages {1e4 / (batch / bres['nufft'][0]) / 60:.1f} min"
    )
    print(f"peak RSS of this process: {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
