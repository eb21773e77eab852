"""Resumable training of SpectrumToPSDEncoder with ``checkpoint_dir`` (issue 23, item 2)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from skages._ved_checkpoint import STATE_FILE, CheckpointMismatchError
from skages.encoder import SpectrumToPSDEncoder

SETTINGS = dict(
    latent_dim=3,
    encoder_filters=(4, 8),
    hidden_units=8,
    decoder_filters=(4, 4),
    decoder_kernel_size=8,
    batch_size=16,
    random_state=0,
)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = (1 + 0.05 * rng.standard_normal((64, 96))).astype(np.float32)
    X[rng.random(X.shape) < 0.01] = np.nan
    psd = rng.standard_normal((64, 48)).astype(np.float32)
    return X, psd


def _assert_same_model(a, b):
    assert a.loss_curve_ == b.loss_curve_
    assert a.n_iter_ == b.n_iter_
    for (name, x), y in zip(
        a.net_.module_.state_dict().items(), b.net_.module_.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name
    np.testing.assert_array_equal(a.transform(_data()[0]), b.transform(_data()[0]))


CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from skages import _ved_checkpoint
    from skages.encoder import SpectrumToPSDEncoder

    save = _ved_checkpoint.TrainingState.save

    def slow_save(self, net, finished):  # time for the parent to kill us mid-run
        save(self, net, finished)
        time.sleep(0.5)

    _ved_checkpoint.TrainingState.save = slow_save
    data = np.load(sys.argv[1])
    settings = eval(sys.argv[3])
    SpectrumToPSDEncoder(max_epochs=4, checkpoint_dir=sys.argv[2], **settings).fit(
        data["X"], psd=data["psd"]
    )
    """
)


def test_fit_killed_with_sigkill_resumes_to_the_uninterrupted_model(
    tmp_path, caplog, sigkill_at_epoch
):
    X, psd = _data()
    np.savez(tmp_path / "data.npz", X=X, psd=psd)
    folder = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "data.npz"), str(folder), repr(SETTINGS)],
        env=env,
    )
    killed_at = sigkill_at_epoch(child, folder / STATE_FILE, 2, timeout=120)
    assert 2 <= killed_at < 4

    with caplog.at_level(logging.INFO, logger="skages.encoder"):
        resumed = SpectrumToPSDEncoder(max_epochs=4, checkpoint_dir=folder, **SETTINGS).fit(
            X, psd=psd
        )
    assert f"{killed_at} epoch(s) done, {4 - killed_at} to go" in caplog.text
    uninterrupted = SpectrumToPSDEncoder(max_epochs=4, **SETTINGS).fit(X, psd=psd)
    _assert_same_model(resumed, uninterrupted)
    assert not list(folder.glob(".*.tmp")), "a temporary file of the killed write is left"


def test_raising_max_epochs_continues_a_finished_run(tmp_path):
    X, psd = _data()
    SpectrumToPSDEncoder(max_epochs=2, checkpoint_dir=tmp_path, **SETTINGS).fit(X, psd=psd)
    longer = SpectrumToPSDEncoder(max_epochs=5, checkpoint_dir=tmp_path, **SETTINGS)
    longer.fit(X, psd=psd)
    _assert_same_model(longer, SpectrumToPSDEncoder(max_epochs=5, **SETTINGS).fit(X, psd=psd))
    # finished: a rerun trains nothing and gives the same model
    again = SpectrumToPSDEncoder(max_epochs=5, checkpoint_dir=tmp_path, **SETTINGS)
    _assert_same_model(again.fit(X, psd=psd), longer)


def test_resume_with_early_stopping_equals_the_uninterrupted_run(tmp_path):
    X, psd = _data()
    settings = {**SETTINGS, "early_stopping": True, "n_iter_no_change": 2, "lr": 0.05}
    full = SpectrumToPSDEncoder(max_epochs=12, **settings).fit(X, psd=psd)
    SpectrumToPSDEncoder(max_epochs=3, checkpoint_dir=tmp_path, **settings).fit(X, psd=psd)
    resumed = SpectrumToPSDEncoder(max_epochs=12, checkpoint_dir=tmp_path, **settings)
    _assert_same_model(resumed.fit(X, psd=psd), full)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": 1e-3}, r"lr \(0.0005 -> 0.001\)"),
        ({"latent_dim": 2}, r"latent_dim \(3 -> 2\)"),
        ({"data": True}, "the training data"),
    ],
)
def test_a_checkpoint_of_other_settings_or_data_is_refused(tmp_path, change, message):
    X, psd = _data()
    SpectrumToPSDEncoder(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X, psd=psd)
    before = (tmp_path / STATE_FILE).read_bytes()
    if change.pop("data", False):
        X = X.copy()
        X[0, 0] = 1.5
    enc = SpectrumToPSDEncoder(max_epochs=2, checkpoint_dir=tmp_path, **{**SETTINGS, **change})
    with pytest.raises(CheckpointMismatchError, match=message) as info:
        enc.fit(X, psd=psd)
    assert "resume=False" in str(info.value) and "--restart" in str(info.value)
    assert (tmp_path / STATE_FILE).read_bytes() == before  # left alone
    # resume=False discards it and trains from scratch
    enc.set_params(resume=False).fit(X, psd=psd)
    fresh = SpectrumToPSDEncoder(max_epochs=2, **{**SETTINGS, **change}).fit(X, psd=psd)
    _assert_same_model(enc, fresh)


def test_a_damaged_checkpoint_is_refused_not_trained_on(tmp_path):
    X, psd = _data()
    (tmp_path / STATE_FILE).write_bytes(b"not a checkpoint")
    enc = SpectrumToPSDEncoder(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS)
    with pytest.raises(CheckpointMismatchError, match=r"cannot be read \(damaged.*resume=False"):
        enc.fit(X, psd=psd)


def test_the_checkpoint_loads_without_running_code(tmp_path):
    X, psd = _data()
    SpectrumToPSDEncoder(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X, psd=psd)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)  # no pickle of objects
    assert state["epoch"] == 1 and not state["finished"]
    assert set(state["generators"]) == {"shuffle", "valid", "noise"}
