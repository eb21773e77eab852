"""Saving and loading fitted skages models, with their metadata.

A saved model is a dictionary ``{"metadata", "model"}`` written with joblib
(``.joblib``, fast, for your own files) or skops (``.skops``, the safe format for
files from strangers). The metadata say which skages wrote the file, on which
frequency grid the encoder was trained, and what the training set looked like;
:func:`load_model` reads them *before* it builds any object and refuses a file
written by an incompatible skages with a message that says what to do.

Safety:

* A ``.skops`` file is audited before loading: every type it names must be one that
  skops itself trusts (numpy arrays, scikit-learn's own estimators) or one of the exact
  names in :data:`SKOPS_TRUSTED_TYPES` (the types skages models contain), or be
  passed in ``trusted=[...]`` (``--trust TYPE`` on the command line). Anything else,
  e.g. a function hidden in a ``FunctionTransformer``, is refused; nothing in the file
  runs.
* A ``.joblib`` file is a pickle, and loading a pickle runs whatever code it holds.
  Load only your own files; the command line requires ``--trust-joblib`` (or
  ``SKAGES_TRUST_JOBLIB=1``) for them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import itertools
import json
import pickle
import platform
import zipfile
import zlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from skages._atomic import atomic_path
from skages._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "SKOPS_TRUSTED_TYPES",
    "load_model",
    "model_metadata",
    "read_model_metadata",
    "save_model",
    "training_summary",
]

#: Version of the saved-model layout; bumped when it changes incompatibly.
FORMAT_VERSION = 1
_FORMATS = {".joblib": "joblib", ".pkl": "joblib", ".skops": "skops"}

#: The exact types, beyond those skops trusts by default, that skages models contain
#: (listed with ``skops.io.get_untrusted_types`` from the saved encoder, forest, age
#: pipeline and ContinuumNormalizer pipelines). No prefix: a type named here is trusted,
#: every other one is refused unless the caller trusts it by name. ``functools.partial``
#: is safe because the function it wraps is itself audited by name.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "functools.partial",
    "skages.applicability.ApplicabilityScore",
    "skages.encoder.SpectrumToPSDEncoder",
    "skages.forest.ProbabilisticForestRegressor",
    "skages.pipeline._fixed_feature_names",
    "skages.spectra.ContinuumNormalizer",
    "sklearn.tree._tree.Tree",
)

#: Name of the metadata member that save_model adds to a ``.skops`` zip file.
_SKOPS_METADATA = "skages-metadata.json"


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def training_summary(X: Any = None, y: Any = None, *, labels: Any = None) -> dict[str, Any]:
    """A JSON-friendly summary of a training set, to store with a model.

    Parameters
    ----------
    X : array-like of shape (n_stars, n_features), optional
        The model's training input.
    y : array-like of shape (n_stars,), optional
        Training log10 ages, log10(Gyr); NaN for stars without an age.
    labels : pandas.DataFrame, optional
        Training labels; the ranges of ``teff``, ``fe_h``, ``logg``, ``numax`` are kept
        where present, the number of RC and RGB stars from ``evstate``, and
        ``simulated`` (True when every ``apogee_id`` is one of skages.datasets'
        "2M-SIM-…" identifiers: the catalogue then warns that the model dates real stars).

    Returns
    -------
    dict
    """
    out: dict[str, Any] = {}
    if X is not None:
        out["n_stars"] = int(np.shape(X)[0])
        out["n_features"] = int(np.shape(X)[1])
    if y is not None:
        yy = np.asarray(y, dtype=float)
        aged = np.isfinite(yy)
        out["n_aged"] = int(aged.sum())
        if aged.any():
            out["log_age_range"] = [float(yy[aged].min()), float(yy[aged].max())]
    if labels is not None:
        for col in ("teff", "fe_h", "logg", "numax"):
            if col in labels:
                v = np.asarray(labels[col], dtype=float)
                if np.isfinite(v).any():
                    out[f"{col}_range"] = [float(np.nanmin(v)), float(np.nanmax(v))]
        if "evstate" in labels:
            counts = labels["evstate"].astype(str).value_counts()
            out["evstate_counts"] = {str(k): int(v) for k, v in counts.items()}
        if "apogee_id" in labels and len(labels):
            from skages._labels import SIMULATED_ID_PREFIX

            ids = np.asarray(labels["apogee_id"]).astype(str)
            ids = np.char.startswith(ids, SIMULATED_ID_PREFIX)
            out["simulated"] = bool(ids.all())
    return out


def model_metadata(model: Any, *, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata :func:`save_model` stores beside a model.

    Parameters
    ----------
    model : estimator
        The fitted model (a Pipeline, an encoder or a forest).
    training : dict, optional
        A :func:`training_summary`.

    Returns
    -------
    dict
        skages version, format version, creation time (UTC), Python and library
        versions, the model's class, the PSD frequency grid (µHz) and a checksum of it.
    """
    import sklearn
    import torch

    from skages.seismology import frequency_grid

    grid = frequency_grid()
    return {
        "skages_version": __version__,
        "format_version": FORMAT_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "scikit_learn": sklearn.__version__,
        "torch": str(torch.__version__),  # a plain str, not torch's TorchVersion class
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "frequency_grid_uHz": grid.tolist(),
        "frequency_grid_sha256": hashlib.sha256(grid.tobytes()).hexdigest(),
        "training": dict(training or {}),
    }


