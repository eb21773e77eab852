"""Running the chunks: in this process (reading ahead) or as dask.distributed tasks."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from skages.catalogue import _chunk
from skages.catalogue._sources import _Task

logger = logging.getLogger("skages.catalogue")


def _run_local(predictor, source, todo, make_task, cuts, progress, bar) -> None:
    """Chunks in this process; the next chunk's spectra are read while this one runs."""
    if not todo:
        return

    def read(task: _Task) -> tuple[np.ndarray, np.ndarray, str]:
        return source.read_with_digest(task.locator, predictor.n_pixels)

    class _Preread:  # a source that hands out the spectra read ahead
        def __init__(self, data):
            self.data = data

        def read_with_digest(self, locator, n_pixels):
            return self.data

    following = iter(todo)
    with ThreadPoolExecutor(1, thread_name_prefix="skages-read") as pool:
        task: _Task | None = make_task(next(following))
        ahead = pool.submit(read, task)
        while task is not None:
            data = ahead.result()
            bounds = next(following, None)
            next_task = None if bounds is None else make_task(bounds)
            if next_task is not None:
                ahead = pool.submit(read, next_task)
            cols = _chunk._predict_chunk(predictor, _Preread(data), task, cuts)
            progress.write((task.index, task.start, task.stop), cols)
            bar.update(task.stop - task.start)
            task = next_task


# how long a run whose Dask workers were all lost waits for one to come back (a nanny
# restarting a killed worker, an adaptive cluster scaling up) before it gives up
_WORKER_WAIT_S = 30.0
# losses in a row without a finished chunk before the run gives up
_MAX_LOSSES = 3


def _lost_workers(exc: BaseException) -> bool:
    """Whether a chunk failed because its workers (or the model they held) were lost."""
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    return isinstance(exc, (CancelledError, KilledWorker))


def _run_dask(model, source, todo, make_task, cuts, progress, bar, client) -> None:
    """Chunks as dask.distributed tasks; results stored by the driver as they arrive.

    The model is scattered to every worker. If the workers holding it are all lost, the
    chunks still running are put back, the run waits up to ``_WORKER_WAIT_S`` seconds for
    a worker, sends the model again and goes on; if none comes back, it stops with one
    line (finished chunks stay in the progress folder, and the same command resumes).
    """
    from dask.distributed import as_completed

    if not todo:
        return
    n_slots = max(1, sum(client.nthreads().values()))
    n_total = len(todo)
    n_done = 0
    losses = 0
    waiting = list(todo)  # bounds not yet submitted (or put back after a loss)
    by_key: dict[str, Any] = {}

    def scatter():
        try:
            return client.scatter(model, broadcast=True, hash=False, timeout=_WORKER_WAIT_S)
        except (OSError, TimeoutError) as exc:
            raise OSError(_gone(f"the model could not be sent to them ({exc})")) from exc

    def _gone(why: str) -> str:
        return (
            f"all Dask workers were lost ({why}); {n_done} of {n_total} chunks finished "
            f"and are kept in {progress.folder}: rerun the same command to resume from them"
        )

    def submit(model_future, bounds: tuple[int, int, int]):
        task = make_task(bounds)
        fut = client.submit(
            _chunk._predict_chunk_task,
            model_future,
            source,
            task,
            cuts,
            pure=False,
            key=f"skages-chunk-{task.index}-{os.getpid()}-{time.monotonic_ns()}",
        )
        by_key[fut.key] = (bounds, task, fut)
        return fut

    while waiting:
        model_future = scatter()
        first, waiting = waiting[: 2 * n_slots], waiting[2 * n_slots :]
        running = as_completed([submit(model_future, b) for b in first])
        lost = False
        for fut in running:
            bounds, task, _ = by_key.pop(fut.key)
            try:
                cols = fut.result()
            except Exception as exc:
                if _lost_workers(exc):
                    lost = True
                    waiting.insert(0, bounds)
                    break
                if isinstance(exc, (OSError, ValueError)):
                    kind = OSError if isinstance(exc, OSError) else ValueError
                    raise kind(
                        f"chunk {task.index} failed on a Dask worker: {exc} (do the "
                        f"workers see {source.path} at the same path?)"
                    ) from exc
                raise
            fut.release()
            progress.write((task.index, task.start, task.stop), cols)
            bar.update(task.stop - task.start)
            n_done += 1
            losses = 0
            if waiting:
                running.add(submit(model_future, waiting.pop(0)))
        if not lost:
            break
        # put back every chunk still in flight, in order, and start again with a new copy
        # of the model once a worker is there
        back = [bounds for bounds, _, _ in by_key.values()]
        running.clear()
        client.cancel([f for _, _, f in by_key.values()])
        by_key.clear()
        waiting = sorted(set(back) | set(waiting))
        model_future.release()
        losses += 1
        logger.warning(
            "the Dask workers holding the model were lost (%d of %d chunks finished and "
            "kept); waiting up to %g s for a worker to send the model again",
            n_done, n_total, _WORKER_WAIT_S,
        )  # fmt: skip
        if losses > _MAX_LOSSES:
            raise OSError(_gone(f"lost {losses} times without finishing a chunk"))
        try:
            client.wait_for_workers(1, timeout=_WORKER_WAIT_S)
        except (OSError, TimeoutError) as exc:
            raise OSError(_gone(f"none came back within {_WORKER_WAIT_S:g} s")) from exc


@contextlib.contextmanager
def dask_client(
    scheduler: Any = "local", *, n_workers: int | None = None, threads_per_worker: int = 1
) -> Iterator[Any]:
    """A dask.distributed Client: on an existing scheduler, or on a fresh LocalCluster.

    Parameters
    ----------
    scheduler : str, Client or "local", default="local"
        ``"local"`` (or True) starts a :class:`dask.distributed.LocalCluster` of worker
        processes on this machine (loopback only) and closes it on exit; a string such as
        ``"tcp://10.0.0.5:8786"`` connects to a running scheduler (e.g. one started by
        dask-jobqueue on a Slurm cluster); a Client is used as it is.
    n_workers : int, optional
        Worker processes of a LocalCluster (default: one per core).
    threads_per_worker : int, default=1
        Threads per LocalCluster worker.

    Yields
    ------
    dask.distributed.Client
    """
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - dask is a test dependency
        raise ImportError(
            "running on Dask needs dask.distributed: pip install 'skages[dask]'"
        ) from exc
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is True or scheduler == "local":
        chatty = logging.getLogger("distributed")
        level = chatty.level
        if not logger.isEnabledFor(logging.DEBUG):
            chatty.setLevel(logging.WARNING)  # the cluster's start/stop INFO chatter
        try:
            with _local_client(n_workers, threads_per_worker) as client:
                yield client
        finally:
            chatty.setLevel(level)
        return
    if not isinstance(scheduler, str):
        raise TypeError(
            f"scheduler must be 'local', an address string or a Client; got {scheduler!r}"
        )
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise OSError(f"could not connect to the Dask scheduler at {scheduler}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _local_client(n_workers: int | None, threads_per_worker: int) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.WARNING,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
