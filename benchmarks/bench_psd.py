"""Light curve -> 2092-pixel log PSD: skages' NUFFT path vs the published astropy path.

Workload of the foundation issue: a 4-year Kepler long-cadence light curve
(~65,000 cadences) evaluated on the 29,779-frequency grid, for one star and
for a batch. Both paths share the background, smoothing and binning steps
(skages.seismology.power_to_log_psd); the baseline computes the periodogram
with astropy.timeseries.LombScargle as the released code does.

Many stars (files -> HDF5 survey): ``--many N`` writes N synthetic four-year stars
as Kepler long-cadence FITS quarters (17 per star, the MAST column layout, light curves
from skages.datasets.simulate_lightcurve, 1 % of cadences with a quality flag) into a
temporary folder, then times (a) the FITS reading alone, with skages' reader
(skages.io.read_kepler_star) and with lightkurve's (skages.seismology.read_kepler_lightcurve,
the baseline), and (b) the whole batch, skages.io.lightcurves_to_survey with n_jobs
workers, against the baseline a user would write: read_kepler_lightcurve then
lightcurve_to_psd for each star, in n_jobs joblib workers. Rates are extrapolated to
10,000 stars (goal: <= 5 min on 2 cores).

Run:  python benchmarks/bench_psd.py [--quick] [--batch N] [--n-jobs J] [--many N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

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


QUARTER_DAYS = 1460.0 / 17


def write_kepler_quarters(folder: Path, kic: int, time: np.ndarray, flux: np.ndarray, seed: int):
    """One star's light curve as 17 MAST-layout long-cadence FITS files."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    names = ["TIME", "TIMECORR", "CADENCENO", "SAP_FLUX", "SAP_FLUX_ERR", "SAP_BKG",
             "SAP_BKG_ERR", "PDCSAP_FLUX", "PDCSAP_FLUX_ERR", "SAP_QUALITY", "PSF_CENTR1",
             "PSF_CENTR1_ERR", "PSF_CENTR2", "PSF_CENTR2_ERR", "MOM_CENTR1", "MOM_CENTR1_ERR",
             "MOM_CENTR2", "MOM_CENTR2_ERR", "POS_CORR1", "POS_CORR2"]  # fmt: skip
    quarter = np.floor(time / QUARTER_DAYS).astype(int)
    for q in range(17):
        sel = quarter == q
        n = int(sel.sum())
        if n == 0:
            continue
        pdc = (flux[sel] * (1 + 0.01 * q)).astype(np.float32)
        quality = np.where(rng.random(n) < 0.01, 32, 0).astype(np.int32)
        columns = []
        for name in names:
            if name == "TIME":
                columns.append(fits.Column(name, "D", array=time[sel] + 131.5))
            elif name in ("CADENCENO", "SAP_QUALITY"):
                value = quality if name == "SAP_QUALITY" else np.arange(n, dtype=np.int32)
                columns.append(fits.Column(name, "J", array=value))
            elif name in ("PDCSAP_FLUX", "SAP_FLUX"):
                columns.append(fits.Column(name, "E", array=pdc))
            else:
                columns.append(fits.Column(name, "E", array=np.zeros(n, np.float32)))
        primary = fits.PrimaryHDU()
        primary.header.update(
            TELESCOP="Kepler",
            CREATOR="FluxExporter2PipelineModule",
            ORIGIN="NASA/Ames",
            KEPLERID=kic,
            QUARTER=q,
            OBSMODE="long cadence",
        )
        table = fits.BinTableHDU.from_columns(columns, name="LIGHTCURVE")
        table.header.update(BJDREFI=2454833, BJDREFF=0.0, TIMEUNIT="d", TELESCOP="Kepler")
        fits.HDUList([primary, table]).writeto(folder / f"kplr{kic:09d}-{q:013d}_llc.fits")


