"""skages against astroNN 1.1.0 itself: the same network, trained step by step and in full.

astroNN runs in a separate Python environment (TensorFlow never enters skages' own), which
this script calls as a subprocess; it installs nothing. Make that environment once::

    python3.11 -m venv astronn-venv
    astronn-venv/bin/pip install tensorflow-cpu==2.15.1 tensorflow-probability==0.23.0 \\
        astronn==1.1.0 h5py

and pass ``--astronn-python astronn-venv/bin/python`` (or set ``SKAGES_ASTRONN_PYTHON``).
astroNN 1.1.0 reads ``tf.keras.__version__``, gone in TF 2.15; the worker applies the
one-line shim of ``../shared/tools/astronn_fixture.py`` before importing it.

Modes
-----
``--mode steps`` (default): the trajectory comparison. skages draws the initial weights
(``random_state``), writes them with ``to_astronn`` and astroNN loads that folder, so both
start from identical weights. Both then take the same optimiser steps on the same batches
(astroNN's own order: shuffled, the last partial batch dropped) with the same
reparametrisation noise: astroNN with its training step (``ConvVAEBase.custom_train_step``:
the same tape, loss and ``optimizer.apply_gradients``, only the noise fed in) and Keras'
Adam; skages with ``VEDNet.train_step`` (the chunked CPU gradient path) and each Adam
variant. Printed: the loss of each step, and after step 1 and after the last step the
distance of each variant's weights from astroNN's relative to how far astroNN's moved.

``--mode train``: both libraries' own ``fit`` on the same simulated survey
(``make_apokasc(n, bad_pixel_fill=1.0)``, first 70 % to train), per seed: training time
(wall time of the whole ``fit``, the time inside its epochs, and the cores it kept busy:
process CPU time over wall time), loss per epoch, and forests (300 trees) on the latent
means of the other 30 %: RC/RGB accuracy, R² of ln νmax, ln mass, [α/M] and [Fe/H]. Then
a summary over the seeds: mean, spread and range of each figure, how many of skages'
final losses, [α/M] and [Fe/H] R² lie inside astroNN's seed-to-seed range (with k seeds a
draw from astroNN's own distribution lands inside it with probability (k-1)/(k+1), so a
two-sided Mann-Whitney rank-sum p-value is printed beside each count), and the ratio of
the training times. ``--results FILE.json`` keeps every finished run (written after
each); a rerun with the same file skips the runs it holds, so a killed benchmark resumes.

``--mode schedule``: Keras' ``ReduceLROnPlateau`` with astroNN's settings and skages'
scheduler fed the same loss curve: the epochs where each halves the learning rate.

``--mode folder``: astroNN's ``load_folder`` on a folder skages wrote, and the largest
difference of astroNN's ``predict_encoder`` / ``predict_decoder`` from skages' outputs.

Usage::

    python benchmarks/bench_vs_astronn.py --astronn-python PY [--mode steps] [--n 1024]
        [--steps 8] [--seed 0]
    python benchmarks/bench_vs_astronn.py --astronn-python PY --mode train --seeds 0 1 2
        [--n 5000] [--epochs 40] [--results runs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


# =============================================================================== worker
# Runs under the astroNN environment: numpy, h5py, TensorFlow and astroNN only.


def _astronn_import():
    import importlib

    import keras
    import tensorflow as tf

    k2 = importlib.import_module("keras.api._v2.keras")
    k2.__version__ = keras.__version__
    tf.keras.__version__ = keras.__version__  # astroNN 1.1.0 reads it (gone in TF 2.15)
    return tf


def _worker_steps(spec: dict) -> None:
    tf = _astronn_import()
    from astroNN.models import load_folder
    from astroNN.nn import layers as astronn_layers

    data = np.load(spec["data"])
    noise = tf.Variable(np.zeros(data["eps"].shape[1:], np.float32))

    def call(self, inputs):  # VAESampling with the noise fed in, not drawn
        z_mean, z_log_var = inputs
        return z_mean + tf.exp(0.5 * z_log_var) * noise

    astronn_layers.VAESampling.call = call
    m = load_folder(spec["folder"])
    mean = np.asarray(m.input_mean["input"], np.float64).ravel()
    std = np.asarray(m.input_std["input"], np.float64).ravel()
    xn = ((data["X"] - mean) / std).astype(np.float32)[..., None]
    # masked PSD pixels as astroNN's magic number: a NaN target gives NaN gradients
    # through its loss's tf.where (the magic number is masked the same way, cleanly)
    Y = np.where(np.isnan(data["Y"]), -9999.0, data["Y"]).astype(np.float32)[..., None]
    W = data["W"]
    losses, saved = [], {}
    weights = m.keras_model.trainable_weights
    t0 = time.perf_counter()
    for step, rows in enumerate(data["batches"]):
        noise.assign(data["eps"][step])
        x, y, w = tf.constant(xn[rows]), tf.constant(Y[rows]), tf.constant(W[rows])
        with tf.GradientTape() as tape:  # ConvVAEBase.custom_train_step
            z_mean, z_log_var, z = m.keras_encoder(x, training=True)
            y_pred = m.keras_decoder(z, training=True)
            rec = m.loss(y, y_pred, sample_weight=w)
            kl = -0.5 * (1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var))
            kl = tf.reduce_mean(tf.reduce_sum(kl, axis=1))
            total = rec + kl
        grads = tape.gradient(total, weights)
        m.keras_model.optimizer.apply_gradients(zip(grads, weights, strict=True))
        losses.append(float(total))
        if step + 1 in spec["save_after"]:
            for v in weights:
                saved[f"step{step + 1}/{v.name}"] = v.numpy()
    saved["losses"] = np.asarray(losses)
    saved["seconds"] = np.asarray(time.perf_counter() - t0)
    np.savez(spec["out"], **saved)


def _worker_fit(spec: dict) -> None:
    tf = _astronn_import()
    data = np.load(spec["data"])
    tf.keras.utils.set_random_seed(spec["seed"])
    from astroNN.models import ApokascEncoderDecoder

    m = ApokascEncoderDecoder(lr=spec["lr"])
    m.max_epochs = spec["epochs"]
    m.val_size = 0.0
    m.autosave = False
    history = {}

    class Log(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            history.setdefault("begin", []).append(time.perf_counter() - t0)

        def on_epoch_end(self, epoch, logs=None):
            history.setdefault("loss", []).append(float(logs["loss"]))
            history.setdefault("end", []).append(time.perf_counter() - t0)

    m.callbacks = [Log()]
    Y = np.where(np.isnan(data["Y"]), -9999.0, data["Y"]).astype(np.float32)  # see above
    t0, cpu0 = time.perf_counter(), time.process_time()
    m.fit(data["X"], Y, sample_weight=data["W"])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    z, _, _ = m.predict_encoder(data["X_test"])
    begin, end = np.asarray(history["begin"]), np.asarray(history["end"])
    np.savez(spec["out"], z=z, loss=np.asarray(history["loss"]), seconds=np.asarray(seconds),
             dur=end - begin, cpu=np.asarray(cpu), before=begin[0],
             between=np.sum(begin[1:] - end[:-1]), after=seconds - end[-1])  # fmt: skip


def _worker_folder(spec: dict) -> None:
    _astronn_import()
    from astroNN.models import load_folder

    data = np.load(spec["data"])
    m = load_folder(spec["folder"])
    zm, zs, _ = m.predict_encoder(data["X"])
    psd = np.asarray(m.predict_decoder(data["Z"])).reshape(len(data["Z"]), -1)
    np.savez(spec["out"], z_mean=zm, z_std=zs, psd=psd)


def _schedule_losses() -> np.ndarray:
    """A loss curve that improves, plateaus within noise below min_delta, then creeps."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            300 - 5.0 * np.arange(10),
            250 + 3e-5 * rng.standard_normal(30),
            249 - 1e-4 * np.arange(10),
        ]
    )


