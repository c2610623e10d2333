"""Scale-out on dask.distributed: chunks of inputs as tasks, outcomes streamed back.

Each task is :func:`napari_gapcam.cli.stream.process_chunk`: the worker loads the model once (a
per-process cache), writes the chunk's files atomically into the output folder (which must be
visible to the workers under the same path) and returns the outcomes. A worker that dies costs
its in-flight chunk, which the scheduler runs again elsewhere; writes are idempotent, so nothing
is lost or written twice. A cluster left without workers does not make the run wait forever:
after a timeout it stops with what is done kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, islice
from typing import Any

from .infer import Options, check_options
from .inputs import Item
from .pages import read_locally
from .stream import process_chunk

REPORT = 10.0  # seconds between progress lines while nothing finishes
IN_FLIGHT = 64  # chunks submitted and not yet back


class ClusterError(RuntimeError):
    """dask.distributed is missing, or the cluster cannot be reached."""


class NoWorkersError(ClusterError):
    """The cluster has no worker (none came, or none is left) for longer than the timeout."""


@contextmanager
def client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A client of ``scheduler``, or of a local cluster of ``workers`` processes (loopback)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError(
            "--workers and --scheduler need dask.distributed: pip install 'napari-gapcam[cluster]'"
        ) from None
    if scheduler:
        try:
            connection = Client(scheduler, timeout=30)
        except OSError as error:
            raise ClusterError(f"Cannot reach the dask scheduler {scheduler}: {error}") from error
        with connection:
            yield connection
        return
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,  # errors only
    )
    with cluster, Client(cluster) as connection:
        yield connection


def workers_of(connection: Any) -> int:
    """How many workers the scheduler has now."""
    return len(connection.nthreads())


def await_workers(
    connection: Any, timeout: float, on_wait: Callable[[int], None] | None = None
) -> bool:
    """Wait (``Client.wait_for_workers``) until the cluster has a worker; False when none came
    within ``timeout`` seconds. ``on_wait(0)`` is called every ``REPORT`` seconds meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return workers_of(connection) > 0
        if on_wait is not None:
            on_wait(0)
        try:  # a timeout of 0 would mean "forever" to distributed
            connection.wait_for_workers(1, timeout=max(0.01, min(left, REPORT or left)))
            return True
        except TimeoutError:
            continue


def check_on_cluster(
    connection: Any,
    options: Options,
    timeout: float = 60.0,
    function: Callable[[Options], Any] = check_options,
) -> Any:
    """:func:`check_options` (or ``function``) on a worker (it keeps the model it loads); no
    worker within ``timeout`` seconds is a :class:`NoWorkersError`."""
    from dask.distributed import wait

    future = connection.submit(function, options, pure=False)
    while True:
        if not await_workers(connection, timeout):
            future.cancel()
            raise NoWorkersError(
                f"no dask worker came within {timeout:.0f} s (the scheduler has none): "
                "start workers, or wait longer with --worker-timeout; nothing was run"
            )
        try:
            wait([future], timeout=max(REPORT, 0.1))  # loading the model; workers may leave
        except TimeoutError:
            continue
        return future.result()


def run_chunks(
    connection: Any,
    chunks: Iterable[Sequence[Item]],
    options: Options,
    root: str,
    timeout: float = 60.0,
    on_wait: Callable[[int], None] | None = None,
    function: Callable[..., list[dict[str, Any]]] = process_chunk,
) -> Iterator[list[dict[str, Any]]]:
    """Submit the chunks, at most ``IN_FLIGHT`` at a time (the driver never holds a whole
    screen's inputs); yield each chunk's outcomes as it finishes (in completion order).

    ``function(chunk, options, root)`` runs a chunk: :func:`process_chunk` (inputs), or
    :func:`~napari_gapcam.cli.tile_blocks.process_blocks` (blocks of a slide's tiles), with its
    reads of lazy inputs on the worker itself (:func:`~napari_gapcam.cli.pages.read_locally`).

    Results come as they finish (``wait(…, return_when="FIRST_COMPLETED")``). A chunk whose
    workers kept dying (dask gives up after ``allowed-failures`` deaths) comes back as failed
    outcomes, so a later run finishes it. While nothing finishes, ``on_wait(workers)`` is called
    every ``REPORT`` seconds; when the cluster has no worker and none comes within ``timeout``
    seconds (``Client.wait_for_workers``), the chunks left are cancelled and
    :class:`NoWorkersError` says how many (the chunks done are written and kept).
    """
    from dask.distributed import wait

    waiting = iter(chunks)
    futures: dict[Any, Sequence[Item]] = {}  # in flight: at most IN_FLIGHT chunks

    def top_up() -> None:
        for chunk in islice(waiting, max(0, IN_FLIGHT - len(futures))):
            task = connection.submit(read_locally, function, list(chunk), options, root, pure=False)
            futures[task] = chunk

    top_up()
    while futures:
        try:
            done, _ = wait(list(futures), timeout=REPORT, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for future in done:
            chunk = futures.pop(future)
            try:
                yield future.result()
            except Exception as error:
                reason = f"the dask task failed ({type(error).__name__}: {error})"
                yield [{"file": i.path, "status": "failed", "error": reason} for i in chunk]
            finally:
                future.release()
        top_up()
        if done or not futures:
            continue
        workers = workers_of(connection)
        if workers:
            if on_wait is not None:
                on_wait(workers)
        elif not await_workers(connection, timeout, on_wait):
            connection.cancel(list(futures))
            left = [len(chunk) for chunk in chain(futures.values(), waiting)]
            raise NoWorkersError(
                f"no dask worker left for {timeout:.0f} s: {sum(left)} input(s) in {len(left)} "
                "chunk(s) were not run. The inputs done are written and kept; start workers "
                "(or check why they died) and run the same command again to finish."
            )
