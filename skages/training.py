"""The two-stage training of the age model as functions over surveys, files and configs.

This is what ``skages train`` and ``skages demo`` run, for Python users too:

- :func:`train_from_survey`: a skages HDF5 survey with spectra, PSDs and labels (such
  as :func:`skages.datasets.write_apokasc` writes);
- :func:`train_from_files`: a spectra survey, a PSD survey and an age table (APOKASC-2
  Table 5, ...), matched and cut into the paper's training sample
  (:func:`skages.io.training_sample`);
- :func:`train_from_config`: the settings of a ``skages train --config`` TOML file
  (:func:`read_train_config`), as a file or a dict.

Each fits the encoder on every spectrum-PSD pair but those of the calibration stars (a
fifth of the forest's stars, on which its σ is calibrated) and the forest on the
stars with precise seismic ages (:func:`skages.pipeline.fit_age_model`), optionally on top of a
trained encoder (forest only), and returns the fitted model with its provenance (the
``training`` metadata that :func:`skages.persistence.save_model` stores with it).
Given an ``output``, the model is also written there, atomically, under the output's
lock (:mod:`skages._lock`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from skages.encoder import SpectrumToPSDEncoder
    from skages.io import TrainingCuts

__all__ = [
    "TRAIN_CONFIG_KEYS",
    "load_encoder",
    "read_train_config",
    "train_from_config",
    "train_from_files",
    "train_from_survey",
]

logger = logging.getLogger(__name__)

#: Keys of a ``skages train --config`` TOML file, per table.
TRAIN_CONFIG_KEYS = {
    "data": (
        *("survey", "spectra", "psd", "ages", "labels", "max_stars"),
        *("ages_format", "ages_columns", "numax_range", "states", "no_cuts"),
    ),
    "model": (
        *("output", "seed", "forest_stars", "calibration_fraction", "test_size"),
        *("overwrite", "restart"),
    ),
    "encoder": None,  # any SpectrumToPSDEncoder parameter
    "forest": None,  # any ProbabilisticForestRegressor parameter
}

#: The model file suffixes :func:`skages.persistence.save_model` writes.
_MODEL_SUFFIXES = (".joblib", ".pkl", ".skops")


def read_train_config(path: str | PathLike) -> dict:
    """Read and check a ``skages train --config`` TOML file.

    The tables and keys are those of :data:`TRAIN_CONFIG_KEYS`: ``[data]`` (``survey``
    or ``spectra``/``psd``/``ages``, ``labels``, ``max_stars`` and the sample cuts),
    ``[model]`` (``output``, ``seed``, ``forest_stars``, ``calibration_fraction``,
    ``test_size``, ``overwrite``),
    ``[encoder]`` and ``[forest]`` (any parameter of the estimator). Every key is
    optional.

    Parameters
    ----------
    path : path-like
        The TOML file. Relative paths in it are taken relative to its folder.

    Returns
    -------
    dict
        The tables, with the file paths made absolute (:class:`pathlib.Path`).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not valid TOML, or has a table or key not in :data:`TRAIN_CONFIG_KEYS`.
    """
    path = Path(path)
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


_COMMON_PARAMETERS = """\
    output : path-like, optional
        Also write the model there (``.joblib`` or ``.skops``) with
        :func:`skages.persistence.save_model`, atomically, holding ``<output>.lock``
        from the start so that a second run on the same file fails at once.
    overwrite : bool, default=False
        Replace an existing ``output``.
    restart : bool, default=False
        With ``output``, the encoder's training is checkpointed after every epoch in
        ``<output>.training/`` (:class:`~skages.encoder.SpectrumToPSDEncoder`'s
        ``checkpoint_dir``), and a rerun of an interrupted training resumes from its last
        finished epoch, giving the model an uninterrupted run gives; ``restart=True``
        (``skages train --restart``) discards that checkpoint and trains from scratch. The
        folder is removed once the model is saved. An ``encoder_params`` entry
        ``checkpoint_dir`` (or ``resume``) overrides this.
    max_stars : int, optional
        Use the first ``max_stars`` stars only.
    labels : path-like, optional
        An allStar file whose Teff, [Fe/H] and their errors replace the training
        stars' (matched on APOGEE_ID).
    encoder : SpectrumToPSDEncoder or path-like, optional
        A trained encoder: a fitted estimator, an astroNN model folder or a skages model
        file. Only the forest is then trained, on top of it (frozen), and no PSDs are
        needed.
    trusted : bool or list of str, optional
        As for :func:`skages.persistence.load_model`: True to load a ``.joblib``
        (pickle) ``encoder`` file, which runs any code it holds; for a ``.skops`` file,
        extra type names to trust.
    encoder_params : dict, optional
        :class:`~skages.encoder.SpectrumToPSDEncoder` parameters (``max_epochs``,
        ``latent_dim``, ``device``, ...). Not with a trained ``encoder``.
    forest_params : dict, optional
        :class:`~skages.forest.ProbabilisticForestRegressor` parameters
        (``n_estimators``, ``n_jobs``, ...).
    seed : int, default=0
        ``random_state`` of the encoder, the forest (unless their parameters set one)
        and the held-out split.
    forest_stars : {"precise", "aged"}, default="precise"
        Train the forest on the stars with precise ages (the paper) or on every aged
        star (:func:`skages.pipeline.fit_age_model`).
    calibration_fraction : float, default=0.2
        Fraction of the forest's stars held out of the encoder's training to calibrate
        σ (:func:`skages.pipeline.fit_age_model`); drawn with ``seed``, so the same
        stars on a rerun.
    test_size : float, optional
        Hold out this fraction of the stars (:func:`skages.evaluation.split_record`,
        recorded as ``split`` in the provenance, for
        :func:`skages.evaluation.evaluate_saved_model`).
    verbose : int, default=1
        Progress of the encoder's training on stderr when > 0.
    provenance : dict, optional
        Extra JSON-friendly entries for the provenance (e.g. ``{"command": ...}``).

    Returns
    -------
    model : sklearn.pipeline.Pipeline
        The fitted age model (:func:`skages.pipeline.fit_age_model`).
    provenance : dict
        JSON-friendly record of the training: the training set
        (:func:`skages.persistence.training_summary`), ``source`` (the input files,
        and for files the sample's counts and cuts), ``encoder_params``,
        ``forest_params``, ``forest_stars``, ``max_stars``, ``split`` and ``command``.
        :func:`skages.persistence.save_model` stores it as the ``training`` metadata.
"""


def train_from_survey(
    survey: str | PathLike,
    *,
    output: str | PathLike | None = None,
    overwrite: bool = False,
    restart: bool = False,
    max_stars: int | None = None,
    labels: str | PathLike | None = None,
    encoder: SpectrumToPSDEncoder | str | PathLike | None = None,
    trusted: bool | Sequence[str] | None = None,
    encoder_params: Mapping[str, Any] | None = None,
    forest_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    forest_stars: str = "precise",
    calibration_fraction: float = 0.2,
    test_size: float | None = None,
    verbose: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    return _train_with(
        {"survey": survey, "max_stars": max_stars, "labels": labels},
        "skages.training.train_from_survey",
        **_shared_settings(locals()),
    )


train_from_survey.__doc__ = (
    """Train the age model on a skages HDF5 survey with spectra, PSDs and labels.

    The encoder learns from every spectrum-PSD pair but the calibration stars', the
    forest from the stars with precise seismic ages (:func:`skages.pipeline.fit_age_model`);
    what ``skages train --survey`` runs.

    Parameters
    ----------
    survey : path-like
        HDF5 survey with ``spectra``, ``psd`` (and ``psd_weight``) arrays and labels
        (``log_age``, ``log_age_err``, ``teff``, ``fe_h`` and their errors), such as
        :func:`skages.datasets.write_apokasc` writes. The PSDs must be natural-log PSDs
        on skages' grid (:func:`skages.seismology.frequency_grid`).
"""
    + _COMMON_PARAMETERS
)


def train_from_files(
    spectra: str | PathLike,
    psd: str | PathLike | None,
    ages: Any,
    *,
    ages_format: str = "auto",
    ages_columns: Mapping[str, str] | None = None,
    cuts: TrainingCuts | None = None,
    output: str | PathLike | None = None,
    overwrite: bool = False,
    restart: bool = False,
    max_stars: int | None = None,
    labels: str | PathLike | None = None,
    encoder: SpectrumToPSDEncoder | str | PathLike | None = None,
    trusted: bool | Sequence[str] | None = None,
    encoder_params: Mapping[str, Any] | None = None,
    forest_params: Mapping[str, Any] | None = None,
    seed: int = 0,
    forest_stars: str = "precise",
    calibration_fraction: float = 0.2,
    test_size: float | None = None,
    verbose: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    data = {
        "spectra": spectra,
        "psd": psd,
        "ages": ages,
        "ages_format": ages_format,
        "ages_columns": ages_columns,
        "max_stars": max_stars,
        "labels": labels,
        "cuts": cuts,
    }
    return _train_with(data, "skages.training.train_from_files", **_shared_settings(locals()))


train_from_files.__doc__ = (
    """Train the age model on real files: spectra, PSDs and an age table.

    The stars of the age table are matched to the spectra on APOGEE_ID and to the PSDs
    on KIC (the bundled KIC <-> 2MASS cross-match fills the missing id) and cut into
    the paper's training sample (:func:`skages.io.training_sample`); then trained as
    :func:`train_from_survey` does. What ``skages train --spectra --psd --ages`` runs.

    Parameters
    ----------
    spectra : path-like
        HDF5 survey with ``spectra`` and an ``apogee_id`` label (``skages spectra``).
    psd : path-like or None
        HDF5 survey with ``psd`` and a ``kic`` label (``skages psd``); None with a
        trained ``encoder``.
    ages : path-like
        The age table: APOKASC-2 Table 5, or a FITS/ECSV/CSV table
        (:func:`skages.io.read_age_table`).
    ages_format : str, default="auto"
        Format of ``ages`` (:func:`skages.io.read_age_table`).
    ages_columns : dict, optional
        Column mapping of ``ages``, e.g. ``{"age": "Age_Gyr"}``.
    cuts : TrainingCuts, optional
        The sample cuts (default: the paper's, :class:`skages.io.TrainingCuts`).
"""
    + _COMMON_PARAMETERS
)


def train_from_config(
    config: Mapping[str, Any] | str | PathLike,
    *,
    encoder: SpectrumToPSDEncoder | str | PathLike | None = None,
    trusted: bool | Sequence[str] | None = None,
    verbose: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Train the age model from the settings of a ``skages train --config`` file.

    Parameters
    ----------
    config : dict or path-like
        A TOML file (:func:`read_train_config`) or its tables as a dict: ``data``
        (``survey``, or ``spectra``/``psd``/``ages`` with ``ages_format``,
        ``ages_columns``, ``numax_range`` (µHz), ``states``, ``no_cuts``; ``labels``,
        ``max_stars``), ``model`` (``output``, ``overwrite``, ``seed``,
        ``forest_stars``, ``calibration_fraction``, ``test_size``), ``encoder`` and
        ``forest`` (estimator parameters). See :func:`train_from_survey` and
        :func:`train_from_files`.
    encoder : SpectrumToPSDEncoder or path-like, optional
        A trained encoder: only the forest is trained, on top of it.
    trusted : bool or list of str, optional
        As for :func:`load_encoder`.
    verbose : int, default=1
        Progress on stderr when > 0 (an ``[encoder] verbose`` setting wins).
    provenance : dict, optional
        Extra entries for the provenance.

    Returns
    -------
    model : sklearn.pipeline.Pipeline
    provenance : dict
        As :func:`train_from_survey` returns.
    """
    if not isinstance(config, Mapping):
        config = read_train_config(config)
    config = {k: dict(config.get(k) or {}) for k in TRAIN_CONFIG_KEYS}
    return _train(
        config,
        encoder=encoder,
        trusted=trusted,
        verbose=verbose,
        provenance={"command": "skages.training.train_from_config", **(provenance or {})},
    )


def load_encoder(
    path: str | PathLike, *, trusted: bool | Sequence[str] | None = None
) -> SpectrumToPSDEncoder:
    """A fitted encoder from an astroNN model folder or a skages model file.

    Parameters
    ----------
    path : path-like
        An astroNN model folder (``astroNN_VEncoderDecoder/``) or a model file written
        by :func:`skages.persistence.save_model` holding an encoder or an age model.
        A ``.joblib`` file is a pickle: load only files you trust.
    trusted : bool or list of str, optional
        True to load a ``.joblib`` (pickle) file, which runs any code it holds; for a
        ``.skops`` file, extra type names to trust (:func:`skages.persistence.load_model`).

    Returns
    -------
    SpectrumToPSDEncoder
    """
    return _load_encoder(Path(path), trusted=trusted)


#: The keywords that train_from_survey and train_from_files share, beyond their data.
_SHARED = (
    *("output", "overwrite", "restart", "seed", "forest_stars", "calibration_fraction"),
    "test_size",
    *("encoder", "trusted", "encoder_params", "forest_params", "verbose", "provenance"),
)


def _shared_settings(arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {k: arguments[k] for k in _SHARED}


def _train_with(
    data: dict, command: str, *, encoder, trusted, encoder_params, forest_params, verbose,
    provenance, **model: Any,
) -> tuple[Pipeline, dict[str, Any]]:  # fmt: skip
    """One config from a train_from_* call's data and its shared keywords, trained."""
    config = {
        "data": data,
        "model": model,  # the _SHARED settings that are not estimators
        "encoder": dict(encoder_params or {}),
        "forest": dict(forest_params or {}),
    }
    return _train(
        _drop_none(config),
        encoder=encoder,
        trusted=trusted,
        verbose=verbose,
        provenance={"command": command, **(provenance or {})},
    )


def _drop_none(config: dict) -> dict:
    """The config without the ``[data]`` and ``[model]`` entries left at None."""
    for table in ("data", "model"):
        config[table] = {k: v for k, v in config[table].items() if v is not None}
    return config


def _model_output(output: Any, overwrite: bool, stack: contextlib.ExitStack) -> Path:
    """Check the model file's name and folder, and hold its lock for the run."""
    import importlib.util

    from skages._lock import output_lock

    output = Path(output)
    if output.suffix.lower() not in _MODEL_SUFFIXES:
        raise ValueError(f"--output must end in .joblib or .skops; got {output.name!r}")
    if not output.parent.is_dir():
        raise FileNotFoundError(
            f"the folder {output.parent} for the model {output.name} does not exist; create it"
        )
    if output.suffix.lower() == ".skops" and importlib.util.find_spec("skops") is None:
        raise ValueError(
            f"saving the model as {output.name} needs skops, which is not installed: "
            "pip install 'skages[skops]'"
        )
    stack.enter_context(output_lock(output))  # a second run on this output fails at once
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    return output


def _train(
    config: Mapping[str, Any],
    *,
    encoder: Any = None,
    trusted: bool | Sequence[str] | None = None,
    verbose: int = 1,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Train (and save) the age model from a config's tables; see :func:`train_from_config`."""
    with contextlib.ExitStack() as stack:  # holds the output's lock until the model is saved
        return _train_locked(config, stack, encoder, trusted, verbose, provenance)


def _train_locked(config, stack, encoder, trusted, verbose, provenance):
    import numpy as np

    from skages.encoder import SpectrumToPSDEncoder
    from skages.forest import ProbabilisticForestRegressor
    from skages.persistence import save_model, training_summary
    from skages.pipeline import fit_age_model

    data = dict(config.get("data") or {})
    settings = dict(config.get("model") or {})
    output = settings.get("output")
    if output is not None:
        output = _model_output(output, bool(settings.get("overwrite")), stack)
    test_size = settings.get("test_size")
    if test_size is not None and not (
        isinstance(test_size, (int, float)) and 0.0 < float(test_size) < 1.0
    ):
        raise ValueError(f"test_size must be a fraction between 0 and 1; got {test_size!r}")
    seed = int(settings.get("seed", 0))
    calibration_fraction = float(settings.get("calibration_fraction", 0.2))
    enc_params = {"random_state": seed, **(config.get("encoder") or {})}
    enc_params.setdefault("verbose", verbose)
    forest_params = {"random_state": seed, **(config.get("forest") or {})}
    for key, value in enc_params.items():
        if isinstance(value, list):
            enc_params[key] = tuple(value)  # TOML arrays -> the tuples the encoder documents
    checkpoint = None  # the default checkpoint beside the output: a killed run resumes
    if output is not None and encoder is None and "checkpoint_dir" not in enc_params:
        checkpoint = output.with_name(output.name + ".training")
        checkpoint.mkdir(exist_ok=True)
        enc_params["checkpoint_dir"] = str(checkpoint)
        enc_params.setdefault("resume", not bool(settings.get("restart")))
    try:
        new_encoder = SpectrumToPSDEncoder().set_params(**enc_params)
        forest = ProbabilisticForestRegressor().set_params(**forest_params)
    except ValueError as exc:
        raise ValueError(f"invalid encoder/forest setting: {exc}") from exc

    frozen = encoder is not None
    if frozen:
        if config.get("encoder"):
            raise ValueError(
                "--encoder trains the forest only; [encoder] settings would set the "
                "encoder's training"
            )
        if not isinstance(encoder, SpectrumToPSDEncoder):
            encoder_source = str(encoder)
            encoder = _load_encoder(Path(encoder), trusted=trusted)
        else:
            encoder_source = type(encoder).__name__
        spectra, labels, source = _forest_training_data(data)
        psd = weight = None
        source["encoder"] = encoder_source
    else:
        encoder = new_encoder
        spectra, psd, weight, labels, source = _training_data(data)
        _check_psd_grid(psd, source)
    if "log_age" in labels:  # before the encoder's training, not after it
        from skages._ages import training_log_ages

        where = source.get("survey") or source.get("ages") or "the training labels"
        labels["log_age"] = training_log_ages(labels["log_age"], where=where)
    split = None
    if settings.get("test_size"):
        from skages.evaluation import split_record

        keep, split = split_record(labels, test_size=float(settings["test_size"]), seed=seed)
        spectra = spectra[keep]
        psd = None if psd is None else psd[keep]
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
        random_state=seed,
        verbose=enc_params["verbose"],
        freeze_encoder=frozen,
        calibration_fraction=calibration_fraction,
    )
    if checkpoint is not None:  # the saved model does not point at a folder about to go
        from skages.evaluation import _encoder as _fitted_encoder

        for est in (encoder, _fitted_encoder(model)):
            est.set_params(checkpoint_dir=None, resume=True)
    training = training_summary(spectra, y, labels=labels)
    training.update(
        source=source,
        encoder_params={k: _jsonable(v) for k, v in encoder.get_params().items()},
        forest_params={k: _jsonable(v) for k, v in forest.get_params().items()},
        forest_stars=settings.get("forest_stars", "precise"),
        calibration_fraction=calibration_fraction,
        max_stars=data.get("max_stars"),
        split=split,
    )
    training.update(provenance or {})
    if output is not None:
        save_model(model, output, training=training)
    if checkpoint is not None:  # the model is saved: the run's checkpoint has done its job
        shutil.rmtree(checkpoint, ignore_errors=True)
    return model, training


def _sample_cuts(data: Mapping[str, Any]) -> TrainingCuts:
    """The sample cuts of a config's ``[data]`` table (a ``cuts`` object wins)."""
    from skages.io import TrainingCuts

    if data.get("cuts") is not None:
        return data["cuts"]
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


def _ages_columns(items: Any) -> dict[str, str] | None:
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


def _training_data(data: Mapping[str, Any]):
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
        logger.info(
            "training sample: %s", ", ".join(f"{k} {v}" for k, v in sample.summary.items())
        )
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


def _check_psd_grid(psd: Any, source: Any) -> None:
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


def _load_encoder(
    path: Path, *, trusted: bool | Sequence[str] | None = None
) -> SpectrumToPSDEncoder:
    """A fitted encoder from an astroNN model folder or a skages model file."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    from skages.encoder import SpectrumToPSDEncoder
    from skages.persistence import load_model

    if path.is_dir():
        return SpectrumToPSDEncoder.from_astronn(path, output_std=True)
    if not path.exists():
        raise FileNotFoundError(f"no such encoder (astroNN folder or model file): {path}")
    model, _ = load_model(path, trusted=trusted)
    if isinstance(model, Pipeline) and "features" in model.named_steps:
        model = model.named_steps["features"].named_transformers_.get("encoder")
    if isinstance(model, FrozenEstimator):
        model = model.estimator
    if not isinstance(model, SpectrumToPSDEncoder):
        raise ValueError(f"{path} holds no SpectrumToPSDEncoder (found {type(model).__name__})")
    return model


def _forest_training_data(data: Mapping[str, Any]):
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
