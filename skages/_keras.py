"""Weight layouts of astroNN's Keras ``ApokascEncoderDecoder`` and of :mod:`skages._ved`.

Pure NumPy and low in the package, so that both :mod:`skages.io.astronn` (files) and the
encoder (estimators) may use it. Each skages module parameter maps to one astroNN (Keras)
weight, with the axis order that turns the Keras layout into PyTorch's: Conv1D kernels are
(k, in, out) in Keras and (out, in, k) in PyTorch; Conv1DTranspose kernels (k, out, in) and
(in, out, k); Dense kernels (in, out) and (out, in). Both flatten position-major,
channel-minor, so the dense layers need no reordering.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ASTRONN_MAGIC", "keras_names", "keras_to_state", "state_to_keras"]

#: astroNN's magic number for missing values (astroNN.config.MAGIC_NUMBER)
ASTRONN_MAGIC = -9999.0


def keras_names(n_encoder: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """skages parameter prefix -> (astroNN layer name, axis permutation)."""
    names = {}
    for i in range(n_encoder):
        names[f"encoder_convs.{i}"] = (f"encoder_conv{i}", (2, 1, 0))
    names["hidden"] = ("hidden", (1, 0))
    names["latent_mean"] = ("latent_mean", (1, 0))
    names["latent_logvar"] = ("latent_logvar", (1, 0))
    names["decoder_input"] = ("decoder_dense", (1, 0))
    for i in range(2):
        names[f"decoder_convs.{i}"] = (f"decoder_conv{i}", (2, 1, 0))
    names["output_conv"] = ("output", (2, 1, 0))
    return names


def keras_to_state(weights: dict[str, np.ndarray], n_encoder: int) -> dict[str, np.ndarray]:
    """Keras-layout weights (skages.io.astronn names) -> the module's state dict."""
    state = {}
    for ours, (theirs, axes) in keras_names(n_encoder).items():
        state[f"{ours}.weight"] = np.ascontiguousarray(
            np.transpose(weights[f"{theirs}/kernel"], axes)
        )
        state[f"{ours}.bias"] = np.asarray(weights[f"{theirs}/bias"])
    return state


def state_to_keras(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The module's state dict -> Keras-layout weights (skages.io.astronn names)."""
    n_encoder = len({k.split(".")[1] for k in state if k.startswith("encoder_convs.")})
    weights = {}
    for ours, (theirs, axes) in keras_names(n_encoder).items():
        # every permutation used here is its own inverse
        weights[f"{theirs}/kernel"] = np.ascontiguousarray(
            np.transpose(state[f"{ours}.weight"], axes)
        )
        weights[f"{theirs}/bias"] = np.asarray(state[f"{ours}.bias"])
    return weights
