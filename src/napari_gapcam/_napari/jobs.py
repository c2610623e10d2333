"""Work off the UI thread, as the Qt-free session sees it: start a job, hear what it yields and
returns, stop it; and call something once the current event is over.

The dock hands the session :class:`~napari_gapcam._napari.qt_jobs.QtJobs` (napari's
``create_worker``: a thread, its signals delivered on the UI thread). :class:`InlineJobs` runs
every job at once in the calling thread: a session driven from a script or a test, no Qt.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

Callback = Callable[..., Any] | None


class Job(Protocol):
    """A started job."""

    @property
    def is_running(self) -> bool: ...

    def quit(self) -> None:
        """Stop a generator job at its next ``yield`` (what it already yielded stays)."""


class Jobs(Protocol):
    """What the session needs to run work off the UI thread."""

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
        """Run ``function(*args)`` (a generator's yields go to ``on_yield`` as they come);
        ``progress``: a description for napari's progress bar of a job without its own."""

    def later(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the event being handled is over."""


class _Done:
    is_running = False

    def quit(self) -> None:
        return None


class InlineJobs:
    """Every job runs to its end at once, in the calling thread (no Qt, no threads)."""

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
        try:
            if inspect.isgeneratorfunction(function):
                value = None
                for item in function(*args):
                    if on_yield is not None:
                        on_yield(item)
            else:
                value = function(*args)
            if on_return is not None:
                on_return(value)
        except Exception as error:
            if on_error is None:
                raise
            on_error(error)
        finally:
            if on_finish is not None:
                on_finish()
        return _Done()

    def later(self, callback: Callable[[], None]) -> None:
        callback()
