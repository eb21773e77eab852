"""PyTorch side of :class:`skages.encoder.SpectrumToPSDEncoder`.

Three things live here:

* :class:`VariationalEncoderDecoder`, the ``torch.nn.Module`` of Leung et al. (2023):
  strided convolutions and a dense layer encode a standardised spectrum into a
  Gaussian latent posterior; a dense layer and transposed convolutions decode a
  latent point into a natural-log power spectrum.
* Fast CPU kernels for the same arithmetic, on a channels-last layout. PyTorch's own
  convolutions on the usual (batch, channels, length) layout spend most of their time
  outside the floating-point units on this network (long sequences, few channels), so
  on the CPU the convolutions with few input channels run as matrix products: a
  stride-2 convolution becomes a stride-1 convolution over pairs of positions, a
  stride-2 transposed convolution becomes a stride-1 convolution with twice the output
  channels (polyphase form), and a stride-1 convolution with many input channels is a
  sum of row-shifted matrix products, which needs no im2col copy at all; their backward
  passes are written by hand. An encoder convolution with many input channels instead
  runs as oneDNN's direct convolution on a channels-last view of the same memory
  (:func:`_strided_conv_onednn`), which keeps the vector units busier than thin matrix
  products (``benchmarks/bench_roofline.py``). Training goes through the same kernels.
  ``VariationalEncoderDecoder.fast = False`` selects the plain ``torch.nn.functional``
  reference path (used on GPUs, where cuDNN is the better choice, and by the tests as
  the reference).
* :class:`VEDNet`, the skorch ``NeuralNet`` that trains the module. Its
  :meth:`VEDNet.get_loss` is the documented place to change the loss.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from torch import nn

__all__ = [
    "DECODE_CHUNK",
    "INFERENCE_CHUNK",
    "VEDNet",
    "VariationalEncoderDecoder",
    "cpu_workers",
    "map_chunks",
    "tf_same_padding",
    "ved_loss",
]

#: Spectra pushed through the encoder at once on the CPU when no gradient is needed.
#: Always this many: a short last chunk is padded with zero rows, so every call has the
#: same shapes and the matrix-product kernels make the same choices (blocking, micro-
#: kernels) whatever the batch; each output row is then computed by the same arithmetic
#: in the same order at any position of the chunk, and a row's latent is bit-identical
#: whatever the batch, its order and the thread count (``tests/test_encoder_determinism.py``
#: checks it on the machine at hand). Eight rows amortise the per-call overhead and the
#: dense layer's weights (most of the per-row cost of single-row calls) while every
#: intermediate array still fits in the CPU caches.
INFERENCE_CHUNK = 8
#: Latent points decoded at once on the CPU. Always this many: a short last chunk is
#: padded with zero rows, so every call has the same shapes (fixed-size blocks) and a
#: row's PSD does not depend on how many rows came with it.
DECODE_CHUNK = 8
#: Encoder convolutions with at least this many input channels run as oneDNN's direct
#: convolution (:func:`_strided_conv_onednn`), the others as matrix products.
_ONEDNN_MIN_CHANNELS = 32
#: Micro-batch size inside one optimiser step on the CPU (gradient accumulation: the
#: step is the same as on the whole batch, only the summation order differs).
TRAINING_CHUNK = 16


@contextlib.contextmanager
def cpu_workers(device: torch.device | str = "cpu") -> Iterator[ThreadPoolExecutor | None]:
    """Chunk-level parallelism on the CPU.

    The network's operations on one small chunk are too short to be split well across
    cores by PyTorch's intra-op threads: every operation ends at a barrier, and a core
    taken by another process stalls each of them. Instead, while this context is open,
    PyTorch runs one thread per operation and the chunks are spread over a pool of
    ``torch.get_num_threads()`` Python threads (operations release the GIL). Results do
    not depend on the number of threads. The previous thread setting is restored on exit
    (as scikit-learn does with ``threadpool_limits``).

    Yields the pool, or ``None`` (work in the calling thread) off the CPU, with one
    thread, or when already inside such a context.
    """
    n_threads = torch.get_num_threads()
    if torch.device(device).type != "cpu" or n_threads <= 1 or _WORKER_STATE.active:
        yield None
        return
    torch.set_num_threads(1)
    _WORKER_STATE.active = True
    try:
        with ThreadPoolExecutor(n_threads, thread_name_prefix="skages-ved") as pool:
            yield pool
    finally:
        _WORKER_STATE.active = False
        torch.set_num_threads(n_threads)


class _WorkerState:
    active = False


_WORKER_STATE = _WorkerState()


def map_chunks(pool: ThreadPoolExecutor | None, fn: Callable[[int], Any], starts: range) -> list:
    """``[fn(start) for start in starts]``, on ``pool`` if given (results in order)."""
    if pool is None:
        return [fn(start) for start in starts]
    return list(pool.map(fn, starts))


def tf_same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "same" padding of a 1-D convolution.

    Parameters
    ----------
    length : int
        Input length (pixels).
    kernel_size, stride : int
        Convolution kernel size and stride.

    Returns
    -------
    left, right, out_length : int
        Zero padding before and after the input, and the output length
        ``ceil(length / stride)``.
    """
    out_length = -(-length // stride)
    total = max((out_length - 1) * stride + kernel_size - length, 0)
    return total // 2, total - total // 2, out_length


# --------------------------------------------------------------------------------------
# Fast CPU kernels
# --------------------------------------------------------------------------------------


def _relu_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``grad`` where ``out > 0``, else 0 (ReLU's backward; one fused pass, unlike
    ``torch.where``, which is several times slower on the CPU)."""
    return torch.ops.aten.threshold_backward(grad, out, 0)


class _ChannelsLastConv(torch.autograd.Function):
    """Stride-1 1-D convolution on channels-last input, with ReLU and 2-max-pool fused.

    ``x`` is (batch, length, channels) and already padded, ``weight`` is
    (taps, channels, out_channels): ``y[b, l] = bias + sum_t x[b, l + t] @ weight[t]``,
    of length ``length - taps + 1``.

    ``method="shift"`` treats the batch as one long sequence and accumulates one
    matrix product per tap on row-shifted views of it (no copy; the few output rows
    that straddle two spectra are computed and ignored). ``method="im2col"`` copies
    the (contiguous) windows into a matrix and does one product: better when the
    channels are few, because each shifted product would then be too thin.

    ``relu`` applies ReLU; ``pool=True`` returns ``relu(maxpool2(y))`` instead (the bias
    is added after pooling, where it commutes with the max, on half the values);
    ``zero_rows=(a, b)`` sets the first ``a`` and last ``b`` output positions to zero
    (they are the zero padding of the next layer, produced in place).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, method, relu, pool=False, zero_rows=None):
        n_batch, length, n_in = x.shape
        n_taps, _, n_out = weight.shape
        out_length = length - n_taps + 1
        if method == "shift":
            rows = n_batch * length - n_taps + 1
            xf = x.view(n_batch * length, n_in)
            yf = x.new_empty(n_batch * length, n_out)
            torch.mm(xf[:rows], weight[0], out=yf[:rows])
            for t in range(1, n_taps):
                yf[:rows].addmm_(xf[t : t + rows], weight[t])
            y = yf.view(n_batch, length, n_out)[:, :out_length]
        else:
            cols = x.as_strided(
                (n_batch, out_length, n_taps * n_in), (length * n_in, n_in, 1)
            ).reshape(n_batch * out_length, n_taps * n_in)
            y = (cols @ weight.reshape(n_taps * n_in, n_out)).view(n_batch, out_length, n_out)
        ctx.method, ctx.relu, ctx.pool, ctx.zero_rows = method, relu, pool, zero_rows
        if pool:
            n_pooled = out_length // 2
            first, second = y[:, 0 : 2 * n_pooled : 2], y[:, 1 : 2 * n_pooled : 2]
            take_first = first >= second
            out = torch.maximum(first, second).add_(bias).clamp_(min=0)
            ctx.save_for_backward(x, weight, out, take_first)
            return out
        y.add_(bias)
        if relu:
            y.clamp_(min=0)
        if zero_rows is not None:
            y[:, : zero_rows[0]] = 0
            y[:, out_length - zero_rows[1] :] = 0
        ctx.save_for_backward(x, weight, y if relu else None, None)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y, take_first = ctx.saved_tensors
        n_batch, length, n_in = x.shape
        n_taps, _, n_out = weight.shape
        out_length = length - n_taps + 1
        shift = ctx.method == "shift"
        if ctx.pool:
            # unpool straight into the (batch, length, out) layout of the shift kernel
            n_pooled = y.shape[1]
            grad = _relu_backward(grad, y)
            grad_bias = grad.sum((0, 1))
            g = x.new_empty(n_batch, length if shift else out_length, n_out)
            g[:, 2 * n_pooled :] = 0
            torch.mul(grad, take_first, out=g[:, 0 : 2 * n_pooled : 2])
            torch.sub(grad, g[:, 0 : 2 * n_pooled : 2], out=g[:, 1 : 2 * n_pooled : 2])
        else:
            if ctx.relu:
                grad = _relu_backward(grad, y)
            elif ctx.zero_rows is not None:
                grad = grad.clone()
                grad[:, : ctx.zero_rows[0]] = 0
                grad[:, out_length - ctx.zero_rows[1] :] = 0
            grad_bias = grad.sum((0, 1))
            if shift:
                g = x.new_empty(n_batch, length, n_out)
                g[:, :out_length] = grad
                g[:, out_length:] = 0
            else:
                g = grad.contiguous()
        grad_x = grad_weight = None
        if shift:
            rows = n_batch * length - n_taps + 1
            gf = g.view(n_batch * length, n_out)[:rows]
            xf = x.view(n_batch * length, n_in)
            if ctx.needs_input_grad[1]:
                grad_weight = torch.stack([xf[t : t + rows].T @ gf for t in range(n_taps)])
            if ctx.needs_input_grad[0]:
                dxf = x.new_empty(n_batch * length, n_in)
                torch.mm(gf, weight[0].T, out=dxf[:rows])
                dxf[rows:] = 0
                for t in range(1, n_taps):
                    dxf[t : t + rows].addmm_(gf, weight[t].T)
                grad_x = dxf.view(n_batch, length, n_in)
        else:
            g2 = g.view(n_batch * out_length, n_out)
            if ctx.needs_input_grad[1]:
                cols = x.as_strided(
                    (n_batch, out_length, n_taps * n_in), (length * n_in, n_in, 1)
                ).reshape(n_batch * out_length, n_taps * n_in)
                grad_weight = (cols.T @ g2).view(n_taps, n_in, n_out)
            if ctx.needs_input_grad[0]:
                dcols = (g2 @ weight.reshape(n_taps * n_in, n_out).T).view(
                    n_batch, out_length, n_taps, n_in
                )
                grad_x = x.new_zeros(n_batch, length, n_in)
                for t in range(n_taps):
                    grad_x[:, t : t + out_length] += dcols[:, :, t]
        return grad_x, grad_weight, grad_bias, None, None, None, None


