"""Warnings that point at the caller's line, not at skages' internals."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_SKIP = (_PACKAGE_DIR, os.path.dirname(os.path.abspath(warnings.__file__)))


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` attributed to the first frame outside skages (and joblib)."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_SKIP) and f"{os.sep}joblib{os.sep}" not in filename:
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level + 1)