def many_stars(n_stars: int, n_jobs: int, n_baseline: int) -> None:
    """Files of many stars -> PSD survey: skages vs the lightkurve glue, same run."""
    from joblib import Parallel, delayed

    from skages.datasets import make_apokasc, simulate_lightcurve
    from skages.io import group_kepler_files, lightcurves_to_survey, read_kepler_star

    labels = make_apokasc(n_stars, psd=False, random_state=0).labels
    with tempfile.TemporaryDirectory(prefix="skages-bench-psd-") as tmp:
        folder = Path(tmp) / "lc"
        folder.mkdir()
        t0 = time.perf_counter()
        for i in range(n_stars):
            t, y = simulate_lightcurve(labels.iloc[i], random_state=i)
            write_kepler_quarters(folder, 1_000_000 + i, t, y, seed=i)
        stars = group_kepler_files(sorted(folder.glob("*.fits"))).stars
        n_files = sum(len(v) for v in stars.values())
        mib = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(
            f"\nmany stars: wrote {n_stars} four-year stars, {n_files} FITS quarters "
            f"({mib:.0f} MiB) in {time.perf_counter() - t0:.0f} s"
        )
        kics = list(stars)
        base = kics[: min(n_baseline, n_stars)]

        def timed(fn):
            t0, c0 = time.perf_counter(), time.process_time()
            result = fn()
            return time.perf_counter() - t0, time.process_time() - c0, result

        def lk_read():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for k in base:
                    seis.read_kepler_lightcurve(stars[k])

        def glue(k):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return seis.lightcurve_to_psd(seis.read_kepler_lightcurve(stars[k]))

        # warm-up: first-call costs (imports, caches) stay out of every timing
        lk_read_first = kics[-1]
        read_kepler_star(stars[lk_read_first])
        glue(lk_read_first)
        # (a) reading only, in this process
        ours_read = timed(lambda: [read_kepler_star(stars[k]) for k in kics])
        lk_read_t = timed(lk_read)
        # (b) the whole batch: in this process (CPU time), then with n_jobs workers
        ours_1 = timed(lambda: lightcurves_to_survey(folder, Path(tmp) / "one.h5", n_jobs=1))
        few = {k: stars[k] for k in kics[-2 * n_jobs :]}  # start the workers once, untimed
        startup = timed(lambda: lightcurves_to_survey(few, Path(tmp) / "w.h5", n_jobs=n_jobs))[0]
        ours_n = timed(lambda: lightcurves_to_survey(folder, Path(tmp) / "psd.h5", n_jobs=n_jobs))
        summary = ours_n[2]
        base_1 = timed(lambda: [glue(k) for k in base])
        Parallel(n_jobs=n_jobs)(delayed(glue)(k) for k in kics[-2 * n_jobs :])  # warm workers
        base_n = timed(lambda: Parallel(n_jobs=n_jobs)(delayed(glue)(k) for k in base))
        from skages.io import read_survey

        psd_ours = read_survey(Path(tmp) / "psd.h5", rows=slice(0, len(base)), arrays=["psd"]).psd
        diff = float(np.nanmax(np.abs(psd_ours - np.stack(base_n[2]))))

    def row(name, result, n, cpu=True):
        wall, cpu_s, _ = result
        return (
            name,
            f"{wall / n * 1e3:.1f}",
            f"{cpu_s / n * 1e3:.1f}" if cpu else "-",
            f"{wall / n * 1e4 / 60:.1f}",
            f"{cpu_s / n * 1e4 / 2 / 60:.1f}" if cpu else "-",
        )

    rows = [
        row("read FITS, skages", ours_read, n_stars),
        row("read FITS, lightkurve (baseline)", lk_read_t, len(base)),
        row("files -> survey, skages, n_jobs=1", ours_1, n_stars),
        row(f"files -> survey, skages, n_jobs={n_jobs}", ours_n, n_stars, cpu=False),
        row("files -> PSDs, lightkurve glue, n_jobs=1", base_1, len(base)),
        row(f"files -> PSDs, lightkurve glue, n_jobs={n_jobs}", base_n, len(base), cpu=False),
    ]
    print_table(
        f"{n_stars} stars (baseline on {len(base)}), {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}",
        rows,
        (
            "stage",
            "wall ms/star",
            "CPU ms/star",
            "10,000 stars, wall (min)",
            "10,000 stars, 2 idle cores (min) = CPU/2",
        ),
    )
    print(f"(worker start-up and {2 * n_jobs} warm-up stars, untimed above: {startup:.1f} s)")
    ratio = base_1[1] / len(base) / (ours_1[1] / n_stars)
    print(
        f"speed-up (files -> PSDs, CPU per star): {ratio:.1f}x"
        f"   max |Δ log PSD| vs baseline = {diff:.1e}   failed stars: {summary.n_failed}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch, one repeat")
    parser.add_argument("--batch", type=int, default=16, help="stars in the batch run")
    parser.add_argument("--n-jobs", type=int, default=2, help="workers for the batch run")
    parser.add_argument(
        "--many", type=int, default=0, help="also run the many-stars case with N stars"
    )
    parser.add_argument("--many-only", action="store_true", help="run only the many-stars case")
    args = parser.parse_args()
    if args.many_only:
        many_stars(args.many or (8 if args.quick else 100), args.n_jobs, 4 if args.quick else 8)
        return
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
    if args.many:
        many_stars(args.many, args.n_jobs, 4 if args.quick else 8)


if __name__ == "__main__":
    main()
