"""A costly method's class job: one class's maps made off the UI thread, with progress and Cancel.

A class whose maps cost network passes (a single plane's Grad-CAM backward pass, a Score-CAM
stack's passes, ``PLANES_PER_STEP`` planes a step) is made in a job before its overlay is drawn; so
is a stack's *each plane's top class* (each plane's map of its own top class, the class the overlay
shows there: :func:`~.shown.own_classes`). Meanwhile the dock's Run button reads *Cancel*. Cancel
quits the job and sets its :class:`~.run.CancelToken`, which the job's thread checks between steps
and, for a method that reruns the network, before every module of it: the job stops within one
step. Whatever it still yields is ignored, the overlay keeps the class it showed (nothing half-made
is drawn: a class is drawn once every plane's map is made) and the class list goes back to that
class. Another class chosen while a job runs cancels it and starts its own. Maps made before a
cancel stay kept in the result: the class chosen again makes only the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from .names import class_name
from .run import Cancelled, CancelToken
from .shown import maps_ready, own_classes

if TYPE_CHECKING:
    from .session import Session

PLANES_PER_STEP = 4  # a stack's planes a step of a class job (its progress, its Cancel)


class View(Protocol):
    """What the job needs of the class view."""

    def refresh(self) -> None: ...

    def drawn_class(self) -> int | None: ...

    def rebuild_classes(self, value: int | None) -> None: ...


class ClassJob:
    """The class job of ``view``'s session (see the module docstring)."""

    def __init__(self, session: Session, view: View) -> None:
        self.session, self.view = session, view
        self.index: int | None = None  # the class being made
        self.done = self.total = 0  # planes made so far, of
        self._id = 0  # a cancelled job's late yields are ignored
        self._token = CancelToken()
        self._result: Any = None

    @property
    def running(self) -> bool:
        return self.session.class_worker is not None

    def start(self, index: int) -> None:
        """Make class ``index``'s maps of the shown result, then redraw (a job for another
        class is cancelled first; one for this class goes on)."""
        session = self.session
        result = session.result
        if self.running:
            if index == self.index and result is self._result:
                return
            self._stop()
        info, name = result.method_info, class_name(result.class_names, index)
        session.say(f"{info.label} of {name!r}: {info.cost}…")
        self._id += 1
        job_id, failed, finished = self._id, [], []
        self._token = token = CancelToken()
        self.index, self._result = index, result
        self.done, self.total = 0, len(result) if isinstance(result, Sequence) else 1

        def on_yield(step: tuple[int, int]) -> None:
            if job_id != self._id:  # cancelled: its late step is not shown
                return
            self.done, self.total = step
            if step[1] > 1:
                session.say(f"{info.label} of {name!r}: {step[0]} of {step[1]} planes…")

        def on_error(error: BaseException) -> None:
            if job_id == self._id:
                failed.append(error)
                session.fail(error, notify=False)

        def on_finish() -> None:
            finished.append(True)
            if job_id == self._id:
                self._finished(result, index, bool(failed))

        job = session.jobs.start(
            class_maps,
            result,
            index,
            session.shown.model,
            token,
            on_yield=on_yield,
            on_error=on_error,
            on_finish=on_finish,
            progress=f"napari-gapcam {info.label}",
        )
        if not finished:  # a job in a thread: it runs on
            session.class_worker = job
            session.events.busy.emit(True)

    def cancel(self) -> None:
        """Cancel: the job stops, the overlay stays as it was, the class list shows its class."""
        if not self.running:
            return
        result, index, done, total = self._result, self.index, self.done, self.total
        self._stop()
        drawn = self.view.drawn_class()
        self.view.rebuild_classes(drawn)
        label, names = result.method_info.label, result.class_names
        after = f" after {done} of {total} planes" if total > 1 else ""
        shows = "is not made yet" if drawn is None else f"still shows {class_name(names, drawn)!r}"
        name = class_name(names, index)
        self.session.say(f"Cancelled {label} of {name!r}{after}: the overlay {shows}.")

    def _stop(self) -> None:
        """Quit the job and stop its thread; what it still yields or returns is ignored."""
        session = self.session
        session.class_worker.quit()  # a generator job stops at its next yield ...
        self._token.set()  # ... and its thread before its next step or layer
        self._id += 1
        session.class_worker = self._result = None
        session.events.busy.emit(session.busy)

    def _finished(self, result: Any, index: int, failed: bool) -> None:
        session = self.session
        session.class_worker = self._result = None
        session.events.busy.emit(session.busy)
        if maps_ready(result, index):
            session.say(session.run_line or session.status)  # the run's line again
        if result is session.result and not failed:  # a stack grown meanwhile: its new planes
            self.view.refresh()


def class_maps(
    result: Any, index: int, model: Any, token: CancelToken
) -> Iterator[tuple[int, int]]:
    """Make (and keep in ``result``) its maps of the class choice ``index`` (:data:`EACH_TOP`:
    each plane's own top class), a few planes a step; yields ``(planes done, planes)`` after each
    step and stops once ``token`` is set (before every module of ``model`` where the method
    reruns it)."""
    reruns = result.method_info.needs_input
    try:
        if not isinstance(result, Sequence) or len(result) == 1:
            with token.watching(model) if reruns else nullcontext():
                result.raw_cam(own_classes(result, index, [0])[0])
            yield 1, 1
            return
        for start in range(0, len(result), PLANES_PER_STEP):
            token.check()
            images = list(range(start, min(len(result), start + PLANES_PER_STEP)))
            with token.watching(model) if reruns else nullcontext():  # not while yielding
                result.raw(images, own_classes(result, index, images))
            yield images[-1] + 1, len(result)
    except Cancelled:
        return
