"""Run every benchmark script in this folder, one after the other, and show their output.

Each script prints skages' timing against a baseline measured in the same run, with
peak memory. Run on a quiet machine: other work on the cores skews every number.

Usage:  python benchmarks/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", nargs="*", help="names such as psd, encoder, forest")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    for script in scripts:
        cmd = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
        print(f"\n=== {script.name} {'(quick)' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(cmd, check=False)
        print(f"=== {script.name}: exit {result.returncode}, {time.perf_counter() - start:.0f} s")
        if result.returncode:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
