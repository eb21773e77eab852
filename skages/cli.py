"""The ``skages`` command. Thin: it parses arguments and calls the library.

Examples
--------
Power spectrum of the bundled real light curve of KIC 11618103::

    skages psd --example --output kic11618103_psd.fits --plot kic11618103_psd.png

Power spectrum of a star from its Kepler quarter files::

    skages psd kplr009145861-*_llc.fits --output kic9145861_psd.fits
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from skages._version import __version__

logger = logging.getLogger("skages")

_EPILOG = """\
examples:
  skages psd --example --output psd.fits --plot psd.png
  skages psd kplr009145861-*_llc.fits --output kic9145861.fits

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
    p.set_defaults(func=_run_psd)


def _run_psd(args: argparse.Namespace) -> int:
    import numpy as np
    from astropy.table import Table

    from skages import seismology
    from skages._atomic import atomic_path

    if args.example == bool(args.files):
        raise SystemExit("skages psd: give light curve files or --example (not both, not neither)")
    if args.example:
        from skages.datasets import bundled_path

        files = [bundled_path("KIC11618103_LC.txt.gz")]
        star = "KIC 11618103"
    else:
        files = args.files
        star = files[0].name
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
    suffix = args.output.suffix.lower()
    fmt = {".fits": "fits", ".fit": "fits", ".ecsv": "ascii.ecsv", ".csv": "ascii.csv"}.get(suffix)
    if fmt is None:
        raise SystemExit(f"skages psd: --output must end in .fits, .ecsv or .csv; got {suffix!r}")
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


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_psd]


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skages`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (
        logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)  # library warnings become log lines, not tracebacks-lookalikes
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        logger.error("%s", exc)
        print(f"skages {args.command}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        logging.captureWarnings(False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