class _PairMaxRelu(torch.autograd.Function):
    """``relu(max_pool1d(y, 2))`` over the length axis of channels-last (batch, length, ch).

    The max of each pair is taken by one comparison of the even and odd positions, as
    :class:`_ChannelsLastConv` does when it fuses the pool (a ``max`` over a pool axis of
    length 2 with indices is several times slower on the CPU).
    """

    @staticmethod
    def forward(ctx, y):
        n_pooled = y.shape[1] // 2
        first, second = y[:, 0 : 2 * n_pooled : 2], y[:, 1 : 2 * n_pooled : 2]
        take_first = first >= second
        out = torch.maximum(first, second).clamp_(min=0)
        ctx.length = y.shape[1]
        ctx.save_for_backward(out, take_first)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, take_first = ctx.saved_tensors
        n_batch, n_pooled, n_ch = out.shape
        grad = _relu_backward(grad, out)
        dy = grad.new_empty(n_batch, ctx.length, n_ch)
        dy[:, 2 * n_pooled :] = 0
        torch.mul(grad, take_first, out=dy[:, 0 : 2 * n_pooled : 2])
        torch.sub(grad, dy[:, 0 : 2 * n_pooled : 2], out=dy[:, 1 : 2 * n_pooled : 2])
        return dy


def _strided_conv_onednn(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, out_length: int
) -> torch.Tensor:
    """Stride-2 convolution of padded channels-last ``x`` (batch, length, in) by oneDNN.

    ``x`` is viewed, without a copy, as a channels-last (batch, in, 1, length) image, so
    PyTorch runs oneDNN's direct convolution (forward and backward), which keeps the
    vector units busier than matrix products when there are many input channels.
    ``weight`` is the ``Conv1d`` weight (out, in, taps). Returns (batch, out_length, out),
    without activation.
    """
    n_batch, length, n_in = x.shape
    n_out = weight.shape[0]
    image = x.view(n_batch, 1, length, n_in).permute(0, 3, 1, 2)
    kernel = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(image, kernel, bias, stride=(1, 2))[..., :out_length]
    return y.permute(0, 2, 3, 1).reshape(n_batch, out_length, n_out)