def _worker_schedule(spec: dict) -> None:
    tf = _astronn_import()
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer=tf.keras.optimizers.Adam(5e-4), loss="mse")
    # astroNN's ConvVAEBase.fit callback, its settings from ApokascEncoderDecoder
    cb = tf.keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, min_delta=5e-5, patience=6, min_lr=1e-10, mode="min"
    )
    cb.set_model(model)
    cb.on_train_begin()
    lrs = []
    for epoch, loss in enumerate(_schedule_losses()):
        cb.on_epoch_end(epoch, {"loss": float(loss)})
        lrs.append(float(model.optimizer.learning_rate.numpy()))
    np.save(spec["out"], np.asarray(lrs))


# ================================================================================ driver


def _run_worker(python: str, mode: str, spec: dict) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [python, str(HERE), "--worker", mode, f.name], env=env, capture_output=True, text=True
    )
    os.unlink(f.name)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"the astroNN worker ({mode}) failed")


def _survey(n: int, seed: int = 3):
    from skages.datasets import make_apokasc

    s = make_apokasc(n, random_state=seed, bad_pixel_fill=1.0)
    n_train = int(0.7 * n)
    return s, n_train


def mode_steps(args) -> None:
    import torch

    from skages.encoder import SpectrumToPSDEncoder, _keras_to_state

    s, n_train = _survey(args.n)
    X, Y, W = s.spectra[:n_train], s.psd[:n_train], s.psd_weight[:n_train]
    rng = np.random.default_rng(args.seed)
    n_batches = n_train // 128  # astroNN: steps_per_epoch = n // batch, last partial dropped
    order = rng.permutation(n_train)
    batches = [order[i * 128 : (i + 1) * 128] for i in range(n_batches)]
    args.steps = args.steps or n_batches  # one epoch
    while len(batches) < args.steps:
        order = rng.permutation(n_train)
        batches += [order[i * 128 : (i + 1) * 128] for i in range(n_batches)]
    batches = np.asarray(batches[: args.steps])
    eps = rng.standard_normal((args.steps, 128, 5)).astype(np.float32)

    init = SpectrumToPSDEncoder(max_epochs=0, lr=args.lr, random_state=args.seed)
    init.fit(X, psd=Y, psd_weight=W)
    work = Path(tempfile.mkdtemp(prefix="skages-vs-astronn-"))
    folder = init.to_astronn(work / "astroNN_VEncoderDecoder")
    np.savez(work / "data.npz", X=X, Y=Y.astype(np.float32), W=W.astype(np.float32),
             batches=batches, eps=eps)  # fmt: skip
    save_after = sorted({1, args.steps})
    print(f"# {n_train} training stars, {args.steps} steps of 128 from identical weights "
          f"(seed {args.seed}); load {os.getloadavg()[0]:.2f}")  # fmt: skip
    t0 = time.perf_counter()
    _run_worker(args.astronn_python, "steps", {
        "folder": str(folder), "data": str(work / "data.npz"),
        "out": str(work / "astronn.npz"), "save_after": save_after})  # fmt: skip
    tf_out = np.load(work / "astronn.npz")
    print(f"# astroNN: {float(tf_out['seconds']):.1f} s for {args.steps} steps "
          f"({time.perf_counter() - t0:.0f} s with start-up)")  # fmt: skip
    initial = {k: v.detach().numpy().copy() for k, v in init.net_.module_.state_dict().items()}

    def astronn_state(step: int) -> dict:
        keras = {}
        for key in tf_out.files:
            if key.startswith(f"step{step}/"):
                layer, kind = key.split("/")[1:3]
                keras[f"{_KERAS_LAYERS[layer]}/{kind.split(':')[0]}"] = tf_out[key]
        return _keras_to_state(keras, 2)

    variants = {
        "skages default (adam='keras': KerasAdam)": dict(adam="keras"),
        "adam='pytorch' (torch.optim.Adam, eps=1e-8)": dict(adam="pytorch"),
        "torch.optim.Adam, eps=1e-7": dict(adam="pytorch", eps=1e-7),
        "adam='keras', unchunked gradient": dict(adam="keras", chunk=None),
    }
    Xs = np.empty(X.shape, np.float32)
    Xs[:] = init._standardise(X, torch.device("cpu")).numpy()
    Ytr = np.stack([Y, W], axis=1).astype(np.float32)
    results = {}
    for name, v in variants.items():
        enc = SpectrumToPSDEncoder.from_astronn(folder, max_epochs=0, lr=args.lr, adam=v["adam"])
        net = enc.net_
        net.training_chunk = v.get("chunk", net.training_chunk)
        net.initialize_optimizer()  # the estimator's own optimiser (KerasAdam or Adam)
        if "eps" in v:
            net.optimizer_ = torch.optim.Adam(net.module_.parameters(), lr=args.lr, eps=v["eps"])
        module = net.module_
        losses, saved = [], {}
        t0 = time.perf_counter()
        for step, rows in enumerate(batches):
            e = torch.as_tensor(eps[step])
            module.draw_noise = lambda n, device="cpu", dtype=None, e=e: e[:n]
            out = net.train_step((torch.as_tensor(Xs[rows]), torch.as_tensor(Ytr[rows])))
            losses.append(float(out["loss"].detach()))
            if step + 1 in save_after:
                saved[step + 1] = {
                    k: t.detach().numpy().copy() for k, t in module.state_dict().items()
                }
        results[name] = (losses, saved, time.perf_counter() - t0)
    print("\nloss per step (astroNN | each skages variant)")
    print("step  astroNN      " + "  ".join(f"v{i}" for i in range(len(variants))))
    for step in range(args.steps):
        line = f"{step + 1:4d}  {tf_out['losses'][step]:11.4f}"
        for losses, _, _ in results.values():
            line += f"  {losses[step]:11.4f}"
        print(line)
    for i, name in enumerate(variants):
        print(f"  v{i} = {name} ({results[name][2]:.1f} s)")
    for step in save_after:
        ref = astronn_state(step)
        print(f"\nafter step {step}: |skages - astroNN| / |astroNN - initial| per layer "
              "(0 = identical trajectory)")  # fmt: skip
        layers = sorted(ref)
        print("layer".ljust(26) + "".join(f"v{i}".rjust(10) for i in range(len(variants))))
        for key in layers:
            moved = np.linalg.norm(ref[key] - initial[key])
            line = key.ljust(26)
            for name in variants:
                ours = results[name][1][step][key]
                line += f"{np.linalg.norm(ours - ref[key]) / max(moved, 1e-30):10.3g}"
            print(line)
        total = sum(np.sum((ref[k] - initial[k]) ** 2) for k in layers) ** 0.5
        line = "all".ljust(26)
        for name in variants:
            d = sum(np.sum((results[name][1][step][k] - ref[k]) ** 2) for k in layers) ** 0.5
            line += f"{d / total:10.3g}"
        print(line)
    # latent means of held-out stars after the last step
    test = s.spectra[n_train:][:256]
    ref_enc = SpectrumToPSDEncoder.from_astronn(folder)
    ref_enc.net_.module_.load_state_dict(
        {k: torch.as_tensor(v) for k, v in astronn_state(save_after[-1]).items()}
    )
    z_ref = ref_enc.transform(test)
    print(f"\nlatent means of {len(test)} held-out stars after step {save_after[-1]}: "
          f"max |z_skages - z_astroNN| (spread of z_astroNN {z_ref.std():.3g})")  # fmt: skip
    for i, name in enumerate(variants):
        ref_enc.net_.module_.load_state_dict(
            {k: torch.as_tensor(v) for k, v in results[name][1][save_after[-1]].items()}
        )
        print(f"  v{i}: {np.abs(ref_enc.transform(test) - z_ref).max():.3g}")
    print(f"# load {os.getloadavg()[0]:.2f}; work folder {work}")


