"""astroNN ``ApokascEncoderDecoder`` folders <-> :class:`skages.encoder.SpectrumToPSDEncoder`.

The bodies of :meth:`~skages.encoder.SpectrumToPSDEncoder.from_astronn` and
:meth:`~skages.encoder.SpectrumToPSDEncoder.to_astronn`: the folder is read and written by
:mod:`skages.io.astronn`, the weight layouts converted by :mod:`skages._keras`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from skages._keras import keras_to_state, state_to_keras
from skages._ved import module_state_to_numpy
from skages._ved_infer import module_init_kwargs

__all__ = ["encoder_from_astronn", "encoder_to_astronn"]


def encoder_from_astronn(cls: type, path: str | os.PathLike, device: str, params: dict) -> Any:
    """A fitted ``cls`` (a SpectrumToPSDEncoder class) from an astroNN model folder."""
    from skages.io.astronn import read_astronn_model

    model = read_astronn_model(path)
    arch = {
        "latent_dim": model.latent_dim,
        "encoder_filters": tuple(model.encoder_filters),
        "encoder_kernel_size": model.encoder_kernel_size,
        "pool_size": model.pool_size,
        "hidden_units": model.hidden_units,
        "decoder_filters": tuple(model.decoder_filters),
        "decoder_kernel_size": model.decoder_kernel_size,
    }
    clash = sorted(set(arch) & set(params))
    if clash:
        raise TypeError(
            f"from_astronn takes the architecture from {model.source}; do not pass "
            f"{', '.join(clash)}"
        )
    defaults = {"batch_size": int(model.parameters.get("batch_size", 128))}
    if "lr" in model.training:
        defaults["lr"] = float(model.training["lr"])
    if "max_epochs" in model.training:
        defaults["max_epochs"] = int(model.training["max_epochs"])
    encoder = cls(**arch, **{**defaults, **params}, device=device)
    encoder._validate_params()
    torch_device = encoder._torch_device()
    module_kwargs = encoder._module_kwargs(model.n_pixels, model.n_psd)
    net = encoder._make_net(
        module_kwargs,
        torch_device,
        beta=encoder.beta,
        lr=encoder.lr,
        batch_size=encoder.batch_size,
        max_epochs=encoder.max_epochs,
    )
    net.initialize()
    state = keras_to_state(model.weights, len(model.encoder_filters))
    net.module_.load_state_dict(
        {k: torch.as_tensor(v, device=torch_device) for k, v in state.items()}
    )
    net.module_.eval()
    encoder._set_scaler(model.input_mean.astype(np.float64), model.input_std.astype(np.float64))
    encoder.net_ = net
    encoder.n_psd_ = int(model.n_psd)
    encoder.n_features_in_ = int(model.n_pixels)
    encoder.loss_curve_ = []
    encoder.n_iter_ = int(model.training.get("max_epochs", 0))
    return encoder


def encoder_to_astronn(encoder: Any, path: str | os.PathLike, overwrite: bool) -> os.PathLike:
    """Write a fitted SpectrumToPSDEncoder as an astroNN model folder."""
    from skages.io.astronn import AstroNNModel, write_astronn_model

    module = encoder._module()
    n_enc, n_dec = len(module.encoder_convs), len(module.decoder_convs)
    if n_enc != 2 or n_dec != 2 or module.n_psd % 4:
        raise ValueError(
            "astroNN's ApokascEncoderDecoder has 2 encoder and 2 decoder convolutions and "
            f"a PSD length divisible by 4; this encoder has {n_enc}, {n_dec} and "
            f"{module.n_psd} pixels"
        )
    if not np.all(np.isfinite(encoder.scale_)):
        raise ValueError(
            f"{int(np.sum(~np.isfinite(encoder.scale_)))} pixel(s) were NaN in every training "
            "spectrum (scale_ = inf); astroNN's input_std cannot hold them"
        )
    kwargs = module_init_kwargs(module)
    history = encoder.net_.history
    n_train = 0
    if len(history):
        n_train = int(sum(b.get("train_batch_size", 0) for b in history[0]["batches"]))
    model = AstroNNModel(
        n_pixels=module.n_pixels,
        n_psd=module.n_psd,
        latent_dim=module.latent_dim,
        encoder_filters=tuple(kwargs["encoder_filters"]),
        encoder_kernel_size=kwargs["encoder_kernel_size"],
        pool_size=module.pool_size,
        hidden_units=kwargs["hidden_units"],
        decoder_channels=module.decoder_channels,
        decoder_filters=tuple(kwargs["decoder_filters"]),
        decoder_kernel_size=kwargs["decoder_kernel_size"],
        input_mean=np.asarray(encoder.mean_, dtype=np.float64),
        input_std=np.asarray(encoder.scale_, dtype=np.float64),
        weights=state_to_keras(module_state_to_numpy(module)),
        parameters={
            "batch_size": int(encoder.batch_size),
            "valsize": float(encoder.validation_fraction) if encoder.early_stopping else 0.0,
            "l1": 0.0,
            "l2": 0.0,
        },
        training={
            "lr": float(encoder.lr),
            "max_epochs": int(encoder.n_iter_),
            "n_train": n_train,
            "n_valid": 0,
        },
        source="skages",
    )
    return write_astronn_model(model, path, overwrite=overwrite)
