"""How close the encoder's training step runs to what the CPU can do at all.

The training of the released network is a fixed amount of float32 arithmetic: this
script counts it from the architecture (multiply-adds of every convolution and dense
layer, forward and backward; the gradient of the input spectrum is not needed), measures
the CPU's float32 matrix-product peak (MKL ``sgemm`` of 4096 × 4096 matrices, the best a
dense kernel does on this machine), then times skages' chunked training step
(``VEDNet.train_step_single`` on the worker pool, forward, backward and gradient sum;
no optimiser, no data loading) and, per kernel, the layers that dominate it: the second
encoder convolution and the last transposed convolution of the decoder, each as skages
runs it and the other way (oneDNN's convolution or matrix products). It prints
the GFLOP/s of each and the fraction of the peak, and, given astroNN's median epoch time
from ``bench_vs_astronn.py --mode train`` on the same machine, the fraction of the peak a
1.5× faster epoch would need.

Usage::

    python benchmarks/bench_roofline.py [--threads 2] [--n 512] [--astronn-epoch 22.8 \\
        --pairs 8820] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F


def training_flops(module) -> tuple[float, float]:
    """Float operations (2 per multiply-add) of one spectrum: forward, backward."""
    fwd = bwd = 0.0
    length = module.n_pixels
    for i, (conv, (_, _, out)) in enumerate(
        zip(module.encoder_convs, module.encoder_padding, strict=True)
    ):
        n_out, n_in, size = conv.weight.shape
        f = 2.0 * out * size * n_in * n_out
        fwd += f
        bwd += f if i == 0 else 2 * f  # weight gradient; input gradient but for the spectrum
        length = out
    for dense in (module.hidden, module.latent_mean, module.latent_logvar, module.decoder_input):
        f = 2.0 * dense.in_features * dense.out_features
        fwd += f
        bwd += 2 * f
    length = module.base_length
    for deconv in module.decoder_convs:
        n_in, n_out, size = deconv.weight.shape
        f = 2.0 * length * size * n_in * n_out
        fwd += f
        bwd += 2 * f
        length *= 2
    n_in, _, size = module.output_conv.weight.shape
    f = 2.0 * length * size * n_in
    return fwd + f, bwd + 2 * f


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sgemm_peak(threads: int, repeats: int = 5) -> float:
    """GFLOP/s of a 4096³ float32 matrix product with ``threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    try:
        return 2 * 4096**3 / _best(lambda: torch.mm(a, b), repeats) / 1e9
    finally:
        torch.set_num_threads(previous)


def train_step_rate(n: int, threads: int, repeats: int) -> float:
    """Spectra per second of skages' chunked training step (batches of 128)."""
    from skages._ved import VariationalEncoderDecoder, VEDNet, cpu_workers

    torch.set_num_threads(threads)
    module = VariationalEncoderDecoder(seed=0)
    net = VEDNet(module=module, criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam)
    net.initialize()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, module.n_pixels, generator=g)
    y = torch.stack([torch.randn(n, module.n_psd, generator=g), torch.ones(n, module.n_psd)], 1)

    def epoch():
        with cpu_workers("cpu") as pool:
            net.worker_pool = pool
            for start in range(0, n, 128):
                net.module_.zero_grad()
                net.train_step_single((x[start : start + 128], y[start : start + 128]))
        net.worker_pool = None

    return n / _best(epoch, repeats)


def conv2_kernels(repeats: int) -> dict[str, float]:
    """GFLOP/s, one thread, of the second encoder convolution (the step's largest layer)
    forward and backward on 16 spectra: as oneDNN's direct convolution (what skages now
    runs) and as the row-shifted matrix products skages ran before."""
    from skages._ved import _ChannelsLastConv, _strided_conv_onednn

    torch.set_num_threads(1)
    n, n_pairs, out = 16, 1882, 1879
    x = torch.randn(n, 2 * n_pairs, 32, requires_grad=True)
    w = torch.randn(64, 32, 8, requires_grad=True)
    b = torch.zeros(64, requires_grad=True)
    grad = torch.randn(n, out, 64)
    flops = 3 * 2.0 * n * out * 8 * 32 * 64

    def onednn():
        torch.autograd.grad(_strided_conv_onednn(x, w, b, out), [x, w, b], grad)

    def matmul():
        weight = w.view(64, 32, 4, 2).permute(2, 3, 1, 0).reshape(4, 64, 64)
        y = _ChannelsLastConv.apply(x.view(n, n_pairs, 64), weight, b, "shift", False)
        torch.autograd.grad(y[:, :out], [x, w, b], grad)

    kernels = {"oneDNN": onednn, "matmul": matmul}
    return {k: flops / _best(f, repeats) / 1e9 for k, f in kernels.items()}