class _ReluMaxPool(torch.autograd.Function):
    """``relu(max_pool1d(y))`` over the length axis of channels-last (batch, length, ch).

    For pools other than 2 (which :class:`_ChannelsLastConv` fuses into the convolution).
    """

    @staticmethod
    def forward(ctx, y, pool):
        n_batch, length, n_ch = y.shape
        n_pooled = length // pool
        values, index = y[:, : n_pooled * pool].reshape(n_batch, n_pooled, pool, n_ch).max(2)
        out = values.clamp_(min=0)
        ctx.shape = (n_batch, length, n_ch, pool)
        ctx.save_for_backward(out, index)
        return out

    @staticmethod
    def backward(ctx, grad):
        out, index = ctx.saved_tensors
        n_batch, length, n_ch, pool = ctx.shape
        n_pooled = out.shape[1]
        dy = grad.new_zeros(n_batch, length, n_ch)
        dy[:, : n_pooled * pool].view(n_batch, n_pooled, pool, n_ch).scatter_(
            2, index.unsqueeze(2), _relu_backward(grad, out).unsqueeze(2)
        )
        return dy, None


class _DiagonalSum(torch.autograd.Function):
    """``out[b, n, o] = sum_j g[b, n + j, j * n_out + o]`` for ``j < n_taps``.

    The overlap-add of a stride-1 transposed convolution whose per-tap products
    ``g`` were computed by one matrix product.
    """

    @staticmethod
    def forward(ctx, g, n_taps, out_length):
        n_batch, length, width = g.shape
        n_out = width // n_taps
        g = g.contiguous()
        view = g.as_strided(
            (n_batch, out_length, n_taps, n_out), (length * width, width, width + n_out, 1)
        )
        ctx.geometry = (n_batch, length, width, n_taps, n_out, out_length)
        return view.sum(2)

    @staticmethod
    def backward(ctx, grad):
        n_batch, length, width, n_taps, n_out, out_length = ctx.geometry
        dg = grad.new_zeros(n_batch, length, width)
        dg.as_strided(
            (n_batch, out_length, n_taps, n_out), (length * width, width, width + n_out, 1)
        ).copy_(grad.unsqueeze(2).expand(n_batch, out_length, n_taps, n_out))
        return dg, None, None


