"""The training side of :class:`skages.encoder.SpectrumToPSDEncoder`.

What :meth:`~skages.encoder.SpectrumToPSDEncoder.fit` needs besides the estimator's
interface: the seeds, the per-pixel standardisation statistics, the skorch net
(:class:`skages._ved.VEDNet` with the Keras-compatible optimiser of :mod:`skages._optim`)
with its callbacks (learning-rate plateau schedule, epoch log, early stopping,
checkpoints), and the training loop.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch.callbacks import Callback, Checkpoint, EarlyStopping, LRScheduler, ProgressBar
from tqdm.auto import tqdm

from skages._optim import optimizer_class
from skages._ved import VariationalEncoderDecoder, VEDNet, cpu_workers

__all__ = ["EpochLog", "make_callbacks", "make_net", "pixel_statistics", "seeds", "train"]

logger = logging.getLogger("skages.encoder")

_MAX_SEED = 2**31 - 1


def seeds(random_state: Any, n: int) -> list[int]:
    """``n`` integer seeds derived from ``random_state`` (None, int, RandomState, Generator)."""
    if isinstance(random_state, np.random.Generator):
        return [int(s) for s in random_state.integers(0, _MAX_SEED, size=n)]
    return [int(s) for s in check_random_state(random_state).randint(0, _MAX_SEED, size=n)]


def short_float(value: float) -> str:
    """A learning rate as people write it: 0.01, 5e-4, 1.25e-5."""
    if value == 0 or 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def pixel_statistics(X: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and standard deviation of clipped spectra, NaN left out, blockwise.

    Values above 2 count as 1. The scale is 1 where the deviation is 0 and ``inf`` where
    a pixel has no finite value.
    """
    count = np.zeros(X.shape[1])
    total = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        block = np.where(X[start : start + block_rows] > 2, 1.0, X[start : start + block_rows])
        count += (~np.isnan(block)).sum(axis=0)
        total += np.nansum(block, axis=0)
    mean = total / np.maximum(count, 1)
    squares = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        block = np.where(X[start : start + block_rows] > 2, 1.0, X[start : start + block_rows])
        squares += np.nansum((block - mean) ** 2, axis=0)
    scale = np.sqrt(squares / np.maximum(count, 1))
    scale[scale == 0] = 1.0
    scale[count == 0] = np.inf
    return mean, scale


class EpochLog(Callback):
    """Logs every epoch's losses (``logging``) and shows a tqdm bar over epochs (stderr)."""

    def __init__(self, total: int, show_bar: bool):
        self.total = total
        self.show_bar = show_bar

    def on_train_begin(self, net, **kwargs):
        logger.info(
            "loss: per star, the weighted sum of squared errors of the decoded ln PSD over "
            "its unmasked pixels plus beta times the KL divergence of the latent posterior "
            "(lower is better; it levels off when training has converged)"
        )
        self.bar_ = tqdm(
            total=self.total,
            initial=len(net.history),
            desc="SpectrumToPSDEncoder",
            unit="epoch",
            disable=not self.show_bar,
            leave=False,
        )

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        text = {"loss": f"{row['train_loss']:.4g}"}
        if "valid_loss" in row:
            text["valid"] = f"{row['valid_loss']:.4g}"
        text["lr"] = short_float(net.optimizer_.param_groups[0]["lr"])
        logger.info(
            "epoch %d/%d  %s  (%.1f s)",
            row["epoch"],
            self.total,
            "  ".join(f"{k} {v}" for k, v in text.items()),
            row.get("dur", float("nan")),
        )
        self.bar_.set_postfix(text, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar_.close()


def make_callbacks(
    *,
    max_epochs: int,
    early_stopping: bool,
    n_iter_no_change: int,
    checkpoint_dir: str | os.PathLike | None,
    verbose: int,
    callbacks: Sequence[Any] | None,
) -> list[tuple[str, Any]]:
    """The net's callbacks: the built-in ones, replaced or extended by ``callbacks``."""
    monitor = "valid_loss_best" if early_stopping else "train_loss_best"
    builtin: dict[str, Any] = {
        "lr_scheduler": LRScheduler(
            policy=torch.optim.lr_scheduler.ReduceLROnPlateau,
            monitor="train_loss",
            mode="min",
            factor=0.5,
            # PyTorch reduces after `patience + 1` bad epochs, Keras after `patience`
            patience=5,
            threshold=5e-5,
            threshold_mode="abs",
            min_lr=1e-10,
        ),
        "epoch_log": EpochLog(max_epochs, show_bar=verbose >= 1),
    }
    if early_stopping:
        builtin["early_stopping"] = EarlyStopping(
            monitor="valid_loss",
            patience=n_iter_no_change,
            load_best=True,
            sink=logger.info,
        )
    if checkpoint_dir is not None:
        builtin["checkpoint"] = Checkpoint(
            monitor=monitor, dirname=os.fspath(checkpoint_dir), f_criterion=None
        )
    if verbose >= 2:
        builtin["progress_bar"] = ProgressBar()
    extra = []
    for item in callbacks or ():
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, cb = item
            if name in builtin:
                builtin.pop(name)
            if cb is not None:
                extra.append((name, copy.deepcopy(cb)))
        elif isinstance(item, Callback):
            extra.append(copy.deepcopy(item))
        else:
            raise TypeError(
                f"callbacks must hold skorch callbacks or (name, callback) pairs, got {item!r}"
            )
    return [*builtin.items(), *extra]


def make_net(
    net_class: type[VEDNet],
    adam: str,
    module_kwargs: dict,
    device: torch.device,
    **kwargs: Any,
) -> VEDNet:
    """An uninitialised skorch net of ``net_class`` for the module of ``module_kwargs``."""
    return net_class(
        VariationalEncoderDecoder,
        criterion=torch.nn.MSELoss,  # unused: VEDNet.get_loss computes the loss
        optimizer=optimizer_class(adam),
        device=str(device),
        verbose=0,
        **{f"module__{k}": v for k, v in module_kwargs.items()},
        **kwargs,
    )


def train(net: VEDNet, Xs: np.ndarray, Y: np.ndarray, device: torch.device, epochs: int) -> None:
    """Run ``epochs`` epochs of the net on standardised spectra ``Xs`` and targets ``Y``."""
    with cpu_workers(device) as pool:
        net.worker_pool = pool
        try:
            net.partial_fit(Xs, Y, epochs=epochs)
        finally:
            net.worker_pool = None
