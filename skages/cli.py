"""The ``skages`` command. Thin: it parses arguments and calls the library.

Examples
--------
Power spectrum of the bundled real light curve of KIC 11618103::

    skages psd --example --output kic11618103_psd.fits --plot kic11618103_psd.png

Power spectrum of a star from its Kepler quarter files::

    skages psd kplr009145861-*_llc.fits --output kic9145861_psd.fits

A simulated survey, a model trained on it, and the age catalogue of a larger survey::

    skages simulate --n-stars 10000 --output train.h5
    skages train --survey train.h5 --max-epochs 20 --output model.joblib
    skages simulate --n-stars 100000 --no-psd --seed 1 --output survey.h5
    skages predict --model model.joblib --trust-joblib --spectra survey.h5 --output ages.fits

The whole workflow on a simulated survey (the README's main job)::

    skages demo --output skages-demo
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from skages._version import __version__

logger = logging.getLogger("skages")

_EPILOG = """\
examples:
  skages demo --output skages-demo
  skages psd --example --output psd.fits --plot psd.png
  skages psd kplr009145861-*_llc.fits --output kic9145861.fits
  skages simulate --n-stars 10000 --output train.h5
  skages train --survey train.h5 --max-epochs 20 --output model.joblib
  skages predict --model model.joblib --trust-joblib --spectra survey.h5 --output ages.fits
  skages predict --model model.joblib --trust-joblib --spectra apStar/ --labels allStar.fits \\
      --output ages.fits --dask

