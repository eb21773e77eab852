"""Survey-scale inference: ``predict_catalogue`` streaming a simulated survey from HDF5.

What is measured, each in a fresh process so that its peak resident memory can be read:

* **ours** -- :func:`skages.catalogue.predict_catalogue` over the whole survey file, in
  chunks (reading, cuts, encoder, forest, progress files, the final FITS table, its
  read-back check);
* **ceiling** -- the same model (encoder + forest, through the same calls) on spectra
  already in memory: the speed the catalogue would have if reading and bookkeeping
  were free (the encoder's own benchmark, with the forest);
* **reading** -- streaming the spectra from the HDF5 file alone, no model;
* **naive baseline** -- what a user without skages.catalogue would write: read every
  spectrum into memory, build the Pipeline's input frame and call ``model.predict``;
  run on ``--naive-stars`` stars, its memory per star projected;
* **identity checksums** -- the part of *ours* spent on the run's identity: the SHA-256
  of the label table and of every chunk's spectra (timed alone, on the same survey), as
  a share of *ours*; with ``--identity-only`` only this and *ours* run.

The survey (spectra and labels, no PSDs) is written once with
:func:`skages.datasets.write_apokasc` and cached under ``--cache``; the model has the
released architecture (trained for one epoch: inference speed does not depend on
training). Timings are projected to APOGEE DR17's 733,901 allStar rows. The 1-minute
load average is printed before and after: other jobs on the machine slow every number.

With ``--dr17`` the run is at APOGEE DR17's size instead of projected to it: a survey of
733,901 rows is built once (about 22 GB under ``--cache``: the ``--n-stars`` survey's
spectra and labels repeated, each row under its own APOGEE_ID) and
:func:`~skages.catalogue.predict_catalogue` runs over all of it, locally and, with
``--dask``, on a 2-worker ``LocalCluster``: wall time, stars/s and peak resident memory
(goal: 10 min and 2 GB on 2 cores).

Usage::

    python benchmarks/bench_catalogue.py [--quick] [--n-stars 100000] [--cache DIR]
        [--chunk-size 1024] [--dask] [--identity-only] [--dr17]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DR17_ROWS = 733_901
_HERE = Path(__file__).resolve().parent


def _rss_mib() -> float:
    """Peak resident memory of this process image, MiB.

    ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` over ``exec``, so a
    child would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:  # not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        return _rss_mib()


# ------------------------------------------------------------------------ children


def _head(survey: str, n_stars: int):
    """Spectra and labels of the first ``n_stars`` stars of a survey file."""
    from skages.io import read_survey

    first = read_survey(survey, rows=slice(0, n_stars), arrays=["spectra"])
    return first.spectra, first.labels


def _child(args: argparse.Namespace) -> dict:
    import numpy as np

    from skages.catalogue import predict_catalogue
    from skages.catalogue._model import _Predictor
    from skages.io import SurveyReader
    from skages.persistence import load_model

    model, _ = load_model(args.model, trusted=True)  # written by this script (a pickle)
    predictor = _Predictor(model)
    base = _current_rss_mib()  # after imports and the model: the fixed cost
    t0 = time.perf_counter()
    if args.child == "predict":
        out = Path(args.workdir) / "ages.fits"
        res = predict_catalogue(
            args.model,
            args.survey,
            out,
            chunk_size=args.chunk_size,
            overwrite=True,
            restart=True,
            scheduler="local" if args.dask else None,
            n_workers=2 if args.dask else None,
            trusted=True,
        )
        n = res.n_rows
        extra = {"n_latent": res.n_latent, "n_ages": res.n_ages}
    elif args.child == "read":
        with SurveyReader(args.survey) as reader:
            n = reader.n_stars
            for _chunk in reader.iter_chunks(args.chunk_size, arrays=["spectra"]):
                pass
        extra = {}
    elif args.child == "ceiling":
        spectra, labels = _head(args.survey, args.ceiling_stars)
        n = len(labels)
        base = _current_rss_mib()
        t0 = time.perf_counter()
        for a in range(0, n, args.chunk_size):
            latent = predictor.latent(spectra[a : a + args.chunk_size])
            predictor.ages(latent, labels.iloc[a : a + args.chunk_size])
        extra = {}
    elif args.child == "final":
        # the end of a DR17-sized run: 733,901 catalogue rows in chunk files, assembled,
        # written to FITS, read back and checked (the only step that grows with the survey)
        from skages.catalogue import _columns, _progress, _writers

        n, size = DR17_ROWS, args.chunk_size
        bounds = [(i, a, min(a + size, n)) for i, a in enumerate(range(0, n, size))]
        progress = _progress._Progress(Path(args.workdir) / "final", {"bench": 1}, restart=True)
        rng = np.random.default_rng(0)
        for i, a, b in bounds:
            cols = _columns._empty_columns(b - a, predictor.latent_dim)
            cols["APOGEE_ID"] = np.array([f"2M{j:08d}+{j:07d}" for j in range(a, b)])
            cols["TELESCOPE"], cols["FIELD"] = np.full(b - a, "apo25m"), np.full(b - a, "K21")
            for name, values in cols.items():
                if values.dtype.kind == "f":
                    cols[name] = rng.normal(size=b - a)
            progress.write((i, a, b), cols)
        base = _current_rss_mib()
        t0 = time.perf_counter()
        columns = progress.assemble(bounds)
        checksum = _columns._content_sha256(columns)
        table = _writers._table(columns, predictor.latent_dim, {"content_sha256": checksum})
        out = Path(args.workdir) / "final.fits"
        _writers._write_fits(table, out)
        _writers._verify(out, "fits", columns, checksum)
        extra = {}
    elif args.child == "identity":
        # the checksums a run computes for its identity, timed alone: the label table's
        # once, and each chunk's spectra as read (the read itself is not counted)
        from skages.catalogue import _columns, _cuts, _sources

        needed = [*_cuts._CUT_LABELS, *predictor.label_names]
        rows, locator, source, _ = _sources._prepare_inputs(
            args.survey, None, needed, float("nan")
        )
        rows = rows[list(_columns._ID_COLUMNS) + list(_columns._FLAG_COLUMNS) + needed]
        n = len(rows)
        t1 = time.perf_counter()
        _columns._rows_sha256(rows, locator)
        labels_s = time.perf_counter() - t1
        spectra_s = 0.0
        for a in range(0, n, args.chunk_size):
            spectra, flags = source.read(locator[a : a + args.chunk_size], predictor.n_pixels)
            t1 = time.perf_counter()
            _columns._spectra_sha256(spectra, flags)
            spectra_s += time.perf_counter() - t1
        extra = {"labels_seconds": labels_s, "spectra_seconds": spectra_s}
    elif args.child == "naive":
        from skages.pipeline import make_age_frame

        spectra, labels = _head(args.survey, args.naive_stars)
        n = len(labels)
        usable = np.isfinite(spectra).any(axis=1)
        frame = make_age_frame(spectra[usable], labels[usable])
        model.predict(frame, return_std=True)
        extra = {}
    else:  # pragma: no cover
        raise ValueError(args.child)
    seconds = time.perf_counter() - t0
    return {"n": n, "seconds": seconds, "base_mib": base, "peak_mib": _rss_mib(), **extra}


def _run_child(what: str, args: argparse.Namespace, workdir: str, **extra) -> dict:
    survey = extra.get("survey", args.survey)
    chunk_size = extra.get("chunk_size", args.chunk_size)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what]
    cmd += ["--model", str(args.model), "--survey", str(survey), "--workdir", workdir]
    cmd += ["--chunk-size", str(chunk_size)]
    cmd += ["--ceiling-stars", str(args.ceiling_stars), "--naive-stars", str(args.naive_stars)]
    if extra.get("dask"):
        cmd.append("--dask")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ set-up


def _prepare(args: argparse.Namespace) -> None:
    from skages.datasets import make_apokasc, write_apokasc

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    args.survey = cache / f"catalogue_survey_{args.n_stars}.h5"
    args.scan_survey = cache / f"catalogue_survey_{args.scan_stars}.h5"
    args.model = cache / "catalogue_model_released_arch.joblib"
    if not args.survey.exists():
        print(f"writing the {args.n_stars}-star survey to {args.survey} (once) ...", flush=True)
        t0 = time.perf_counter()
        write_apokasc(
            args.survey, args.n_stars, psd=False, random_state=2024, n_jobs=2, resume=True
        )
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.scan_survey.exists():
        write_apokasc(args.scan_survey, args.scan_stars, psd=False, random_state=7, n_jobs=2)
    if not args.model.exists():
        from skages.encoder import SpectrumToPSDEncoder
        from skages.forest import ProbabilisticForestRegressor
        from skages.persistence import save_model
        from skages.pipeline import fit_age_model

        print("training a released-architecture model for 1 epoch (once) ...", flush=True)
        train = make_apokasc(1500, random_state=1)
        model = fit_age_model(
            train.spectra,
            train.psd,
            train.labels,
            encoder=SpectrumToPSDEncoder(max_epochs=1, random_state=0),
            forest=ProbabilisticForestRegressor(random_state=0),
            forest_stars="aged",
        )
        save_model(model, args.model)


def _build_dr17(args: argparse.Namespace) -> Path:
    """A survey of DR17_ROWS rows: the ``--n-stars`` survey repeated, every row renamed."""
    import numpy as np

    from skages._labels import SIMULATED_ID_PREFIX
    from skages.io import SurveyReader, SurveyWriter

    path = Path(args.cache) / f"catalogue_survey_dr17_from_{args.n_stars}.h5"
    if path.exists():
        return path
    print(f"writing the {DR17_ROWS:,}-row survey to {path} (once) ...", flush=True)
    t0 = time.perf_counter()
    with SurveyReader(args.survey) as source, SurveyWriter(path, resume=True) as out:
        all_labels = source.labels
        done = out.n_stars
        while done < DR17_ROWS:
            start = done % source.n_stars
            stop = min(source.n_stars, start + 4096, start + DR17_ROWS - done)
            labels = all_labels.iloc[start:stop].copy()
            labels["apogee_id"] = [
                f"{SIMULATED_ID_PREFIX}{i:07d}" for i in range(done, done + stop - start)
            ]
            labels["kic"] = np.arange(done, done + stop - start) + 100_000_001
            out.append(spectra=source.read("spectra", rows=slice(start, stop)), labels=labels)
            done += stop - start
    print(f"  {time.perf_counter() - t0:.0f} s, {path.stat().st_size / 2**30:.1f} GiB", flush=True)
    return path


def _dr17(args: argparse.Namespace) -> int:
    survey = _build_dr17(args)
    print(f"load average before: {_load():.2f}  (2-core machine; > 0.5 means contention)")
    runs = {}
    with tempfile.TemporaryDirectory(dir=Path(args.cache)) as work:
        runs["local"] = _run_child("predict", args, work, survey=survey)
        print(f"load average after local: {_load():.2f}", flush=True)
        if args.dask:
            runs["LocalCluster(2)"] = _run_child("predict", args, work, survey=survey, dask=True)
            print(f"load average after dask: {_load():.2f}")
    print(f"\nAPOGEE DR17 size: {DR17_ROWS:,} rows, chunks of {args.chunk_size}")
    print(f"{'':18s} {'wall min':>8s} {'stars/s':>8s} {'peak RSS MiB':>12s} {'ages':>8s}  goal")
    for name, r in runs.items():
        ok = r["seconds"] <= 600 and r["peak_mib"] <= 2048
        print(
            f"{name:18s} {r['seconds'] / 60:8.1f} {r['n'] / r['seconds']:8.0f} "
            f"{r['peak_mib']:12.0f} {r['n_ages']:8d}  {'met' if ok else 'missed'} "
            "(<= 10 min, <= 2048 MiB)"
        )
    return 0


def _load() -> float:
    return os.getloadavg()[0]


def _print_identity(args: argparse.Namespace, ours: dict, ident: dict) -> None:
    cost = ident["labels_seconds"] + ident["spectra_seconds"]
    print(
        f"identity checksums ({args.n_stars:,} stars, chunks of {args.chunk_size}): label "
        f"table {ident['labels_seconds']:.2f} s + spectra {ident['spectra_seconds']:.2f} s "
        f"= {cost:.2f} s, {100 * cost / ours['seconds']:.1f} % of ours "
        f"({ours['seconds']:.1f} s, which includes them)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 3,000 stars")
    p.add_argument("--n-stars", type=int, default=100_000)
    p.add_argument(
        "--cache",
        default=os.environ.get("SKAGES_BENCH_CACHE", Path(tempfile.gettempdir()) / "skages-bench"),
        help="folder for the simulated survey and the model (default: $SKAGES_BENCH_CACHE "
        "or <tmp>/skages-bench)",
    )
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--ceiling-stars", type=int, default=8192)
    p.add_argument("--naive-stars", type=int, default=20_000)
    p.add_argument("--dask", action="store_true", help="also time a 2-worker LocalCluster")
    p.add_argument(
        "--scan-stars",
        type=int,
        default=5000,
        help="survey size of the memory-vs-chunk-size scan (default 5000)",
    )
    p.add_argument(
        "--identity-only",
        action="store_true",
        help="time only ours and the identity checksums (their share of ours)",
    )
    p.add_argument(
        "--dr17",
        action="store_true",
        help="run at DR17's size (733,901 rows, built once from the --n-stars survey)",
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--survey", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    if args.quick:
        args.n_stars, args.ceiling_stars, args.naive_stars = 3000, 2048, 2000
        args.scan_stars = 1500
    _prepare(args)
    if args.dr17:
        return _dr17(args)
    print(f"load average before: {_load():.2f}  (2-core machine; > 0.5 means contention)")
    if args.identity_only:
        with tempfile.TemporaryDirectory(dir=Path(args.cache)) as work:
            ours = _run_child("predict", args, work)
            ident = _run_child("identity", args, work)
        print(f"load average after:  {_load():.2f}")
        _print_identity(args, ours, ident)
        return 0
    with tempfile.TemporaryDirectory(dir=Path(args.cache)) as work:
        runs = {
            "ceiling": _run_child("ceiling", args, work),
            "read": _run_child("read", args, work),
            "predict": _run_child("predict", args, work),
            "naive": _run_child("naive", args, work),
        }
        if args.dask:
            runs["dask"] = _run_child("predict", args, work, dask=True)
        runs["final"] = _run_child("final", args, work)
        runs["identity"] = _run_child("identity", args, work)
        scan = {
            size: _run_child("predict", args, work, survey=args.scan_survey, chunk_size=size)
            for size in (256, 1024, 4096)
        }
    print(f"load average after:  {_load():.2f}")

    def rate(r):
        return r["n"] / r["seconds"]

    rows = [
        ("ours: predict_catalogue (HDF5 -> FITS)", runs["predict"]),
        ("ceiling: same model, spectra in memory", runs["ceiling"]),
        ("reading the spectra alone (HDF5)", runs["read"]),
        ("naive: read all + Pipeline.predict", runs["naive"]),
    ]
    if args.dask:
        rows.insert(1, ("ours on a 2-worker LocalCluster (driver RSS)", runs["dask"]))
    print(f"\n{args.n_stars:,} simulated stars, chunks of {args.chunk_size}")
    header = f"{'':42s} {'stars':>8s} {'s':>7s} {'stars/s':>8s} {'RSS MiB':>8s} {'work MiB':>8s}"
    print(header)
    for name, r in rows:
        work = r["peak_mib"] - r["base_mib"]
        print(
            f"{name:42s} {r['n']:8d} {r['seconds']:7.1f} {rate(r):8.0f} "
            f"{r['peak_mib']:8.0f} {work:8.0f}"
        )
    ours = runs["predict"]
    share = rate(ours) / rate(runs["ceiling"])
    read_share = (1 / rate(runs["read"])) / (1 / rate(ours))
    per_star = (runs["naive"]["peak_mib"] - runs["naive"]["base_mib"]) / runs["naive"]["n"]
    print(
        f"\nours reaches {100 * share:.0f} % of the in-memory ceiling; reading alone would "
        f"take {100 * read_share:.0f} % of our time (it overlaps with the model)"
    )
    print(
        f"projection to APOGEE DR17 ({DR17_ROWS:,} rows): ours {DR17_ROWS / rate(ours) / 60:.0f} "
        f"min at {ours['peak_mib']:.0f} MiB peak (bounded by the chunk size); the naive way "
        f"would need ~{per_star * DR17_ROWS / 1024:.0f} GiB ({per_star * 1024:.0f} kB per star)"
    )
    print(f"latent for {ours['n_latent']:,} rows, ages for {ours['n_ages']:,} rows")
    _print_identity(args, ours, runs["identity"])
    fin = runs["final"]
    print(
        f"final step of a {fin['n']:,}-row catalogue (assemble, write FITS, read back, "
        f"check): {fin['seconds']:.0f} s, peak {fin['peak_mib']:.0f} MiB "
        f"({fin['peak_mib'] - fin['base_mib']:.0f} MiB above the loaded model)"
    )
    print(
        f"\nmemory against chunk size ({args.scan_stars:,}-star survey; ours above: "
        f"{args.n_stars:,} stars, chunks of {args.chunk_size})"
    )
    print(f"{'chunk size':>10s} {'stars/s':>8s} {'RSS MiB':>8s} {'work MiB':>8s}")
    for size, r in scan.items():
        work = r["peak_mib"] - r["base_mib"]
        print(f"{size:10d} {rate(r):8.0f} {r['peak_mib']:8.0f} {work:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
