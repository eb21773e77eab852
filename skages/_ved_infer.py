"""Batched inference of a fitted :class:`skages._ved.VariationalEncoderDecoder`.

The helpers behind :meth:`~skages.encoder.SpectrumToPSDEncoder.transform`,
``predict_psd``, ``decode``, ``latent_jacobian`` and ``score``: they stream the spectra in
blocks of :data:`BLOCK_ROWS` (bounded memory whatever the number of spectra), standardise
each block with the estimator's scaler, and push fixed-size chunks through the module,
on a thread pool on the CPU (:func:`skages._ved.cpu_workers`). Every chunk has the same
shapes, so a row's result does not depend on the other rows, its position or the thread
count.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from skages._ved import (
    DECODE_CHUNK,
    INFERENCE_CHUNK,
    VariationalEncoderDecoder,
    cpu_workers,
    map_chunks,
)

__all__ = [
    "BLOCK_ROWS",
    "decode",
    "encode",
    "encode_chunk",
    "latent_jacobian",
    "map_standardised",
    "module_init_kwargs",
    "pad_rows",
    "position_invariant",
    "row_losses",
]

#: Rows standardised at once when streaming (transform, predict_psd, score, ...): bounds
#: the peak memory of inference whatever the number of spectra.
BLOCK_ROWS = 512

Standardise = Callable[[np.ndarray, torch.device], torch.Tensor]

logger = logging.getLogger("skages.encoder")
# architecture -> rows per encoder call found position-invariant on this CPU
_CHUNK_CHECKED: dict[tuple, int] = {}
_CHUNK_LOCK = threading.Lock()


def pad_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` followed by zero rows up to ``n`` rows (fixed-size blocks)."""
    if x.shape[0] >= n:
        return x
    return torch.cat([x, x.new_zeros((n - x.shape[0], *x.shape[1:]))])


def module_init_kwargs(module: VariationalEncoderDecoder) -> dict[str, Any]:
    """Constructor arguments that rebuild ``module``'s architecture."""
    return {
        "n_pixels": module.n_pixels,
        "n_psd": module.n_psd,
        "latent_dim": module.latent_dim,
        "encoder_filters": tuple(c.out_channels for c in module.encoder_convs),
        "encoder_kernel_size": module.encoder_convs[0].kernel_size[0],
        "pool_size": module.pool_size,
        "hidden_units": module.hidden.out_features,
        "decoder_filters": tuple(c.out_channels for c in module.decoder_convs),
        "decoder_kernel_size": module.output_conv.kernel_size[0],
    }