def _polyphase_weight(weight: torch.Tensor, crop: int) -> tuple[torch.Tensor, int, int]:
    """Stride-2 ``ConvTranspose1d`` weight as a stride-1 convolution weight.

    For output ``n = 2m + r`` cropped by ``crop`` pixels at the start,
    ``out[2m + r] = sum_d x[m + d] @ weight[:, :, r + crop - 2d]``; the two phases ``r``
    become two blocks of output channels.

    Returns
    -------
    weight : tensor of shape (taps, in_channels, 2 * out_channels)
    pad_left, pad_right : int
        Zero padding of the input (channels-last) that makes the output length equal
        the input length.
    """
    n_in, n_out, size = weight.shape
    d_values = [
        d for d in range(-size, size + 1) if any(0 <= r + crop - 2 * d < size for r in (0, 1))
    ]
    zero = weight.new_zeros(n_in, n_out)
    taps = []
    for d in d_values:
        blocks = []
        for r in (0, 1):
            k = r + crop - 2 * d
            blocks.append(weight[:, :, k] if 0 <= k < size else zero)
        taps.append(torch.cat(blocks, 1))
    return torch.stack(taps), -d_values[0], d_values[-1]


def _grouped_weight(weight: torch.Tensor, group: int) -> torch.Tensor:
    """Weight of the same stride-1 convolution on groups of ``group`` positions.

    With ``X'[j] = (x[s j], ..., x[s j + s - 1])`` and likewise ``Y'``,
    ``y[l] = sum_t x[l + t] @ w[t]`` becomes ``Y'[j] = sum_u X'[j + u] @ w'[u]`` with
    ``w'[u][(b, c), (a, o)] = w[s u + b - a][c, o]`` (zero outside the kernel): fewer,
    wider taps, so each matrix product is thick enough to run near peak speed.
    """
    n_taps, n_in, n_out = weight.shape
    s = group
    n_grouped = (s - 1 + n_taps - 1) // s + 1
    u = torch.arange(n_grouped)[:, None, None]
    b = torch.arange(s)[None, :, None]
    a = torch.arange(s)[None, None, :]
    index = s * u + b - a
    index = torch.where((index >= 0) & (index < n_taps), index, n_taps).to(weight.device)
    padded = torch.cat([weight, weight.new_zeros(1, n_in, n_out)])
    grouped = padded[index]  # (u, b, a, c, o)
    return grouped.permute(0, 1, 3, 2, 4).reshape(n_grouped, s * n_in, s * n_out)