def _format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in ("joblib", "skops"):
            raise ValueError(f"format must be 'joblib' or 'skops'; got {fmt!r}")
        return fmt
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"{path}: a model file ends in .joblib or .skops; cannot tell the format of a "
            f"{path.suffix or 'extension-less'} file"
        ) from None


def _plain(value: Any) -> Any:
    """JSON fallback for the metadata member: numpy scalars and arrays, else text."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)


def _import_skops(path: Path):
    try:
        import skops.io as sio
    except ImportError:
        raise ImportError(
            f"{path} is a .skops model, which needs the skops package: pip install 'skages[skops]'"
        ) from None
    return sio


def save_model(
    model: Any,
    path: str | PathLike,
    *,
    format: str | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Save a fitted model with its metadata, atomically.

    Parameters
    ----------
    model : estimator
        Fitted skages model (typically the age Pipeline).
    path : path-like
        Destination; ``.joblib`` or ``.skops`` chooses the format.
    format : {"joblib", "skops"}, optional
        Overrides the extension.
    training : dict, optional
        :func:`training_summary` of the training set, stored in the metadata.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    fmt = _format(path, format)
    sio = _import_skops(path) if fmt == "skops" else None
    # metadata first: load_model reads them before it builds the model
    metadata = model_metadata(model, training=training)
    payload = {"metadata": metadata, "model": model}
    with atomic_path(path) as tmp:
        if fmt == "joblib":
            import joblib

            joblib.dump(payload, tmp, compress=3)
        else:
            # skops cannot follow the estimator <-> request cycle of scikit-learn's
            # metadata-routing requests; store them as plain dicts and rebuild on load
            detached, plain = _strip_requests(model)
            try:
                payload["routing_requests"] = plain
                sio.dump(payload, tmp)
            finally:
                for est, request in detached:
                    est.__dict__["_metadata_request"] = request
            with zipfile.ZipFile(tmp, "a") as zf:
                zf.writestr(_SKOPS_METADATA, json.dumps(metadata, default=_plain))
    return path


def _walk_estimators(obj: Any, seen: set[int] | None = None):
    """Every scikit-learn estimator reachable from ``obj``, in a deterministic order."""
    from sklearn.base import BaseEstimator

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    if isinstance(obj, BaseEstimator):
        seen.add(id(obj))
        yield obj
        children = [obj.__dict__[k] for k in sorted(obj.__dict__)]
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    elif isinstance(obj, dict):
        children = [obj[k] for k in sorted(obj, key=str)]
    else:
        return
    for child in children:
        yield from _walk_estimators(child, seen)


def _strip_requests(model: Any) -> tuple[list[tuple[Any, Any]], list[tuple[int, dict]]]:
    """Detach every estimator's metadata request; return them and a plain-dict copy.

    The plain copy is keyed by the estimator's position in :func:`_walk_estimators`.
    """
    detached, plain = [], []
    for index, est in enumerate(_walk_estimators(model)):
        request = est.__dict__.pop("_metadata_request", None)
        if request is None:
            continue
        detached.append((est, request))
        plain.append(
            (
                index,
                {
                    name: dict(value.requests)
                    for name, value in vars(request).items()
                    if hasattr(value, "requests")
                },
            )
        )
    return detached, plain


def _restore_requests(model: Any, plain: list[tuple[int, dict]]) -> None:
    """Rebuild the metadata requests that :func:`_strip_requests` recorded."""
    from sklearn.utils.metadata_routing import MetadataRequest

    estimators = list(_walk_estimators(model))
    for index, methods in plain:
        est = estimators[int(index)]
        request = MetadataRequest(owner=est)
        for method, params in methods.items():
            for param, alias in params.items():
                getattr(request, method).add_request(param=param, alias=alias)
        est.__dict__["_metadata_request"] = request


def _check_metadata(meta: Any, path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict) or "skages_version" not in meta:
        raise ValueError(f"{path} is not a skages model file (no skages metadata)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} uses saved-model format {meta.get('format_version')}, but skages "
            f"{__version__} reads format {FORMAT_VERSION}; load it with skages "
            f"{meta['skages_version']} or retrain the model"
        )
    saved, current = _major_minor(meta["skages_version"]), _major_minor(__version__)
    if saved != current:
        raise ValueError(
            f"{path} was written by skages {meta['skages_version']}, this is skages "
            f"{__version__}; models are only compatible within a minor version. Install "
            f"skages=={meta['skages_version']} to use it, or retrain with this version"
        )
    from skages.seismology import frequency_grid

    grid = frequency_grid()
    if meta.get("frequency_grid_sha256") != hashlib.sha256(grid.tobytes()).hexdigest():
        raise ValueError(
            f"{path} was trained on a different PSD frequency grid than this skages uses"
        )
    return meta


class _StopAtClass(Exception):
    """Raised by :class:`_MetadataPeek` at the first class reference."""


class _MetadataPeek(pickle._Unpickler):  # the pure-Python unpickler exposes its stack
    """Unpickles plain values only; stops before building any object."""

    def find_class(self, module: str, name: str) -> Any:
        raise _StopAtClass(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _StopAtClass("persistent id")


def _peek_joblib_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata of a joblib model file, read without building any object.

    save_model puts the metadata (plain Python values) before the model in the pickle,
    so an unpickler that refuses every class reaches them first. None when they cannot
    be found this way (e.g. a file written by an older skages).
    """
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head[:1] == b"\x80":  # an uncompressed pickle
            data = fh.read(8 << 20)
        elif head[:1] == b"x":  # joblib's zlib compression
            unzip, parts, size = zlib.decompressobj(), [], 0
            for block in iter(lambda: fh.read(1 << 20), b""):
                try:
                    parts.append(unzip.decompress(block, (8 << 20) - size))
                except zlib.error:  # damaged: the real load says so, naming the file
                    break
                size += len(parts[-1])
                if size >= 8 << 20 or unzip.unconsumed_tail:
                    break
            data = b"".join(parts)
        else:
            return None
    peek = _MetadataPeek(io.BytesIO(data))
    try:
        whole = peek.load()  # only plain values: nothing to stop at
    except _StopAtClass:
        pass
    except Exception:  # damage is reported by the real load
        return None
    else:
        meta = whole.get("metadata") if isinstance(whole, dict) else None
        return meta if isinstance(meta, dict) and "skages_version" in meta else None
    for stack in [*getattr(peek, "metastack", []), getattr(peek, "stack", [])]:
        for key, value in itertools.pairwise(stack):
            if key == "metadata" and isinstance(value, dict) and "skages_version" in value:
                return value
    return None


