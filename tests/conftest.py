"""Shared fixtures.

Real data come from ``../shared/data`` (beside the repository, as in CI) or from
the folder named by ``SKAGES_SHARED_DATA``. Tests that need it skip with a clear
reason when it is absent; nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

_REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("SKAGES_SHARED_DATA")
    return Path(env) if env else _REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the real public data folder (``../shared/data``)."""
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(
            f"real data folder not found at {path}; put the shared data beside the "
            "repository or set SKAGES_SHARED_DATA"
        )
    return path


@pytest.fixture(autouse=True)
def _no_torch_thread_oversubscription():
    """Keep PyTorch to the cores pytest-xdist leaves each worker, if torch is loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def small_survey():
    """A small seeded simulated survey (300 stars), shared by the pipeline tests.

    The seed gives precise reference ages to at least three held-out stars of each state
    (the evaluation report needs them per state).
    """
    from skages.datasets import make_apokasc

    return make_apokasc(300, random_state=1)


@pytest.fixture
def metadata_routing():
    """Enable scikit-learn's metadata routing for one test."""
    import sklearn

    with sklearn.config_context(enable_metadata_routing=True):
        yield


@pytest.fixture(scope="session")
def tiny_train_toml():
    """Builder of a ``skages train --config`` file for a seconds-long tiny model.

    ``data`` and ``model`` are extra lines for those tables; the survey is ``train.h5``
    and the model ``model.joblib`` beside the config unless the extra lines say
    otherwise.
    """

    def build(*, data: str = "", model: str = "", output: str = "model.joblib") -> str:
        return (
            f'[data]\nsurvey = "train.h5"\n{data}\n'
            f'[model]\noutput = "{output}"\n{model}\n'
            "[encoder]\nencoder_filters = [4, 8]\nhidden_units = 8\n"
            "decoder_filters = [4, 4]\nmax_epochs = 1\n\n"
            "[forest]\nn_estimators = 12\n"
        )

    return build


def _saved_epoch(path) -> int:
    """The epoch a training checkpoint (``training_state.pt``) holds; 0 before the first."""
    import torch

    try:
        return torch.load(path, weights_only=True)["epoch"]
    except Exception:  # not written yet (the rename is atomic, so never half-written)
        return 0


@pytest.fixture
def sigkill_at_epoch():
    """Kill a training subprocess with SIGKILL once its checkpoint holds ``epoch``.

    Returns ``kill(child, state, epoch, timeout)``, which waits for the checkpoint file
    ``state`` to reach ``epoch`` (failing if the child ends first or ``timeout`` seconds
    pass), kills the child with SIGKILL, and returns the epoch the checkpoint then holds.
    """
    import signal
    import time

    def kill(child, state, epoch: int, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        try:
            while _saved_epoch(state) < epoch:
                assert child.poll() is None, "the training process ended before it was killed"
                assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} in time"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        return _saved_epoch(state)

    return kill
