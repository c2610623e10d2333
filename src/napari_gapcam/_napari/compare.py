"""*Compare methods*: the displayed plane under each chosen method, side by side, and how faithful
each map is to the model.

A folded section of the dock: a list of the methods' table (each with its cost), *Compare*, a
table of faithfulness scores (a row per method, a column per metric; MaxBoxAccV2 and PxAP too
when true boxes are picked under *Ground truth*) and a status line. *Compare* starts one job
(:func:`~.compare_job.compare`, with progress and Cancel) on the last finished run's displayed
plane and class: each method's map (no forward pass where its row says it needs only the head),
then its scores. When it ends, on the UI thread, each map becomes the overlay
``"<image> · <method>"`` on that plane, placed and coloured as the main overlay (its grid, its
colormap), and the table is filled; *Compare* again updates those layers in place (a method no
longer chosen loses its layer). Cancel leaves the layers and the table as they were. Clicking a
row shows that method's overlay alone (the main one hidden until the next run, which removes
them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import PushButton, Select
from napari.utils import progress

from .compare_job import Outcome, Task, compare, head_only, method_rows
from .controls import Section, line
from .decompose import world_affine
from .input_planes import plane_text
from .overlay_layers import META_KEY, Placement
from .run import CancelToken
from .score_table import ROW_PX, fill, fit_width, score_table

if TYPE_CHECKING:
    from .session import Session

ROLE = "method:"  # an overlay's role: "method:<name>"
CHOSEN = 2  # methods chosen at first: the table's first ones
NEW_RUN = "A new run: its methods compare once it ends (press Compare)."
RUN_ENDED = "Run ended: choose methods and press Compare (the displayed plane)."


def label_of(name: str) -> str:
    rows = {row.name: row for row in method_rows()}
    return rows[name].label if name in rows else name


class CompareMethods:
    """The section (``section``) and its work, on top of the widget's session (see the module
    docstring); ``widget`` gives the viewer, the session and the *true boxes* control."""

    def __init__(self, widget: Any) -> None:
        self.session: Session = widget.session
        self.viewer = self.session.viewer
        self._truth = widget.truth
        self._own_models = widget.models.own_models  # handed-over / channels' models
        self._main: Any = None  # the main overlay, hidden while a row's map shows alone
        rows = method_rows()
        self.methods = Select(
            label="methods",
            choices=[(row.label, row.name) for row in rows],
            value=[row.name for row in rows[:CHOSEN]],
            tooltip="The methods to compare on the displayed plane (ctrl-click: several).",
        )
        native = self.methods.native
        for i, row in enumerate(rows):
            native.item(i).setToolTip(row.describe())
        native.setMaximumHeight(ROW_PX * min(len(rows), 6) + 6)
        fit_width(native)
        self.button = PushButton(text="Compare")
        self.table = score_table()
        self.status = line("compared", "Run first; then choose methods and press Compare.")
        wide = (self.table, self.status)  # the table: the dock's full width
        self.section = Section("Compare methods", [self.methods, self.button], True, wide)
        self.worker: Any = None
        self.outcome: Outcome | None = None
        self._id = 0  # a cancelled comparison's late yields are ignored
        self._token = CancelToken()
        self._progress: progress | None = None
        self._contrast: tuple[Any, Any] = (None, None)  # (source, its contrast at run time)
        self._widget_image = widget.image
        self.session.parts.append(self)  # its events hold it weakly
        self.button.changed.connect(self._on_button)
        self.table.native.itemSelectionChanged.connect(self._show_selected)
        self.session.events.running.connect(self._on_running)
        self.viewer.layers.events.removed.connect(self._on_removed)

    # ------------------------------------------------------------------ state
    def say(self, text: str) -> None:
        self.status.value = text

    def layers(self, source: Any) -> dict[str, Any]:
        """The method overlays of ``source`` in the viewer, by method name."""
        found = {}
        for row in method_rows():
            layer = self.session.overlays.get(source, ROLE + row.name)
            if layer is not None:
                found[row.name] = layer
        return found

    def _on_button(self, _value: Any = None) -> None:
        if self.worker is not None:
            self.cancel()
        else:
            self.compare()

    def _on_running(self, running: bool) -> None:
        """A new run: its source's contrast noted (to read the plane as the run did), the last
        comparison's layers and table gone (the last run's). Ended: the line says so."""
        if not running:
            if self.status.value == NEW_RUN:
                self.say(RUN_ENDED)
            return
        if self._main is not None:  # hidden by a row shown alone: the new run's map shows
            self._main.visible, self._main = True, None
        source = self._widget_image.value
        if source is not None:
            self._contrast = (source, None if source.rgb else tuple(source.contrast_limits))
        if self.worker is not None:
            self.cancel()
        shown = self.session.shown
        if shown is not None and self.layers(shown.source):
            old = list(self.layers(shown.source).values())
            self.session.jobs.later(lambda: self._remove(old))
        if self.outcome is not None:
            self.say(NEW_RUN)
        self.outcome = None
        self.table.visible = False

    def _remove(self, layers: list[Any]) -> None:
        for layer in layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    def _on_removed(self, event: Any) -> None:
        """The source was removed: its method overlays go with it."""
        source = event.value
        if META_KEY in source.metadata:
            return
        own = [self.session.overlays.tracked(source, ROLE + row.name) for row in method_rows()]
        own = [layer for layer in own if layer is not None]
        if own:
            self.session.jobs.later(lambda: self._remove(own))

    # ------------------------------------------------------------------ a comparison
    def refusal(self) -> str:
        """Why *Compare* cannot start now ("" when it can)."""
        session, shown = self.session, self.session.shown
        if shown is None or session.choices.class_index is None:
            return "Run first: the methods are compared on the run's displayed plane."
        if session.worker is not None:
            return "A run is in progress: compare once it ends."
        if shown.unit == "tiles":
            return "Compare works on whole-image runs (a slide's tiles keep no channels)."
        if not session.can_show():
            return "The run's image changed or was removed: press Run first."
        if not self.methods.value:
            return "Choose one or more methods (ctrl-click), then Compare."
        index = session.displayed_index()
        if shown.is_stack and shown.position.get(index, shown.done) >= shown.done:
            return "This plane has no map yet: run it (all planes, or current plane) first."
        return ""

    def compare(self) -> None:
        """Start the comparison on the displayed plane (see the module docstring)."""
        if self.worker is not None:
            return
        why = self.refusal()
        if why:
            self.say(why)
            return
        try:
            task, context = self._task()
        except Exception as error:  # a layer of true boxes that does not fit, …
            self.say(f"Cannot compare: {error}")
            return
        self._id += 1
        self._token = token = CancelToken()
        compare_id, finished = self._id, []
        self._progress = progress(total=2 * len(task.methods))
        self._progress.set_description("napari-gapcam compare methods")
        names = ", ".join(row.label for row in task.methods)
        own = task.result.method_info.name  # the cost of each method that runs the plane again
        costs = [f"{r.label}: {r.cost}" for r in task.methods if r.name != own and not head_only(r)]
        costs_said = f" ({'; '.join(costs)})" if costs else ""
        self.say(f"Comparing {names} on {context['where']}{costs_said}…")
        self.button.text = "Cancel"

        def on_finish() -> None:
            finished.append(True)
            if compare_id == self._id:
                self._end()

        job = self.session.jobs.start(
            compare,
            task,
            token,
            on_yield=lambda out: self._take(out, compare_id, context),
            on_error=lambda error: compare_id == self._id and self._fail(error),
            on_finish=on_finish,
        )
        if not finished:  # a job in a thread: it runs on
            self.worker = job

    def _task(self) -> tuple[Task, dict[str, Any]]:
        """The comparison of the displayed plane and class, and what the layers need."""
        session = self.session
        shown, index = session.shown, session.displayed_index()
        position = shown.position[index] if shown.is_stack else 0
        result = shown.result[position] if shown.is_stack else shown.result
        c = session.chosen_class()
        placement = shown.placement(session.budget())
        source, contrast = self._contrast
        if source is not shown.source:  # a run started from a script: the layer's own now
            contrast = None if shown.source.rgb else tuple(shown.source.contrast_limits)
        chosen = set(self.methods.value)
        rows = tuple(row for row in method_rows() if row.name in chosen)
        scale = "each" if session.choices.scale == "shared" else session.choices.scale
        boxes, truth = self._true_boxes(index)
        task = Task(
            shown.model,
            result,
            shown.planes.images[position],
            contrast,
            _geometry(result),
            c,
            placement.grid,
            scale,
            rows,
            boxes,
            self._own_models(shown.model),
        )
        plane = f" plane {plane_text(index)}" if shown.is_stack or index else ""
        name = result.class_names[c]
        where = f"{shown.source.name!r}{plane}, class {name!r}"
        context = {"shown": shown, "result": shown.result, "index": index, "class": c,
                   "placement": placement, "where": where, "truth": truth}  # fmt: skip
        return task, context

    def _true_boxes(self, index: tuple[int, ...]) -> tuple[list | None, str]:
        """The true boxes (image pixels) on the plane ``index`` from the *true boxes* layer,
        and a note for the status line."""
        from napari.layers import Labels

        from .calibrate import drawn_boxes, true_masks

        layer, shown = self._truth.value, self.session.shown
        if layer is None:
            return None, ""
        grid = tuple(shown.image_shape)
        if isinstance(layer, Labels):
            found = true_masks(layer, shown, grid, index)
            boxes = None if found is None else list(found[0])
        else:
            drawn = drawn_boxes(layer, shown, grid, self.viewer.dims.point)
            boxes = [box for box, _ in drawn.get(index, [])] or None
        if boxes is None:
            return None, f" ({layer.name!r} has no true box on this plane)"
        return boxes, f" with {len(boxes)} true box(es) of {layer.name!r}"

    def cancel(self) -> None:
        """Stop the comparison: the layers and the table stay as they were."""
        if self.worker is None:
            return
        self.worker.quit()
        self._token.set()
        self._id += 1  # whatever it still yields is ignored
        self._end()
        self.say("Cancelled: the layers and the table are as they were.")

    def _end(self) -> None:
        self.worker = None
        self.button.text = "Compare"
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _fail(self, error: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.say(f"Compare failed: {type(error).__name__}: {error}")
        show_error(f"napari-gapcam compare: {error}")

    def _take(self, out: tuple[str, Any], compare_id: int, context: dict[str, Any]) -> None:
        """One yield of the job. napari's progress bar may deliver the next yields inside its
        ``update``: a step's line is said first, and none is said once the outcome is in."""
        if compare_id != self._id or context.get("ended"):  # cancelled, or its outcome shown
            return
        kind, payload = out
        if kind == "progress":
            done, total, text = payload
            self.say(f"{text} ({done + 1} of {total} steps)")
            if self._progress is not None:
                self._progress.update(done - self._progress.n)
            return
        context["ended"] = True
        session = self.session
        if session.shown is not context["shown"] or session.result is not context["result"]:
            self.say("A new run started meanwhile: press Compare again.")
            return
        try:
            self._show(payload, context)
        except Exception as error:  # keep the viewer alive; say what went wrong
            self._fail(error)

    # ------------------------------------------------------------------ what it shows
    def _show(self, outcome: Outcome, context: dict[str, Any]) -> None:
        """Each method's overlay (in place where it exists), the table, the status line."""
        self.outcome = outcome
        shown = context["shown"]
        old = self.layers(shown.source)
        self._remove([layer for name, layer in old.items() if name not in outcome.maps])
        active = self.viewer.layers.selection.active
        for name, heat in outcome.maps.items():
            self._put(name, heat, context)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        fill(self.table, [label_of(n) for n in outcome.scores], list(outcome.scores.values()))
        failed = "".join(f" {label_of(n)} failed: {e}." for n, e in outcome.errors.items())
        self.say(
            f"{len(outcome.maps)} method(s) on {context['where']}{context['truth']}, "
            f"{outcome.seconds:.1f} s. Click a row to show its map alone.{failed}"
        )
        if outcome.maps:
            self.show_only(next(iter(outcome.maps)))

    def _put(self, name: str, heat: np.ndarray, context: dict[str, Any]) -> Any:
        """The overlay of method ``name``: created once, then its data and place updated."""
        shown, index, c = context["shown"], context["index"], context["class"]
        placement: Placement = context["placement"]
        source, lead = shown.source, shown.planes.lead_axes
        data = plane_data(heat, placement, lead, source.ndim)
        affine = world_affine(source, placement, index, lead)[1:, 1:]
        main = self.session.overlays.get(source, "cam")
        colormap = main.colormap if main is not None else "turbo"
        meta = {
            META_KEY: {
                "role": ROLE + name,
                "source": source.name,
                "method": name,
                "class_index": c,
                "class_name": shown.result.class_names[c],
                "plane": list(index),
                "scores": (self.outcome.scores if self.outcome else {}).get(name, {}),
            }
        }
        title = f"{source.name} · {label_of(name)}"
        layer = self.session.overlays.get(source, ROLE + name)
        if layer is None:
            layer = self.viewer.add_image(
                data,
                name=title,
                affine=affine,
                colormap=colormap,
                opacity=0.5,
                blending="translucent",
                contrast_limits=(0.0, 1.0),
                interpolation2d="linear",
                metadata=meta,
            )
            self.session.overlays.track(source, ROLE + name, layer)
            return layer
        layer.data = data
        layer.affine = affine
        layer.metadata = {**layer.metadata, **meta}
        return layer

    def _show_selected(self) -> None:
        rows = {index.row() for index in self.table.native.selectedIndexes()}
        names = list(self.outcome.scores) if self.outcome is not None else []
        if len(rows) == 1 and min(rows) < len(names):
            self.show_only(names[min(rows)])

    def show_only(self, name: str) -> None:
        """Method ``name``'s overlay visible, the other methods' and the main overlay hidden:
        its map alone, not blended with another (the layer list shows them again)."""
        shown = self.session.shown
        if shown is None:
            return
        self._main = main = self.session.overlays.get(shown.source, "cam")  # a run shows it
        others = {**({"": main} if main is not None else {}), **self.layers(shown.source)}
        for other, layer in others.items():
            layer.visible = other == name


def _geometry(result: Any) -> tuple[int | None, bool | None]:
    """The input size and square setting the run used, read from its result (the short side
    of the network's input; square when a non-square image came in square)."""
    shape = getattr(result, "input_shape", None)
    if not shape:
        return None, None
    h, w = result.image_shape[:2]
    return int(min(shape)), (bool(shape[0] == shape[1]) if h != w else None)


def plane_data(heat: np.ndarray, placement: Placement, lead: tuple, ndim: int) -> np.ndarray:
    """A plane's grid map as a layer over the source's ``ndim`` axes: the map on the
    placement's axes, one index on the others (placed there by the affine)."""
    axes = tuple(a % ndim for a in placement.axes)
    data = heat if axes[0] < axes[1] else heat.T
    shape = [1 if a in lead else data.shape[sorted(axes).index(a)] for a in range(ndim)]
    return np.ascontiguousarray(data.reshape(shape), np.float32)
