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
    p.add_argument(
        "--allstar",
        type=Path,
        help="allStar, astraAllStarASPCAP or allStar-1.3 FITS file: labels and row order",
    )
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
    p.add_argument(
        "--seismic-errors",
        choices=("apokasc2", "agreement"),
        default="apokasc2",
        help=(
            "numax and dnu errors: 'apokasc2' (default) those APOKASC-2 quotes; 'agreement' "
            "scaled to how well APOKASC-2 and APOKASC-3 agree (0.34 RGB, 0.42 RC of them)"
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
        seismic_errors=args.seismic_errors,
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


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fit the encoder and the age forest, and save the model",
        description=(
            "Train the age model in the paper's two stages (skages.pipeline.fit_age_model): "
            "the encoder on every spectrum-PSD pair but a fifth of the forest's stars' (which "
            "calibrate the forest's uncertainties), the forest on the stars with precise "
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
            "  [model]    output, seed, forest_stars ('precise' or 'aged'),\n"
            "             calibration_fraction, test_size,\n"
            "             overwrite, restart\n"
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
    p.add_argument(
        "--calibration-fraction",
        type=_calibration_fraction,
        help="fraction of the forest's stars held out of the encoder's training to "
        "calibrate the age uncertainties (default 0.2; 0: calibrate on every forest star, "
        "as the paper)",
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
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard an interrupted training's checkpoint (OUTPUT.training/) instead of "
        "resuming from its last finished epoch",
    )
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


def _run_train(args: argparse.Namespace) -> int:
    from skages.training import read_train_config, train_from_config

    config = read_train_config(args.config) if args.config else {}
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
    for key in ("output", "seed", "forest_stars", "calibration_fraction", "test_size"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.overwrite:
        settings["overwrite"] = True
    if args.restart:
        settings["restart"] = True
    if settings.get("output") is None:
        raise ValueError("give the model file with --output (or [model] output in --config)")
    encoder_params = dict(config.get("encoder", {}))
    encoder_flags = ("max_epochs", "latent_dim", "batch_size", "lr")
    trusted = args.trust
    if args.encoder is not None:
        given = [f"--{f.replace('_', '-')}" for f in encoder_flags if getattr(args, f) is not None]
        if given:
            raise ValueError(
                f"--encoder trains the forest only; {given} would set the encoder's training"
            )
        if args.encoder.is_file():  # a model file, maybe a pickle: only if trusted
            trusted = _check_model_trust(
                argparse.Namespace(
                    model=args.encoder, trust_joblib=args.trust_joblib, trust=args.trust
                )
            )
    else:
        for flag in (*encoder_flags, "device"):
            if getattr(args, flag) is not None:
                encoder_params[flag] = getattr(args, flag)
    forest_params = dict(config.get("forest", {}))
    if args.n_estimators is not None:
        forest_params["n_estimators"] = args.n_estimators
    config = {"data": data, "model": settings, "encoder": encoder_params, "forest": forest_params}
    _, training = train_from_config(
        config,
        encoder=args.encoder,
        trusted=trusted,
        verbose=0 if args.quiet else 1,
        provenance={"command": "skages train"},
    )
    sample = training["source"].get("sample")
    if sample:
        print("training sample: " + ", ".join(f"{k} {v}" for k, v in sample.items()))
    print(
        f"model trained on {training['n_stars']} stars ({training.get('n_aged', 0)} with ages) "
        f"written to {settings['output']}"
    )
    return 0


# ------------------------------------------------------------------- predict


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="age catalogue of a survey: streaming, resumable, local or on Dask",
        description=(
            "Run a trained age model over a survey in chunks and write the catalogue of "
            "Leung et al. (2023, Table 1): APOGEE_ID, TELESCOPE, FIELD, STARFLAG, "
            "ASPCAPFLAG, z0..z4 (+ z0_Error..), LogAge, LogAge_Error, Age, Age_Error (Gyr), "
            "the 16-84 percent interval LogAge_Lower/_Upper, Age_Lower/_Upper, Applicability "
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
            "min_finite_fraction=0.5\nwarning checks (flag bits 128+, values kept): "
            "max_masked_fraction=0.3\n  max_level_offset=0.2 min_line_depth=0.35 "
            "max_line_depth=3 max_noise_ratio=3\n  max_applicability=1"
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
    p.add_argument(
        "--labels",
        type=Path,
        help="allStar, astraAllStarASPCAP or allStar-1.3 FITS file (labels, row order)",
    )
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
    from skages.catalogue import CatalogueCuts
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
        cuts=CatalogueCuts(),
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
    p.add_argument(
        "--calibration-fraction",
        type=_calibration_fraction,
        default=0.2,
        help="forest stars held out of the encoder's training to calibrate σ (0.2)",
    )
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
        calibration_fraction=args.calibration_fraction,
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


def _calibration_fraction(text: str) -> float:
    """A fraction in [0, 1) (``--calibration-fraction``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1); got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1; got {text}")
    return value


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