def _conv1d_cl(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    left: int,
    right: int,
    relu: bool,
    pool: bool = False,
    zero_rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Stride-1 convolution of channels-last ``x`` (batch, length, ch) padded by zeros.

    ``weight`` is (taps, in, out); returns (batch, length + left + right - taps + 1, out).
    Picks the kernel: row-shifted products when there are many input channels, the same
    on groups of positions when there are few channels but many taps, im2col otherwise.
    """
    n_batch, length, n_in = x.shape
    n_taps, _, n_out = weight.shape
    out_length = length + left + right - n_taps + 1
    if n_in >= 32:
        group, method = 1, "shift"
    elif n_taps >= 8:
        group, method = -(-64 // n_in), "shift"
    else:
        group, method = 1, "im2col"
    if group == 1 or pool or zero_rows is not None:
        xp = F.pad(x, (0, 0, left, right)) if left or right else x
        return _ChannelsLastConv.apply(xp, weight, bias, method, relu, pool, zero_rows)
    n_grouped_taps = (group - 1 + n_taps - 1) // group + 1
    n_groups_out = -(-out_length // group)
    needed = (n_groups_out + n_grouped_taps - 1) * group
    xp = F.pad(x, (0, 0, left, needed - length - left))
    y = _ChannelsLastConv.apply(
        xp.view(n_batch, needed // group, group * n_in),
        _grouped_weight(weight, group),
        bias.repeat(group),
        method,
        relu,
    )
    return y.reshape(n_batch, n_groups_out * group, n_out)[:, :out_length]


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------


class VariationalEncoderDecoder(nn.Module):
    """The variational encoder-decoder of Leung et al. (2023), in PyTorch.

    Encoder: ``len(encoder_filters)`` stride-2 convolutions with TensorFlow "same"
    padding, ReLU after each, a max-pool of ``pool_size``, flatten (position-major,
    channel-minor, as Keras does), a dense layer of ``hidden_units`` with tanh, and two
    dense heads giving the latent mean and log-variance. Decoder: a dense layer to
    ``ceil(n_psd / 2**len(decoder_filters))`` positions of ``decoder_filters[0]``
    channels with ReLU, one stride-2 transposed convolution with ReLU per entry of
    ``decoder_filters`` and a final stride-1 transposed convolution to one channel,
    cropped to ``n_psd`` pixels and left linear.

    Parameters
    ----------
    n_pixels : int
        Length of the input spectra (pixels).
    n_psd : int
        Length of the output power spectra (pixels).
    latent_dim : int
    encoder_filters : sequence of int
    encoder_kernel_size : int
    pool_size : int
    hidden_units : int
    decoder_filters : sequence of int
    decoder_kernel_size : int
    seed : int or None
        Seed of the Glorot-uniform weight initialisation (biases are zero). ``None``
        draws from PyTorch's global generator.

    Attributes
    ----------
    fast : bool
        Use the channels-last matrix-product kernels (default on the CPU) instead of
        ``torch.nn.functional`` convolutions. Both compute the same function.
    noise_generator : torch.Generator or None
        Generator of the reparametrisation noise while training (``None``: global).
    """

    def __init__(
        self,
        n_pixels: int = 7514,
        n_psd: int = 2092,
        latent_dim: int = 5,
        encoder_filters: Sequence[int] = (32, 64),
        encoder_kernel_size: int = 8,
        pool_size: int = 2,
        hidden_units: int = 16,
        decoder_filters: Sequence[int] = (16, 16),
        decoder_kernel_size: int = 32,
        seed: int | None = None,
    ):
        super().__init__()
        encoder_filters = tuple(int(f) for f in encoder_filters)
        decoder_filters = tuple(int(f) for f in decoder_filters)
        if not encoder_filters or not decoder_filters:
            raise ValueError("encoder_filters and decoder_filters need at least one entry each")
        if decoder_kernel_size < 2:
            raise ValueError(f"decoder_kernel_size must be >= 2, got {decoder_kernel_size}")
        self.n_pixels = int(n_pixels)
        self.n_psd = int(n_psd)
        self.latent_dim = int(latent_dim)
        self.pool_size = int(pool_size)
        self.fast = True
        self.noise_generator: torch.Generator | None = None

        # layers are built on the meta device (no memory, no draw from PyTorch's global
        # generator), then materialised and initialised from our own generator
        meta = {"device": "meta"}
        self.encoder_padding = []
        length, channels = self.n_pixels, 1
        convs = []
        for n_filters in encoder_filters:
            left, right, length = tf_same_padding(length, encoder_kernel_size, 2)
            self.encoder_padding.append((left, right, length))
            convs.append(nn.Conv1d(channels, n_filters, encoder_kernel_size, stride=2, **meta))
            channels = n_filters
        self.encoder_convs = nn.ModuleList(convs)
        self.pooled_length = length // self.pool_size
        if self.pooled_length < 1:
            raise ValueError(
                f"spectra of {self.n_pixels} pixels are too short for this encoder: after "
                f"{len(encoder_filters)} stride-2 convolutions they have {length} positions, "
                f"fewer than pool_size={self.pool_size}"
            )
        self.flat_size = self.pooled_length * channels
        self.hidden = nn.Linear(self.flat_size, hidden_units, **meta)
        self.latent_mean = nn.Linear(hidden_units, latent_dim, **meta)
        self.latent_logvar = nn.Linear(hidden_units, latent_dim, **meta)

        self.base_length = math.ceil(self.n_psd / 2 ** len(decoder_filters))
        self.decoder_channels = decoder_filters[0]
        self.decoder_input = nn.Linear(latent_dim, self.base_length * decoder_filters[0], **meta)
        deconvs = []
        channels = decoder_filters[0]
        for n_filters in decoder_filters:
            deconvs.append(
                nn.ConvTranspose1d(channels, n_filters, decoder_kernel_size, stride=2, **meta)
            )
            channels = n_filters
        self.decoder_convs = nn.ModuleList(deconvs)
        self.output_conv = nn.ConvTranspose1d(channels, 1, decoder_kernel_size, stride=1, **meta)
        # TensorFlow "same" cropping of the transposed convolutions
        self.decoder_crop = (decoder_kernel_size - 2) // 2
        self.output_crop = (decoder_kernel_size - 1) // 2
        self.to_empty(device="cpu")
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Glorot-uniform weights and zero biases (Keras defaults), seeded."""
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
                with torch.no_grad():
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                    module.bias.zero_()

    def layer_lengths(self) -> dict[str, int]:
        """Length (positions) of the signal after each layer, padded input included."""
        lengths = {"input": self.n_pixels}
        for i, (left, right, out) in enumerate(self.encoder_padding):
            lengths[f"encoder_conv{i}_padded_input"] = (
                (self.n_pixels if i == 0 else self.encoder_padding[i - 1][2]) + left + right
            )
            lengths[f"encoder_conv{i}"] = out
        lengths["pool"] = self.pooled_length
        lengths["flatten"] = self.flat_size
        length = self.base_length
        lengths["decoder_reshape"] = length
        for i in range(len(self.decoder_convs)):
            length *= 2
            lengths[f"decoder_conv{i}"] = length
        lengths["output_conv_full"] = length + self.output_conv.kernel_size[0] - 1
        lengths["output"] = self.n_psd
        return lengths

    # ---------------------------------------------------------------- reference path
    def _encode_reference(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for conv, (left, right, _) in zip(self.encoder_convs, self.encoder_padding, strict=True):
            h = F.relu(conv(F.pad(h, (left, right))))
        h = F.max_pool1d(h, self.pool_size)
        return h.transpose(1, 2).flatten(1)

    def _decode_reference(self, h: torch.Tensor) -> torch.Tensor:
        h = h.transpose(1, 2)
        for deconv in self.decoder_convs:
            length = h.shape[-1]
            h = F.relu(deconv(h)[..., self.decoder_crop : self.decoder_crop + 2 * length])
        out = self.output_conv(h)
        return out[:, 0, self.output_crop : self.output_crop + self.n_psd]

    # ---------------------------------------------------------------- fast path
    def _encode_fast(self, x: torch.Tensor) -> torch.Tensor:
        n_batch = x.shape[0]
        h = x.unsqueeze(-1)
        n_layers = len(self.encoder_convs)
        fuse_pool = self.pool_size == 2
        padded = False  # does h already hold this layer's zero padding?
        for i, (conv, (left, _, out_length)) in enumerate(
            zip(self.encoder_convs, self.encoder_padding, strict=True)
        ):
            n_out, n_in, size = conv.weight.shape
            n_taps = -(-size // 2)
            last = i == n_layers - 1
            # the first layer also computes the next layer's zero padding, for free
            grow = (0, 0)
            if i == 0 and not last:
                next_left, next_right, _ = self.encoder_padding[1]
                grow = (next_left, next_right + (out_length + next_left + next_right) % 2)
            pad_left = left + 2 * grow[0]
            n_pairs = out_length + sum(grow) + n_taps - 1
            if not padded:
                h = F.pad(h, (0, 0, pad_left, 2 * n_pairs - h.shape[1] - pad_left))
            if n_in >= _ONEDNN_MIN_CHANNELS and not any(grow):
                h = _strided_conv_onednn(h, conv.weight, conv.bias, out_length)
                if last and fuse_pool:
                    h = _PairMaxRelu.apply(h)
                elif not last:
                    h = F.relu(h)
                padded = False
                continue
            # stride 2 -> stride 1 on pairs of positions: (taps, 2 * in, out) weight with
            # index (tap t, phase r, channel c)
            pairs = h.view(n_batch, n_pairs, 2 * n_in)
            weight = F.pad(conv.weight, (0, 2 * n_taps - size))
            weight = weight.view(n_out, n_in, n_taps, 2).permute(2, 3, 1, 0)
            weight = weight.reshape(n_taps, 2 * n_in, n_out)
            h = _conv1d_cl(
                pairs,
                weight,
                conv.bias,
                0,
                0,
                relu=not last or fuse_pool,
                pool=last and fuse_pool,
                zero_rows=grow if any(grow) else None,
            )
            padded = any(grow)
            if not last:
                h = h.contiguous() if padded else h[:, :out_length]
        if not fuse_pool:
            h = _ReluMaxPool.apply(h[:, : self.encoder_padding[-1][2]], self.pool_size)
        return h.reshape(n_batch, -1)

    def _decode_fast(self, h: torch.Tensor) -> torch.Tensor:
        n_batch = h.shape[0]
        for deconv in self.decoder_convs:
            n_out = deconv.weight.shape[1]
            weight, left, right = _polyphase_weight(deconv.weight, self.decoder_crop)
            length = h.shape[1]
            h = _conv1d_cl(h, weight, deconv.bias.repeat(2), left, right, True)
            h = h.reshape(n_batch, 2 * length, n_out)
        # stride-1 transposed convolution: one product for all taps, then overlap-add
        weight = self.output_conv.weight  # (in, 1, taps)
        n_in, _, size = weight.shape
        left = size - 1 - self.output_crop
        length = h.shape[1]
        right = max(0, self.n_psd + size - 1 - (left + length))
        h = F.pad(h, (0, 0, left, right))
        g = (h.reshape(-1, n_in) @ weight[:, 0].flip(-1)).view(n_batch, -1, size)
        return _DiagonalSum.apply(g, size, self.n_psd)[..., 0] + self.output_conv.bias

    # ---------------------------------------------------------------- public
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and log-variance of standardised spectra ``x`` (batch, n_pixels)."""
        use_fast = self.fast and x.device.type == "cpu" and x.dtype == torch.float32
        h = self._encode_fast(x) if use_fast else self._encode_reference(x)
        h = torch.tanh(self.hidden(h))
        return self.latent_mean(h), self.latent_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Natural-log PSD (batch, n_psd) of latent points ``z`` (batch, latent_dim)."""
        h = F.relu(self.decoder_input(z)).view(z.shape[0], self.base_length, self.decoder_channels)
        use_fast = self.fast and z.device.type == "cpu" and z.dtype == torch.float32
        return self._decode_fast(h) if use_fast else self._decode_reference(h)

    def forward(
        self, x: torch.Tensor, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoded PSD, latent mean and latent log-variance.

        In training mode the decoder sees ``z = mean + exp(logvar / 2) * eps`` with
        ``eps`` standard normal (given, or drawn from :attr:`noise_generator`); in
        evaluation mode it sees the mean.
        """
        mean, logvar = self.encode(x)
        z = mean
        if self.training:
            if eps is None:
                eps = self.draw_noise(len(x), mean.device, mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mean, logvar

    def draw_noise(
        self, n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Standard normal draws (n, latent_dim) from :attr:`noise_generator`."""
        return torch.randn(
            (n, self.latent_dim), generator=self.noise_generator, device=device, dtype=dtype
        )


# --------------------------------------------------------------------------------------
# Loss and skorch net
# --------------------------------------------------------------------------------------


def ved_loss(
    psd_pred: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    psd: torch.Tensor,
    weight: torch.Tensor,
    beta: float = 1.0,
) -> torch.Tensor:
    """Per-star loss of the variational encoder-decoder.

    ``sum_j w_j (psd_pred_j - psd_j)**2`` over the pixels where ``psd`` is not NaN,
    plus ``beta * KL`` with ``KL = -1/2 sum_k (1 + logvar_k - mean_k**2 - exp(logvar_k))``.

    Returns
    -------
    tensor of shape (batch,)
    """
    valid = ~torch.isnan(psd)
    residual = torch.where(valid, psd_pred - psd, 0.0)
    reconstruction = (torch.where(valid, weight, 0.0) * residual**2).sum(1)
    kl = -0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(1)
    return reconstruction + beta * kl


class VEDNet(NeuralNet):
    """skorch ``NeuralNet`` that trains :class:`VariationalEncoderDecoder`.

    The target ``y`` of each batch is an array of shape (batch, 2, n_psd) holding the
    natural-log PSD (NaN = masked) and its pixel weights. Override :meth:`get_loss` to
    change the loss; it receives the module output ``(psd_pred, mean, logvar)``.

    Parameters
    ----------
    *args, **kwargs
        Passed to :class:`skorch.NeuralNet`.
    beta : float, default=1.0
        Weight of the KL term.
    training_chunk : int or None, default=TRAINING_CHUNK
        On the CPU, each batch is pushed through forward and backward in chunks of
        this many spectra whose gradients accumulate into the same optimiser step
        (faster: the chunk's activations stay in cache). ``None`` disables it.

    Attributes
    ----------
    worker_pool : concurrent.futures.ThreadPoolExecutor or None
        Pool that runs the chunks in parallel (see :func:`cpu_workers`); set by
        :class:`~skages.encoder.SpectrumToPSDEncoder` for the duration of a fit.
    """

    def __init__(
        self, *args, beta: float = 1.0, training_chunk: int | None = TRAINING_CHUNK, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.beta = beta
        self.training_chunk = training_chunk
        self.worker_pool = None

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Weighted, NaN-masked sum of squares over PSD pixels plus ``beta`` × KL,
        averaged over the stars of the batch."""
        psd_pred, mean, logvar = y_pred
        y_true = y_true.to(psd_pred.device)
        return ved_loss(psd_pred, mean, logvar, y_true[:, 0], y_true[:, 1], self.beta).mean()

    def train_step_single(self, batch, **fit_params):
        """Loss and gradients of one batch.

        On the CPU the batch is cut into chunks of :attr:`training_chunk` spectra whose
        gradients (``torch.autograd.grad``, one call per chunk, on :attr:`worker_pool`
        when set) are summed in chunk order: the same step as on the whole batch, to
        float32 rounding, and the same for any number of threads.
        """
        Xi, yi = batch
        chunk = self.training_chunk
        n = len(Xi)
        if chunk is None or n <= chunk or torch.device(self.device).type != "cpu" or fit_params:
            return super().train_step_single(batch, **fit_params)
        self._set_training(True)
        module = self.module_
        Xi = torch.as_tensor(Xi, device=self.device)
        yi = torch.as_tensor(yi, device=self.device)
        eps = module.draw_noise(n, Xi.device, Xi.dtype)
        params = [p for p in module.parameters() if p.requires_grad]

        def work(start: int):
            rows = slice(start, start + chunk)
            with torch.enable_grad():
                y_pred = module(Xi[rows], eps=eps[rows])
                loss = self.get_loss(y_pred, yi[rows], X=Xi[rows], training=True)
                loss = loss * (len(eps[rows]) / n)
                grads = torch.autograd.grad(loss, params)
            return loss.detach(), grads, tuple(t.detach() for t in y_pred)

        results = map_chunks(getattr(self, "worker_pool", None), work, range(0, n, chunk))
        for i, param in enumerate(params):
            grad = results[0][1][i].clone()
            for result in results[1:]:
                grad += result[1][i]
            param.grad = grad if param.grad is None else param.grad + grad
        total = results[0][0].clone()
        for result in results[1:]:
            total += result[0]
        y_pred = tuple(torch.cat(parts) for parts in zip(*(r[2] for r in results), strict=True))
        return {"loss": total, "y_pred": y_pred}


def module_state_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters as CPU NumPy arrays (device-independent pickling)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}
