"""Speed of :class:`skages.encoder.SpectrumToPSDEncoder` against plain eager PyTorch.

The baseline is the released architecture written with stock ``torch.nn`` layers
(``Conv1d``, ``MaxPool1d``, ``ConvTranspose1d``) and run the way a PyTorch user would: the
encoder in batches of 128 under ``torch.no_grad``, training with Adam on batches of 128.
Ours is the estimator itself: ``transform`` on raw spectra (input validation and
standardisation included) and the training epochs of ``fit`` (skorch loop included). Both
use the same weights, and the script first checks that they compute the same latents, PSDs
and gradients to float32 rounding.

Every measurement runs in its own fresh process, so that its peak memory (resident set
growth over the process's state just before the timed calls) can be read; the time is the
best of ``--repeats`` (for encoding, of ``--repeats`` rounds that alternate eager and
skages processes). The 1-minute load average before and after is printed: other jobs on
the machine make the numbers noisy (rerun when the load is below 0.5).

Usage::

    python benchmarks/bench_encoder.py [--quick] [--threads N] [--device cuda] [--compile]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_PIXELS, N_PSD = 7514, 2092


# ------------------------------------------------------------------------------ baseline
class EagerVED(nn.Module):
    """The released architecture with stock layers: the baseline."""

    def __init__(self, latent_dim: int = 5):
        super().__init__()
        self.c1 = nn.Conv1d(1, 32, 8, stride=2)
        self.c2 = nn.Conv1d(32, 64, 8, stride=2)
        self.fc = nn.Linear(939 * 64, 16)
        self.mu = nn.Linear(16, latent_dim)
        self.lv = nn.Linear(16, latent_dim)
        self.d0 = nn.Linear(latent_dim, 523 * 16)
        self.t1 = nn.ConvTranspose1d(16, 16, 32, stride=2, padding=15)
        self.t2 = nn.ConvTranspose1d(16, 16, 32, stride=2, padding=15)
        self.t3 = nn.ConvTranspose1d(16, 1, 32, stride=1)

    def copy_from(self, module: nn.Module) -> EagerVED:
        pairs = [
            (self.c1, module.encoder_convs[0]),
            (self.c2, module.encoder_convs[1]),
            (self.fc, module.hidden),
            (self.mu, module.latent_mean),
            (self.lv, module.latent_logvar),
            (self.d0, module.decoder_input),
            (self.t1, module.decoder_convs[0]),
            (self.t2, module.decoder_convs[1]),
            (self.t3, module.output_conv),
        ]
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
        return self

    def encode(self, x):
        h = F.relu(self.c1(F.pad(x[:, None], (3, 3))))
        h = F.relu(self.c2(F.pad(h, (3, 4))))
        h = F.max_pool1d(h, 2).transpose(1, 2).flatten(1)
        h = torch.tanh(self.fc(h))
        return self.mu(h), self.lv(h)

    def decode(self, z):
        d = F.relu(self.d0(z)).view(-1, 523, 16).transpose(1, 2)
        d = F.relu(self.t2(F.relu(self.t1(d))))
        return self.t3(d)[:, 0, 15 : 15 + N_PSD]

    def forward(self, x, eps=None):
        mu, lv = self.encode(x)
        z = mu if eps is None else mu + torch.exp(0.5 * lv) * eps
        return self.decode(z), mu, lv


def eager_loss(psd_pred, mu, lv, psd, weight):
    valid = ~torch.isnan(psd)
    err = torch.where(valid, psd_pred - psd, 0.0)
    rec = (torch.where(valid, weight, 0.0) * err**2).sum(1)
    return (rec - 0.5 * (1 + lv - mu**2 - lv.exp()).sum(1)).mean()


# ------------------------------------------------------------------------------ data
def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spectra around the published training set's mean spectrum, and random log PSDs."""
    from skages._data import load_reference_spectrum

    mean, std = load_reference_spectrum()
    rng = np.random.default_rng(seed)
    spectra = (mean + std * rng.standard_normal((n, N_PIXELS))).astype(np.float32)
    spectra[rng.random(spectra.shape) < 0.005] = np.nan  # a few masked pixels
    psd = (1.0 + rng.standard_normal((n, N_PSD))).astype(np.float32)
    return spectra, psd


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        return _status_mib("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


# ------------------------------------------------------------------------------ tasks
def _task(name: str, n: int, repeats: int, threads: int, device: str, compiled: bool) -> dict:
    """One measurement, run in a fresh process. Returns rate (spectra/s) and memory."""
    torch.set_num_threads(threads)
    from skages.encoder import SpectrumToPSDEncoder

    dev = torch.device(device)
    X, psd = make_data(n)
    enc = SpectrumToPSDEncoder(max_epochs=0, device=device, random_state=0).fit(X, psd=psd)
    base = EagerVED().copy_from(enc.net_.module_).to(dev)
    if compiled:
        base = torch.compile(base)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    result: dict[str, Any] = {}

    if name == "encode_eager":
        xs = enc._standardise(X, dev)
        base.eval()

        def run():
            with torch.no_grad():
                for i in range(0, n, 128):
                    base.encode(xs[i : i + 128])
            sync()

    elif name == "encode_ours":

        def run():
            enc.transform(X)
            sync()

    elif name == "train_eager":
        xs = enc._standardise(X, dev)
        target = torch.as_tensor(psd, device=dev)
        weight = torch.ones_like(target)
        opt = torch.optim.Adam(base.parameters(), lr=5e-4)
        gen = torch.Generator().manual_seed(0)
        base.train()

        def run():
            order = torch.randperm(n, generator=gen).to(dev)
            for i in range(0, n, 128):
                idx = order[i : i + 128]
                opt.zero_grad()
                eps = torch.randn(len(idx), 5, device=dev)
                loss = eager_loss(*base(xs[idx], eps), target[idx], weight[idx])
                loss.backward()
                opt.step()
            sync()

    elif name == "train_ours":
        epochs = max(2, repeats)
        trainer = SpectrumToPSDEncoder(max_epochs=epochs, device=device, random_state=0)

        def run():
            trainer.fit(X, psd=psd)
            sync()

    else:
        raise ValueError(name)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if name != "train_ours":
        run()  # warm-up
    rss0 = _status_mib("VmRSS")
    if not _reset_peak_rss():
        result["note"] = "peak RSS not resettable: includes set-up"
    times = []
    if name == "train_ours":
        run()
        times = [float(d) for d in trainer.net_.history[:, "dur"]]
    else:
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    result["rate"] = n / min(times)
    result["peak_mib"] = max(_peak_rss_mib() - rss0, 0.0)
    if dev.type == "cuda":
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _run_in_child(queue, args):
    try:
        queue.put(_task(*args))
    except Exception as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_task(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_in_child, args=(queue, args))
    proc.start()
    out = queue.get()
    proc.join()
    return out


# ------------------------------------------------------------------------------ equality
def check_equal(device: str) -> dict[str, float]:
    """Max relative difference, ours vs eager, of latents, PSDs and loss gradients."""
    from skages._ved import VariationalEncoderDecoder, ved_loss

    torch.manual_seed(0)
    dev = torch.device(device)
    ours = VariationalEncoderDecoder(seed=0).to(dev).eval()
    base = EagerVED().copy_from(ours).to(dev).eval()
    X, psd = make_data(32, seed=1)
    x = torch.nan_to_num(torch.as_tensor(X, device=dev) - 1.0) * 10
    y = torch.as_tensor(psd, device=dev)
    w = torch.ones_like(y)
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, a, b in zip(("psd", "mean", "logvar"), ours(x), base(x), strict=True):
            out[name] = float((a - b).abs().max() / b.abs().max())
    ga = torch.autograd.grad(ved_loss(*ours(x), y, w).mean(), list(ours.parameters()))
    gb = torch.autograd.grad(eager_loss(*base(x), y, w), list(base.parameters()))
    out["gradients"] = max(
        float((a - b).abs().max() / b.abs().max()) for a, b in zip(ga, gb, strict=True)
    )
    return out


# ------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch intra-op threads (default: all cores)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (best kept)")
    parser.add_argument("--n-encode", type=int, default=None, help="spectra to encode")
    parser.add_argument("--n-train", type=int, default=None, help="training pairs per epoch")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile on the eager baseline"
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    n_encode = args.n_encode or (512 if args.quick else 4096)
    n_train = args.n_train or (256 if args.quick else 512)
    repeats = 1 if args.quick else args.repeats

    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    diffs = check_equal(args.device)
    print(
        "ours vs eager, max relative difference: "
        + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
    )

    plan = [
        ("encode", "eager", "encode_eager", n_encode, False),
        ("encode", "skages", "encode_ours", n_encode, False),
        ("train", "eager", "train_eager", n_train, False),
        ("train", "skages", "train_ours", n_train, False),
    ]
    if args.compile:
        plan.insert(1, ("encode", "eager+compile", "encode_eager", n_encode, True))
        plan.insert(4, ("train", "eager+compile", "train_eager", n_train, True))
    rows = []
    rates: dict[tuple[str, str], float] = {}
    # encoding: rounds of one process per implementation, alternating, the best round
    # kept, so that a change of load on a shared machine hits both alike
    best: dict[int, dict] = {}
    for _ in range(repeats):
        for i, (what, _who, task, n, compiled) in enumerate(plan):
            if what == "encode":
                res = run_task(task, n, 1, args.threads, args.device, compiled)
                if "error" in res or res["rate"] > best.get(i, {}).get("rate", -1.0):
                    best[i] = res
    for i, (what, who, task, n, compiled) in enumerate(plan):
        if i in best:
            res = best[i]
        else:
            res = run_task(task, n, repeats, args.threads, args.device, compiled)
        if "error" in res:
            rows.append((what, who, str(n), "failed", "", res["error"][:60]))
            continue
        rates[what, who] = res["rate"]
        mem = res.get("gpu_peak_mib", res["peak_mib"])
        rows.append((what, who, str(n), f"{res['rate']:.0f}", f"{mem:.0f}", ""))
    for i, (what, who, *_rest) in enumerate(rows):
        if (what, who) in rates and (what, "eager") in rates and who != "eager":
            rows[i] = (*rows[i][:5], f"{rates[what, who] / rates[what, 'eager']:.2f}x eager")
    from _common import print_table

    mem_label = "GPU peak MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print_table(
        f"SpectrumToPSDEncoder, released architecture ({args.device}, {args.threads} threads)",
        rows,
        ("task", "implementation", "n", "spectra/s", mem_label, "note"),
    )
    if ("encode", "skages") in rates:
        print(
            f"\nAPOGEE DR17 (733,901 spectra) encodes in "
            f"{733_901 / rates['encode', 'skages'] / 60:.0f} min (eager: "
            f"{733_901 / rates['encode', 'eager'] / 60:.0f} min)"
        )
    if ("train", "skages") in rates:
        print(
            f"150 epochs of 9,769 pairs: {150 * 9769 / rates['train', 'skages'] / 3600:.1f} h "
            f"(eager: {150 * 9769 / rates['train', 'eager'] / 3600:.1f} h)"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
