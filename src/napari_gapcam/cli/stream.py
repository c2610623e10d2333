"""A run's inputs as one stream: reading, inference and writing overlap on three threads.

A reader thread opens the inputs and decodes their pages ahead of the network (at most two
batches), the calling thread runs the network and makes the maps
(:class:`~napari_gapcam.cli.infer._Job`), and a writer thread encodes and writes each input's
files into the run's staging folder and checks them. The network runs only on the calling
thread, so ``--threads`` still bounds it. :func:`process_chunk` is the same for a chunk (a task
on a dask worker); a local run streams all its inputs (no pause between chunks).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .infer import Options, _Job, get_model
from .inputs import Item, fingerprint
from .messages import reason
from .outputs import OutputFolder
from .pages import open_pages


def _infer_each(model: Any, images: list[Any], options: Options) -> list[Any]:
    """``model.run_each`` on all; if that fails, one by one: one bad page costs only itself."""
    try:
        return model.run_each(images, options.input_size, options.square)
    except Exception:
        if len(images) == 1:
            raise
    results: list[Any] = []
    for image in images:
        try:
            results.extend(model.run_each([image], options.input_size, options.square))
        except Exception as error:
            results.append(error)
    return results


def process_chunk(items: Sequence[Item], options: Options, root: str) -> list[dict[str, Any]]:
    """Run a chunk of inputs and write their outputs under ``root``; one outcome per input
    (:func:`process_stream`'s, in the order of ``items``): a task on a dask worker."""
    return list(process_stream(items, options, root))


def process_stream(items: Iterable[Item], options: Options, root: str) -> Iterator[dict[str, Any]]:
    """Each input's outcome, in order, as soon as its files are written (see the module).

    An outcome is ``{"file", "status": "done", "record", "stage", "input_key"}`` (the run lands
    it: :meth:`~napari_gapcam.cli.store.Store.land`) or ``{"file", "status": "failed", "error"}``.
    """
    model = get_model(options.model)
    threshold = model.box_threshold if options.threshold is None else options.threshold
    out = OutputFolder(root, options.stage)
    outcomes: deque[dict[str, Any] | Future] = deque()
    pending: list[tuple[_Job, int, np.ndarray]] = []
    writer = ThreadPoolExecutor(1, thread_name_prefix="gapcam-writer")
    reader = _Reader(items, out, options, threshold, writer, 2 * max(1, options.batch_size))

    def flush() -> None:
        try:
            results = _infer_each(model, [image for _, _, image in pending], options)
        except Exception as error:
            results = [error] * len(pending)
        for (job, index, image), result in zip(pending, results, strict=True):
            if job.error is not None:
                continue
            try:
                if isinstance(result, BaseException):
                    raise result
                outcome = job.add(index, image, result)
            except Exception as error:
                outcome = job.fail(reason(error))
            if outcome is not None:
                outcomes.append(outcome)
        pending.clear()

    def ready(wait: bool) -> Iterator[dict[str, Any]]:
        while outcomes and (wait or not isinstance(outcomes[0], Future) or outcomes[0].done()):
            first = outcomes.popleft()
            yield first.result() if isinstance(first, Future) else first

    try:
        for event in reader:
            if isinstance(event, dict):  # an input that could not be opened or read
                outcomes.append(event)
                continue
            pending.append(event)
            if len(pending) >= options.batch_size:
                flush()
                yield from ready(wait=False)
        flush()
        yield from ready(wait=True)
    finally:
        reader.stop()
        writer.shutdown(wait=True, cancel_futures=True)


class _Reader:
    """The inputs opened and their pages decoded on a thread of their own, a bounded queue
    ahead of the network: yields ``(job, index, page)`` or a failed input's outcome."""

    END = object()

    def __init__(
        self,
        items: Iterable[Item],
        out: OutputFolder,
        options: Options,
        threshold: float,
        writer: Executor,
        ahead: int,
    ) -> None:
        self.items, self.out, self.options, self.threshold = items, out, options, threshold
        self.writer = writer
        self.queue: queue.Queue = queue.Queue(maxsize=ahead)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gapcam-reader", daemon=True)
        self.thread.start()

    def __iter__(self) -> Iterator[Any]:
        while (event := self.queue.get()) is not self.END:
            yield event

    def stop(self) -> None:
        self.stopped.set()
        while self.thread.is_alive():  # unblock a put waiting for room
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass

    def _put(self, event: Any) -> bool:
        while not self.stopped.is_set():
            try:
                self.queue.put(event, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        from .quick import settled_key

        try:
            for item in self.items:  # the run chose them: each is computed
                try:
                    key = settled_key(item.path)  # before reading: a later change shows
                    source = fingerprint(item.path)
                    pages = open_pages(item.path)
                    job = _Job(item, pages, self.out, self.options, self.threshold, source, key)
                    job.writer = self.writer
                except Exception as error:
                    failed = {"file": item.path, "status": "failed", "error": reason(error)}
                    if not self._put(failed):
                        return
                    continue
                for index in range(job.pages.count):
                    try:
                        page = job.pages.read(index)
                    except Exception as error:
                        if not self._put(job.fail(reason(error))):
                            return
                        break
                    if not self._put((job, index, page)):
                        return
        finally:
            self._put(self.END)
