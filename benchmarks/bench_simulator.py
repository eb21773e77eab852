"""The simulated APOKASC survey: time and peak memory of make_apokasc, and the survey file.

Workload of the simulator issue: 10,000 spectrum-PSD pairs (light curves
excluded) within 60 s on 2 cores and 2 GB. Measured in the same run:

* ours: ``make_apokasc(10_000)`` with ``n_jobs=1`` and ``n_jobs=2`` (blocks of
  256 stars; PSDs through ``power_to_log_psd`` in batches of 64 stars);
* baseline: the naive way, one star at a time (its spectrum, its model power
  spectrum and one ``power_to_log_psd`` call per star), timed on a subset and
  projected to 10,000 stars;
* the parts of one block (population, spectra, PSD model, PSD recipe);
* ``write_apokasc`` of a small survey, projected to APOGEE DR17's 733,901 stars
  (time and file size, with and without PSDs);
* ``--information``: how much the spectra say about labels and age (the
  figures quoted in docs/user_guide/simulator.rst).

Peak memory is the largest proportional set size (PSS) of this process plus its
worker processes, sampled every 100 ms (resident set size where PSS is unknown).

Run:  python benchmarks/bench_simulator.py [--quick] [--n-stars N] [--information]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table

from skages import seismology as seis
from skages.datasets import _sim_population as pop
from skages.datasets import _sim_psd as sim_psd
from skages.datasets import _sim_spectra as sim_spectra
from skages.datasets import make_apokasc, simulator, write_apokasc


class PeakMemory:
    """Peak memory (MiB) of this process and all its children, sampled in a thread.

    Sums the proportional set size (PSS: shared pages such as the numpy and scipy
    libraries split between the processes that map them) where the OS reports it
    (Linux), else the resident set size.
    """

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _size(proc) -> int:
        try:
            return proc.memory_full_info().pss
        except (AttributeError, OSError):
            return proc.memory_info().rss

    def _total(self) -> float:
        total = self._size(self._proc)
        for child in self._proc.children(recursive=True):
            with contextlib.suppress(Exception):  # a worker may exit meanwhile
                total += self._size(child)
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(self._interval)

    def __enter__(self) -> PeakMemory:
        self.peak = self._total()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


def timed(fn):
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        result = fn()
        sec = time.perf_counter() - t0
    return sec, mem.peak, result


def naive_per_star(n: int, seed: int = 0) -> float:
    """Seconds for n stars simulated one at a time (the baseline)."""
    options = simulator._check_options(1 / 3, 0.12, True, False, np.nan)
    rng = np.random.default_rng(seed)
    labels = pop.draw_population(rng, n, options["population"])
    offsets = simulator._label_offsets(labels)
    m = seis.fine_frequency_grid().size
    t0 = time.perf_counter()
    for i in range(n):
        one = {k: np.asarray(labels[k])[i : i + 1] for k in labels}
        sim_spectra.draw_spectra(
            rng, offsets[i : i + 1], one["snr"], one["rv"], one["teff_true"],
            bad_pixel_fill=np.nan,
        )  # fmt: skip
        p = {k: one[k] for k in simulator._TRUE_PSD_COLUMNS}
        power = sim_psd.model_power_grid(p, seis.FINE_MIN, seis.FINE_STEP, m)[0]
        seis.power_to_log_psd(power * rng.standard_exponential(m))
    return time.perf_counter() - t0


def parts_of_one_block(seed: int = 0) -> list[tuple[str, str]]:
    options = simulator._check_options(1 / 3, 0.12, True, False, np.nan)
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    labels = pop.draw_population(rng, simulator.BLOCK_SIZE, options["population"])
    rows.append(("population", time.perf_counter() - t0))
    t0 = time.perf_counter()
    offsets = simulator._label_offsets(labels)
    for a in range(0, simulator.BLOCK_SIZE, 64):
        sl = slice(a, a + 64)
        sim_spectra.draw_spectra(
            rng, offsets[sl], labels["snr"][sl], labels["rv"][sl], labels["teff_true"][sl],
            bad_pixel_fill=np.nan,
        )  # fmt: skip
    rows.append(("spectra, noise, bitmasks", time.perf_counter() - t0))
    p = {k: np.asarray(labels[k]) for k in simulator._TRUE_PSD_COLUMNS}
    m = seis.fine_frequency_grid().size
    model_s = recipe_s = 0.0
    for a in range(0, simulator.BLOCK_SIZE, simulator._PSD_BATCH):
        sub = {k: v[a : a + simulator._PSD_BATCH] for k, v in p.items()}
        t0 = time.perf_counter()
        power = sim_psd.model_power_grid(sub, seis.FINE_MIN, seis.FINE_STEP, m)
        power *= rng.standard_exponential(power.shape)
        model_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        seis.power_to_log_psd(power)
        recipe_s += time.perf_counter() - t0
    rows.append(("PSD model + chi2 noise", model_s))
    rows.append(("PSD recipe (power_to_log_psd)", recipe_s))
    scale = 10_000 / simulator.BLOCK_SIZE
    return [(name, f"{sec:.3f}", f"{sec * scale:.1f}") for name, sec in rows]


def survey_file(n: int, psd: bool, n_jobs: int) -> tuple[str, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.h5"
        sec, mem, _ = timed(
            lambda: write_apokasc(path, n, chunk_size=1024, psd=psd, n_jobs=n_jobs, random_state=0)
        )
        size = path.stat().st_size
    scale = simulator.APOGEE_DR17_N_STARS / n
    return (
        f"psd={psd}",
        str(n),
        f"{sec:.1f}",
        f"{size / 2**20:.0f}",
        f"{mem:.0f}",
        f"{sec * scale / 3600:.2f}",
        f"{size * scale / 2**30:.1f}",
    )


def information(n: int) -> None:
    """What the spectra carry: label recovery, age scatter and state separation."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import RidgeCV

    data = make_apokasc(n, psd=False, n_jobs=2, random_state=2)
    lab = data.labels
    x = np.nan_to_num(data.spectra, nan=1.0)
    ntr = int(0.75 * n)
    tr, te = slice(0, ntr), slice(ntr, None)
    rows = []
    cols = ["teff_true", "logg_true", "fe_h_true", "alpha_m_true", "c_n_true", "log_age_true"]
    y = lab[cols].to_numpy()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # threaded BLAS crawls on a busy 2-core machine
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13), alpha_per_target=True).fit(x[tr], y[tr])
    res = ridge.predict(x[te]) - y[te]
    for i, c in enumerate(cols):
        rows.append((c, f"{1 - res[:, i].var() / y[te, i].var():.3f}", f"{res[:, i].std():.4g}"))
    print_table(
        f"linear (ridge) regression on the spectra, {ntr} train / {n - ntr} test stars",
        rows,
        ("label", "R2", "rms"),
    )

    def age_scatter(features: list[str]) -> str:
        z = lab[features].to_numpy()
        forest = RandomForestRegressor(300, min_samples_leaf=3, n_jobs=2, random_state=0)
        pred = forest.fit(z[tr], lab.log_age_true[tr]).predict(z[te])
        ratio = 10 ** (pred - lab.log_age_true[te])
        return f"{50 * (np.percentile(ratio, 84) - np.percentile(ratio, 16)):.1f}"

    feature_sets = {
        "seismic oracle: numax, dnu, teff, fe_h (observed)": ["numax", "dnu", "teff", "fe_h"],
        "scaling mass (observed), fe_h, alpha_m": ["mass", "fe_h", "alpha_m"],
        "spectroscopic labels (observed): teff, logg, fe_h, alpha_m, c_n": [
            "teff", "logg", "fe_h", "alpha_m", "c_n",
        ],
        "teff, fe_h": ["teff", "fe_h"],
        "teff, fe_h, alpha_m (the confounder)": ["teff", "fe_h", "alpha_m"],
    }  # fmt: skip
    rows = [(name, age_scatter(f)) for name, f in feature_sets.items()]
    print_table(
        "random forest -> age: scatter of predicted/true age (half the 16-84 % range, %)",
        rows,
        ("features", "scatter %"),
    )
    rows = []
    for name, f in {
        "teff, logg, fe_h, c_n (observed)": ["teff", "logg", "fe_h", "c_n"],
        "numax, dnu (observed)": ["numax", "dnu"],
    }.items():
        z = lab[f].to_numpy()
        clf = RandomForestClassifier(300, min_samples_leaf=2, n_jobs=2, random_state=0)
        acc = (clf.fit(z[tr], lab.evstate[tr]).predict(z[te]) == lab.evstate[te]).mean()
        rows.append((name, f"{100 * acc:.1f}"))
    print_table("RC vs RGB, random forest", rows, ("features", "correct %"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 stars, small baseline")
    parser.add_argument("--n-stars", type=int, default=10_000)
    parser.add_argument("--information", action="store_true", help="also the information table")
    args = parser.parse_args()
    n = 1000 if args.quick else args.n_stars
    n_naive = 16 if args.quick else 64

    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    make_apokasc(8, random_state=0)  # imports and cached tables, outside the timings
    rows = []
    for n_jobs in (1, 2):
        sec, mem, data = timed(lambda j=n_jobs: make_apokasc(n, n_jobs=j, random_state=0))
        rows.append(
            (f"make_apokasc, n_jobs={n_jobs}", f"{sec:.1f}", f"{n / sec:.0f}", f"{mem:.0f}")
        )
        del data
    sec, mem, _ = timed(lambda: naive_per_star(n_naive))
    rows.append(
        (f"naive per-star loop ({n_naive} stars, projected)", f"{sec * n / n_naive:.1f}",
         f"{n_naive / sec:.0f}", f"{mem:.0f}")
    )  # fmt: skip
    print_table(
        f"{n} stars with spectra and PSDs",
        rows,
        ("method", "seconds", "stars/s", "peak PSS MiB (with workers)"),
    )
    print(f"speed-up, n_jobs=2 vs naive loop: {float(rows[2][1]) / float(rows[1][1]):.1f}x")
    print_table(
        f"parts of one block of {simulator.BLOCK_SIZE} stars (n_jobs=1)",
        parts_of_one_block(),
        ("part", "seconds", f"projected s / {10_000} stars"),
    )
    n_file = 512 if args.quick else 2048
    print_table(
        "write_apokasc (gzip level 1, n_jobs=2), projected to 733,901 stars",
        [survey_file(n_file, False, 2), survey_file(n_file, True, 2)],
        ("arrays", "stars", "seconds", "file MiB", "peak PSS MiB", "projected h", "projected GiB"),
    )
    if args.information:
        information(2000 if args.quick else 8000)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