def deconv_kernels(repeats: int) -> dict[str, float]:
    """GFLOP/s, one thread, of the last stride-2 transposed convolution of the decoder
    (16 → 16 channels, 32 taps, 1,046 → 2,092 positions) forward and backward on 16
    spectra: as skages runs it (polyphase matrix products) and as oneDNN's."""
    from skages._ved import _conv1d_cl, _polyphase_weight

    torch.set_num_threads(1)
    n, length, crop = 16, 1046, 15
    x = torch.randn(n, length, 16, requires_grad=True)
    w = torch.randn(16, 16, 32, requires_grad=True)
    b = torch.zeros(16, requires_grad=True)
    grad = torch.randn(n, 2 * length, 16)
    flops = 3 * 2.0 * n * length * 32 * 16 * 16

    def matmul():
        weight, left, right = _polyphase_weight(w, crop)
        y = _conv1d_cl(x, weight, b.repeat(2), left, right, True).reshape(n, 2 * length, 16)
        torch.autograd.grad(y, [x, w, b], grad)

    def onednn():
        image = x.view(n, 1, length, 16).permute(0, 3, 1, 2)
        kernel = w.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        y = F.conv_transpose2d(image, kernel, b, stride=(1, 2))[..., crop : crop + 2 * length]
        y = F.relu(y.permute(0, 2, 3, 1).reshape(n, 2 * length, 16))
        torch.autograd.grad(y, [x, w, b], grad)

    kernels = {"matmul": matmul, "oneDNN": onednn}
    return {k: flops / _best(f, repeats) / 1e9 for k, f in kernels.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=512, help="spectra per timed pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--astronn-epoch", type=float, help="astroNN's median epoch (s), same CPU")
    p.add_argument("--pairs", type=int, default=8820, help="training pairs of that epoch")
    p.add_argument("--quick", action="store_true", help="smoke run: 128 spectra, 1 repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 128, 1
    from skages._ved import VariationalEncoderDecoder

    print(f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    fwd, bwd = training_flops(VariationalEncoderDecoder(seed=0))
    per = fwd + bwd
    print(f"arithmetic per training spectrum: {fwd / 1e9:.4f} GFLOP forward + "
          f"{bwd / 1e9:.4f} backward = {per / 1e9:.4f} GFLOP")  # fmt: skip
    peak1, peak = sgemm_peak(1), sgemm_peak(args.threads)
    print(f"sgemm 4096³: {peak1:.1f} GFLOP/s on 1 thread, {peak:.1f} on {args.threads}")
    for name, rate in conv2_kernels(args.repeats).items():
        print(f"encoder conv 2, forward + backward, 1 thread, {name:6s}: {rate:6.1f} GFLOP/s "
              f"({100 * rate / peak1:.0f} % of the 1-thread sgemm)")  # fmt: skip
    for name, rate in deconv_kernels(args.repeats).items():
        print(f"decoder deconv 2, forward + backward, 1 thread, {name:6s}: {rate:6.1f} GFLOP/s "
              f"({100 * rate / peak1:.0f} % of the 1-thread sgemm)")  # fmt: skip
    import skages._ved as ved

    onednn_channels = ved._ONEDNN_MIN_CHANNELS
    try:  # the same step with every encoder convolution as matrix products (before)
        ved._ONEDNN_MIN_CHANNELS = 10**9
        before = train_step_rate(args.n, args.threads, args.repeats)
    finally:
        ved._ONEDNN_MIN_CHANNELS = onednn_channels
    rate = train_step_rate(args.n, args.threads, args.repeats)
    for name, r in (("all matmul", before), ("as skages", rate)):
        gflops = r * per / 1e9
        print(f"skages training step ({name}), {args.threads} threads: {r:.0f} spectra/s = "
              f"{gflops:.1f} GFLOP/s ({100 * gflops / peak:.0f} % of sgemm)")  # fmt: skip
    print(f"oneDNN for encoder conv 2: {rate / before:.2f}x the all-matmul step")
    at_peak = args.pairs * per / (peak * 1e9)
    print(f"an epoch of {args.pairs} pairs: {args.pairs / rate:.1f} s at this step's speed, "
          f"{at_peak:.1f} s at the sgemm peak (forward and backward only)")  # fmt: skip
    if args.astronn_epoch:
        need = args.astronn_epoch / 1.5
        print(f"astroNN's epoch {args.astronn_epoch:.1f} s: 1.5× faster is {need:.1f} s, "
              f"{100 * at_peak / need:.0f} % of the sgemm peak sustained over the epoch; "
              f"astroNN itself runs at {100 * at_peak / args.astronn_epoch:.0f} %")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
