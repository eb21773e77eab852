"""The end-to-end demo: simulated survey -> trained age model -> catalogue -> report.

This is what ``skages demo`` (the README's main job) runs. Every step writes its
output atomically and a rerun reuses what an earlier run finished, so an interrupted
demo continues where it stopped.
"""

from __future__ import annotations

import logging
import time
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.utils import Bunch

__all__ = ["DEMO_MAX_EPOCHS", "PAPER_MAX_EPOCHS", "run_demo"]

logger = logging.getLogger(__name__)

#: Encoder epochs of the demo: about 15 minutes of training on 2 CPU cores for the
#: default 10,000 stars.
DEMO_MAX_EPOCHS = 40

#: Encoder epochs of the released model (Leung et al. 2023).
PAPER_MAX_EPOCHS = 150


def _same_model(path: Path, settings: dict[str, Any]) -> bool:
    """Whether a finished model file was trained with these demo settings."""
    from skages.persistence import read_model_metadata

    try:  # the metadata only: a planted file in the output folder never runs code
        metadata = read_model_metadata(path)
    except (ValueError, OSError) as exc:
        logger.warning("cannot reuse %s (%s); training again", path, exc)
        return False
    return (metadata.get("training") or {}).get("demo") == settings


def run_demo(
    output_dir: str | PathLike = "skages-demo",
    *,
    n_stars: int = 10_000,
    max_epochs: int = DEMO_MAX_EPOCHS,
    test_size: float = 0.3,
    n_estimators: int = 100,
    calibration_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    baselines: bool = True,
    n_jobs: int | None = None,
    verbose: int = 1,
    restart: bool = False,
) -> Bunch:
    """Run the whole skages workflow on a simulated survey.

    1. Simulate an APOKASC-like survey of ``n_stars`` stars with spectra, Kepler PSDs
       and labels (:func:`skages.datasets.write_apokasc`) to ``survey.h5``.
    2. Hold out ``test_size`` of the stars, train the encoder on the spectrum-PSD pairs
       of the rest and the forest on their precise ages
       (:func:`skages.training.train_from_survey`), and save ``model.skops``.
    3. Write the age catalogue of the whole survey, in the paper's Table 1 data model
       (:func:`skages.catalogue.predict_catalogue`), to ``catalogue.fits``.
    4. Evaluate the model on the held-out stars with the paper's diagnostics and
       baselines (:func:`skages.evaluation.evaluate_age_model`): ``report/report.md``,
       ``report/metrics.json`` and ``report/figures/*.png``.

    A rerun with the same settings reuses the survey, the model and the finished
    catalogue chunks. One run at a time per folder: the run holds ``<output_dir>.lock``
    (:mod:`skages._lock`), and a second one fails at once naming the first.

    Parameters
    ----------
    output_dir : path-like, default="skages-demo"
        Folder for every output (created).
    n_stars : int, default=10_000
        Stars in the simulated survey (about the paper's 9,769 spectrum-PSD pairs).
    max_epochs : int, default=40
        Encoder epochs. The paper trained for 150; 40 keeps the demo within about 20
        minutes on 2 CPU cores at a modest cost in accuracy (``docs/user_guide/evaluation``).
    test_size : float, default=0.3
        Fraction of the stars held out for the evaluation.
    n_estimators : int, default=100
        Trees of the age forest.
    calibration_fraction : float, default=0.2
        Fraction of the forest's stars held out of the encoder's training to calibrate
        the age uncertainties (:func:`skages.pipeline.fit_age_model`).
    seed : int, default=0
        Seeds the survey, the split, the encoder and the forest.
    device : str, default="cpu"
        PyTorch device of the encoder ("cuda" on a GPU machine).
    baselines : bool, default=True
        Also fit the direct spectrum -> age baseline and the seismic oracle.
    n_jobs : int, optional
        Worker processes of the simulation and threads of the forests.
    verbose : int, default=1
        Progress bars and step messages on stderr when > 0.
    restart : bool, default=False
        Discard the unfinished work of an earlier run (a partial survey, the catalogue
        chunks of another model) instead of resuming it or refusing it.

    Returns
    -------
    Bunch
        ``survey``, ``model``, ``catalogue``, ``report`` (paths), ``metrics`` (the
        evaluation's numbers), ``summary`` (its headline lines) and ``timings``
        (seconds per step).
    """
    from skages._lock import output_lock

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(output_dir, folders=[output_dir]):
        return _demo(
            output_dir, n_stars=n_stars, max_epochs=max_epochs, test_size=test_size,
            n_estimators=n_estimators, calibration_fraction=calibration_fraction, seed=seed,
            device=device, baselines=baselines,
            n_jobs=n_jobs, verbose=verbose, restart=restart,
        )  # fmt: skip


