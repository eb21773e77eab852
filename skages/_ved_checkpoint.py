"""Resumable training of :class:`skages.encoder.SpectrumToPSDEncoder`.

With ``checkpoint_dir`` set, :class:`TrainingState` writes ``training_state.pt`` there after
every finished epoch, atomically (a temporary file renamed over the old one, so a kill at
any moment leaves the previous epoch's file whole): the module weights, the optimiser
(Adam moments, step counts, learning rate), the learning-rate plateau schedule, early
stopping's counters and best weights, the training history, the states of every random
generator of the fit (batch shuffling, validation loader, reparametrisation noise, and
PyTorch's and NumPy's global generators), the number of finished epochs, and a
fingerprint of the settings and of the training data (SHA-256 of the standardised spectra
and of the targets and weights). A later ``fit`` with the same ``checkpoint_dir``, the same
settings and the same data restores all of it and runs only the remaining epochs, so the
resumed model is the model of an uninterrupted run, bit for bit (the training step does
not depend on the thread count, see :class:`skages._ved.VEDNet`). The file is read with
``torch.load(weights_only=True)``: loading it runs no code.

User callbacks (``callbacks=``) are rebuilt, not restored: a callback with state of its
own starts afresh on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.history import History

from skages._atomic import atomic_path

__all__ = [
    "STATE_FILE",
    "CheckpointMismatchError",
    "TrainingState",
    "data_digest",
    "fingerprint",
    "load_state",
    "restore",
]

#: The resumable training state in ``checkpoint_dir``.
STATE_FILE = "training_state.pt"
_FORMAT = 1
# settings that do not change the trained model, or are checked separately
_NOT_FINGERPRINTED = {"verbose", "checkpoint_dir", "resume", "max_epochs", "output_std"}


class CheckpointMismatchError(ValueError):
    """The checkpoint in ``checkpoint_dir`` was written by a fit of other settings or data."""


def data_digest(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' shapes, dtypes and bytes (blockwise: no copy of the whole)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        flat = a.reshape(-1)
        step = 1 << 22
        for start in range(0, flat.size, step):
            h.update(flat[start : start + step].tobytes())
    return h.hexdigest()


def _setting_text(name: str, value: Any) -> str:
    if name == "random_state" and value is not None and not isinstance(value, int):
        return type(value).__name__  # a generator's draws are restored from the file
    if name == "callbacks":
        items = value or ()
        return repr(
            [
                (i[0], type(i[1]).__name__) if isinstance(i, tuple) else type(i).__name__
                for i in items
            ]
        )
    if isinstance(value, (list, tuple)):
        return repr(tuple(value))
    return repr(value)


def fingerprint(params: dict[str, Any], data: str) -> dict[str, str]:
    """The settings that determine the trained model, as text, with the data digest."""
    out = {
        k: _setting_text(k, v) for k, v in sorted(params.items()) if k not in _NOT_FINGERPRINTED
    }
    out["data"] = data
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _numpy_rng_state() -> dict:
    # the legacy global generator: saved and restored, never drawn from
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "kind": kind,
        "keys": torch.as_tensor(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_rng_state(state: dict) -> None:
    np.random.set_state(  # noqa: NPY002
        (
            state["kind"],
            state["keys"].numpy().astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached"],
        )
    )


def _generators(net: Any) -> dict[str, torch.Generator]:
    found = {
        "shuffle": getattr(net, "iterator_train__generator", None),
        "valid": getattr(net, "iterator_valid__generator", None),
        "noise": net.module_.noise_generator,
    }
    return {k: g for k, g in found.items() if g is not None}


def _callback_states(net: Any) -> dict[str, dict]:
    states: dict[str, dict] = {}
    for name, cb in net.callbacks_:
        if isinstance(cb, LRScheduler) and getattr(cb, "lr_scheduler_", None) is not None:
            scheduler = cb.lr_scheduler_
            if hasattr(scheduler, "state_dict"):
                states[name] = {"scheduler": scheduler.state_dict()}
        elif isinstance(cb, EarlyStopping):
            best = cb.best_model_weights_
            states[name] = {
                "misses_": int(cb.misses_),
                "dynamic_threshold_": float(cb.dynamic_threshold_),
                "best_epoch_": int(cb.best_epoch_),
                "best_model_weights_": (
                    None if best is None else {k: v.detach().cpu() for k, v in best.items()}
                ),
            }
    return states


def _early_stopped(net: Any) -> bool:
    return any(
        isinstance(cb, EarlyStopping) and cb.misses_ >= cb.patience for _, cb in net.callbacks_
    )


class TrainingState(Callback):
    """Writes the resumable training state after every epoch; restores it on resume.

    Parameters
    ----------
    path : path-like
        The state file (``checkpoint_dir / STATE_FILE``).
    settings : dict of str
        :func:`fingerprint` of the fit.
    max_epochs : int
        Epochs of the whole run.
    restored : dict or None
        A state read by :func:`load_state` whose scheduler and early-stopping parts are
        put back when training begins (those objects are created then).
    """

    def __init__(self, path, settings: dict[str, str], max_epochs: int, restored=None):
        self.path = path
        self.settings = settings
        self.max_epochs = max_epochs
        self.restored = restored

    def on_train_begin(self, net, **kwargs):
        if self.restored is None:
            return
        saved = self.restored["callbacks"]
        for name, cb in net.callbacks_:
            if name not in saved:
                continue
            if isinstance(cb, LRScheduler):
                cb.lr_scheduler_.load_state_dict(saved[name]["scheduler"])
            elif isinstance(cb, EarlyStopping):
                for key, value in saved[name].items():
                    setattr(cb, key, value)
        self.restored = None

    def on_epoch_end(self, net, **kwargs):
        self.save(net, finished=False)

    def on_train_end(self, net, **kwargs):
        # an early stop ends in on_epoch_end before this callback saw the epoch; an
        # interrupted epoch (Ctrl-C) is not saved: the previous epoch's file stands
        if _early_stopped(net):
            self.save(net, finished=True)

    def save(self, net, finished: bool) -> None:
        state = {
            "format": _FORMAT,
            "settings": self.settings,
            "epoch": len(net.history),
            "finished": bool(finished),  # by early stopping
            "module": {k: v.detach().cpu() for k, v in net.module_.state_dict().items()},
            "optimizer": net.optimizer_.state_dict(),
            "callbacks": _callback_states(net),
            "generators": {k: g.get_state() for k, g in _generators(net).items()},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": _numpy_rng_state(),
            "history": json.dumps(net.history.to_list(), default=_json_default),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)


def load_state(path: Path, settings: dict[str, str], max_epochs: int) -> dict | None:
    """The saved state if it matches ``settings``; None if there is none.

    Raises
    ------
    CheckpointMismatchError
        If the file was written by a fit of other settings or data, or has more epochs
        than ``max_epochs``; the message names what differs and how to discard it.
    """
    if not path.exists():
        return None
    discard = (
        f"pass resume=False (skages train: --restart) to discard it and train from "
        f"scratch, delete {path}, or use another checkpoint_dir"
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # damaged, truncated by a full disk, or another kind of file
        raise CheckpointMismatchError(
            f"the training checkpoint {path} cannot be read (damaged, or not a skages "
            f"training checkpoint); {discard}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a training checkpoint of this skages version; {discard}"
        )
    saved = state["settings"]
    differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if differ:
        detail = ", ".join(
            "the training data" if k == "data" else f"{k} ({saved.get(k)} -> {settings.get(k)})"
            for k in differ
        )
        raise CheckpointMismatchError(
            f"the training checkpoint {path} was written by a fit with other settings or "
            f"data: {detail}; {discard}"
        )
    if state["epoch"] > max_epochs:
        raise CheckpointMismatchError(
            f"the training checkpoint {path} has {state['epoch']} finished epochs, more "
            f"than max_epochs={max_epochs}; {discard}"
        )
    return state


def restore(net: Any, state: dict) -> None:
    """Put a saved state back into an initialised net (all but scheduler / early stopping,
    which :class:`TrainingState` restores when training begins)."""
    device = net.module_.parameters().__next__().device
    net.module_.load_state_dict({k: v.to(device) for k, v in state["module"].items()})
    net.optimizer_.load_state_dict(state["optimizer"])
    net.history_ = History(json.loads(state["history"]))
    for name, generator in _generators(net).items():
        generator.set_state(state["generators"][name])
    torch.set_rng_state(state["torch_rng"])
    _set_numpy_rng_state(state["numpy_rng"])


def state_path(checkpoint_dir: str | os.PathLike) -> Path:
    """The state file of a checkpoint folder."""
    return Path(checkpoint_dir) / STATE_FILE