Run 'skages COMMAND --help' for the options of each command.
"""


# ------------------------------------------------------------------ commands


def _add_psd(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "psd",
        help="light curve files of one star -> 2092-pixel log power spectrum",
        description=(
            "Read one star's Kepler long-cadence quarter files (FITS) or a two-column text "
            "light curve (time in days, flux), clean and stitch them, and write the "
            "2092-pixel natural-log PSD of the published model as a table with columns "
            "frequency (µHz) and log_psd."
        ),
        epilog="example:\n  skages psd --example --output psd.fits --plot psd.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", type=Path, help="the star's light curve files")
    p.add_argument(
        "--example",
        action="store_true",
        help="use the bundled real light curve of KIC 11618103 (νmax ≈ 106 µHz)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output table: .fits, .ecsv or .csv (written atomically)",
    )
    p.add_argument("--plot", type=Path, help="also save a figure (PNG) marking the estimated νmax")
    p.add_argument(
        "--method",
        choices=("nufft", "astropy"),
        default="nufft",
        help="periodogram implementation (default: nufft, ~30x faster than astropy)",
    )
    p.add_argument("--flux-column", default="pdcsap_flux", help="FITS flux column")
    batch = p.add_argument_group(
        "many stars",
        "with --output NAME.h5, a folder (searched recursively), a quoted glob or --list, "
        "files are grouped per star (KIC) and written as an HDF5 PSD survey "
        "(skages.io.lightcurves_to_survey)",
    )
    batch.add_argument("--list", type=Path, help="text file with one light curve path per line")
    batch.add_argument("--n-jobs", type=int, default=1, help="worker processes (-1: all cores)")
    batch.add_argument(
        "--numax", type=Path, help="table with kic and numax (µHz): also write psd_weight"
    )
    batch.add_argument(
        "--chunk-size", type=_positive_int, default=256, help="stars per written chunk"
    )
    batch.add_argument(
        "--restart", action="store_true", help="ignore an unfinished run instead of resuming it"
    )
    batch.add_argument("--overwrite", action="store_true", help="replace an existing survey")
    p.set_defaults(func=_run_psd)


def _psd_batch_mode(args: argparse.Namespace) -> bool:
    inputs = [str(f) for f in args.files]
    return (
        args.list is not None
        or args.output.suffix.lower() in (".h5", ".hdf5")
        or any(Path(f).is_dir() or any(c in f for c in "*?[") for f in inputs)
    )


def _run_psd_batch(args: argparse.Namespace) -> int:
    from skages.io import lightcurves_to_survey

    if args.example or args.plot:
        raise ValueError("--example and --plot are for one star, not a survey")
    if args.output.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(
            f"many stars are written as an HDF5 survey; --output must end in .h5 "
            f"(got {args.output.name!r})"
        )
    sources = [str(f) for f in args.files] + (_read_list_file(args.list) if args.list else [])
    if not sources:
        raise ValueError("give light curve files, a folder, a glob or --list")
    summary = lightcurves_to_survey(
        sources,
        args.output,
        numax=args.numax,
        flux_column=args.flux_column,
        method=args.method,
        n_jobs=args.n_jobs,
        chunk_size=args.chunk_size,
        resume=not args.restart,
        overwrite=args.overwrite,
        verbose=not args.quiet,
    )
    resumed = f" ({summary.n_resumed} from an earlier run)" if summary.n_resumed else ""
    print(
        f"{summary.n_stars} stars{resumed} written to {summary.path}; "
        f"{summary.n_failed} without a PSD, {summary.n_file_errors} file(s) unusable, "
        f"{len(summary.skipped)} file(s) without a KIC"
    )
    return 0


def _read_list_file(path: Path) -> list[str]:
    """Paths in a list file (one per line, # comments), relative to the file's folder."""
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    base = path.resolve().parent
    out = []
    for line in path.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            out.append(entry if Path(entry).is_absolute() else str(base / entry))
    if not out:
        raise ValueError(f"list file {path} names no file")
    return out


def _run_psd(args: argparse.Namespace) -> int:
    import numpy as np
    from astropy.table import Table

    from skages import seismology
    from skages._atomic import atomic_path

    if not args.example and _psd_batch_mode(args):
        return _run_psd_batch(args)
    if args.example == bool(args.files):
        raise SystemExit("skages psd: give light curve files or --example (not both, not neither)")
    suffix = args.output.suffix.lower()
    fmt = {".fits": "fits", ".fit": "fits", ".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}.get(suffix)
    if fmt is None:  # checked before the light curves are read
        raise SystemExit(f"skages psd: --output must end in .fits, .ecsv or .csv; got {suffix!r}")
    if args.example:
        from skages._data import bundled_path

        files = [bundled_path("KIC11618103_LC.txt.gz")]
        star = "KIC 11618103"
    else:
        files = args.files
        star = _star_name(files)
        from skages.io import group_kepler_files

        kics = list(group_kepler_files(files).stars)
        if len(kics) > 1:
            raise ValueError(
                f"the files are of {len(kics)} stars (KIC {', '.join(map(str, kics[:5]))}"
                f"{', ...' if len(kics) > 5 else ''}); write them as an HDF5 survey: "
                "--output NAME.h5"
            )
    _single_lightkurve_messages()
    logger.info("reading %d file(s) for %s", len(files), star)
    lc = seismology.read_kepler_lightcurve(files, flux_column=args.flux_column)
    log_psd = seismology.lightcurve_to_psd(lc, method=args.method)
    numax = seismology.estimate_numax(log_psd)
    freq = seismology.frequency_grid()
    time = np.asarray(lc.time.value)

    table = Table(
        [freq, log_psd],
        names=("frequency", "log_psd"),
        units=("uHz", None),
        descriptions=(
            "bin centre frequency",
            "natural log of the smoothed, background-divided power (NaN: empty bin)",
        ),
    )
    table.meta.update(
        {
            "ORIGIN": f"skages {__version__}",
            "OBJECT": star,
            "METHOD": args.method,
            "NUMAX": (round(float(numax), 3), "estimated nu_max (uHz), skages.estimate_numax"),
            "NCADENCE": (int(time.size), "finite cadences after cleaning"),
            "BASELINE": (round(float(time[-1] - time[0]), 3), "time span (d)"),
            "NFILES": len(files),
        }
    )
    for i, f in enumerate(files[:99]):
        table.meta[f"FILE{i + 1}"] = Path(f).name
    with atomic_path(args.output) as tmp:
        table.write(tmp, format=fmt)
    print(f"{star}: νmax ≈ {numax:.1f} µHz; PSD written to {args.output}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from skages.plotting import plot_psd

        ax = plot_psd(log_psd, freq, numax=numax, label=star)
        ax.set_title(f"{star}: {time.size} cadences over {time[-1] - time[0]:.0f} d")
        with atomic_path(args.plot) as tmp:
            ax.figure.savefig(tmp, dpi=120, format="png")
        plt.close(ax.figure)
        print(f"figure written to {args.plot}")
    return 0


def _star_name(files: Sequence[Path]) -> str:
    """The star's name: ``KIC n`` from a Kepler file's header, else the first file's name."""
    from astropy.io import fits

    first = Path(files[0])
    try:
        header = fits.getheader(first)
    except (OSError, ValueError):  # a text light curve, or not a file at all
        return first.name
    if header.get("KEPLERID") is not None:
        return f"KIC {int(header['KEPLERID'])}"
    return str(header.get("OBJECT") or first.name).strip()


def _single_lightkurve_messages() -> None:
    """Let lightkurve's log records reach the user once, through the command's handler.

    lightkurve gives its logger a handler of its own; records then also propagate to
    the root handler of :func:`main`, and each message is printed twice.
    """
    try:
        with warnings.catch_warnings():  # its optional-dependency notice, on every run
            warnings.filterwarnings("ignore", message=".*oktopus", category=UserWarning)
            import lightkurve  # noqa: F401  (the import attaches lightkurve's handler)
    except ImportError:  # the reader raises the helpful error itself
        return
    lk_logger = logging.getLogger("lightkurve")
    for handler in list(lk_logger.handlers):
        lk_logger.removeHandler(handler)


# ------------------------------------------------------------------- spectra


def _add_spectra(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "spectra",
        help="a folder of apStar / aspcapStar files -> HDF5 survey of normalised spectra",
        description=(
            "Read APOGEE apStar / aspcapStar files (a DR17-layout folder, searched "
            "recursively), continuum-normalise them as for DR17 (the same reading path as "
            "'skages predict' on a folder) and write an HDF5 survey with spectra, "
            "spectra_err, bitmask and labels: from --allstar (in allStar order) or from the "
            "file headers (in file order). Parallel, resumable; unreadable files become NaN "
            "rows, flagged and named in the log (skages.io.spectra_to_survey)."
        ),
        epilog=(
            "example:\n  skages spectra --allstar allStar-dr17-synspec_rev1.fits "
            "--spectra apogee/spectro/redux/dr17/stars --output spec.h5 --n-jobs 2"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--spectra", type=Path, required=True, nargs="+", help="folder (or files) of spectra"
    )
    p.add_argument("--allstar", type=Path, help="allStar FITS file: labels and row order")
    p.add_argument("-o", "--output", type=Path, required=True, help="survey file (.h5)")
    p.add_argument("--n-jobs", type=int, default=1, help="worker processes (-1: all cores)")
    p.add_argument("--chunk-size", type=_positive_int, default=256, help="stars per chunk")
    p.add_argument(
        "--restart", action="store_true", help="ignore an unfinished run instead of resuming it"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing survey")
    p.set_defaults(func=_run_spectra)


def _run_spectra(args: argparse.Namespace) -> int:
    from skages.io import spectra_to_survey

    if args.output.suffix.lower() not in (".h5", ".hdf5"):
        raise ValueError(f"--output must end in .h5; got {args.output.name!r}")
    one_folder = len(args.spectra) == 1 and args.spectra[0].is_dir()
    source = args.spectra[0] if one_folder else args.spectra
    summary = spectra_to_survey(
        source,
        args.output,
        allstar=args.allstar,
        n_jobs=args.n_jobs,
        chunk_size=args.chunk_size,
        resume=not args.restart,
        overwrite=args.overwrite,
        verbose=not args.quiet,
    )
    resumed = f" ({summary.n_resumed} from an earlier run)" if summary.n_resumed else ""
    print(
        f"{summary.n_stars} spectra{resumed} written to {summary.path}; "
        f"{len(summary.errors)} file(s) unreadable (NaN rows)"
    )
    return 0


# ------------------------------------------------------------------ simulate


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a simulated APOKASC-like survey (spectra, PSDs, labels) to HDF5",
        description=(
            "Simulate an APOKASC-like survey (skages.datasets.write_apokasc) and write it, "
            "chunk by chunk in bounded memory, to a skages HDF5 survey file. Star i depends "
            "only on the seed and on i; an interrupted run continues when the same command is "
            "run again (--restart discards it)."
        ),
        epilog=(
            "examples:\n"
            "  skages simulate --n-stars 10000 --output train.h5\n"
            "  skages simulate --n-stars 733901 --no-psd --seed 1 --output dr17_like.h5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="survey file (.h5)")
    p.add_argument("--n-stars", type=_positive_int, default=10_000, help="default: 10000")
    p.add_argument(
        "--chunk-size", type=_positive_int, default=4096, help="stars per write (default 4096)"
    )
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--no-psd",
        action="store_true",
        help="spectra and labels only (a survey to predict ages for; much faster, smaller)",
    )
    p.add_argument(
        "--raw-flux", action="store_true", help="also store un-normalised 8575-pixel flux"
    )
    p.add_argument(
        "--reference-ages",
        choices=("pipeline", "independent"),
        default="pipeline",
        help=(
            "how the reference (seismic) ages are made: 'pipeline' (default) from the observed "
            "numax, dnu, Teff and [Fe/H] as a seismic pipeline does; 'independent': the true "
            "age plus independent noise (the former simulator)"
        ),
    )
    p.add_argument("--n-jobs", type=_positive_int, default=1, help="worker processes")
    p.add_argument(
        "--resume", action="store_true", help="(the default) continue an interrupted run"
    )
    p.add_argument(
        "--restart", action="store_true", help="discard an interrupted run's OUTPUT.partial"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from skages._lock import output_lock

    if args.resume and args.restart:
        raise ValueError("give --resume or --restart, not both")
    with output_lock(args.output):  # a second run on this output fails at once
        return _simulate(args)


def _simulate(args: argparse.Namespace) -> int:
    from skages.datasets import write_apokasc

    if args.output.exists() and not args.overwrite:
        raise FileExistsError(
            f"{args.output} exists (a complete survey); pass --overwrite to replace it"
        )
    # resumes an interrupted run by default (its checked .partial); --restart discards it
    path = write_apokasc(
        args.output,
        args.n_stars,
        chunk_size=args.chunk_size,
        psd=not args.no_psd,
        raw_flux=args.raw_flux,
        reference_ages=args.reference_ages,
        overwrite=args.overwrite,
        resume=not args.restart,
        restart=args.restart,
        n_jobs=args.n_jobs,
        verbose=0 if args.quiet else 1,
        random_state=args.seed,
    )
    print(f"simulated survey of {args.n_stars} stars written to {path}")
    return 0


# --------------------------------------------------------------------- train

#: Keys of a ``skages train --config`` TOML file, per table.
TRAIN_CONFIG_KEYS = {
    "data": (
        *("survey", "spectra", "psd", "ages", "labels", "max_stars"),
        *("ages_format", "ages_columns", "numax_range", "states", "no_cuts"),
    ),
    "model": ("output", "seed", "forest_stars", "test_size", "overwrite"),
    "encoder": None,  # any SpectrumToPSDEncoder parameter
    "forest": None,  # any ProbabilisticForestRegressor parameter
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fit the encoder and the age forest, and save the model",
        description=(
            "Train the age model in the paper's two stages (skages.pipeline.fit_age_model): "
            "the encoder on every spectrum-PSD pair, the forest on the stars with precise "
            "seismic ages. Data come from a skages HDF5 survey with spectra, psd and labels "
            "(e.g. from 'skages simulate'), or from files: --spectra (HDF5 survey with "
            "spectra and an apogee_id label), --psd (HDF5 survey with psd and a kic label) "
            "and --ages (APOKASC-2 Table 5, or a FITS/ECSV/CSV table with apogee_id, kic, "
            "log_age, log_age_err and, unless the spectra file or --labels ALLSTAR has "
            "them, teff, fe_h, teff_err, fe_h_err). Settings come from flags or a TOML "
            "file (--config; flags win). The model is written with save_model, with its "
            "training summary in the metadata."
        ),
        epilog=(
            "examples:\n"
            "  skages train --survey train.h5 --max-epochs 20 --output model.joblib\n"
            "  skages train --spectra spec.h5 --psd psd.h5 --ages APOKASC2_Table5.txt \\\n"
            "      --output model.skops\n"
            "  skages train --config train.toml\n"
            "  skages train --encoder astroNN_VEncoderDecoder/ --spectra spec.h5 \\\n"
            "      --ages APOKASC2_Table5.txt --output model.joblib\n\n"
            "config file (TOML; every key optional, paths relative to the file):\n"
            "  [data]     survey | spectra, psd, ages, labels; max_stars\n"
            "  [model]    output, seed, forest_stars ('precise' or 'aged'), test_size,\n"
            "             overwrite\n"
            "  [encoder]  any SpectrumToPSDEncoder parameter (max_epochs = 20, ...)\n"
            "  [forest]   any ProbabilisticForestRegressor parameter (n_estimators = 200)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="TOML settings file (see below)")
    p.add_argument("--survey", type=Path, help="HDF5 survey with spectra, psd and labels")
    p.add_argument("--spectra", type=Path, help="HDF5 survey with spectra (and apogee_id)")
    p.add_argument("--psd", type=Path, help="HDF5 survey with psd (and kic)")
    p.add_argument("--ages", type=Path, help="ages table (APOKASC-2 Table 5, FITS, ECSV, CSV)")
    p.add_argument("--labels", type=Path, help="allStar file for Teff and [Fe/H]")
    _add_train_sample_args(p)
    p.add_argument("-o", "--output", type=Path, help="model file: .joblib or .skops")
    p.add_argument("--max-stars", type=_positive_int, help="use the first N stars only")
    p.add_argument("--max-epochs", type=_non_negative_int, help="encoder epochs (default 150)")
    p.add_argument("--latent-dim", type=_positive_int, help="latent dimension (default 5)")
    p.add_argument("--batch-size", type=_positive_int, help="encoder batch (default 128)")
    p.add_argument("--lr", type=float, help="encoder learning rate (default 5e-4)")
    p.add_argument("--n-estimators", type=_positive_int, help="forest trees (default 100)")
    p.add_argument(
        "--forest-stars",
        choices=("precise", "aged"),
        help="forest on the precise ages (default) or on every aged star",
    )
    p.add_argument("--seed", type=_non_negative_int, help="random seed (default 0)")
    p.add_argument(
        "--test-size",
        type=_fraction,
        help="hold out this fraction of the stars for 'skages evaluate' (default: none)",
    )
    p.add_argument("--device", help="PyTorch device of the encoder (default cpu)")
    p.add_argument(
        "--encoder",
        type=Path,
        metavar="FOLDER_OR_MODEL",
        help="a trained encoder (astroNN model folder such as astroNN_VEncoderDecoder/, or "
        "a skages model file): train the forest only, on top of it (no PSDs needed)",
    )
    _add_trust_options(p)  # for an --encoder model file
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.set_defaults(func=_run_train)


def _add_train_sample_args(p: argparse.ArgumentParser) -> None:
    """Options of the age table and the paper's sample cuts (skages.io.training_sample)."""
    g = p.add_argument_group(
        "training sample (with --spectra/--psd/--ages)",
        "the ages table may hold only KIC or only APOGEE_ID: the bundled KIC <-> 2MASS "
        "cross-match links them; the summary counts the stars each step removes",
    )
    g.add_argument(
        "--ages-format",
        choices=("auto", "apokasc2", "apokasc3", "apokasc3-calibration", "miglio2021", "table"),
        help="format of --ages (default: auto, from its columns)",
    )
    g.add_argument(
        "--ages-column",
        action="append",
        metavar="NAME=COLUMN",
        help="column mapping, e.g. --ages-column age=Age_Gyr --ages-column kic=KIC (repeat)",
    )
    g.add_argument(
        "--numax-range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="keep LO < νmax < HI µHz (default 4 250)",
    )
    g.add_argument(
        "--states",
        help="comma-separated evolutionary states to keep (default RGB,RC; 'any': no cut)",
    )
    g.add_argument(
        "--no-cuts", action="store_true", help="no sample cut at all (only the cross-match)"
    )


def _sample_cuts(data: dict):
    from skages.io import TrainingCuts

    if data.get("no_cuts"):
        return TrainingCuts.none()
    kw = {}
    if data.get("numax_range") is not None:
        lo, hi = data["numax_range"]
        kw.update(numax_min=float(lo), numax_max=float(hi))
    states = data.get("states")
    if states is not None:
        states = states.split(",") if isinstance(states, str) else list(states)
        states = [s.strip() for s in states if s.strip()]
        kw["states"] = None if [s.lower() for s in states] == ["any"] else tuple(states)
    return TrainingCuts(**kw)


def _ages_columns(items) -> dict[str, str] | None:
    if not items:
        return None
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for item in items:
        name, sep, column = str(item).partition("=")
        if not sep or not name.strip() or not column.strip():
            raise ValueError(f"--ages-column wants NAME=COLUMN (e.g. age=Age_Gyr); got {item!r}")
        out[name.strip()] = column.strip()
    return out


def _read_config(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError(
                f"reading {path} needs Python 3.11's tomllib or the tomli package"
            ) from None
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        config = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a valid TOML file: {exc}") from exc
    unknown = sorted(set(config) - set(TRAIN_CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; use {sorted(TRAIN_CONFIG_KEYS)}")
    for table, keys in TRAIN_CONFIG_KEYS.items():
        section = config.get(table, {})
        if not isinstance(section, dict):
            raise ValueError(f"{path}: [{table}] must be a table")
        if keys is not None and set(section) - set(keys):
            raise ValueError(
                f"{path}: unknown key(s) {sorted(set(section) - set(keys))} in [{table}]; "
                f"use {list(keys)}"
            )
    for key in ("survey", "spectra", "psd", "ages", "labels", "output"):
        for table in ("data", "model"):
            value = config.get(table, {}).get(key)
            if value is not None:
                config[table][key] = Path(os.path.abspath(path.parent / str(value)))
    return config


def _training_data(data: dict):
    """Spectra, PSDs, PSD weights and labels of the training stars, and a description."""

    from skages.io import SurveyReader

    max_stars = data.get("max_stars")
    rows = slice(0, max_stars)
    if data.get("survey"):
        if any(data.get(k) for k in ("spectra", "psd", "ages")):
            raise ValueError("give either a survey or spectra/psd/ages files, not both")
        with SurveyReader(data["survey"]) as survey:
            missing = [a for a in ("spectra", "psd") if a not in survey.arrays]
            if missing:
                raise ValueError(
                    f"{data['survey']} has no {missing} array(s) (it has {list(survey.arrays)});"
                    " simulate it without --no-psd"
                )
            spectra = survey.read("spectra", rows)
            psd = survey.read("psd", rows)
            weight = survey.read("psd_weight", rows) if "psd_weight" in survey.arrays else None
            labels = survey.read_labels(rows).reset_index(drop=True)
        source = {"survey": str(data["survey"])}
    else:
        missing = [k for k in ("spectra", "psd", "ages") if not data.get(k)]
        if missing:
            raise ValueError(
                f"give --survey, or all of --spectra, --psd and --ages (missing: {missing})"
            )
        from skages.io import read_age_table, training_sample

        ages = read_age_table(
            data["ages"],
            format=data.get("ages_format") or "auto",
            columns=_ages_columns(data.get("ages_columns")),
        )
        sample = training_sample(
            data["spectra"], data["psd"], ages, cuts=_sample_cuts(data), max_stars=max_stars
        )
        spectra, psd, weight, labels = sample.spectra, sample.psd, sample.psd_weight, sample.labels
        print("training sample: " + ", ".join(f"{k} {v}" for k, v in sample.summary.items()))
        source = {k: str(data[k]) for k in ("spectra", "psd", "ages")}
        source.update(ages_format=ages.meta.get("format"), sample=sample.summary, cuts=sample.cuts)
    if data.get("labels"):
        from skages.io import read_allstar

        allstar = read_allstar(data["labels"]).to_pandas()
        allstar = allstar.drop_duplicates("apogee_id").set_index("apogee_id")
        if "apogee_id" not in labels:
            raise ValueError("the training stars have no apogee_id to match the allStar on")
        found = allstar.reindex(labels["apogee_id"].astype(str).to_numpy())
        for c in ("teff", "fe_h", "teff_err", "fe_h_err"):
            labels[c] = found[c].to_numpy()
        source["labels"] = str(data["labels"])
    if "log_age_err" not in labels and "log_age_err_upper" in labels:
        labels["log_age_err"] = labels["log_age_err_upper"]
    return spectra, psd, weight, labels, source


def _run_train(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:  # holds the output's lock until the model is saved
        return _train(args, stack)


def _train(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    import numpy as np

    from skages._lock import output_lock
    from skages.encoder import SpectrumToPSDEncoder
    from skages.forest import ProbabilisticForestRegressor
    from skages.persistence import save_model, training_summary
    from skages.pipeline import fit_age_model

    config = _read_config(args.config) if args.config else {}
    data = dict(config.get("data", {}))
    for key in ("survey", "spectra", "psd", "ages", "labels", "max_stars"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    for key in ("ages_format", "ages_column", "numax_range", "states"):
        if getattr(args, key, None) is not None:
            data["ages_columns" if key == "ages_column" else key] = getattr(args, key)
    if getattr(args, "no_cuts", False):
        data["no_cuts"] = True
    settings = dict(config.get("model", {}))
    for key in ("output", "seed", "forest_stars", "test_size"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    output = settings.get("output")
    if output is None:
        raise ValueError("give the model file with --output (or [model] output in --config)")
    output = Path(output)
    if output.suffix.lower() not in (".joblib", ".pkl", ".skops"):
        raise ValueError(f"--output must end in .joblib or .skops; got {output.name!r}")
    if not output.parent.is_dir():
        raise FileNotFoundError(
            f"the folder {output.parent} for the model {output.name} does not exist; create it"
        )
    if output.suffix.lower() == ".skops":
        _check_module("skops", "skops", f"saving the model as {output.name}")
    stack.enter_context(output_lock(output))  # a second run on this output fails at once
    if output.exists() and not (args.overwrite or settings.get("overwrite")):
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    test_size = settings.get("test_size")
    if test_size is not None and not (
        isinstance(test_size, (int, float)) and 0.0 < float(test_size) < 1.0
    ):
        raise ValueError(f"test_size must be a fraction between 0 and 1; got {test_size!r}")
    seed = int(settings.get("seed", 0))
    enc_params = {"random_state": seed, **config.get("encoder", {})}
    for flag, param in (
        ("max_epochs", "max_epochs"),
        ("latent_dim", "latent_dim"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("device", "device"),
    ):
        if getattr(args, flag) is not None:
            enc_params[param] = getattr(args, flag)
    enc_params.setdefault("verbose", 0 if args.quiet else 1)
    forest_params = {"random_state": seed, **config.get("forest", {})}
    if args.n_estimators is not None:
        forest_params["n_estimators"] = args.n_estimators
    for key, value in enc_params.items():
        if isinstance(value, list):
            enc_params[key] = tuple(value)  # TOML arrays -> the tuples the encoder documents
    try:
        encoder = SpectrumToPSDEncoder().set_params(**enc_params)
        forest = ProbabilisticForestRegressor().set_params(**forest_params)
    except ValueError as exc:
        raise ValueError(f"invalid encoder/forest setting: {exc}") from exc

    if args.encoder is not None:
        encoder_flags = ("max_epochs", "latent_dim", "batch_size", "lr")
        given = [f"--{f.replace('_', '-')}" for f in encoder_flags if getattr(args, f) is not None]
        if given or config.get("encoder"):
            raise ValueError(
                f"--encoder trains the forest only; {given or '[encoder] settings'} would set "
                "the encoder's training"
            )
        encoder = _load_encoder(args.encoder, args)
        spectra, labels, source = _forest_training_data(data)
        psd = weight = None
        source["encoder"] = str(args.encoder)
    else:
        spectra, psd, weight, labels, source = _training_data(data)
        _check_psd_grid(psd, source)
    split = None
    if settings.get("test_size"):
        from skages.evaluation import split_record

        keep, split = split_record(labels, test_size=float(settings["test_size"]), seed=seed)
        spectra, psd = spectra[keep], psd[keep]
        weight = None if weight is None else weight[keep]
        labels = labels.iloc[keep].reset_index(drop=True)
        logger.info("holding out %d stars for 'skages evaluate'", split["n_test"])
    y = np.asarray(labels["log_age"], dtype=float)
    logger.info(
        "training on %d spectrum-PSD pairs, %d with ages, from %s",
        len(labels),
        int(np.isfinite(y).sum()),
        source,
    )
    model = fit_age_model(
        spectra,
        psd,
        labels,
        encoder=encoder,
        forest=forest,
        psd_weight=weight,
        forest_stars=settings.get("forest_stars", "precise"),
        verbose=enc_params["verbose"],
        freeze_encoder=args.encoder is not None,
    )
    training = training_summary(spectra, y, labels=labels)
    training.update(
        source=source,
        encoder_params={k: _jsonable(v) for k, v in encoder.get_params().items()},
        forest_params={k: _jsonable(v) for k, v in forest.get_params().items()},
        forest_stars=settings.get("forest_stars", "precise"),
        max_stars=data.get("max_stars"),
        split=split,
        command="skages train",
    )
    save_model(model, output, training=training)
    print(
        f"model trained on {len(labels)} stars ({int(np.isfinite(y).sum())} with ages) "
        f"written to {output}"
    )
    return 0


def _check_psd_grid(psd, source) -> None:
    """The model file records skages' PSD grid: refuse PSDs on any other grid."""
    from skages.seismology import N_BINS

    if psd.ndim != 2 or psd.shape[1] != N_BINS:
        where = source.get("psd", source.get("survey", "")) if isinstance(source, dict) else ""
        raise ValueError(
            f"the PSDs{f' of {where}' if where else ''} have shape {psd.shape}, not "
            f"(n_stars, {N_BINS}): skages train needs natural-log PSDs on skages' "
            f"{N_BINS}-bin grid (skages.seismology.frequency_grid, which the model file "
            "records); compute them with 'skages psd' or skages.seismology.lightcurve_to_psd"
        )


def _load_encoder(path: Path, args: argparse.Namespace):
    """A fitted encoder from an astroNN model folder or a skages model file."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    from skages.encoder import SpectrumToPSDEncoder
    from skages.persistence import load_model

    if path.is_dir():
        return SpectrumToPSDEncoder.from_astronn(path, output_std=True)
    if not path.exists():
        raise FileNotFoundError(f"no such encoder (astroNN folder or model file): {path}")
    trusted = _check_model_trust(
        argparse.Namespace(model=path, trust_joblib=args.trust_joblib, trust=args.trust)
    )
    model, _ = load_model(path, trusted=trusted)
    if isinstance(model, Pipeline) and "features" in model.named_steps:
        model = model.named_steps["features"].named_transformers_.get("encoder")
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    if not isinstance(model, SpectrumToPSDEncoder):
        raise ValueError(f"{path} holds no SpectrumToPSDEncoder (found {type(model).__name__})")
    return model


def _forest_training_data(data: dict):
    """Spectra and labels (ages, Teff, [Fe/H]) of the forest's stars: no PSDs needed."""
    import numpy as np

    from skages.io import SurveyReader, crossmatch_training_sample

    rows = slice(0, data.get("max_stars"))
    if data.get("survey"):
        if any(data.get(k) for k in ("spectra", "ages")):
            raise ValueError("give either a survey or spectra/ages files, not both")
        with SurveyReader(data["survey"]) as survey:
            if "spectra" not in survey.arrays:
                raise ValueError(f"{data['survey']} has no 'spectra' array")
            spectra = survey.read("spectra", rows)
            labels = survey.read_labels(rows).reset_index(drop=True)
        source = {"survey": str(data["survey"])}
    else:
        missing = [k for k in ("spectra", "ages") if not data.get(k)]
        if missing:
            raise ValueError(
                f"with --encoder give --survey, or --spectra and --ages (missing: {missing})"
            )
        from skages.io import add_crossmatch_ids, read_age_table

        ages = read_age_table(
            data["ages"],
            format=data.get("ages_format") or "auto",
            columns=_ages_columns(data.get("ages_columns")),
        )
        ages = add_crossmatch_ids(ages).table  # tables that hold only KIC get APOGEE_IDs
        with SurveyReader(data["spectra"]) as spec:
            if "spectra" not in spec.arrays or "apogee_id" not in spec.label_columns:
                raise ValueError(f"{spec.path} needs a 'spectra' array and an 'apogee_id' label")
            match = crossmatch_training_sample(
                spec.read_labels(columns=["apogee_id"])["apogee_id"].to_numpy(),
                ages,
                duplicates="first",
            )
            take = np.arange(match.n_matched)[rows]
            spectra = spec.read("spectra", match.spectra_index[take])
            labels = match.labels.iloc[take].reset_index(drop=True)
            have = [c for c in ("teff", "fe_h", "teff_err", "fe_h_err") if c in spec.label_columns]
            if have:
                found = spec.read_labels(match.spectra_index[take], columns=have)
                for c in have:
                    labels[c] = found[c].to_numpy()
        source = {k: str(data[k]) for k in ("spectra", "ages")}
    if data.get("labels"):
        from skages.io import read_allstar

        allstar = read_allstar(data["labels"]).to_pandas()
        allstar = allstar.drop_duplicates("apogee_id").set_index("apogee_id")
        found = allstar.reindex(labels["apogee_id"].astype(str).to_numpy())
        for c in ("teff", "fe_h", "teff_err", "fe_h_err"):
            labels[c] = found[c].to_numpy()
        source["labels"] = str(data["labels"])
    if "log_age_err" not in labels and "log_age_err_upper" in labels:
        labels["log_age_err"] = labels["log_age_err_upper"]
    return spectra, labels, source


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


# ------------------------------------------------------------------- predict


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="age catalogue of a survey: streaming, resumable, local or on Dask",
        description=(
            "Run a trained age model over a survey in chunks and write the catalogue of "
            "Leung et al. (2023, Table 1): APOGEE_ID, TELESCOPE, FIELD, STARFLAG, "
            "ASPCAPFLAG, z0..z4 (+ z0_Error..), LogAge, LogAge_Error, Age, Age_Error (Gyr) "
            "and SKAGES_FLAG, NaN where not computed, one row per input row. Spectra come "
            "from a skages HDF5 survey (labels inside) or a folder of apStar/aspcapStar "
            "files with --labels ALLSTAR (then the catalogue is row-matched to the allStar "
            "table). Applicability cuts (the paper's by default): latent for "
            "1.5 < log g < 3.6 and SNREV > 30; ages where also log g >= 2.5 and Teff, "
            "[Fe/H] exist. Finished chunks are kept in OUTPUT.progress: a run that dies "
            "resumes there when the same command is run again."
        ),
        epilog=(
            "examples:\n"
            "  skages predict --model model.joblib --trust-joblib --spectra survey.h5 \\\n"
            "      --output ages.fits\n"
            "  skages predict --model model.skops --spectra apStar/ --labels allStar.fits \\\n"
            "      --output ages.parquet --cuts latent_snr_min=50\n"
            "  skages predict --model model.skops --spectra survey.h5 --output ages.fits \\\n"
            "      --scheduler tcp://10.0.0.5:8786\n\n"
            "cuts (NAME=VALUE, 'none' switches one off): latent_logg_min=1.5 "
            "latent_logg_max=3.6\n  latent_snr_min=30 age_logg_min=2.5 "
            "min_finite_fraction=0.5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_catalogue_args(p, model_help="model file (.joblib, .skops)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="existing Dask scheduler")
    where.add_argument("--dask", action="store_true", help="start a local Dask cluster")
    p.add_argument("--n-workers", type=_positive_int, help="workers of the --dask cluster")
    p.add_argument(
        "--keep-progress", action="store_true", help="keep OUTPUT.progress after success"
    )
    p.set_defaults(func=_run_predict)


def _add_catalogue_args(p: argparse.ArgumentParser, *, model_help: str) -> None:
    """The arguments that ``predict`` and ``encode`` share (both run predict_catalogue)."""
    p.add_argument("--model", type=Path, required=True, help=model_help)
    p.add_argument(
        "--spectra", type=Path, required=True, help="HDF5 survey or folder of apStar files"
    )
    p.add_argument("--labels", type=Path, help="allStar FITS file (labels, row order)")
    p.add_argument("-o", "--output", type=Path, required=True, help=".fits, .csv or .parquet")
    p.add_argument("--format", choices=("fits", "csv", "parquet"), help="override extension")
    p.add_argument(
        "--chunk-size", type=_positive_int, default=1024, help="stars per chunk (default 1024)"
    )
    p.add_argument("--cuts", nargs="+", default=[], metavar="NAME=VALUE", help="change cuts")
    p.add_argument("--no-cuts", action="store_true", help="no applicability cuts at all")
    p.add_argument("--overwrite", action="store_true", help="replace an existing catalogue")
    p.add_argument(
        "--restart", action="store_true", help="discard finished chunks of a different run"
    )
    _add_trust_options(p)


def _catalogue(args: argparse.Namespace, command: str, **options):
    """Check what the output needs before any work, then run predict_catalogue.

    Returns its result, or None when the run was interrupted (finished chunks kept).
    """
    from skages.catalogue import CatalogueCuts, predict_catalogue

    base = CatalogueCuts.none() if args.no_cuts else CatalogueCuts()
    cuts = CatalogueCuts.from_strings(args.cuts, base=base)
    fmt = args.format or {".parquet": "parquet", ".pq": "parquet"}.get(args.output.suffix.lower())
    if fmt == "parquet":
        _check_module("pyarrow", "parquet", f"writing {args.output.name} (Parquet)")
    if options.get("scheduler") is not None:
        _check_module("distributed", "dask", "running on Dask (--dask, --scheduler)")
    trusted = args.trust
    if not args.model.is_dir():  # an astroNN folder holds no pickle
        trusted = _check_model_trust(args)
    try:
        return predict_catalogue(
            args.model,
            args.spectra,
            args.output,
            labels=args.labels,
            chunk_size=args.chunk_size,
            format=args.format,
            cuts=cuts,
            overwrite=args.overwrite,
            restart=args.restart,
            trusted=trusted,
            verbose=0 if args.quiet else 1,
            **options,
        )
    except (TypeError, ImportError) as exc:
        raise ValueError(str(exc)) from exc
    except KeyboardInterrupt:
        print(
            f"skages {command}: interrupted; finished chunks are kept in "
            f"{args.output}.progress and the same command resumes from them",
            file=sys.stderr,
        )
        return None


def _run_predict(args: argparse.Namespace) -> int:
    result = _catalogue(
        args,
        "predict",
        scheduler=args.scheduler or ("local" if args.dask else None),
        n_workers=args.n_workers,
        keep_progress=args.keep_progress,
    )
    if result is None:
        return 130
    extra = f" (sidecar {result.path}.json)" if result.path.suffix.lower() == ".csv" else ""
    print(
        f"catalogue of {result.n_rows} stars ({result.n_latent} with latent coordinates, "
        f"{result.n_ages} with ages) written to {result.path}{extra}"
    )
    return 0


# -------------------------------------------------------------------- encode


def _add_encode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="latent-only catalogue of a survey (z0-z4 and their sigma)",
        description=(
            "Run an encoder over a survey and write the latent columns of Leung et al. "
            "(2023, Table 1): APOGEE_ID, TELESCOPE, FIELD, STARFLAG, ASPCAPFLAG, z0..z4, "
            "z0_Error..z4_Error (posterior mean and 1-sigma, dimensionless) and "
            "SKAGES_FLAG, with units and descriptions on every column. The model is an "
            "astroNN model folder (the published astroNN_VEncoderDecoder/), a skages "
            "model file (its encoder is used) or a saved encoder. Inputs, latent cuts, "
            "chunking and resuming are those of 'skages predict'."
        ),
        epilog=(
            "examples:\n"
            "  skages encode --model astroNN_VEncoderDecoder/ --spectra survey.h5 "
            "--output latent.fits\n"
            "  skages encode --model model.joblib --spectra apStar/ --labels allStar.fits "
            "\\\n      --output latent.parquet --no-cuts"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_catalogue_args(p, model_help="astroNN folder or model file (.joblib, .skops)")
    p.set_defaults(func=_run_encode)


def _run_encode(args: argparse.Namespace) -> int:
    if not args.model.exists():
        raise FileNotFoundError(f"no such model (astroNN folder or model file): {args.model}")
    result = _catalogue(args, "encode", latent_only=True)
    if result is None:
        return 130
    print(
        f"latent catalogue of {result.n_rows} stars ({result.n_latent} with latent "
        f"coordinates) written to {result.path}"
    )
    return 0


# ------------------------------------------------------------------ evaluate


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="the paper's diagnostics of a model on held-out stars: report and figures",
        description=(
            "Evaluate a trained model on stars it did not see (skages.evaluation): ages vs "
            "truth overall, RGB and RC; PSD reconstructions; the latent space by state, "
            "νmax, [Fe/H] and excess Δν; abundances and seismic parameters from the latent "
            "space; RC vs RGB; ablations; uncertainty calibration; [α/M] leakage; and the "
            "direct spectrum->age and seismic-oracle baselines. The held-out stars are the "
            "ones 'skages train --test-size' recorded in the model, or a separate "
            "--test-survey. Writes OUTPUT/report.md, OUTPUT/metrics.json and "
            "OUTPUT/figures/*.png."
        ),
        epilog=(
            "examples:\n"
            "  skages train --survey train.h5 --test-size 0.3 --output model.joblib\n"
            "  skages evaluate --model model.joblib --survey train.h5 --output report/\n"
            "  skages evaluate --model model.joblib --survey train.h5 \\\n"
            "      --test-survey other.h5 --output report/"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, required=True, help="model file (.joblib, .skops)")
    p.add_argument("--survey", type=Path, required=True, help="the survey it was trained from")
    p.add_argument("--test-survey", type=Path, help="a separate held-out survey")
    p.add_argument("-o", "--output", type=Path, required=True, help="report folder")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline models")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seeds auxiliary forests")
    p.add_argument("--n-jobs", type=_positive_int, help="threads of the auxiliary forests")
    _add_trust_options(p)
    p.set_defaults(func=_run_evaluate)


def _headless_figures() -> None:
    """Draw figures to files only: the commands run on machines without a screen."""
    import matplotlib

    matplotlib.use("Agg")


def _run_evaluate(args: argparse.Namespace) -> int:
    from skages.evaluation import evaluate_saved_model

    _headless_figures()

    for path in (args.model, args.survey, args.test_survey):
        if path is not None and not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
    trusted = _check_model_trust(args)
    report = evaluate_saved_model(
        args.model,
        args.survey,
        args.output,
        test_survey=args.test_survey,
        baselines=not args.no_baselines,
        random_state=args.seed,
        n_jobs=args.n_jobs,
        trusted=trusted,
    )
    import matplotlib.pyplot as plt

    plt.close("all")
    print(report.summary())
    print(f"report written to {args.output / 'report.md'} (figures in {args.output / 'figures'})")
    return 0


# ---------------------------------------------------------------------- demo


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from skages.demo import DEMO_MAX_EPOCHS, PAPER_MAX_EPOCHS

    p = sub.add_parser(
        "demo",
        help="the whole workflow on a simulated survey: model, catalogue, report",
        description=(
            "Simulate an APOKASC-like survey with spectra and Kepler PSDs, train the "
            "encoder and the age forest on 70 % of it, write the age catalogue of the "
            "whole survey and the evaluation report on the held-out 30 %. About 20 "
            f"minutes on 2 CPU cores with the defaults ({DEMO_MAX_EPOCHS} encoder epochs; "
            f"the paper used {PAPER_MAX_EPOCHS}). A rerun reuses finished steps."
        ),
        epilog=(
            "examples:\n"
            "  skages demo --output skages-demo\n"
            "  skages demo --output quick --n-stars 2000 --max-epochs 5\n"
            f"  skages demo --output paper --max-epochs {PAPER_MAX_EPOCHS} --device cuda"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o", "--output", type=Path, default=Path("skages-demo"), help="folder (skages-demo)"
    )
    p.add_argument("--n-stars", type=_positive_int, default=10_000, help="default: 10000")
    p.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=DEMO_MAX_EPOCHS,
        help=f"encoder epochs (default {DEMO_MAX_EPOCHS}; the paper: {PAPER_MAX_EPOCHS})",
    )
    p.add_argument("--test-size", type=_fraction, default=0.3, help="held-out fraction (0.3)")
    p.add_argument("--n-estimators", type=_positive_int, default=100, help="forest trees")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="PyTorch device of the encoder (cpu)")
    p.add_argument("--no-baselines", action="store_true", help="skip the baseline models")
    p.add_argument("--n-jobs", type=_positive_int, help="simulation processes, forest threads")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the unfinished work of an earlier run (survey, catalogue chunks)",
    )
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from skages.demo import PAPER_MAX_EPOCHS, run_demo

    _headless_figures()

    if not 0.0 < args.test_size < 1.0:
        raise ValueError(f"--test-size must be between 0 and 1; got {args.test_size}")
    if args.max_epochs < PAPER_MAX_EPOCHS:
        print(
            f"skages demo: training the encoder for {args.max_epochs} epochs, fewer than the "
            f"paper's {PAPER_MAX_EPOCHS}, to finish in minutes on a laptop; pass "
            f"--max-epochs {PAPER_MAX_EPOCHS} for the paper's setting",
            file=sys.stderr,
        )
    result = run_demo(
        args.output,
        n_stars=args.n_stars,
        max_epochs=args.max_epochs,
        test_size=args.test_size,
        n_estimators=args.n_estimators,
        seed=args.seed,
        device=args.device,
        baselines=not args.no_baselines,
        n_jobs=args.n_jobs,
        restart=args.restart,
        verbose=0 if args.quiet else 1,
    )
    minutes = sum(result.timings.values()) / 60
    print(result.summary)
    print(
        f"\nskages demo finished in {minutes:.1f} min "
        f"({', '.join(f'{k} {v / 60:.1f}' for k, v in result.timings.items())} min):\n"
        f"  simulated survey   {result.survey}\n"
        f"  trained model      {result.model}\n"
        f"  age catalogue      {result.catalogue} ({result.n_catalogue} stars)\n"
        f"  evaluation report  {result.report}\n"
        f"  figures            {result.report.parent / 'figures'}"
    )
    return 0


# ------------------------------------------------------------------- helpers

#: Environment variable that trusts every ``.joblib`` model, like ``--trust-joblib``.
TRUST_JOBLIB_ENV = "SKAGES_TRUST_JOBLIB"


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-joblib",
        action="store_true",
        help=(
            "load a .joblib model: it is a pickle, and loading a pickle runs any code it "
            f"holds; only for your own files (or set {TRUST_JOBLIB_ENV}=1)"
        ),
    )
    p.add_argument(
        "--trust",
        action="append",
        metavar="TYPE",
        help="trust this type in a .skops model (exact name; repeatable)",
    )


def _check_model_trust(args: argparse.Namespace) -> bool | list[str] | None:
    """Refuse a pickle-based model unless the user said they trust it.

    Returns the ``trusted`` argument of :func:`skages.persistence.load_model`: True for
    a trusted joblib file, else the ``--trust`` type names.
    """
    suffix = Path(args.model).suffix.lower()
    if suffix not in (".joblib", ".pkl"):
        return getattr(args, "trust", None)
    if args.trust_joblib or os.environ.get(TRUST_JOBLIB_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
    ):
        return True
    raise ValueError(
        f"{args.model} is a joblib (pickle) file, and loading a pickle runs any code it "
        f"holds; pass --trust-joblib (or set {TRUST_JOBLIB_ENV}=1) if you wrote it or trust "
        "its author, or use a .skops model"
    )


def _positive_int(text: str) -> int:
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer; got {text}")
    return value


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None


def _fraction(text: str) -> float:
    """A held-out fraction strictly between 0 and 1 (``--test-size``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number between 0 and 1; got {text!r}"
        ) from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive); got {text}")
    return value


#: Commands whose ``--output`` is a file in an existing folder (evaluate and demo create
#: their output folder).
_FILE_OUTPUTS = ("psd", "simulate", "train", "predict")


def _check_output_folders(args: argparse.Namespace) -> None:
    """Name a missing output folder before any work (not a raw errno after it)."""
    if args.command not in _FILE_OUTPUTS:
        return
    for flag in ("output", "plot"):
        path = getattr(args, flag, None)
        if path is None:
            continue
        folder = Path(path).parent
        if not folder.is_dir():
            raise FileNotFoundError(
                f"--{flag} {path}: the folder {folder} does not exist; create it first "
                f"(mkdir -p {folder})"
            )


def _check_module(module: str, extra: str, what: str) -> None:
    """Raise a one-line error naming the extra to install if ``module`` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"{what} needs {module}, which is not installed: pip install 'skages[{extra}]'"
        )


class _TqdmHandler(logging.StreamHandler):
    """Log records written with ``tqdm.write``: a record never shares a line with a bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # the logging module's contract: never raise from emit
            self.handleError(record)


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one log line: its category and message, not a source line."""
    return f"{category.__name__}: {message}"


#: Subcommands, in the order of ``skages --help``: each adds its parser (with
#: ``set_defaults(func=...)``) to the subparsers. Add a command by appending here.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_psd,
    _add_spectra,
    _add_simulate,
    _add_train,
    _add_predict,
    _add_encode,
    _add_evaluate,
    _add_demo,
]


# ---------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``skages`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="skages",
        description="Ages of red-giant stars from their spectra (Leung et al. 2023 method).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"skages {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more messages (-vv for debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    for command in sub.choices.values():  # -q / -v after the command too
        _add_verbosity(command)
    return parser


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-q`` and ``-v`` on a subcommand; absent, they leave the main parser's values."""
    p.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skages`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (
        logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    )
    handler = _TqdmHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.captureWarnings(True)  # library warnings become log lines, not tracebacks-lookalikes
    formatwarning, warnings.formatwarning = warnings.formatwarning, _plain_warning
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _check_output_folders(args)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError, ImportError) as exc:
        logger.debug("skages %s failed", args.command, exc_info=True)
        print(f"skages {args.command}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        logging.captureWarnings(False)
        warnings.formatwarning = formatwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
