"""The spectrum-to-power-spectrum variational encoder-decoder as a scikit-learn transformer.

:class:`SpectrumToPSDEncoder` is the variational encoder-decoder (VED) of Leung, Bovy,
Mackereth & Miglio (2023): it learns to turn a continuum-normalised APOGEE spectrum into the
star's natural-log Kepler power spectrum (PSD) through a small Gaussian latent space, and as
a transformer it returns the latent coordinates, which carry the seismic information of the
spectrum. The network is a PyTorch module (:mod:`skages._ved`) trained by a skorch
``NeuralNet`` that the estimator builds in :meth:`~SpectrumToPSDEncoder.fit`; the estimator
itself is a plain scikit-learn estimator, so ``clone``, ``Pipeline``, ``GridSearchCV`` and
joblib work as for any other.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

# The constraint vocabulary of ``_parameter_constraints`` lives only in this module.
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.dataset import ValidSplit
from skorch.history import History

from skages import _ved_checkpoint, _ved_fit, _ved_infer
from skages._keras import ASTRONN_MAGIC as _ASTRONN_MAGIC
from skages._keras import keras_to_state as _keras_to_state  # noqa: F401 (old private path)
from skages._keras import state_to_keras as _state_to_keras  # noqa: F401 (old private path)
from skages._lock import output_lock
from skages._units import _check_log_psd, _check_normalised, _is_quantity, _psd_spread, _to_value
from skages._ved import VariationalEncoderDecoder, VEDNet, module_state_to_numpy
from skages._ved_infer import BLOCK_ROWS as _BLOCK_ROWS
from skages._ved_infer import module_init_kwargs as _module_init_kwargs
from skages._warnings import warn

__all__ = ["PSDNotRoutedWarning", "SpectrumToPSDEncoder"]

logger = logging.getLogger(__name__)


class PSDNotRoutedWarning(UserWarning):
    """``fit`` or ``score`` received a 1-D ``y`` and no ``psd``.

    The 1-D ``y`` is then used as a one-pixel decoder target. In an age
    :class:`~sklearn.pipeline.Pipeline` ``y`` is the age, so this usually means the PSDs
    were not routed to the encoder: call ``encoder.set_fit_request(psd=True)`` under
    ``sklearn.set_config(enable_metadata_routing=True)`` and pass ``psd=`` to the
    pipeline's ``fit``. Turn it into an error with
    ``warnings.simplefilter("error", PSDNotRoutedWarning)``.
    """


def _check_int_tuple(value: Any, name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive int, got {value!r}") from None
    if (
        not out
        or any(v < 1 for v in out)
        or any(float(v) != w for v, w in zip(out, value, strict=True))
    ):
        raise ValueError(f"{name} must be a non-empty sequence of positive int, got {value!r}")
    return out


class SpectrumToPSDEncoder(TransformerMixin, BaseEstimator):
    """Variational encoder-decoder from spectra to power spectra; transforms to its latent space.

    The model of Leung et al. (2023, §3.1, as released): a continuum-normalised spectrum
    is encoded into a Gaussian posterior over a ``latent_dim``-dimensional latent space,
    and a point of that space is decoded into the star's natural-log power spectrum (PSD).
    Training minimises, per star, the weighted sum of squared PSD errors over the
    unmasked pixels plus ``beta`` times the KL divergence of the posterior from N(0, I).
    As a transformer it returns the latent means (and, if ``output_std``, their standard
    deviations), the features that the age forest uses.

    Inputs are checked for the usual unit mistakes: spectra (of 100 pixels or more)
    whose median flux is outside 0.25-2 are refused as not continuum normalised; PSDs
    with no negative pixel and a median near 1 are refused as linear power, and PSDs given
    to :meth:`score` with 1/ln(10) of the training spread (:attr:`psd_spread_`) as
    log10. A row's outputs do not depend on the other rows of the batch, their order
    or the thread count (bit for bit).

    Read more in the :doc:`user guide </user_guide/encoder>`.

    Parameters
    ----------
    latent_dim : int, default=5
        Dimension of the latent space.
    encoder_filters : sequence of int, default=(32, 64)
        Output channels of the encoder's stride-2 convolutions (TensorFlow "same"
        padding, ReLU), one per layer.
    encoder_kernel_size : int, default=8
        Kernel size (pixels) of the encoder convolutions.
    pool_size : int, default=2
        Max-pooling window after the last encoder convolution.
    hidden_units : int, default=16
        Width of the dense tanh layer before the latent heads.
    decoder_filters : sequence of int, default=(16, 16)
        Output channels of the decoder's stride-2 transposed convolutions (ReLU); the
        first entry is also the channel count of the decoder's reshaped dense output.
        The dense layer produces ``ceil(n_psd / 2**len(decoder_filters))`` positions.
    decoder_kernel_size : int, default=32
        Kernel size (pixels) of the decoder's transposed convolutions, >= 2.
    max_epochs : int, default=150
        Training epochs (passes over the data, reshuffled every epoch).
    batch_size : int, default=128
        Spectra per optimiser step (Adam).
    lr : float, default=5e-4
        Initial learning rate. It is halved when the training loss has not improved by
        5e-5 for 6 epochs (Keras' ``ReduceLROnPlateau(patience=6)``), down to 1e-10.
    beta : float, default=1.0
        Weight of the KL term of the loss.
    drop_last : bool, default=False
        Drop each epoch's last, partial batch, as astroNN does (it runs
        ``n_samples // batch_size`` steps an epoch).
    adam : {"keras", "pytorch"}, default="keras"
        Adam's epsilon as Keras (and so astroNN, which trained the published model)
        applies it: 1e-7 added to ``sqrt(v)`` before its bias correction
        (:class:`skages._optim.KerasAdam`), or PyTorch's ``torch.optim.Adam`` (1e-8
        added after). From identical weights "keras" reproduces astroNN's training
        steps; "pytorch" departs from them by about 3 % of a step at the first step
        (``benchmarks/bench_vs_astronn.py``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training stars, report their loss each
        epoch, stop when it has not improved (by a relative 1e-4) for
        ``n_iter_no_change`` epochs and keep the best weights.
    validation_fraction : float, default=0.1
        Fraction of the stars held out when ``early_stopping``.
    n_iter_no_change : int, default=10
        Patience (epochs) of early stopping.
    checkpoint_dir : str or path-like, default=None
        If given, training is resumable: after every finished epoch the whole training
        state (weights, optimiser, learning-rate schedule, early-stopping counters,
        history, the states of all random generators, and a fingerprint of the settings
        and the training data) is written atomically to ``training_state.pt`` in this
        directory, and a later :meth:`fit` with the same directory, settings and data
        continues from the last finished epoch; with an integer ``random_state`` the
        resumed model equals an uninterrupted run's, bit for bit. Raising
        ``max_epochs`` continues a finished run. The weights, optimiser state and
        history of the best epoch so far (validation loss with early stopping, training
        loss otherwise) are also saved there, as ``params.pt``, ``optimizer.pt`` and
        ``history.json`` (skorch's ``Checkpoint``). Nothing is written by default.
    resume : bool, default=True
        With ``checkpoint_dir``: continue from its training state if there is one. A
        state written by a fit with other settings (other than ``max_epochs``,
        ``verbose`` and ``output_std``) or other data is refused with an error, never
        used. ``False`` discards the state and trains from scratch (``skages train
        --restart``).
    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Extra skorch callbacks, copied at each fit. A pair whose name is that of a
        built-in callback (``"lr_scheduler"``, ``"early_stopping"``, ``"checkpoint"``,
        ``"epoch_log"``) replaces it; ``(name, None)`` removes it.
    masked_fill : {"mean", "astronn"}, default="mean"
        Value given to masked (NaN) pixels after standardising: 0, the training mean
        (skages), or astroNN's magic number -9999 (what astroNN's ``predict_encoder``
        and training feed the network), to reproduce astroNN on masked spectra. See
        :doc:`/user_guide/published_code` for what -9999 does to the latents.
    output_std : bool, default=False
        If True, :meth:`transform` also returns the latent standard deviations
        ``exp(logvar / 2)`` as columns ``z0_std, ...`` after the means.
    device : str, default="cpu"
        PyTorch device to train and run on (e.g. ``"cuda"``). A model trained on a GPU
        is pickled with CPU tensors and loads on machines without one. On the CPU the
        network runs on skages' matrix-product kernels (see Notes).
    random_state : int, RandomState instance, numpy Generator or None, default=None
        Seeds the weight initialisation, the shuffling, the reparametrisation noise and
        the validation split (each from its own derived seed; PyTorch's global generator
        is not touched). On the CPU the same seed gives identical weights and latents
        on the same machine and thread count.
    verbose : int, default=0
        0: silent. 1: a tqdm bar over epochs on stderr and one ``logging`` INFO record
        per epoch (logger ``skages.encoder``). 2: also skorch's per-batch progress bar.

    Attributes
    ----------
    net_ : skages._ved.VEDNet
        The trained skorch net; ``net_.module_`` is the
        :class:`~skages._ved.VariationalEncoderDecoder` and ``net_.history`` the training
        history. After unpickling it holds the weights and history but not the optimiser
        state.
    mean_ : ndarray of shape (n_features,)
        Training mean of each pixel (continuum-normalised flux, after values > 2 are set
        to 1), NaN pixels left out.
    scale_ : ndarray of shape (n_features,)
        Training standard deviation of each pixel (1 where it is 0; ``inf`` where the
        pixel was NaN in every training spectrum, which then always reads as masked).
    n_psd_ : int
        Length (pixels) of the decoded PSD: the length of the training target.
    psd_spread_ : float
        Robust spread (1.4826 × median absolute deviation, natural-log units) of the
        training PSD pixels; a PSD given later (:meth:`score`) with 1/ln(10) of it is
        refused as a log10 PSD.
    loss_curve_ : list of float
        Training loss after each epoch (weighted sum of squares per star plus β·KL).
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        Number of pixels of the training spectra.
    feature_names_in_ : ndarray of shape (n_features,)
        Pixel names, when ``X`` had string column names at fit.

    See Also
    --------
    skages.seismology.numax_weights : the νmax-centred PSD weights of the paper.

    Notes
    -----
    **Input preprocessing.** Pixel values above 2 are set to 1 (bad pixels of a
    continuum-normalised spectrum), each pixel is standardised with the training mean and
    standard deviation, and NaN pixels (masked) are set to 0 after standardising, i.e.
    to the training mean (``masked_fill="astronn"``: -9999, as astroNN does). A spectrum
    with no finite pixel is an error, as is ``inf``.

    **The decoder target.** ``fit(X, psd=P)`` trains the decoder to reproduce ``P``. For
    direct use, ``fit(X, P)`` with a 2-D ``y`` of PSDs does the same. In a Pipeline
    ``y`` is the age and ``psd`` travels as metadata (``set_fit_request(psd=True)``). A
    1-D ``y`` with no ``psd`` most likely means that the PSDs were not routed; it is used
    as a one-pixel target (the model still trains, which keeps the estimator usable in
    generic scikit-learn tooling) and a :class:`PSDNotRoutedWarning` says so; make it an
    error with ``warnings.simplefilter("error", PSDNotRoutedWarning)``. No ``y`` and no
    ``psd`` is an error.

    **Speed.** On the CPU, convolutions run as channels-last matrix products (see
    :mod:`skages._ved`), spectra go through the network in small chunks that stay in
    cache, the chunks run on one single-threaded worker per core, and each optimiser step
    sums the gradients of 16-spectrum chunks. The result is the same network and the same
    optimiser step as plain PyTorch, to float32 rounding: on 2 cores about 3 times faster
    to encode and 2.5 times faster to train (``benchmarks/bench_encoder.py``). While a
    fit or transform runs, PyTorch's intra-op thread count is set to 1 and restored after.

    Examples
    --------
    >>> import numpy as np
    >>> from skages.encoder import SpectrumToPSDEncoder
    >>> rng = np.random.default_rng(0)
    >>> X = 1 + 0.01 * rng.standard_normal((40, 64))     # 40 spectra of 64 pixels
    >>> psd = rng.standard_normal((40, 16))              # their 16-pixel log PSDs
    >>> enc = SpectrumToPSDEncoder(latent_dim=2, encoder_filters=(4, 4), hidden_units=4,
    ...                            decoder_filters=(4,), decoder_kernel_size=4,
    ...                            max_epochs=2, random_state=0)
    >>> enc.fit(X, psd=psd).transform(X).shape
    (40, 2)
    >>> enc.get_feature_names_out().tolist()
    ['z0', 'z1']
    """

    #: skorch net class that trains the module; a subclass of the estimator may set its own
    #: :class:`~skages._ved.VEDNet` subclass here (e.g. with another ``get_loss``).
    net_class: ClassVar[type[VEDNet]] = VEDNet

    _parameter_constraints: ClassVar[dict] = {
        "latent_dim": [Interval(numbers.Integral, 1, None, closed="left")],
        "encoder_filters": ["array-like"],
        "encoder_kernel_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "pool_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_units": [Interval(numbers.Integral, 1, None, closed="left")],
        "decoder_filters": ["array-like"],
        "decoder_kernel_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "beta": [Interval(numbers.Real, 0.0, None, closed="left")],
        "adam": [StrOptions({"keras", "pytorch"})],
        "drop_last": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0.0, 1.0, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "checkpoint_dir": [str, os.PathLike, None],
        "resume": ["boolean"],
        "callbacks": [list, tuple, None],
        "masked_fill": [StrOptions({"mean", "astronn"})],
        "output_std": ["boolean"],
        "device": [str, torch.device],
        "random_state": ["random_state", np.random.Generator],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        latent_dim: int = 5,
        *,
        encoder_filters: Sequence[int] = (32, 64),
        encoder_kernel_size: int = 8,
        pool_size: int = 2,
        hidden_units: int = 16,
        decoder_filters: Sequence[int] = (16, 16),
        decoder_kernel_size: int = 32,
        max_epochs: int = 150,
        batch_size: int = 128,
        lr: float = 5e-4,
        beta: float = 1.0,
        adam: str = "keras",
        drop_last: bool = False,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = True,
        callbacks: Sequence[Any] | None = None,
        masked_fill: str = "mean",
        output_std: bool = False,
        device: str = "cpu",
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.latent_dim = latent_dim
        self.encoder_filters = encoder_filters
        self.encoder_kernel_size = encoder_kernel_size
        self.pool_size = pool_size
        self.hidden_units = hidden_units
        self.decoder_filters = decoder_filters
        self.decoder_kernel_size = decoder_kernel_size
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.adam = adam
        self.drop_last = drop_last
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.callbacks = callbacks
        self.masked_fill = masked_fill
        self.output_std = output_std
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = False
        tags.target_tags.required = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------------ validation
    def _check_X(self, X: Any, reset: bool) -> np.ndarray:
        if _is_quantity(X):  # continuum-normalised flux is dimensionless
            X = _to_value(X, "", "X (continuum-normalised flux)", dtype=None)
        X = validate_data(
            self, X, reset=reset, dtype=(np.float64, np.float32), ensure_all_finite=False
        )
        # blockwise, so that checking a large X costs no X-sized temporary
        empty = []
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            nan = np.isnan(X[start : start + _BLOCK_ROWS])
            if np.isinf(X[start : start + _BLOCK_ROWS]).any():
                raise ValueError(
                    "Input X contains infinity; masked pixels must be NaN, other values finite"
                )
            empty.extend(start + np.flatnonzero(nan.all(axis=1)))
            _check_normalised(X[start : start + _BLOCK_ROWS], offset=start)
        if empty:
            raise ValueError(
                f"X must have at least one finite pixel per spectrum; row(s) "
                f"{[int(i) for i in empty[:10]]}{' ...' if len(empty) > 10 else ''} are "
                f"entirely NaN (masked), {len(empty)} in all"
            )
        return X

    def _check_target(self, y: Any, psd: Any, n_samples: int, method: str) -> np.ndarray:
        """The decoder target (n_samples, n_psd) float32 from ``psd`` or ``y``."""
        if psd is not None:
            name, target = "psd", psd
        elif y is None:
            raise ValueError(
                f"SpectrumToPSDEncoder.{method} requires y to be passed, but the target y is "
                "None: pass the natural-log PSDs as psd= (routed metadata in a Pipeline) or, "
                "for direct use, as a 2-D y of shape (n_samples, n_psd)"
            )
        else:
            name, target = "y", y
        target = check_array(
            target,
            dtype=np.float32,
            ensure_2d=False,
            allow_nd=True,
            ensure_all_finite="allow-nan",
            input_name=name,
            ensure_min_samples=0,
        )
        if name == "y" and target.ndim == 1:
            warn(
                f"SpectrumToPSDEncoder.{method} got a 1-D y and no psd, so y is used as a "
                "one-pixel decoder target. If y is the age (an age Pipeline), the PSDs were "
                "not routed: call encoder.set_fit_request(psd=True) under "
                "sklearn.set_config(enable_metadata_routing=True) and pass psd= to fit.",
                PSDNotRoutedWarning,
            )
            target = target[:, None]
        if target.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D of shape (n_samples, n_psd), got shape {target.shape}"
            )
        if target.shape[0] != n_samples:
            raise ValueError(
                f"{name} must have one row per spectrum of X ({n_samples} rows), got "
                f"{target.shape[0]} rows"
            )
        if hasattr(self, "n_psd_") and method != "fit" and target.shape[1] != self.n_psd_:
            raise ValueError(
                f"{name} must have the {self.n_psd_} pixels of the training PSDs, got "
                f"{target.shape[1]} pixels"
            )
        empty = np.flatnonzero(np.isnan(target).all(axis=1))
        if empty.size:
            raise ValueError(
                f"{name} must have at least one finite pixel per star; row(s) "
                f"{empty[:10].tolist()}{' ...' if empty.size > 10 else ''} are entirely NaN"
            )
        spread = getattr(self, "psd_spread_", None) if method != "fit" else None
        _check_log_psd(target, name, train_spread=spread)
        return target

    @staticmethod
    def _check_weight(psd_weight: Any, target: np.ndarray) -> np.ndarray:
        if psd_weight is None:
            return np.ones_like(target)
        w = check_array(
            psd_weight,
            dtype=np.float32,
            ensure_2d=False,
            allow_nd=True,
            ensure_all_finite=False,
            input_name="psd_weight",
            ensure_min_samples=0,
        )
        if w.ndim == 1 and w.shape[0] == target.shape[1]:
            w = np.broadcast_to(w, target.shape)
        if w.shape != target.shape:
            raise ValueError(
                f"psd_weight must have the shape of the PSDs {target.shape} (or "
                f"({target.shape[1]},) for all stars), got shape {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ValueError("psd_weight must be finite, got NaN or infinite weights")
        if (w < 0).any():
            raise ValueError(
                f"psd_weight must be non-negative, got {int((w < 0).sum())} negative "
                f"weights (min {w.min():g})"
            )
        return np.ascontiguousarray(w)

    def _torch_device(self) -> torch.device:
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device={self.device!r} needs a CUDA GPU, but torch.cuda.is_available() is False"
            )
        return device

    # ------------------------------------------------------------------------ preprocessing
    def _standardise(self, X: np.ndarray, device: torch.device) -> torch.Tensor:
        """Clip, standardise and unmask a block of spectra; float32 tensor on ``device``."""
        x = torch.as_tensor(np.asarray(X, dtype=np.float32), device=device)
        x = torch.where(x > 2, 1.0, x)
        x = (x - self._mean_t.to(device)) * self._inv_scale_t.to(device)
        fill = _ASTRONN_MAGIC if getattr(self, "masked_fill", "mean") == "astronn" else 0.0
        return torch.nan_to_num_(x, nan=fill)

    def _set_scaler(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean_ = mean
        self.scale_ = scale
        self._mean_t = torch.as_tensor(mean, dtype=torch.float32)
        self._inv_scale_t = torch.as_tensor(1.0 / scale, dtype=torch.float32)

    # ------------------------------------------------------------------------ fit
    def _module_kwargs(self, n_pixels: int, n_psd: int) -> dict[str, Any]:
        return {
            "n_pixels": n_pixels,
            "n_psd": n_psd,
            "latent_dim": self.latent_dim,
            "encoder_filters": _check_int_tuple(self.encoder_filters, "encoder_filters"),
            "encoder_kernel_size": self.encoder_kernel_size,
            "pool_size": self.pool_size,
            "hidden_units": self.hidden_units,
            "decoder_filters": _check_int_tuple(self.decoder_filters, "decoder_filters"),
            "decoder_kernel_size": self.decoder_kernel_size,
        }

    def _callbacks(self) -> list[tuple[str, Any]]:
        return _ved_fit.make_callbacks(
            max_epochs=self.max_epochs,
            early_stopping=self.early_stopping,
            n_iter_no_change=self.n_iter_no_change,
            checkpoint_dir=self.checkpoint_dir,
            verbose=self.verbose,
            callbacks=self.callbacks,
        )

    def _make_net(self, module_kwargs: dict, device: torch.device, **kwargs: Any) -> VEDNet:
        adam = getattr(self, "adam", "keras")
        return _ved_fit.make_net(self.net_class, adam, module_kwargs, device, **kwargs)

    def fit(
        self, X: Any, y: Any = None, *, psd: Any = None, psd_weight: Any = None
    ) -> SpectrumToPSDEncoder:
        """Train the encoder-decoder on spectra and their power spectra.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels)
            Continuum-normalised spectra (dimensionless flux, about 1; for APOGEE the
            7514-pixel gap-removed grid). NaN marks masked pixels.
        y : array-like of shape (n_samples,) or (n_samples, n_psd), default=None
            Ignored when ``psd`` is given (in a Pipeline it is the age). Otherwise a 2-D
            ``y`` is the decoder target (``fit(spectra, psds)``); a 1-D ``y`` is used as a
            one-pixel target with a :class:`PSDNotRoutedWarning`.
        psd : array-like of shape (n_samples, n_psd), default=None
            Decoder targets: natural-log power spectra (for skages the 2092-pixel grid
            of :func:`skages.seismology.frequency_grid`, µHz). NaN pixels are left out of
            the loss. Routable as metadata.
        psd_weight : array-like of shape (n_samples, n_psd) or (n_psd,), default=None
            Non-negative per-pixel loss weights, e.g.
            :func:`skages.seismology.numax_weights`; ones by default. Routable as
            metadata.

        Returns
        -------
        self : SpectrumToPSDEncoder
            The fitted encoder.
        """
        self._validate_params()
        X = self._check_X(X, reset=True)
        target = self._check_target(y, psd, X.shape[0], "fit")
        weight = self._check_weight(psd_weight, target)
        device = self._torch_device()
        module_kwargs = self._module_kwargs(X.shape[1], target.shape[1])
        seed_init, seed_shuffle, seed_noise, seed_split = _ved_fit.seeds(self.random_state, 4)

        mean, scale = _ved_fit.pixel_statistics(X, _BLOCK_ROWS)
        dead = ~np.isfinite(scale)
        if dead.any():
            warn(
                f"{int(dead.sum())} pixel(s) of X are NaN in every training spectrum; they are "
                "treated as masked from now on (scale_ = inf)"
            )
        self._set_scaler(mean, scale)
        Xs = np.empty(X.shape, dtype=np.float32)
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            rows = slice(start, start + _BLOCK_ROWS)
            Xs[rows] = self._standardise(X[rows], torch.device("cpu")).numpy()
        Y = np.stack([target, weight], axis=1)

        train_split = (
            ValidSplit(self.validation_fraction, random_state=seed_split)
            if self.early_stopping
            else None
        )
        with contextlib.ExitStack() as stack:
            callbacks = self._callbacks()
            restored = None
            if self.checkpoint_dir is not None:
                state_file = _ved_checkpoint.state_path(self.checkpoint_dir)
                stack.enter_context(output_lock(state_file))
                settings = _ved_checkpoint.fingerprint(
                    self.get_params(deep=False), _ved_checkpoint.data_digest(Xs, Y)
                )
                if self.resume:
                    restored = _ved_checkpoint.load_state(state_file, settings, self.max_epochs)
                else:
                    state_file.unlink(missing_ok=True)
                callbacks.append(
                    (
                        "training_state",
                        _ved_checkpoint.TrainingState(
                            state_file, settings, self.max_epochs, restored
                        ),
                    )
                )
            net = self._make_net(
                module_kwargs,
                device,
                module__seed=seed_init,
                lr=self.lr,
                batch_size=self.batch_size,
                max_epochs=self.max_epochs,
                beta=self.beta,
                train_split=train_split,
                callbacks=callbacks,
                iterator_train__shuffle=True,
                iterator_train__drop_last=bool(self.drop_last),
                iterator_train__generator=torch.Generator().manual_seed(seed_shuffle),
                # DataLoader draws a base seed per epoch even without shuffling
                iterator_valid__generator=torch.Generator().manual_seed(seed_split),
            )
            net.initialize()
            net.module_.noise_generator = torch.Generator(device=device).manual_seed(seed_noise)
            epochs = self.max_epochs
            if restored is not None:
                _ved_checkpoint.restore(net, restored)
                epochs = 0 if restored["finished"] else self.max_epochs - restored["epoch"]
                logger.info(
                    "resuming from %s: %d epoch(s) done, %d to go",
                    state_file,
                    restored["epoch"],
                    epochs,
                )
            logger.info(
                "training on %d spectra of %d pixels -> PSDs of %d pixels, %d epochs, device %s",
                X.shape[0],
                X.shape[1],
                target.shape[1],
                self.max_epochs,
                device,
            )
            start = time.perf_counter()
            if epochs > 0:
                _ved_fit.train(net, Xs, Y, device, epochs)
            logger.info("trained in %.1f s", time.perf_counter() - start)
        net.module_.noise_generator = None
        net.module_.eval()
        self.net_ = net
        self.n_psd_ = int(target.shape[1])
        self.psd_spread_ = _psd_spread(target)
        self.loss_curve_ = (
            [float(v) for v in net.history[:, "train_loss"]] if len(net.history) else []
        )
        self.n_iter_ = len(net.history)
        return self

    # ------------------------------------------------------------------------ inference
    def _module(self) -> VariationalEncoderDecoder:
        check_is_fitted(self, "net_")
        return self.net_.module_

    def _encode(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and log-variances (float32 arrays) of validated spectra."""
        module = self._module()
        return _ved_infer.encode(module, X, self._standardise, torch.device(self.net_.device))

    def _decode(self, Z: np.ndarray) -> np.ndarray:
        module = self._module()
        return _ved_infer.decode(module, Z, torch.device(self.net_.device))

    def transform(self, X: Any) -> np.ndarray:
        """Latent means (and standard deviations if ``output_std``) of spectra.

        Deterministic: the posterior mean, not a draw (for draws see
        :meth:`sample_latent`). Streams in blocks, so memory does not grow with
        ``n_samples``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels)
            Continuum-normalised spectra; NaN = masked pixel.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim) or (n_samples, 2 * latent_dim)
            ``z0 … z{k-1}`` (dimensionless latent coordinates), followed by
            ``z0_std …`` if ``output_std``. float32 for float32 input, else float64.
        """
        self._module()
        X = self._check_X(X, reset=False)
        mean, logvar = self._encode(X)
        out = np.hstack([mean, np.exp(0.5 * logvar)]) if self.output_std else mean
        return out.astype(X.dtype, copy=False)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the transformed columns: ``z0 …`` then ``z0_std …`` if ``output_std``.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Ignored apart from a length check (the latent columns do not map to pixels).

        Returns
        -------
        ndarray of str
        """
        check_is_fitted(self, "net_")
        if input_features is not None and len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features must have {self.n_features_in_} names, got {len(input_features)}"
            )
        names = [f"z{k}" for k in range(self.latent_dim)]
        if self.output_std:
            names += [f"z{k}_std" for k in range(self.latent_dim)]
        return np.asarray(names, dtype=object)

    def predict_psd(self, X: Any) -> np.ndarray:
        """Decoded natural-log PSDs of spectra, through the latent means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels)
            Continuum-normalised spectra; NaN = masked pixel.

        Returns
        -------
        ndarray of shape (n_samples, n_psd)
            Natural-log PSD on the training PSD grid.
        """
        self._module()
        X = self._check_X(X, reset=False)
        mean, _ = self._encode(X)
        return self._decode(mean).astype(X.dtype, copy=False)

    def decode(self, Z: Any) -> np.ndarray:
        """Natural-log PSDs of latent points.

        Parameters
        ----------
        Z : array-like of shape (n_points, latent_dim)
            Latent coordinates.

        Returns
        -------
        ndarray of shape (n_points, n_psd)
        """
        module = self._module()
        Z = check_array(Z, dtype=(np.float64, np.float32), input_name="Z")
        if Z.shape[1] != module.latent_dim:
            raise ValueError(
                f"Z must have latent_dim={module.latent_dim} columns, got {Z.shape[1]}"
            )
        return self._decode(Z).astype(Z.dtype, copy=False)

    def sample_latent(self, X: Any, n_samples: int = 1, *, random_state: Any = None) -> np.ndarray:
        """Draws from each spectrum's latent posterior N(mean, σ²).

        Parameters
        ----------
        X : array-like of shape (n_stars, n_pixels)
            Continuum-normalised spectra; NaN = masked pixel.
        n_samples : int, default=1
            Draws per spectrum.
        random_state : int, RandomState, numpy Generator or None, default=None
            Seed of the draws.

        Returns
        -------
        ndarray of shape (n_stars, n_samples, latent_dim)
        """
        self._module()
        X = self._check_X(X, reset=False)
        n_samples = _check_positive_int(n_samples, "n_samples")
        mean, logvar = self._encode(X)
        eps = _normal(random_state, (X.shape[0], n_samples, mean.shape[1]))
        z = mean[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * eps
        return z.astype(X.dtype, copy=False)

    def sample_psd(
        self, n_samples: int = 1, *, X: Any = None, random_state: Any = None
    ) -> np.ndarray:
        """New natural-log PSDs decoded from random latent points (the paper's Fig. 4).

        Parameters
        ----------
        n_samples : int, default=1
            Number of PSDs (per star if ``X`` is given).
        X : array-like of shape (n_stars, n_pixels), default=None
            If given, the latent points are drawn from each spectrum's posterior
            N(mean, σ²); otherwise from the prior N(0, I).
        random_state : int, RandomState, numpy Generator or None, default=None
            Seed of the draws.

        Returns
        -------
        ndarray of shape (n_samples, n_psd), or (n_stars, n_samples, n_psd) with ``X``
        """
        module = self._module()
        n_samples = _check_positive_int(n_samples, "n_samples")
        if X is None:
            z = _normal(random_state, (n_samples, module.latent_dim)).astype(np.float32)
            return self._decode(z).astype(np.float64)
        z = self.sample_latent(X, n_samples, random_state=random_state)
        n_stars = z.shape[0]
        psd = self._decode(z.reshape(-1, module.latent_dim).astype(np.float32))
        return psd.reshape(n_stars, n_samples, -1).astype(z.dtype, copy=False)

    def latent_jacobian(self, X: Any) -> np.ndarray:
        """Derivatives of the latent means with respect to each input pixel (paper Fig. 6).

        ``J[i, k, j] = ∂ z_k / ∂ x_j`` for spectrum ``i``, with ``x`` the
        continuum-normalised flux as passed in (the chain rule through the
        standardisation is included). Pixels above 2 (set to 1 by the preprocessing)
        have zero derivative; masked (NaN) pixels and pixels never seen in training
        get NaN.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels)
            Continuum-normalised spectra.

        Returns
        -------
        ndarray of shape (n_samples, latent_dim, n_pixels)
            Per unit of normalised flux.
        """
        module = self._module()
        X = self._check_X(X, reset=False)
        device = torch.device(self.net_.device)
        out = _ved_infer.latent_jacobian(module, X, self._standardise, device)
        out *= self._inv_scale_t.numpy()
        out[np.broadcast_to((X > 2)[:, None, :], out.shape)] = 0.0
        masked = np.isnan(X) | ~np.isfinite(self.scale_)
        out[np.broadcast_to(masked[:, None, :], out.shape)] = np.nan
        return out.astype(X.dtype, copy=False)

    def score(self, X: Any, y: Any = None, *, psd: Any = None, psd_weight: Any = None) -> float:
        """Negative mean loss per star: higher is better (for ``GridSearchCV``).

        ``-mean_i [sum_j w_ij (ŷ_ij - y_ij)² + beta · KL_i]``, the training loss
        (:meth:`skages._ved.VEDNet.get_loss`) with the decoder fed the latent mean
        instead of a draw, so it is deterministic. The target is resolved as in
        :meth:`fit`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_pixels)
            Continuum-normalised spectra.
        y : array-like, default=None
            As in :meth:`fit`.
        psd : array-like of shape (n_samples, n_psd), default=None
            Natural-log PSDs. Routable as metadata.
        psd_weight : array-like of shape (n_samples, n_psd) or (n_psd,), default=None
            Non-negative pixel weights; ones by default. Routable as metadata.

        Returns
        -------
        float
        """
        self._module()
        X = self._check_X(X, reset=False)
        target = self._check_target(y, psd, X.shape[0], "score")
        weight = self._check_weight(psd_weight, target)
        device = torch.device(self.net_.device)
        losses = _ved_infer.row_losses(self.net_, X, target, weight, self._standardise, device)
        total = float(losses.sum())
        return -total / X.shape[0]

    # ------------------------------------------------------------------------ astroNN
    @classmethod
    def from_astronn(
        cls, path: str | os.PathLike, *, device: str = "cpu", **params: Any
    ) -> SpectrumToPSDEncoder:
        """A fitted encoder from an astroNN ``ApokascEncoderDecoder`` model folder.

        Reads the published model's format (``astroNN_VEncoderDecoder/``:
        ``model_weights.h5``, ``astroNN_model_parameter.json``, ``hyperparameter.txt``)
        with h5py alone, no TensorFlow or astroNN. The architecture, the per-pixel
        ``mean_`` and ``scale_`` (the folder's ``input_mean`` / ``input_std``) and the
        weights come from the folder; :meth:`transform`, :meth:`decode`,
        :meth:`latent_jacobian` and :meth:`score` then give astroNN's
        ``predict_encoder``, ``predict_decoder``, ``jacobian_latent`` (per unit of flux)
        and training loss at z = z_mean, to float32 rounding (see the user guide page
        :doc:`/user_guide/published_code`).

        Parameters
        ----------
        path : path-like
            The model folder (or one of its files).
        device : str, default="cpu"
            PyTorch device to run on.
        **params
            Other constructor parameters (``output_std``, ``lr``, ``random_state``,
            ...); the architecture parameters come from the folder and may not be
            given. ``lr`` and ``batch_size`` default to the folder's.

        Returns
        -------
        SpectrumToPSDEncoder
            Fitted: ``n_iter_`` is the folder's number of epochs, ``loss_curve_`` is
            empty (astroNN does not store it).

        Raises
        ------
        FileNotFoundError, ValueError
            As :func:`skages.io.read_astronn_model`: a missing file, another model
            type, a newer layout or a wrong shape, with the file named.
        """
        from skages._ved_astronn import encoder_from_astronn

        return encoder_from_astronn(cls, path, device, params)

    def to_astronn(self, path: str | os.PathLike, *, overwrite: bool = False) -> os.PathLike:
        """Write the fitted encoder as an astroNN ``ApokascEncoderDecoder`` model folder.

        The folder has the published model's layout (``model_weights.h5`` with
        astroNN's layer names and Keras' kernel layouts, ``astroNN_model_parameter.json``
        with ``mean_`` / ``scale_`` as ``input_mean`` / ``input_std`` and the
        hyperparameters, ``hyperparameter.txt``), so astroNN 1.1's ``load_folder``
        reads it, and :meth:`from_astronn` gives back identical outputs.

        Parameters
        ----------
        path : path-like
            Folder to write (e.g. ``astroNN_VEncoderDecoder``).
        overwrite : bool, default=False
            Replace an existing folder's files.

        Returns
        -------
        pathlib.Path
            The folder.

        Raises
        ------
        ValueError
            If the architecture is not one astroNN's ``ApokascEncoderDecoder`` has (two
            encoder and two decoder convolutions, a PSD length divisible by 4).
        """
        from skages._ved_astronn import encoder_to_astronn

        return encoder_to_astronn(self, path, overwrite)

    # ------------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state = dict(state)
        state.pop("_mean_t", None)
        state.pop("_inv_scale_t", None)
        net = state.pop("net_", None)
        if net is not None:
            module = net.module_
            state["_net_state"] = {
                "init": _module_init_kwargs(module),
                "weights": module_state_to_numpy(module),
                "history": net.history.to_list(),
                "device": str(net.device),
            }
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_net_state", None)
        state.setdefault("resume", True)  # saved before the parameter existed
        super().__setstate__(state)
        if "mean_" in state:
            self._set_scaler(state["mean_"], state["scale_"])
        if saved is not None:
            device = torch.device(saved["device"])
            if device.type == "cuda" and not torch.cuda.is_available():
                logger.warning(
                    "this SpectrumToPSDEncoder was trained on %s; no GPU here, loading on cpu",
                    device,
                )
                device = torch.device("cpu")
            net = self._make_net(saved["init"], device)
            net.initialize()
            net.module_.load_state_dict(
                {k: torch.as_tensor(v) for k, v in saved["weights"].items()}
            )
            net.module_.eval()
            net.history_ = History(saved["history"])
            self.net_ = net


def _check_positive_int(value: Any, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _normal(random_state: Any, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(random_state, np.random.Generator):
        return random_state.standard_normal(shape)
    return check_random_state(random_state).standard_normal(shape)