def position_invariant(module: VariationalEncoderDecoder, n: int) -> bool:
    """Whether chunks of ``n`` rows encode every row as it is encoded alone, bit for bit.

    Encodes ``n`` seeded random spectra as one chunk and each of them alone (padded to
    ``n`` rows, at position 0): the same arithmetic at every position of the chunk. The
    kernels are chosen from the shapes, which padding keeps fixed, so this checks the one
    thing that could still differ, a BLAS kernel for the rows of a remainder tile. Runs
    with the caller's thread settings (one torch thread inside :func:`cpu_workers`).
    """
    x = torch.randn((n, module.n_pixels), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        mean, logvar = module.encode(x)
        for i in range(n):
            m, lv = module.encode(pad_rows(x[i : i + 1], n))
            if not (torch.equal(m[0], mean[i]) and torch.equal(lv[0], logvar[i])):
                return False
    return True


def encode_chunk(module: VariationalEncoderDecoder, device: torch.device) -> int:
    """Rows per encoder call: :data:`INFERENCE_CHUNK` where this CPU's kernels are
    position-invariant for it (checked once per architecture and process), else one."""
    if device.type != "cpu":
        return BLOCK_ROWS
    key = (*module_init_kwargs(module).items(), module.fast)
    with _CHUNK_LOCK:
        if key not in _CHUNK_CHECKED:
            ok = INFERENCE_CHUNK == 1 or position_invariant(module, INFERENCE_CHUNK)
            if not ok:
                logger.info(
                    "encoding one spectrum per call: chunks of %d rows are not rounded the "
                    "same at every position on this CPU",
                    INFERENCE_CHUNK,
                )
            _CHUNK_CHECKED[key] = INFERENCE_CHUNK if ok else 1
        return _CHUNK_CHECKED[key]


def map_standardised(
    X: np.ndarray,
    standardise: Standardise,
    device: torch.device,
    fn: Callable[[slice, torch.Tensor], None],
    step: int | None = None,
) -> None:
    """Call ``fn(rows, x)`` on chunks of ``step`` standardised spectra, streaming in blocks.

    ``rows`` is the slice of ``X`` and ``x`` its float32 tensor on ``device``, possibly
    followed by zero rows: ``fn`` must use only the first ``rows.stop - rows.start`` rows
    of what it computes, and write them in place. On the CPU the chunks run on a thread
    pool (:func:`skages._ved.cpu_workers`), by default one row each; elsewhere they are
    blocks of :data:`BLOCK_ROWS`. Every call has the same shapes, so the kernels do not
    change with the number of rows of ``X``.
    """
    if step is None:
        step = 1 if device.type == "cpu" else BLOCK_ROWS
    with cpu_workers(device) as pool:
        for start in range(0, X.shape[0], BLOCK_ROWS):
            block = X[start : start + BLOCK_ROWS]

            def work(i: int, block=block, offset=start) -> None:
                x = pad_rows(standardise(block[i : i + step], device), step)
                n = min(step, block.shape[0] - i)
                fn(slice(offset + i, offset + i + n), x)

            map_chunks(pool, work, range(0, block.shape[0], step))


def encode(
    module: VariationalEncoderDecoder,
    X: np.ndarray,
    standardise: Standardise,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent means and log-variances (float32 arrays) of validated spectra."""
    mean = np.empty((X.shape[0], module.latent_dim), dtype=np.float32)
    logvar = np.empty_like(mean)

    def fn(rows: slice, x: torch.Tensor) -> None:
        n = rows.stop - rows.start
        with torch.inference_mode():
            m, lv = module.encode(x)
        mean[rows] = m[:n].cpu().numpy()
        logvar[rows] = lv[:n].cpu().numpy()

    with cpu_workers(device):  # checked with the settings the chunks run under
        step = encode_chunk(module, device)
    map_standardised(X, standardise, device, fn, step)
    return mean, logvar


def decode(module: VariationalEncoderDecoder, Z: np.ndarray, device: torch.device) -> np.ndarray:
    """Natural-log PSDs (float32) of latent points, in fixed-size padded chunks."""
    out = np.empty((Z.shape[0], module.n_psd), dtype=np.float32)
    step = DECODE_CHUNK if device.type == "cpu" else BLOCK_ROWS

    def work(i: int) -> None:
        z = torch.as_tensor(Z[i : i + step], dtype=torch.float32, device=device)
        n = len(z)
        with torch.inference_mode():
            out[i : i + n] = module.decode(pad_rows(z, step))[:n].cpu().numpy()

    with cpu_workers(device) as pool:
        map_chunks(pool, work, range(0, Z.shape[0], step))
    return out


def latent_jacobian(
    module: VariationalEncoderDecoder,
    X: np.ndarray,
    standardise: Standardise,
    device: torch.device,
) -> np.ndarray:
    """``d mean_k / d x_j`` (float32) with respect to the standardised input."""
    k = module.latent_dim
    out = np.empty((X.shape[0], k, X.shape[1]), dtype=np.float32)

    def fn(rows: slice, x: torch.Tensor) -> None:
        n = rows.stop - rows.start
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            mean, _ = module.encode(x)
            for latent in range(k):
                (grad,) = torch.autograd.grad(
                    mean[:n, latent].sum(), x, retain_graph=latent < k - 1
                )
                out[rows, latent] = grad[:n].cpu().numpy()

    map_standardised(X, standardise, device, fn)
    return out


def row_losses(
    net: Any,
    X: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    standardise: Standardise,
    device: torch.device,
) -> np.ndarray:
    """Per-row evaluation losses (the chunk mean on each of its rows), float64."""
    module = net.module_
    losses = np.empty(X.shape[0], dtype=np.float64)

    def fn(rows: slice, x: torch.Tensor) -> None:
        n = rows.stop - rows.start
        y_true = torch.as_tensor(np.stack([target[rows], weight[rows]], axis=1))
        with torch.inference_mode():
            y_pred = tuple(t[:n] for t in module(x))
            loss = net.get_loss(y_pred, y_true.to(x.device), X=x[:n], training=False)
        losses[rows] = float(loss)  # the chunk mean, on each of its rows

    map_standardised(X, standardise, device, fn)
    return losses
