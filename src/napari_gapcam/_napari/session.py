"""The dock's view model: the state of its runs and what it shows, and the operations on them.

No Qt and no magicgui: a :class:`Session` works on a napari viewer (a ``ViewerModel`` will do)
with a :class:`~napari_gapcam._napari.jobs.Jobs` to run work off the UI thread, so it can be
driven from a script or a test. It holds the state of a run (the model, the shown result, the
run's id and cancel token, the lines of text) and the user's :class:`Choices`; its ``events``
say what changed. The features sit on top of it, each with its own state, and listen to its
events: the chosen class's overlays (:class:`~.class_view.ClassView`), object scores
(:class:`~.objects.ObjectScores`), the decomposition and the calibration. The dock
(:mod:`.widget`) is a thin view over them all: its controls write the choices and call the
operations, and it shows what the events say.

A run has an id: a cancelled run's late yields are ignored, and its job drains on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.utils import progress
from napari.utils.notifications import show_error, show_warning
from psygnal import Signal, SignalGroup

from .input_planes import Planes, canvas_centre, choose_planes
from .jobs import InlineJobs, Jobs
from .overlay_layers import Overlays, spatial_shape
from .run import CancelToken, compute, compute_tiled
from .shown import Shown
from .status import class_items, error_line, no_finite_line

if TYPE_CHECKING:
    from ..engine.protocol import CamMaps
    from ..models import GapCamModel
    from ..models.spec import ModelSpec

READY = "Pick an image layer and press Run."


@dataclass
class Choices:
    """What the user chose in the dock (the view writes these)."""

    class_index: int | None = None
    threshold: float = 0.2
    scale: str = "relative"  # how maps are scaled (engine.maps.SCALES): absent stays cool
    show_box: bool = False
    show_mask: bool = False
    all_regions: bool = False
    min_area: int = 64  # pixels: the smallest region boxed with *all regions*
    megapixels: float = 1.0  # the overlays' cells per plane
    show_tiles: bool = False


@dataclass(frozen=True)
class RunRequest:
    """A run to start: on ``source``, with the model ``spec`` (``model``: one in memory)."""

    source: Image | None
    spec: ModelSpec
    tiles: bool = False  # native pixels in tiles, instead of the whole image shrunk
    all_planes: bool = False
    input_size: int | None = None  # None: the model's
    square: bool | None = None  # None: the model's own setting
    model: GapCamModel | None = None  # a model handed over in Python (``use_model``)


class SessionEvents(SignalGroup):
    text = Signal(str, str)  # (name, value): "status", "predictions", "showing", …
    classes = Signal(object)  # the class list changed; the class to select (or None)
    choice = Signal(str, object)  # one of the Choices changed (by the user or a suggestion)
    running = Signal(bool)  # a run started or ended
    busy = Signal(bool)  # any job (a run, a class job) started or ended
    result = Signal(bool)  # a run's result arrived (True) or grew (False): show it
    ended = Signal()  # a run ended (done, cancelled or failed)
    shown_class = Signal()  # the chosen class's overlays were drawn


class Session:
    """The dock's state and operations (see the module docstring)."""

    def __init__(self, viewer: Any, jobs: Jobs | None = None) -> None:
        self.viewer = viewer
        self.jobs = jobs or InlineJobs()
        self.events = SessionEvents()
        self.choices = Choices()
        self.overlays = Overlays(viewer)
        self.texts = {"status": READY, "predictions": "—", "showing": "—"}
        self.model: GapCamModel | None = None
        self.spec: ModelSpec | None = None
        self.shown: Shown | None = None
        self.worker: Any = None  # the run's job
        self.class_worker: Any = None  # a class job (class_job.py): a costly class's maps
        self.draining: dict[int, Any] = {}  # cancelled runs' jobs finishing their last batch
        self.progress: progress | None = None
        self.run_id = 0  # a cancelled run's late batches are ignored
        self.token = CancelToken()
        self.follow_top = True  # the class follows the top class until the user picks one
        self.run_line = self.warning = ""  # the last run's status line and its warning
        self.parts: list[Any] = []  # the features on it: they live as long as the session
        viewer.layers.events.removed.connect(self._on_layer_removed)

    # ------------------------------------------------------------------ state
    @property
    def result(self) -> CamMaps | None:
        """The shown result (one plane, a stack's planes so far, or a slide's tiles)."""
        return self.shown.result if self.shown is not None else None

    @property
    def busy(self) -> bool:
        """True while a run or a class job (a costly class's maps) is in progress."""
        return self.worker is not None or self.class_worker is not None

    def say(self, value: str, name: str = "status") -> None:
        """Show ``value`` as the line ``name`` ("status", "predictions", "showing", …)."""
        self.texts[name] = value
        self.events.text.emit(name, value)

    def choose(self, name: str, value: Any) -> None:
        """Set one of the :class:`Choices` and say so (the dock's controls call this, and so
        do the session's own suggestions: a model's threshold, a calibrated one)."""
        if not hasattr(self.choices, name):
            raise AttributeError(f"No choice {name!r}: one of {list(vars(self.choices))}.")
        setattr(self.choices, name, value)
        self.events.choice.emit(name, value)

    @property
    def status(self) -> str:
        return self.texts["status"]

    def fail(self, error: BaseException, notify: bool = True, spec: Any = None) -> None:
        """A short status line; the full message goes to the notification (and the log)."""
        self.say(error_line(error, spec))
        if notify:
            show_error(f"napari-gapcam: {error}")

    def class_items(self) -> list[tuple[str, int]]:
        """The class list: the top classes first (by mean probability over a stack), then all."""
        return class_items(self.shown)

    # ------------------------------------------------------------------ runs
    def run(self, request: RunRequest) -> None:
        """Start a run: the displayed plane, every plane, or the displayed plane's tiles."""
        if self.busy:
            return
        source, spec = request.source, request.spec
        try:
            if source is None:
                raise ValueError("No image layer: open an image (File ▸ Open) and press Run.")
            dims = self.viewer.dims
            if request.tiles:
                level = source.data_level if source.multiscale else 0
                planes = choose_planes(source, dims.point, tuple(dims.order), 0, level=level)
            else:
                size = request.input_size or self.input_size_for(request)
                all_planes = request.all_planes
                planes = choose_planes(source, dims.point, tuple(dims.order), size, all_planes)
        except ValueError as error:
            self.fail(error)
            return
        model, contrast, run_id, shape = self._new_run(request)
        if request.tiles:
            self.say(
                f"Running tiles at native pixels on {source.name!r}{planes.describe()}, "
                "the tiles in view first…"
            )
            first = canvas_centre(self.viewer, source, planes)
            args = (model, spec, planes.images[0], contrast, request.input_size, first)
            body, total, title = compute_tiled, 0, f"napari-gapcam tiles on {source.name}"
        else:
            loading = "" if model is not None else f"loading {spec.arch}, "
            self.say(f"Running: {loading}forward pass on {source.name!r}{planes.describe()}…")
            args = (model, spec, planes, contrast, request.input_size, request.square)
            body, title = compute, f"napari-gapcam on {source.name}"
            total = len(planes) if len(planes) > 1 else 0

        def on_yield(out: tuple[str, Any]) -> None:
            self._take(out, run_id, spec, source, planes, shape)

        def on_finish() -> None:
            finished.append(run_id)
            self.draining.pop(run_id, None)
            if run_id == self.run_id:
                self._end_run()

        finished: list[int] = []
        self.progress = progress(total=total)
        self.progress.set_description(title)
        self.events.running.emit(True)
        self.events.busy.emit(True)
        job = self.jobs.start(
            body,
            *args,
            self.token,
            on_yield=on_yield,
            on_error=lambda error: run_id == self.run_id and self.fail(error, False, spec),
            on_finish=on_finish,
        )
        if not finished:  # a job in a thread: it runs on
            self.worker = job

    def input_size_for(self, request: RunRequest) -> int:
        """The input size a run will use (the model's default is known once it is loaded)."""
        if request.model is not None:
            return request.model.input_size
        if self.model is not None and request.spec == self.spec:
            return self.model.input_size
        from ..models.loading import default_input_size

        return default_input_size(request.spec.arch, request.spec.weights)

    def _new_run(self, request: RunRequest) -> tuple[Any, Any, int, tuple[int, ...]]:
        """A new run: the last run's lines cleared, a fresh cancel token, the class following
        the top one; gives the model to reuse (None: the job loads it), the contrast limits
        to read with, the run's id and the source's shape now."""
        self.run_line = self.warning = ""
        self.token = CancelToken()
        self.run_id += 1
        self.follow_top = True
        model = self.model if request.spec == self.spec else None
        if request.model is not None:
            model = request.model
        source = request.source
        contrast = None if source.rgb else tuple(source.contrast_limits)
        return model, contrast, self.run_id, spatial_shape(source)

    def cancel(self) -> None:
        """Stop the run: planes (or tiles) done stay in the overlay; Run works again at once."""
        if self.worker is None:
            return
        self.draining[self.run_id] = self.worker  # until its last batch ends
        self.worker.quit()  # a generator job stops at its next yield ...
        self.token.set()  # ... and the run's thread before its next layer or plane
        self.run_id += 1  # whatever it still yields is ignored
        self._end_run()
        done = self.shown.progress_note() if self.shown is not None else ""
        self.say(f"Cancelled{done}.")

    def _end_run(self) -> None:
        self.worker = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        self.events.running.emit(False)
        self.events.busy.emit(self.busy)
        self.events.ended.emit()

    def _take(
        self,
        out: tuple[str, Any],
        run_id: int,
        spec: ModelSpec,
        source: Image,
        planes: Planes,
        shape: tuple[int, ...],
    ) -> None:
        """One yield of a run: the model, a warning, an error, or a result to show."""
        if run_id != self.run_id:  # a cancelled run
            return
        kind, payload = out
        if kind == "error":
            self.fail(payload, spec=spec)
            return
        if kind == "model":
            new = payload is not self.model
            self.model, self.spec = payload, spec
            if new:  # its suggested box threshold
                self.choose("threshold", payload.box_threshold)
            return
        if source not in self.viewer.layers:
            self.say(f"Layer {source.name!r} was removed during the run.")
            show_warning(f"napari-gapcam: layer {source.name!r} was removed; result dropped.")
            self.cancel()
            return
        if kind == "no finite":
            self.warning = no_finite_line(payload, len(planes))
            show_warning(f"napari-gapcam: {source.name!r}: {self.warning}")
            return
        if kind == "tiles":
            _, total, result, seconds = payload
            unit, first = "tiles", self.shown is None or self.shown.result is not result
        else:
            (result, seconds), total, unit = payload, len(planes), "planes"
            first = kind == "result" or self.shown is None or self.shown.planes is not planes
        if first:
            model = self.model
            self.shown = Shown(source, shape, planes, result, model, total=total, unit=unit)
        elif kind == "batch":  # the next batch of the stack
            self.shown.result.extend(result)
        self.shown.seconds, self.shown.total = seconds, total
        if self.progress is not None and kind in ("batch", "tiles"):
            self.progress.total = total if kind == "tiles" else self.progress.total
            self.progress.update(self.shown.done - self.progress.n)
        self.events.result.emit(first)

    def budget(self) -> int:
        """Overlay cells per plane (see :meth:`.shown.Shown.cells_per_plane`)."""
        return self.shown.cells_per_plane(self.choices.megapixels)

    def can_show(self) -> bool:
        """A result and a class to show, its layer still there and of the run's shape (a
        changed shape is said, instead of failing)."""
        shown = self.shown
        if shown is None or self.choices.class_index is None:
            return False
        if shown.source not in self.viewer.layers:
            return False
        if spatial_shape(shown.source) == shown.source_shape:
            return True
        self.say(
            f"Layer {shown.source.name!r} changed shape since the run "
            f"({shown.source_shape} → {spatial_shape(shown.source)}): press Run for a new map."
        )
        return False

    def displayed_index(self) -> tuple[int, ...]:
        """The plane napari displays now (for a stack), else the plane that was run."""
        shown = self.shown
        if not shown.is_stack:
            return shown.planes.indices[0]
        coords = shown.source.world_to_data(self.viewer.dims.point)
        shape = spatial_shape(shown.source)
        return tuple(
            int(min(max(round(coords[a]), 0), shape[a] - 1)) for a in shown.planes.lead_axes
        )

    def chosen_class(self) -> int:
        """The chosen class; with *each plane's top class*, the displayed plane's own."""
        return self.shown.plane_class(int(self.choices.class_index), self.displayed_index())[0]

    # ------------------------------------------------------------------ layers
    def _on_layer_removed(self, event: Any) -> None:
        """The shown result's source was removed: its overlays go too, and the session says so.
        The user removed its box or mask: the choice to show it goes off (no box comes back
        at the next threshold move)."""
        shown = self.shown
        if shown is None:
            return
        for role, choice in (("box", "show_box"), ("mask", "show_mask")):
            if event.value is self.overlays.tracked(shown.source, role):
                self.choose(choice, False)
        if event.value is not shown.source:
            return
        if self.worker is not None:
            self.cancel()
        self.shown = None
        self.choices.class_index = None
        self.events.classes.emit(None)
        self.say("—", "predictions")
        self.say("—", "showing")
        self.say(f"Layer {shown.source.name!r} was removed, its CAM overlays with it.")
        self.jobs.later(lambda: self.overlays.remove(shown.source))  # not inside an event
