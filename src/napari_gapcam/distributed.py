"""Scale-out on dask.distributed: chunks of inputs as tasks, outcomes streamed back.

Each task is :func:`napari_gapcam.chunks.process_chunk`: the worker loads the model once (a
per-process cache), writes the chunk's files atomically into the output folder (which must be
visible to the workers under the same path) and returns the outcomes. A worker that dies costs
its in-flight chunk, which the scheduler runs again elsewhere; writes are idempotent, so nothing
is lost or written twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .chunks import Options, check_options, process_chunk
from .inputs import Item


class ClusterError(RuntimeError):
    """dask.distributed is missing, or the cluster cannot be reached."""


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


def check_on_cluster(connection: Any, options: Options) -> list[str]:
    """:func:`check_options` on a worker (it keeps the model it loads)."""
    return connection.submit(check_options, options, pure=False).result()


def run_chunks(
    connection: Any, chunks: Sequence[Sequence[Item]], options: Options, root: str
) -> Iterator[list[dict[str, Any]]]:
    """Submit every chunk; yield each chunk's outcomes as it finishes (in completion order).

    A chunk whose workers kept dying (dask gives up after ``allowed-failures`` deaths) comes
    back as failed outcomes, so a later run finishes it.
    """
    from dask.distributed import as_completed

    futures = {
        connection.submit(process_chunk, list(chunk), options, root, pure=False): chunk
        for chunk in chunks
    }
    for future in as_completed(futures):
        try:
            yield future.result()
        except Exception as error:
            reason = f"the dask task failed ({type(error).__name__}: {error})"
            yield [{"file": i.path, "status": "failed", "error": reason} for i in futures[future]]
        finally:
            future.release()