#: Keras layer name -> skages.io.astronn weight name
_KERAS_LAYERS = {
    "conv1d": "encoder_conv0", "conv1d_1": "encoder_conv1", "dense": "hidden",
    "z_mean": "latent_mean", "z_log_var": "latent_logvar", "dense_1": "decoder_dense",
    "conv1d_transpose": "decoder_conv0", "conv1d_transpose_1": "decoder_conv1",
    "output": "output",
}  # fmt: skip


def _diagnostics(z_train, z_test, lab_train, lab_test, seed: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.metrics import r2_score

    out = {}
    state = lambda lab: (np.asarray(lab["evstate"]).astype(str) == "RC").astype(int)  # noqa: E731
    clf = RandomForestClassifier(300, random_state=seed, n_jobs=2).fit(z_train, state(lab_train))
    out["RC/RGB acc"] = float((clf.predict(z_test) == state(lab_test)).mean())
    for name, col, log in (
        ("R2 ln numax", "numax", True),
        ("R2 ln mass", "mass", True),
        ("R2 [a/M]", "alpha_m", False),
        ("R2 [Fe/H]", "fe_h", False),
    ):
        ytr = np.asarray(lab_train[col], float)
        yte = np.asarray(lab_test[col], float)
        if log:
            ytr, yte = np.log(ytr), np.log(yte)
        reg = RandomForestRegressor(300, random_state=seed, n_jobs=2).fit(z_train, ytr)
        out[name] = float(r2_score(yte, reg.predict(z_test)))
    return out


#: the figures of a training run, in the order they are printed and summarised
_TRAIN_FIGURES = ("seconds", "final loss", "RC/RGB acc", "R2 ln numax", "R2 ln mass",
                  "R2 [a/M]", "R2 [Fe/H]")  # fmt: skip


def _train_one(lib: str, seed: int, args, s, n_train: int, work: Path) -> dict:
    """One library's ``fit`` on the first ``n_train`` stars, and the latent diagnostics."""
    load0 = os.getloadavg()[0]
    if lib == "astronn":
        out = work / f"astronn-{seed}.npz"
        _run_worker(args.astronn_python, "fit", {
            "data": str(work / "data.npz"), "out": str(out), "seed": seed,
            "epochs": args.epochs, "lr": args.lr})  # fmt: skip
        r = np.load(out)
        z_test, losses, seconds, cpu = r["z"], r["loss"], float(r["seconds"]), float(r["cpu"])
        durations = r["dur"]
        # where astroNN's time outside its epochs goes: set-up, between epochs, after
        outside = {k: float(r[k]) for k in ("before", "between", "after")}
    else:
        from skages.encoder import SpectrumToPSDEncoder

        params = dict(max_epochs=args.epochs, lr=args.lr, random_state=seed)
        params.update(args.skages_params)
        enc = SpectrumToPSDEncoder(**params)
        t0, cpu0 = time.perf_counter(), time.process_time()
        enc.fit(s.spectra[:n_train], psd=s.psd[:n_train], psd_weight=s.psd_weight[:n_train])
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        z_test, losses = enc.transform(s.spectra[n_train:]), enc.loss_curve_
        durations = enc.net_.history[:, "dur"]
        outside = None
    # forests on the held-out stars' latents (2-fold across them, as the issue)
    half = len(z_test) // 2
    lab = s.labels
    lt, le = lab.iloc[n_train : n_train + half], lab.iloc[n_train + half :]
    diag = _diagnostics(z_test[:half], z_test[half:], lt, le, seed)
    return {
        "library": lib,
        "seed": seed,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "final loss": float(losses[-1]),
        **diag,
        "loss per epoch": [float(v) for v in losses],
        "seconds per epoch": [float(v) for v in durations],
        "outside epochs": outside,
        "load": [load0, os.getloadavg()[0]],
    }


def _print_row(row: dict) -> None:
    per_epoch = row["seconds per epoch"]
    cpu = row.get("cpu_seconds")
    busy = "n/a" if cpu is None else f"{cpu / row['seconds']:.2f}"
    print(f"{row['library']:8s} seed {row['seed']}: {row['seconds']:7.1f} s "
          f"({sum(per_epoch):.0f} s in its epochs, median {np.median(per_epoch):.1f} s an epoch; "
          f"{busy} cores busy), "
          + ", ".join(f"{k} {row[k]:.3f}" for k in _TRAIN_FIGURES[1:])
          + f" (load {row['load'][0]:.1f} -> {row['load'][1]:.1f})", flush=True)  # fmt: skip
    print(f"   loss per epoch: {[round(v, 2) for v in row['loss per epoch']]}", flush=True)
    print(f"   seconds per epoch: {[round(v, 1) for v in per_epoch]}", flush=True)
    if row.get("outside epochs"):
        print("   outside its epochs: " + ", ".join(
            f"{k} {v:.1f} s" for k, v in row["outside epochs"].items()), flush=True)  # fmt: skip


def _figure(row: dict, key: str) -> float:
    """One of ``_TRAIN_FIGURES`` of a run, or its ``"median epoch"`` (seconds)."""
    return float(np.median(row["seconds per epoch"])) if key == "median epoch" else row[key]


def _summarise(rows: list[dict]) -> None:
    """Mean, spread and range of each figure per library; the issue's two goals."""
    from scipy.stats import mannwhitneyu

    libs = {lib: [r for r in rows if r["library"] == lib] for lib in ("astronn", "skages")}
    print(f"\nsummary over seeds {sorted({r['seed'] for r in rows})}: mean ± std [min, max]")
    for key in (*_TRAIN_FIGURES, "median epoch"):
        line = f"  {key:13s}"
        for lib, lib_rows in libs.items():
            if not lib_rows:
                continue
            v = np.array([_figure(r, key) for r in lib_rows])
            sd = v.std(ddof=1) if len(v) > 1 else float("nan")
            line += f"   {lib} {v.mean():8.3f} ± {sd:6.3f} [{v.min():.3f}, {v.max():.3f}]"
        print(line)
    if not (libs["astronn"] and libs["skages"]):
        return
    ref = {k: [r[k] for r in libs["astronn"]] for k in _TRAIN_FIGURES}
    for key in ("final loss", "R2 [a/M]", "R2 [Fe/H]"):
        lo, hi = min(ref[key]), max(ref[key])
        ours = [r[key] for r in libs["skages"]]
        inside = [lo <= v <= hi for v in ours]
        # same distribution? the range count alone expects only (k-1)/(k+1) inside for k seeds
        p_value = mannwhitneyu(ours, ref[key]).pvalue
        print(
            f"  skages {key} inside astroNN's range [{lo:.3f}, {hi:.3f}]: "
            f"{sum(inside)} of {len(inside)} (same-distribution rank-sum test p = {p_value:.2f})"
        )
    wall, epoch = (
        np.mean([_figure(r, key) for r in libs["astronn"]])
        / np.mean([_figure(r, key) for r in libs["skages"]])
        for key in ("seconds", "median epoch")
    )
    print(
        f"  skages trains {wall:.2f}x as fast as astroNN (mean wall time of fit; "
        f"{epoch:.2f}x on the median epoch)"
    )


def mode_train(args) -> None:
    from skages._atomic import atomic_path

    s, n_train = _survey(args.n)
    work = Path(tempfile.mkdtemp(prefix="skages-vs-astronn-train-"))
    np.savez(work / "data.npz", X=s.spectra[:n_train], Y=s.psd[:n_train].astype(np.float32),
             W=s.psd_weight[:n_train].astype(np.float32), X_test=s.spectra[n_train:])  # fmt: skip
    setting = {"n": args.n, "epochs": args.epochs, "lr": args.lr,
               "skages_params": args.skages_params}  # fmt: skip
    rows = []
    results = Path(args.results) if args.results else None
    if results is not None and results.exists():
        saved = json.loads(results.read_text())
        if saved["setting"] != setting:
            raise SystemExit(f"{results} holds runs of another setting ({saved['setting']}); "
                             "give another --results file")  # fmt: skip
        rows = saved["rows"]
        print(f"# {len(rows)} runs read from {results} (not rerun)")
    for seed in args.seeds:
        for lib in args.libraries:
            if any(r["library"] == lib and r["seed"] == seed for r in rows):
                continue
            row = _train_one(lib, seed, args, s, n_train, work)
            _print_row(row)
            rows.append(row)
            if results is not None:  # after every run: a killed benchmark loses nothing
                with atomic_path(results) as tmp:
                    tmp.write_text(json.dumps({"setting": setting, "rows": rows}, indent=1))
    _summarise([r for r in rows if r["seed"] in args.seeds and r["library"] in args.libraries])


def mode_folder(args) -> None:
    from skages.encoder import SpectrumToPSDEncoder

    s, _ = _survey(200)
    enc = SpectrumToPSDEncoder(max_epochs=1, random_state=args.seed, output_std=True)
    enc.fit(s.spectra, psd=s.psd, psd_weight=s.psd_weight)
    work = Path(tempfile.mkdtemp(prefix="skages-folder-"))
    folder = enc.to_astronn(work / "astroNN_VEncoderDecoder")
    Z = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    np.savez(work / "data.npz", X=s.spectra[:64], Z=Z)
    spec = {"folder": str(folder), "data": str(work / "data.npz"), "out": str(work / "o.npz")}
    _run_worker(args.astronn_python, "folder", spec)
    r = np.load(work / "o.npz")
    z = enc.transform(s.spectra[:64])
    print(f"astroNN load_folder on a skages-written folder ({folder}):")
    print(f"  max |z_mean| diff {np.abs(r['z_mean'] - z[:, :5]).max():.3g}, "
          f"max |z_std| diff {np.abs(r['z_std'] - z[:, 5:]).max():.3g}, "
          f"max |PSD| diff {np.abs(r['psd'] - enc.decode(Z)).max():.3g}")  # fmt: skip


def mode_schedule(args) -> None:
    import torch
    from skorch.callbacks import LRScheduler

    from skages.encoder import SpectrumToPSDEncoder

    out = Path(tempfile.mkdtemp(prefix="skages-schedule-")) / "lr.npy"
    _run_worker(args.astronn_python, "schedule", {"out": str(out)})
    keras = np.load(out)
    (scheduler,) = [
        cb for name, cb in SpectrumToPSDEncoder()._callbacks() if name == "lr_scheduler"
    ]
    assert isinstance(scheduler, LRScheduler)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=5e-4)
    sched = scheduler.policy(opt, **scheduler.kwargs)
    ours = []
    for loss in _schedule_losses():
        sched.step(float(loss))
        ours.append(opt.param_groups[0]["lr"])
    ours = np.asarray(ours)
    print(f"ReduceLROnPlateau over {len(ours)} epochs: Keras (astroNN) reduces at epochs "
          f"{(np.flatnonzero(np.diff(keras) < 0) + 1).tolist()}, skages at "
          f"{(np.flatnonzero(np.diff(ours) < 0) + 1).tolist()}; max relative lr difference "
          f"{np.max(np.abs(ours - keras) / keras):.2g}")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        spec = json.loads(Path(sys.argv[3]).read_text())
        workers = {"steps": _worker_steps, "fit": _worker_fit, "folder": _worker_folder,
                   "schedule": _worker_schedule}  # fmt: skip
        workers[sys.argv[2]](spec)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--astronn-python", default=os.environ.get("SKAGES_ASTRONN_PYTHON"))
    p.add_argument("--mode", choices=("steps", "train", "folder", "schedule"), default="steps")
    p.add_argument("--n", type=int, default=None, help="simulated stars (70 %% train)")
    p.add_argument("--steps", type=int, default=None, help="default: one epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--libraries", nargs="+", default=["astronn", "skages"])
    p.add_argument("--skages-params", type=json.loads, default={}, help="JSON encoder params")
    p.add_argument(
        "--results",
        default=None,
        help="--mode train: JSON file that keeps every finished run; runs already "
        "in it are not repeated (resume), and the summary covers them",
    )
    args = p.parse_args()
    if not args.astronn_python:
        p.error("give --astronn-python (the astroNN environment's python; see the docstring)")
    if args.n is None:
        args.n = 1500 if args.mode == "steps" else 5000
    modes = {"steps": mode_steps, "train": mode_train, "folder": mode_folder,
             "schedule": mode_schedule}  # fmt: skip
    modes[args.mode](args)


if __name__ == "__main__":
    main()
