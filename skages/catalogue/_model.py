"""The fitted model as the catalogue calls it: loading, identity, encoder and forest."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skages.catalogue._columns import INTERVAL_PROBABILITIES
from skages.forest import _oob_calibrated


class _Predictor:
    """The pieces of a fitted age Pipeline that the catalogue calls, checked once.

    Calling the encoder and the forest directly (rather than the Pipeline on a
    7518-column DataFrame) skips building that frame for every chunk, which costs as
    much as reading the spectra; the features are the same, column for column.
    """

    def __init__(self, model: Any) -> None:
        from sklearn.frozen import FrozenEstimator
        from sklearn.pipeline import Pipeline
        from sklearn.utils.validation import check_is_fitted

        from skages.encoder import SpectrumToPSDEncoder

        help_ = (
            "model must be the fitted age Pipeline of skages.pipeline.fit_age_model / "
            "make_age_pipeline (steps 'features' with an 'encoder', and 'forest')"
        )
        if isinstance(model, SpectrumToPSDEncoder):  # latent-only catalogue
            check_is_fitted(model, "net_")
            self.model = self.encoder = model
            self.forest = None
            self.feature_names = self.latent_names = []
            self.label_names = []
            self.latent_dim = int(model.latent_dim)
            self.n_pixels = int(model.n_features_in_)
            self.reference = getattr(model, "mean_", None)
            if not model.output_std:
                raise TypeError("the encoder of a latent catalogue needs output_std=True")
            return
        if not isinstance(model, Pipeline) or "features" not in model.named_steps:
            raise TypeError(f"{help_}; got {type(model).__name__}")
        features = model.named_steps["features"]
        check_is_fitted(model[-1])
        encoder = getattr(features, "named_transformers_", {}).get("encoder")
        if isinstance(encoder, FrozenEstimator):
            encoder = encoder.estimator
        if not isinstance(encoder, SpectrumToPSDEncoder):
            raise TypeError(f"{help_}; its 'features' step has no fitted encoder")
        forest = model[-1]
        names = list(getattr(forest, "feature_names_in_", []))
        latent = [f"encoder__{n}" for n in encoder.get_feature_names_out()]
        if not encoder.output_std or not set(latent) <= set(names):
            raise TypeError(f"{help_}; the forest does not read the encoder's latent σ")
        labels = [n.removeprefix("passthrough__") for n in names if n not in latent]
        if any(n.startswith(("encoder__", "features__")) for n in labels):
            raise TypeError(f"{help_}; unexpected forest inputs {labels}")
        self.model = model
        self.encoder = encoder
        self.forest = forest
        self.feature_names = names
        self.latent_names = latent
        self.label_names = labels
        self.latent_dim = int(encoder.latent_dim)
        self.n_pixels = int(encoder.n_features_in_)
        self.reference = getattr(encoder, "mean_", None)  # training mean spectrum

    def latent(self, spectra: np.ndarray) -> np.ndarray:
        """(n, 2 * latent_dim) float32: latent means then σ.

        The spectra go in as an array: scikit-learn's checks of a 7514-column DataFrame
        cost ~60 ms a call (per-column dtype checks), 10 % of a 1024-star chunk. Their
        width was checked against the encoder's when they were read.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "X does not have valid feature names")
            return np.asarray(self.encoder.transform(spectra))  # a DataFrame under set_output

    def ages(self, latent: np.ndarray, labels: pd.DataFrame) -> tuple[np.ndarray, ...]:
        """log10 age (log10 Gyr), its 1σ, the bounds of its central 68 % interval (log10
        Gyr; NaN for a forest without calibrated out-of-bag residuals) and the
        applicability score (NaN if the forest has none) from latent outputs and labels."""

        data = {n: latent[:, k] for k, n in enumerate(self.latent_names)}
        for name in self.label_names:
            data[f"passthrough__{name}"] = labels[name].to_numpy(dtype=np.float64)
        frame = pd.DataFrame({n: data[n] for n in self.feature_names})
        bounds = np.full((len(frame), 2), np.nan)
        if _oob_calibrated(self.forest):
            mean, std, bounds = self.forest.predict(
                frame, return_std=True, quantiles=INTERVAL_PROBABILITIES
            )
        else:
            mean, std = self.forest.predict(frame, return_std=True)
        score = np.full(len(frame), np.nan)
        if getattr(self.forest, "applicability_", None) is not None:
            score = self.forest.applicability(frame)
        return (
            np.asarray(mean, dtype=np.float64),
            np.asarray(std, dtype=np.float64),
            np.asarray(bounds[:, 0], dtype=np.float64),
            np.asarray(bounds[:, 1], dtype=np.float64),
            np.asarray(score, dtype=np.float64),
        )


def _model_id(model: Any, path: Path | None) -> dict[str, Any]:
    if path is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return {"model": path.name, "model_sha256": digest.hexdigest()}
    import joblib

    return {"model": type(model).__name__, "model_sha256": "joblib:" + joblib.hash(model)}


def _encoder_class() -> type:
    from skages.encoder import SpectrumToPSDEncoder

    return SpectrumToPSDEncoder


def _load(
    model: Any, trusted: bool | Sequence[str] | None = None
) -> tuple[Any, Path | None, dict]:
    if isinstance(model, (str, os.PathLike)):
        from skages.persistence import load_model

        path = Path(model)
        if path.is_dir():  # an astroNN model folder
            from skages.io.astronn import WEIGHTS_FILE

            fitted = _encoder_class().from_astronn(path, output_std=True)
            return fitted, path / WEIGHTS_FILE, {"source": "astroNN folder"}
        fitted, meta = load_model(path, trusted=trusted)
        return fitted, path, meta
    return model, None, {}
