"""The dock's jobs: napari's ``create_worker`` threads, their signals on the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.qt.threading import create_worker
from qtpy.QtCore import QTimer

from .jobs import Callback, Job


class QtJobs:
    """:class:`~napari_gapcam._napari.jobs.Jobs` on napari's thread workers."""

    def start(
        self,
        function: Callable[..., Any],
        *args: Any,
        on_yield: Callback = None,
        on_return: Callback = None,
        on_error: Callback = None,
        on_finish: Callback = None,
        progress: str | None = None,
    ) -> Job:
        extra = {"_progress": {"desc": progress}} if progress else {}
        # errors are the session's to report; napari would notify (with the traceback) too
        worker = create_worker(function, *args, _ignore_errors=True, **extra)
        for signal, callback in (
            ("yielded", on_yield),
            ("returned", on_return),
            ("errored", on_error),
            ("finished", on_finish),
        ):
            if callback is not None and hasattr(worker, signal):
                getattr(worker, signal).connect(callback)
        worker.start()
        return worker

    def later(self, callback: Callable[[], None]) -> None:
        QTimer.singleShot(0, callback)
