"""Time the README's Python example, as it stands in README.md.

    python benchmarks/readme_example.py

Runs the first ``python`` code block of README.md and prints its wall time and the
machine's load, so the time the README quotes can be checked on any machine.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example(path: Path = README) -> str:
    """The first ```python block of the README."""
    match = re.search(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    if match is None:
        raise SystemExit(f"{path} has no python code block")
    return match.group(1)


def main() -> None:
    code = readme_example()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    start = time.perf_counter()
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    seconds = time.perf_counter() - start
    print(
        f"README example: {seconds / 60:.1f} min on {os.cpu_count()} CPUs "
        f"(load average {load:.1f} at the start)"
    )


if __name__ == "__main__":
    main()
