"""astroNN model folders: the format in which the published model of Leung et al. (2023) ships.

astroNN 1.x (on Keras 2 / TensorFlow <= 2.15) saves an ``ApokascEncoderDecoder`` as a
folder (``astroNN_VEncoderDecoder/`` for the published model) of three files:

* ``model_weights.h5``: the Keras HDF5 model file. Its root attributes hold the Keras
  model configuration (``model_config``) and the compile settings (``training_config``);
  the group ``model_weights`` holds one group per layer of the variational
  encoder-decoder, the decoder being a nested model named ``output``;
* ``astroNN_model_parameter.json``: the hyperparameters (``filternum``, ``filterlen``,
  ``hidden``, ``pool_length``, ``latent``, ``input``, ``labels``, ...) and the per-pixel
  mean and standard deviation of the training spectra (``input_mean``, ``input_std``);
* ``hyperparameter.txt``: a human-readable record of the training settings.

:func:`read_astronn_model` reads such a folder with h5py alone (no TensorFlow, no
astroNN) into an :class:`AstroNNModel` whose weights keep Keras' names and layouts;
:func:`write_astronn_model` writes one that astroNN's ``load_folder`` reads.
:meth:`skages.encoder.SpectrumToPSDEncoder.from_astronn` and
:meth:`~skages.encoder.SpectrumToPSDEncoder.to_astronn` convert between that and
skages' network. Nothing in a folder is executed: the configuration is JSON and only
its numbers are used.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skages._atomic import atomic_path

__all__ = [
    "ASTRONN_FILES",
    "ASTRONN_MODEL_ID",
    "AstroNNModel",
    "read_astronn_model",
    "write_astronn_model",
]

#: The astroNN model class whose folders skages reads and writes.
ASTRONN_MODEL_ID = "ApokascEncoderDecoder"
#: The files of an astroNN model folder.
WEIGHTS_FILE = "model_weights.h5"
PARAMETER_FILE = "astroNN_model_parameter.json"
HYPERPARAMETER_FILE = "hyperparameter.txt"
ASTRONN_FILES = (WEIGHTS_FILE, PARAMETER_FILE, HYPERPARAMETER_FILE)
#: Keras version written into the files (the last Keras 2, which astroNN 1.1.0 runs on).
_KERAS_VERSION = "2.15.0"
_L2 = 9.999999747378752e-06  # float32(1e-5) as Keras writes it

# weight names, in Keras layout:
#   encoder_conv{i}/kernel (kernel, in, out), /bias (out,)
#   hidden/kernel (flat, hidden), latent_mean/..., latent_logvar/... (hidden, latent)
#   decoder_dense/kernel (latent, positions * channels)
#   decoder_conv{i}/kernel (kernel, out, in)  [Conv1DTranspose], output/kernel (kernel, 1, in)


def _conv_length(length: int) -> int:
    """Output length of a stride-2 "same" convolution: ``ceil(length / 2)``."""
    return -(-length // 2)


@dataclass
class AstroNNModel:
    """Contents of an astroNN ``ApokascEncoderDecoder`` folder, in Keras' layout.

    Attributes
    ----------
    n_pixels : int
        Length of the input spectra (pixels).
    n_psd : int
        Length of the decoded PSD (pixels).
    latent_dim : int
    encoder_filters : tuple of int
        Filters of the two stride-2 encoder convolutions (``filternum[:2]``).
    encoder_kernel_size : int
        ``filterlen[0]`` (pixels).
    pool_size : int
        ``pool_length``.
    hidden_units : int
        Width of the encoder's dense tanh layer (``hidden[0]``).
    decoder_channels : int
        Channels of the decoder's reshaped dense output (``hidden[1]``).
    decoder_filters : tuple of int
        Filters of the two stride-2 transposed convolutions (``filternum[2:]``).
    decoder_kernel_size : int
        ``filterlen[1]`` (pixels).
    input_mean, input_std : ndarray of shape (n_pixels,)
        Per-pixel mean and standard deviation of the training spectra (continuum-
        normalised flux) used to standardise the input.
    weights : dict of str to ndarray
        Keras-layout weights under skages' layer names: ``encoder_conv0/kernel``
        (kernel, in, out), ``encoder_conv0/bias``, ``encoder_conv1/...``,
        ``hidden/...`` (flat, hidden), ``latent_mean/...``, ``latent_logvar/...``,
        ``decoder_dense/...`` (latent, positions × channels), ``decoder_conv0/kernel``
        (kernel, out, in), ``decoder_conv1/...``, ``output/kernel`` (kernel, 1, in).
    parameters : dict
        The other entries of ``astroNN_model_parameter.json`` (``batch_size``, ``l1``,
        ``l2``, ``valsize``, ...), as read.
    training : dict
        Training settings for ``hyperparameter.txt`` and the optimiser configuration:
        ``lr``, ``epsilon``, ``max_epochs``, ``n_train``, ``n_valid``.
    source : str
        Where the model came from (the folder read, or the writer).
    """

    n_pixels: int
    n_psd: int
    latent_dim: int
    encoder_filters: tuple[int, int]
    encoder_kernel_size: int
    pool_size: int
    hidden_units: int
    decoder_channels: int
    decoder_filters: tuple[int, int]
    decoder_kernel_size: int
    input_mean: np.ndarray
    input_std: np.ndarray
    weights: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def base_length(self) -> int:
        """Positions of the decoder's reshaped dense output (``n_psd // 4`` in astroNN)."""
        return self.n_psd // 4

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Keras-layout shape of every weight, from the architecture."""
        length = _conv_length(_conv_length(self.n_pixels))
        flat = (length // self.pool_size) * self.encoder_filters[1]
        f0, f1 = self.encoder_filters
        d0, d1 = self.decoder_filters
        k, kd = self.encoder_kernel_size, self.decoder_kernel_size
        shapes = {
            "encoder_conv0/kernel": (k, 1, f0),
            "encoder_conv0/bias": (f0,),
            "encoder_conv1/kernel": (k, f0, f1),
            "encoder_conv1/bias": (f1,),
            "hidden/kernel": (flat, self.hidden_units),
            "hidden/bias": (self.hidden_units,),
            "latent_mean/kernel": (self.hidden_units, self.latent_dim),
            "latent_mean/bias": (self.latent_dim,),
            "latent_logvar/kernel": (self.hidden_units, self.latent_dim),
            "latent_logvar/bias": (self.latent_dim,),
            "decoder_dense/kernel": (self.latent_dim, self.base_length * self.decoder_channels),
            "decoder_dense/bias": (self.base_length * self.decoder_channels,),
            "decoder_conv0/kernel": (kd, d0, self.decoder_channels),
            "decoder_conv0/bias": (d0,),
            "decoder_conv1/kernel": (kd, d1, d0),
            "decoder_conv1/bias": (d1,),
            "output/kernel": (kd, 1, d1),
            "output/bias": (1,),
        }
        return shapes


# ------------------------------------------------------------------------------ reading


def _folder_files(path: str | os.PathLike) -> Path:
    folder = Path(path)
    if folder.is_file() and folder.name in ASTRONN_FILES:
        folder = folder.parent
    if not folder.exists():
        raise FileNotFoundError(f"astroNN model folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(
            f"{folder} is not an astroNN model folder (a directory holding "
            f"{', '.join(ASTRONN_FILES)})"
        )
    missing = [name for name in (WEIGHTS_FILE, PARAMETER_FILE) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete astroNN model folder: {', '.join(missing)} "
            f"missing (an astroNN folder holds {', '.join(ASTRONN_FILES)})"
        )
    return folder


def _positive_int(value: Any, key: str, file: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{file}: {key} must be a positive integer, got {value!r}")
    return int(value)


def _int_list(params: dict, key: str, n: int, file: Path) -> list[int]:
    value = params.get(key)
    if not isinstance(value, list) or len(value) != n:
        raise ValueError(
            f"{file}: {key} must be a list of {n} integers for an {ASTRONN_MODEL_ID}, "
            f"got {value!r}"
        )
    return [_positive_int(v, f"{key}[{i}]", file) for i, v in enumerate(value)]


def _named(params: dict, key: str, name: str, file: Path) -> Any:
    value = params.get(key)
    if value is None:
        raise ValueError(f"{file} has no {key!r} entry")
    if isinstance(value, dict):
        if name not in value:
            raise ValueError(f"{file}: {key} has no {name!r} entry, only {sorted(value)}")
        value = value[name]
    return value


def _read_parameters(folder: Path) -> dict:
    file = folder / PARAMETER_FILE
    try:
        with open(file, encoding="utf-8") as f:
            params = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(params).__name__}")
    model_id = params.get("id")
    if model_id != ASTRONN_MODEL_ID:
        raise ValueError(
            f"{file} describes an astroNN {model_id!r} model; skages reads only "
            f"{ASTRONN_MODEL_ID} folders (the variational encoder-decoder of Leung et al. 2023)"
        )
    return params


def _decode(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _layer_names(config: dict, cls: str) -> list[str]:
    return [layer["name"] for layer in config["layers"] if layer.get("class_name") == cls]


def _read_h5(folder: Path, model: AstroNNModel) -> None:
    import h5py

    from skages.io.survey import _check_self_contained

    file = folder / WEIGHTS_FILE
    try:
        h5 = h5py.File(file, "r")
    except OSError as exc:
        raise ValueError(f"{file} is not an HDF5 file ({exc})") from None
    with h5:
        _check_self_contained(h5, file)  # no weights from other files (links, storage)
        version = _decode(h5.attrs.get("keras_version", "")).replace("-tf", "")
        if version and not version.startswith("2."):
            raise ValueError(
                f"{file} was written by Keras {version}; skages reads the Keras 2 HDF5 "
                "layout of astroNN 1.x (TensorFlow <= 2.15). Re-save the model with "
                "astroNN 1.1 on TensorFlow 2.15, or export it with to_astronn from skages"
            )
        if "model_weights" not in h5:
            layout = "the Keras 3 '.weights.h5' layout" if "layers" in h5 else "no such group"
            raise ValueError(
                f"{file} has no 'model_weights' group ({layout}); expected the Keras 2 "
                "HDF5 model file that astroNN 1.x writes"
            )
        if "model_config" not in h5.attrs:
            raise ValueError(f"{file} has no 'model_config' attribute (Keras model configuration)")
        try:
            config = json.loads(_decode(h5.attrs["model_config"]))["config"]
            layers = config["layers"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{file}: cannot read its 'model_config' attribute ({exc})") from None
        decoders = [layer for layer in layers if layer.get("class_name") == "Functional"]
        if len(decoders) != 1:
            raise ValueError(
                f"{file}: expected the decoder as one nested model in 'model_config', found "
                f"{len(decoders)}"
            )
        decoder = decoders[0]["config"]
        convs = _layer_names(config, "Conv1D")
        dense = [n for n in _layer_names(config, "Dense") if n not in ("z_mean", "z_log_var")]
        dec_dense = _layer_names(decoder, "Dense")
        deconvs = _layer_names(decoder, "Conv1DTranspose")
        if len(convs) != 2 or len(dense) != 1 or len(dec_dense) != 1 or len(deconvs) != 3:
            raise ValueError(
                f"{file}: its layers are not those of an {ASTRONN_MODEL_ID} (expected 2 "
                f"Conv1D, 3 Dense and a decoder of 1 Dense and 3 Conv1DTranspose; found "
                f"{len(convs)} Conv1D, {len(dense) + 2} Dense, and {len(dec_dense)} Dense "
                f"and {len(deconvs)} Conv1DTranspose in the decoder)"
            )
        mw = h5["model_weights"]
        top = {
            "encoder_conv0": (convs[0], convs[0]),
            "encoder_conv1": (convs[1], convs[1]),
            "hidden": (dense[0], dense[0]),
            "latent_mean": ("z_mean", "z_mean"),
            "latent_logvar": ("z_log_var", "z_log_var"),
        }
        dname = decoders[0]["name"]
        nested = {
            "decoder_dense": (dname, dec_dense[0]),
            "decoder_conv0": (dname, deconvs[0]),
            "decoder_conv1": (dname, deconvs[1]),
            "output": (dname, deconvs[2]),
        }
        shapes = model.expected_shapes()
        for ours, (group, layer) in {**top, **nested}.items():
            if group not in mw:
                raise ValueError(f"{file}: model_weights has no group {group!r}")
            names = [_decode(n) for n in mw[group].attrs.get("weight_names", [])]
            for kind in ("kernel", "bias"):
                matches = [n for n in names if n.startswith(f"{layer}/{kind}")]
                if len(matches) != 1:
                    raise ValueError(
                        f"{file}: model_weights/{group} lists no {layer}/{kind} weight "
                        f"(weight_names {names})"
                    )
                key = f"model_weights/{group}/{matches[0]}"
                if key not in h5:
                    raise ValueError(f"{file}: dataset {key} is missing")
                value = np.asarray(h5[key], dtype=np.float32)
                expected = shapes[f"{ours}/{kind}"]
                if value.shape != expected:
                    raise ValueError(
                        f"{file}: {key} has shape {value.shape}, but the architecture in "
                        f"{PARAMETER_FILE} needs {expected}"
                    )
                model.weights[f"{ours}/{kind}"] = value
        try:
            optimizer = json.loads(_decode(h5.attrs["training_config"]))["optimizer_config"]
            model.training.setdefault("lr", float(optimizer["config"]["learning_rate"]))
            model.training.setdefault("epsilon", float(optimizer["config"]["epsilon"]))
        except (KeyError, ValueError, TypeError):
            pass


def _read_hyperparameters(folder: Path) -> dict[str, Any]:
    file = folder / HYPERPARAMETER_FILE
    out: dict[str, Any] = {}
    if not file.is_file():
        return out
    keys = {
        "Maximum Epochs": ("max_epochs", int),
        "Learning Rate": ("lr", float),
        "Number of Training Data": ("n_train", int),
        "Number of Validation Data": ("n_valid", int),
    }
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip() in keys:
            key, kind = keys[name.strip()]
            with contextlib.suppress(ValueError):
                out[key] = kind(value.strip())
    return out


def read_astronn_model(path: str | os.PathLike) -> AstroNNModel:
    """Read an astroNN ``ApokascEncoderDecoder`` model folder (h5py only).

    Parameters
    ----------
    path : path-like
        The folder (e.g. ``astroNN_VEncoderDecoder/``) or one of its files.

    Returns
    -------
    AstroNNModel
        Architecture, input standardisation and Keras-layout weights.

    Raises
    ------
    FileNotFoundError
        The folder or one of ``model_weights.h5`` / ``astroNN_model_parameter.json``
        is missing.
    ValueError
        Another astroNN model type, a newer (Keras 3) layout, an architecture skages'
        network cannot represent, or a weight of the wrong shape; the message names the
        file and what is wrong.
    """
    folder = _folder_files(path)
    file = folder / PARAMETER_FILE
    params = _read_parameters(folder)
    filternum = _int_list(params, "filternum", 4, file)
    filterlen = _int_list(params, "filterlen", 2, file)
    hidden = _int_list(params, "hidden", 2, file)
    shape_in = _named(params, "input", "input", file)
    if not isinstance(shape_in, list) or len(shape_in) != 2 or shape_in[1] != 1:
        raise ValueError(f"{file}: input must be [n_pixels, 1], got {shape_in!r}")
    n_pixels = _positive_int(shape_in[0], "input", file)
    n_psd = _positive_int(_named(params, "labels", "output", file), "labels", file)
    if n_psd % 4:
        raise ValueError(
            f"{file}: labels = {n_psd} PSD pixels; an {ASTRONN_MODEL_ID} decodes "
            "4 × (labels // 4) pixels, so labels must be a multiple of 4"
        )
    if params.get("activation", "relu") != "relu":
        raise ValueError(
            f"{file}: activation {params.get('activation')!r}; skages' network uses relu"
        )
    if hidden[1] != filternum[2]:
        raise ValueError(
            f"{file}: hidden[1] = {hidden[1]} decoder channels differ from filternum[2] = "
            f"{filternum[2]}; skages' decoder has one number for both (decoder_filters[0])"
        )
    for key, name, expected in (
        ("labels_mean", "output", 0.0),
        ("labels_std", "output", 1.0),
    ):
        value = np.asarray(_named(params, key, name, file), dtype=np.float64).ravel()
        if not np.all(value == expected):
            raise ValueError(
                f"{file}: {key} is not {expected} (the PSDs were normalised); skages' decoder "
                "outputs the PSD itself, so only labels_norm_mode '0' is supported"
            )
    stats = []
    for key in ("input_mean", "input_std"):
        value = np.asarray(_named(params, key, "input", file), dtype=np.float64).ravel()
        if value.size == 1:
            value = np.full(n_pixels, value[0])
        if value.shape != (n_pixels,):
            raise ValueError(
                f"{file}: {key} has {value.size} values, expected 1 or {n_pixels} (input)"
            )
        stats.append(value)
    mean, std = stats
    if not np.all(np.isfinite(mean)):
        raise ValueError(f"{file}: input_mean holds non-finite values")
    if np.any(~(std > 0)):
        raise ValueError(
            f"{file}: input_std holds {int(np.sum(~(std > 0)))} non-positive or NaN values"
        )
    known = {"filternum", "filterlen", "hidden", "input", "labels", "input_mean", "input_std"}
    model = AstroNNModel(
        n_pixels=n_pixels,
        n_psd=n_psd,
        latent_dim=_positive_int(params.get("latent"), "latent", file),
        encoder_filters=(filternum[0], filternum[1]),
        encoder_kernel_size=filterlen[0],
        pool_size=_positive_int(params.get("pool_length"), "pool_length", file),
        hidden_units=hidden[0],
        decoder_channels=hidden[1],
        decoder_filters=(filternum[2], filternum[3]),
        decoder_kernel_size=filterlen[1],
        input_mean=mean,
        input_std=std,
        weights={},
        parameters={k: v for k, v in params.items() if k not in known},
        training=_read_hyperparameters(folder),
        source=str(folder),
    )
    length = _conv_length(_conv_length(n_pixels))
    if length // model.pool_size < 1:
        raise ValueError(f"{file}: input of {n_pixels} pixels is too short for this encoder")
    _read_h5(folder, model)
    return model


# ------------------------------------------------------------------------------ writing

_GLOROT = {
    "module": "keras.initializers",
    "class_name": "GlorotUniform",
    "config": {"seed": None},
    "registered_name": None,
}
_ZEROS = {
    "module": "keras.initializers",
    "class_name": "Zeros",
    "config": {},
    "registered_name": None,
}


def _regularised(config: dict) -> dict:
    return {
        **config,
        "kernel_initializer": _GLOROT,
        "bias_initializer": _ZEROS,
        "kernel_regularizer": {
            "module": "keras.regularizers",
            "class_name": "L2",
            "config": {"l2": _L2},
            "registered_name": None,
        },
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }


def _layer(cls: str, name: str, inbound: list, **config: Any) -> dict:
    base = {"name": name, "trainable": True, "dtype": "float32"}
    if cls in ("Conv1D", "Conv1DTranspose", "Dense"):
        body = _regularised({**base, **config})
        if cls == "Conv1DTranspose":
            body["output_padding"] = None
    else:
        body = {**base, **config}
    return {
        "class_name": cls,
        "config": body,
        "name": name,
        "inbound_nodes": [[[n, 0, 0, {}] for n in inbound]] if inbound else [],
    }


def _input_layer(name: str, shape: list) -> dict:
    return {
        "class_name": "InputLayer",
        "config": {
            "batch_input_shape": [None, *shape],
            "dtype": "float32",
            "sparse": False,
            "ragged": False,
            "name": name,
        },
        "name": name,
        "inbound_nodes": [],
    }


def _conv(filters: int, size: int, stride: int, activation: str) -> dict:
    return {
        "filters": filters,
        "kernel_size": [size],
        "strides": [stride],
        "padding": "same",
        "data_format": "channels_last",
        "dilation_rate": [1],
        "groups": 1,
        "activation": activation,
        "use_bias": True,
    }


def _model_config(m: AstroNNModel) -> dict:
    """The Keras ``model_config`` that astroNN 1.1.0 writes for this architecture."""
    dense = {"use_bias": True}
    f0, f1 = m.encoder_filters
    d0, d1 = m.decoder_filters
    encoder = [
        _input_layer("input", [m.n_pixels, 1]),
        _layer("Conv1D", "conv1d", ["input"], **_conv(f0, m.encoder_kernel_size, 2, "relu")),
        _layer("Dropout", "dropout", ["conv1d"], rate=0.0, noise_shape=None, seed=None),
        _layer("Conv1D", "conv1d_1", ["dropout"], **_conv(f1, m.encoder_kernel_size, 2, "relu")),
        _layer(
            "MaxPooling1D",
            "max_pooling1d",
            ["conv1d_1"],
            strides=[m.pool_size],
            pool_size=[m.pool_size],
            padding="valid",
            data_format="channels_last",
        ),
        _layer("Dropout", "dropout_1", ["max_pooling1d"], rate=0.0, noise_shape=None, seed=None),
        _layer("Flatten", "flatten", ["dropout_1"], data_format="channels_last"),
        _layer("Dense", "dense", ["flatten"], units=m.hidden_units, activation="tanh", **dense),
        _layer("Dense", "z_mean", ["dense"], units=m.latent_dim, activation="linear", **dense),
        _layer("Dense", "z_log_var", ["dense"], units=m.latent_dim, activation="linear", **dense),
    ]
    sampling = _layer("VAESampling", "VAESampling_1", ["z_mean", "z_log_var"])
    sampling["config"] = {"name": "VAESampling_1", "trainable": True, "dtype": "float32"}
    kd = m.decoder_kernel_size
    decoder_layers = [
        _input_layer("decoder_input", [m.latent_dim]),
        _layer(
            "Dense",
            "dense_1",
            ["decoder_input"],
            units=m.base_length * m.decoder_channels,
            activation="relu",
            **dense,
        ),
        _layer("Dropout", "dropout_2", ["dense_1"], rate=0.0, noise_shape=None, seed=None),
        _layer(
            "Reshape", "reshape", ["dropout_2"], target_shape=[m.base_length, m.decoder_channels]
        ),
        _layer("Conv1DTranspose", "conv1d_transpose", ["reshape"], **_conv(d0, kd, 2, "relu")),
        _layer(
            "Dropout", "dropout_3", ["conv1d_transpose"], rate=0.0, noise_shape=None, seed=None
        ),
        _layer("Conv1DTranspose", "conv1d_transpose_1", ["dropout_3"], **_conv(d1, kd, 2, "relu")),
        _layer(
            "Dropout", "dropout_4", ["conv1d_transpose_1"], rate=0.0, noise_shape=None, seed=None
        ),
        _layer("Conv1DTranspose", "output", ["dropout_4"], **_conv(1, kd, 1, "linear")),
    ]
    decoder = {
        "class_name": "Functional",
        "config": {
            "name": "output",
            "trainable": True,
            "layers": decoder_layers,
            "input_layers": [["decoder_input", 0, 0]],
            "output_layers": [["output", 0, 0]],
        },
        "name": "output",
        "inbound_nodes": [[["VAESampling_1", 0, 0, {}]]],
    }
    return {
        "class_name": "Functional",
        "config": {
            "name": "model",
            "trainable": True,
            "layers": [*encoder, sampling, decoder],
            "input_layers": [["input", 0, 0]],
            "output_layers": [["output", 1, 0]],
        },
    }


def _training_config(m: AstroNNModel) -> dict:
    return {
        "loss": "mean_squared_reconstruction_error",
        "metrics": [[]],
        "weighted_metrics": None,
        "loss_weights": None,
        "optimizer_config": {
            "class_name": "Custom>Adam",
            "config": {
                "name": "Adam",
                "weight_decay": None,
                "clipnorm": None,
                "global_clipnorm": None,
                "clipvalue": None,
                "use_ema": False,
                "ema_momentum": 0.99,
                "ema_overwrite_frequency": None,
                "jit_compile": False,
                "is_legacy_optimizer": False,
                "learning_rate": float(np.float32(m.training.get("lr", 5e-4))),
                "beta_1": 0.9,
                "beta_2": 0.999,
                "epsilon": float(m.training.get("epsilon", 1e-7)),
                "amsgrad": False,
            },
        },
    }


# (group in model_weights, layer name, skages name) in Keras' layer order
_H5_LAYOUT = [
    ("conv1d", "conv1d", "encoder_conv0"),
    ("conv1d_1", "conv1d_1", "encoder_conv1"),
    ("dense", "dense", "hidden"),
    ("z_mean", "z_mean", "latent_mean"),
    ("z_log_var", "z_log_var", "latent_logvar"),
    ("output", "dense_1", "decoder_dense"),
    ("output", "conv1d_transpose", "decoder_conv0"),
    ("output", "conv1d_transpose_1", "decoder_conv1"),
    ("output", "output", "output"),
]
_LAYER_NAMES = [
    "input",
    "conv1d",
    "dropout",
    "conv1d_1",
    "max_pooling1d",
    "dropout_1",
    "flatten",
    "dense",
    "z_mean",
    "z_log_var",
    "VAESampling_1",
    "output",
]


def _write_h5(file: Path, m: AstroNNModel) -> None:
    import h5py

    strings = h5py.string_dtype()
    with h5py.File(file, "w") as h5:
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["keras_version"] = _KERAS_VERSION
        h5.attrs["model_config"] = json.dumps(_model_config(m))
        h5.attrs["training_config"] = json.dumps(_training_config(m))
        mw = h5.create_group("model_weights")
        mw.attrs["backend"] = "tensorflow"
        mw.attrs["keras_version"] = _KERAS_VERSION
        mw.attrs["layer_names"] = np.array(_LAYER_NAMES, dtype=strings)
        names: dict[str, list[str]] = {name: [] for name in _LAYER_NAMES}
        names["top_level_model_weights"] = []
        for group, layer, ours in _H5_LAYOUT:
            for kind in ("kernel", "bias"):
                key = f"{layer}/{kind}:0"
                names[group].append(key)
                mw.create_dataset(
                    f"{group}/{key}", data=np.asarray(m.weights[f"{ours}/{kind}"], np.float32)
                )
        for group, weight_names in names.items():
            g = mw.require_group(group)
            g.attrs["weight_names"] = (
                np.array(weight_names, dtype=strings) if weight_names else np.zeros(0)
            )


def _hyperparameter_text(m: AstroNNModel, folder_name: str) -> str:
    from skages._version import __version__

    t = m.training
    lines = [
        "Model: Convolutional Variational Autoencoder",
        "Model Type: CVAE",
        f"astroNN identifier: {ASTRONN_MODEL_ID}",
        f"Python Version: {platform.python_version()}",
        "astroNN Version: 1.1.0 (folder layout)",
        f"Keras Version: {_KERAS_VERSION} (file layout)",
        f"Written by: skages {__version__}",
        f"Folder Name: {folder_name}",
        f"Batch size: {m.parameters.get('batch_size', 128)}",
        "Optimizer: Adam",
        f"Maximum Epochs: {t.get('max_epochs', 0)}",
        f"Learning Rate: {t.get('lr', 5e-4)}",
        f"Validation Size: {m.parameters.get('valsize', 0.0)}",
        f"Input Shape: {{'input': ({m.n_pixels}, 1)}}",
        f"Label Shape: {{'output': {m.n_psd}}}",
        f"Number of Training Data: {t.get('n_train', 0)}",
        f"Number of Validation Data: {t.get('n_valid', 0)}",
        f"Dropout Rate: {m.parameters.get('dropout_rate', 0.0)}",
    ]
    return "".join(f"{line} \n" for line in lines)


def _parameter_json(m: AstroNNModel) -> dict:
    p = m.parameters
    return {
        "activation": "relu",
        "batch_size": int(p.get("batch_size", 128)),
        "dropout_rate": float(p.get("dropout_rate", 0.0)),
        "filterlen": [m.encoder_kernel_size, m.decoder_kernel_size],
        "filternum": [*m.encoder_filters, *m.decoder_filters],
        "hidden": [m.hidden_units, m.decoder_channels],
        "id": ASTRONN_MODEL_ID,
        "input": {"input": [m.n_pixels, 1]},
        "input_mean": {"input": [float(v) for v in m.input_mean]},
        "input_norm_mode": {"input": "2"},
        "input_std": {"input": [float(v) for v in m.input_std]},
        "l1": p.get("l1", 1e-05),
        "l2": p.get("l2", 1e-05),
        "labels": {"output": m.n_psd},
        "labels_mean": {"output": [0.0]},
        "labels_norm_mode": {"output": "0"},
        "labels_std": {"output": [1.0]},
        "latent": m.latent_dim,
        "maxnorm": None,
        "pool_length": m.pool_size,
        "targetname": p.get("targetname", "PSD"),
        "task": "regression",
        "valsize": float(p.get("valsize", 0.0)),
    }


def write_astronn_model(
    model: AstroNNModel, path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write an astroNN ``ApokascEncoderDecoder`` model folder.

    The folder holds ``model_weights.h5`` (Keras 2 HDF5 model file: ``model_config``,
    ``training_config`` and the ``model_weights`` group with astroNN's layer names;
    no optimiser state), ``astroNN_model_parameter.json`` and ``hyperparameter.txt``,
    as astroNN 1.1.0 writes them; astroNN's ``load_folder`` reads it (it warns that
    the optimiser starts fresh). Each file is written atomically.

    Parameters
    ----------
    model : AstroNNModel
        Architecture, standardisation and Keras-layout weights (as
        :func:`read_astronn_model` returns).
    path : path-like
        The folder to write (created if needed).
    overwrite : bool, default=False
        Replace the files of an existing astroNN folder; otherwise a folder that
        already holds any of them is an error.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a directory")
    existing = [name for name in ASTRONN_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{folder} already holds {', '.join(existing)}; pass overwrite=True to replace them"
        )
    shapes = model.expected_shapes()
    for key, shape in shapes.items():
        value = model.weights.get(key)
        if value is None or np.shape(value) != shape:
            found = None if value is None else np.shape(value)
            raise ValueError(f"weight {key} must have shape {shape}, got {found}")
    for key in ("input_mean", "input_std"):
        if np.shape(getattr(model, key)) != (model.n_pixels,):
            raise ValueError(
                f"{key} must have shape ({model.n_pixels},), got {np.shape(getattr(model, key))}"
            )
    if model.n_psd % 4:
        raise ValueError(
            f"an {ASTRONN_MODEL_ID} decodes a multiple of 4 PSD pixels, not {model.n_psd}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        _write_h5(tmp, model)
    with atomic_path(folder / PARAMETER_FILE) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(_parameter_json(model), f, indent=4, sort_keys=True)
    with atomic_path(folder / HYPERPARAMETER_FILE) as tmp:
        tmp.write_text(_hyperparameter_text(model, folder.name), encoding="utf-8")
    return folder