def _demo(
    output_dir: Path, *, n_stars, max_epochs, test_size, n_estimators, calibration_fraction,
    seed, device, baselines, n_jobs, verbose, restart,
) -> Bunch:  # fmt: skip
    """:func:`run_demo` once the folder's lock is held."""
    from sklearn.utils import Bunch

    from skages.catalogue import CatalogueCuts, predict_catalogue
    from skages.datasets import write_apokasc
    from skages.datasets.simulator import _default_settings
    from skages.evaluation import _take, evaluate_age_model, held_out_split, split_record
    from skages.io import SurveyReader, read_survey
    from skages.training import train_from_survey

    paths = Bunch(
        survey=output_dir / "survey.h5",
        model=output_dir / "model.skops",
        catalogue=output_dir / "catalogue.fits",
        report=output_dir / "report" / "report.md",
    )
    timings: dict[str, float] = {}

    def step(message: str) -> float:
        if verbose:
            logger.info("%s", message)
        return time.perf_counter()

    # 1. survey
    t0 = step(f"1/4 simulating {n_stars} stars -> {paths.survey}")
    reuse = False
    if paths.survey.exists():
        # only a survey the demo itself would write: one simulated with other options
        # (e.g. skages simulate --seismic-errors agreement) would change every figure
        with SurveyReader(paths.survey) as reader:
            reuse = reader.metadata.get("settings") == _default_settings(
                n_stars, psd=True
            ) and reader.metadata.get("random_seed") == str(seed)
        if reuse:
            logger.info("reusing the finished survey %s", paths.survey)
        else:
            logger.info("replacing %s: it was simulated with other settings", paths.survey)
    if not reuse:
        options = dict(psd=True, overwrite=True, n_jobs=n_jobs, verbose=verbose)
        if restart:
            write_apokasc(paths.survey, n_stars, restart=True, random_state=seed, **options)
        else:
            try:
                write_apokasc(paths.survey, n_stars, resume=True, random_state=seed, **options)
            except ValueError as exc:  # an unfinished survey of other settings: start afresh
                logger.info("not resuming (%s)", exc)
                write_apokasc(paths.survey, n_stars, restart=True, random_state=seed, **options)
    timings["simulate"] = time.perf_counter() - t0

    # 2. model
    settings = {
        "n_stars": int(n_stars),
        "max_epochs": int(max_epochs),
        "test_size": float(test_size),
        "n_estimators": int(n_estimators),
        "calibration_fraction": float(calibration_fraction),
        "seed": int(seed),
    }
    with SurveyReader(paths.survey) as reader:
        _, split = split_record(reader.read_labels(), test_size=test_size, seed=seed)
    t0 = step(
        f"2/4 training the encoder for {max_epochs} epochs (the paper: {PAPER_MAX_EPOCHS}) on "
        f"{split['n_train']} stars and the forest on their precise ages -> {paths.model}",
    )
    if paths.model.exists() and _same_model(paths.model, settings):
        logger.info("reusing the finished model %s", paths.model)
    else:
        train_from_survey(
            paths.survey,
            output=paths.model,
            overwrite=True,
            encoder_params={"max_epochs": max_epochs, "device": device},
            forest_params={"n_estimators": n_estimators, "n_jobs": n_jobs},
            seed=seed,
            calibration_fraction=calibration_fraction,
            test_size=test_size,
            verbose=verbose,
            provenance={"demo": settings, "command": "skages demo"},
        )
    timings["train"] = time.perf_counter() - t0

    # 3. catalogue
    t0 = step(f"3/4 writing the age catalogue of all {n_stars} stars")
    catalogue = predict_catalogue(
        paths.model,
        paths.survey,
        paths.catalogue,
        overwrite=True,
        restart=restart,
        verbose=verbose,
    )
    timings["predict"] = time.perf_counter() - t0

    # 4. evaluation
    t0 = step("4/4 evaluating on the held-out stars")
    from skages.persistence import load_model

    survey = read_survey(paths.survey, arrays=("spectra", "psd", "psd_weight"))
    model, metadata = load_model(paths.model)
    train_idx, test_idx = held_out_split(metadata["training"], survey.labels)
    report = evaluate_age_model(
        model,
        _take(survey, train_idx),
        _take(survey, test_idx),
        baselines=baselines,
        random_state=seed,
        n_jobs=n_jobs,
        cuts=CatalogueCuts(),
    )
    report.metrics["demo"] = {**settings, "paper_max_epochs": PAPER_MAX_EPOCHS}
    report.write(paths.report.parent)
    timings["evaluate"] = time.perf_counter() - t0
    import matplotlib.pyplot as plt

    plt.close("all")
    return Bunch(
        **paths,
        n_catalogue=catalogue.n_rows,
        metrics=report.metrics,
        summary=report.summary(),
        timings=timings,
    )