def _peek_skops_metadata(path: Path) -> dict[str, Any] | None:
    """The metadata member save_model adds to a ``.skops`` file (None if absent)."""
    with zipfile.ZipFile(path) as zf:
        if _SKOPS_METADATA not in zf.namelist():
            return None
        meta = json.loads(zf.read(_SKOPS_METADATA))
    return meta if isinstance(meta, dict) else None


def _damaged(path: Path, fmt: str, exc: BaseException) -> ValueError:
    return ValueError(
        f"{path} is not a readable {fmt} model file (damaged, truncated or not written by "
        f"skages.persistence.save_model): {type(exc).__name__}: {exc}"
    )


def read_model_metadata(path: str | PathLike, *, format: str | None = None) -> dict[str, Any]:
    """The metadata of a model file, read without building any object of it.

    Safe on any file, a stranger's pickle included: no class is imported and no code
    from the file runs (for ``.joblib`` files the pickle stream is read only up to the
    metadata, which :func:`save_model` puts first). Use it to decide whether a saved
    model can be reused before loading it.

    Parameters
    ----------
    path : path-like
        A ``.joblib`` or ``.skops`` file written by :func:`save_model`.
    format : {"joblib", "skops"}, optional
        Overrides the extension.

    Returns
    -------
    dict
        The checked metadata (skages version, training summary, ...).

    Raises
    ------
    ValueError
        If the file is damaged, not a skages model file or from an incompatible skages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    fmt = _format(path, format)
    try:
        meta = _peek_joblib_metadata(path) if fmt == "joblib" else _peek_skops_metadata(path)
    except Exception as exc:  # OSError, BadZipFile, JSON, zlib, ...
        raise _damaged(path, fmt, exc) from exc
    if meta is None:
        raise ValueError(
            f"{path}: no skages metadata before the model (not written by "
            "skages.persistence.save_model, or damaged)"
        )
    return _check_metadata(meta, path)


def load_model(
    path: str | PathLike,
    *,
    format: str | None = None,
    trusted: bool | Sequence[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load a model written by :func:`save_model` and check that it fits this skages.

    The metadata are read and checked first, before any object of the model is built,
    so a file from another skages version is refused with a clear message rather than
    failing on a class this version lacks.

    Parameters
    ----------
    path : path-like
        A ``.joblib`` or ``.skops`` file. A ``.joblib`` file is a pickle: loading it runs
        any code it holds, so load only files you wrote or whose author you trust.
    format : {"joblib", "skops"}, optional
        Overrides the extension.
    trusted : bool or sequence of str, optional
        Whether you trust the file's author. A ``.joblib`` file (a pickle) is loaded
        only with ``trusted=True`` (the command line's ``--trust-joblib``); otherwise it
        is refused before a byte of it is unpickled. For ``.skops`` files, a list names
        exact types to trust beyond those skops trusts by default and
        :data:`SKOPS_TRUSTED_TYPES` (loading stops with the list of any other type
        found, so a stranger's file cannot run code you did not approve); True trusts
        every type in the file.

    Returns
    -------
    model : estimator
    metadata : dict

    Raises
    ------
    ValueError
        If the file is damaged, not a skages model, holds types that are not trusted, or
        was written by an incompatible skages.
    ImportError
        For a ``.skops`` file without skops installed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such model file: {path}")
    fmt = _format(path, format)
    if trusted is not None and not isinstance(trusted, bool):
        names = None if isinstance(trusted, str) else list(trusted)  # any sequence of names
        if names is None or not all(isinstance(t, str) for t in names):
            raise TypeError(
                f"trusted must be True/False or a list of type names (str); got {trusted!r}"
            )
        trusted = names
    if fmt == "joblib":
        import joblib

        try:
            meta = _peek_joblib_metadata(path)
        except OSError as exc:
            raise _damaged(path, fmt, exc) from exc
        if meta is not None:
            _check_metadata(meta, path)  # safe: builds no object
        if trusted is not True:
            raise ValueError(
                f"{path} is a joblib (pickle) file, and loading a pickle runs any code it "
                "holds; pass load_model(..., trusted=True) (skages: --trust-joblib) only if "
                "you wrote it or trust its author, or use a .skops model"
                + ("" if meta is not None else " (no skages metadata found: not a skages model?)")
            )
        load = lambda: joblib.load(path)  # noqa: E731
    else:
        sio = _import_skops(path)
        try:
            meta = _peek_skops_metadata(path)
        except Exception as exc:  # BadZipFile, JSON, zlib, ...
            raise _damaged(path, fmt, exc) from exc
        if meta is not None:
            _check_metadata(meta, path)
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:  # BadZipFile, JSON, KeyError, ...
            raise _damaged(path, fmt, exc) from exc
        extra = () if isinstance(trusted, bool) or trusted is None else trusted
        allowed = set(SKOPS_TRUSTED_TYPES) | set(extra)
        unknown = [] if trusted is True else sorted(set(untrusted) - allowed)
        if unknown:
            raise ValueError(
                f"{path} contains types skages does not trust: {unknown}. They can run code "
                "while the file loads; only if you trust the file's author, pass them as "
                "load_model(..., trusted=[...]) (skages predict --trust TYPE)"
            )
        load = lambda: sio.load(path, trusted=sorted(set(untrusted)))  # noqa: E731
    try:
        payload = load()
    except (AttributeError, ImportError) as exc:
        raise ValueError(
            f"{path} names a class or function that this skages ({__version__}) lacks "
            f"({exc}); it was written by another skages version or package: retrain the "
            "model with this version"
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # zlib.error, EOFError, UnpicklingError, ...
        raise _damaged(path, fmt, exc) from exc
    if fmt == "skops" and isinstance(payload, dict) and "routing_requests" in payload:
        _restore_requests(payload["model"], payload.pop("routing_requests"))
    if not isinstance(payload, dict) or "model" not in payload:
        raise ValueError(f"{path} is not a skages model file (no model/metadata dictionary)")
    meta = _check_metadata(payload.get("metadata"), path)
    return payload["model"], meta
