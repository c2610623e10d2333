"""The dock widget: pick an image layer and a model, Run, then pick a class.

Runs happen in a worker (``create_worker``): the current plane, or every plane of a stack in
batches that fill the overlay as they finish; Run turns into Cancel meanwhile. A class or
threshold change reuses the cached maps (no forward pass; a Grad-CAM class of a single plane
costs one backward pass, also in a worker). torch is imported when the widget is created, not
with napari.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox

from ._layers import Overlays, is_overlay, spatial_shape
from ._model_controls import DEMO, FILE, IN_MEMORY, RANDOM, ModelControls
from ._planes import Planes, choose_planes
from ._searchable import make_searchable, select_text
from ._shown import Shown
from .grid import grid_box_to_pixels

if TYPE_CHECKING:
    import napari

    from .models import GapCamModel

__all__ = ["DEMO", "FILE", "IN_MEMORY", "RANDOM", "GapCamWidget"]

TOP_K = 5
CURRENT, ALL = "current plane", "all planes"
OVERLAY_MEGAPIXELS = 1.0  # default per-plane budget of the overlays
LOCALIZE_PIXELS = 250_000  # box and mask come from a grid of at most this many cells
VOLUME_CELLS = 8_000_000  # a 3D view reads every plane: a stack's overlay volume stays this small


def _compute(
    model: GapCamModel | None,
    spec: dict[str, Any],
    planes: Planes,
    contrast_limits: Any,
    input_size: int | None,
) -> Iterator[tuple[str, Any]]:
    """Worker body (off the UI thread): load the model if needed, then the forward passes.

    Yields ``("model", model)``, then ``("result", (CamResult, seconds))`` for one plane or
    ``("batch", (StackResult of the batch, seconds))`` per batch of planes; an error is yielded
    as ``("error", exception)`` (a generator worker would swallow a RuntimeError). Planes are
    lazy: the engine reads each one (band by band) only when its batch runs.
    """
    from .batch import iter_batches
    from .models import load_model

    start = time.perf_counter()
    try:
        if model is None:
            model = load_model(**spec)
        yield "model", model
        if len(planes) == 1:
            result = model.run(planes.images[0], contrast_limits, input_size=input_size or None)
            result.raw_cam(result.topk(1)[0][0])  # Grad-CAM: the top class's backward pass too
            yield "result", (result, time.perf_counter() - start)
            return
        images, size = planes.images, input_size or None
        for _, part in iter_batches(model, images, None, contrast_limits, size):
            yield "batch", (part, time.perf_counter() - start)
    except Exception as error:
        yield "error", error


class GapCamWidget(Container):
    """Class activation maps (CAM, or Grad-CAM) of a CNN (ResNet-50 by default) on the active
    image layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._overlays = Overlays(viewer)
        self._model: GapCamModel | None = None
        self._model_spec: dict[str, Any] | None = None
        self._shown: Shown | None = None
        self._worker = None
        self._run_id = 0  # a cancelled run's late batches are ignored
        self._progress: progress | None = None
        self._class_worker = None  # a Grad-CAM backward pass for a class change
        self._draining: list[Any] = []  # cancelled workers finishing their last batch
        self._follow_top = True  # the class follows the top class until the user picks one

        self.image = ComboBox(label="image", choices=self._image_choices)
        self.models = ModelControls(say=self._say)
        m = self.models
        self.arch, self.weights, self.method, self.device = m.arch, m.weights, m.method, m.device
        self.weights_file, self.names_file, self.input_size = (
            m.weights_file,
            m.names_file,
            m.input_size,
        )
        self.planes = ComboBox(label="planes", choices=[CURRENT, ALL], value=CURRENT)
        self.overlay_mp = FloatSpinBox(
            label="overlay MP",
            min=0.01,
            max=64.0,
            step=0.25,
            value=OVERLAY_MEGAPIXELS,
            tooltip="Overlay resolution per plane, in megapixels (the map is smooth: 1 is plenty). "
            "A stack's planes share 8 MP along their longest axis, so a 3D view stays light.",
        )
        self.run_button = PushButton(text="Run")
        self.status = Label(label="status", value="Pick an image layer and press Run.")
        self.predictions = Label(label="top-5", value="—")
        self.class_select = ComboBox(label="class", choices=self._class_choices)
        self.showing = Label(label="showing", value="—")
        self.threshold = FloatSlider(
            label="box threshold", min=0.05, max=0.95, step=0.05, value=0.2
        )
        self.show_box = CheckBox(text="show box", value=False)
        self.show_mask = CheckBox(text="show mask", value=False)
        self.extend(
            [
                self.image,
                *m.widgets,
                self.planes,
                self.overlay_mp,
                self.run_button,
                self.status,
                self.predictions,
                self.class_select,
                self.showing,
                self.threshold,
                self.show_box,
                self.show_mask,
            ]
        )
        placeholder = "run first; then type to search the classes"
        make_searchable(self.class_select.native, placeholder, self._pick_class_by_text)
        for widget in self:  # long item labels must not widen the dock (and narrow the canvas)
            if isinstance(widget.native, QComboBox):
                widget.native.setSizeAdjustPolicy(
                    QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
                )
                widget.native.setMinimumContentsLength(14)
        for label in (self.status, self.predictions, self.showing):
            label.native.setWordWrap(True)
            label.native.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.run_button.changed.connect(self._on_run_button)
        self.class_select.changed.connect(self._on_class_picked)
        self.threshold.changed.connect(self._refresh_localization)
        self.show_box.changed.connect(self._on_toggle)
        self.show_mask.changed.connect(self._on_toggle)
        self.overlay_mp.changed.connect(self._refresh_overlays)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._follow_active)
        viewer.dims.events.current_step.connect(self._on_dims_step)
        self._follow_active()

    # ----------------------------------------------------------------- public
    @property
    def busy(self) -> bool:
        """True while a run (or a Grad-CAM backward pass) is in progress."""
        return self._worker is not None or self._class_worker is not None

    @property
    def _result(self) -> Any:
        """The shown result: a ``CamResult`` (one plane) or a ``StackResult`` (all planes)."""
        return self._shown.result if self._shown is not None else None

    def use_model(self, model: GapCamModel) -> None:
        """Use a model built in Python (``load_model``, ``from_module``) from now on."""
        self.models.use_model(model)
        self.status.value = f"Using {model.arch} ({model.method_label}), in memory: press Run."

    def set_input_size_text(self, text: str) -> None:
        """Select the input size typed as ``text`` ("640", "640 px" or a listed choice)."""
        self.models.set_input_size_text(text)

    def _pick_arch(self, text: str) -> None:
        self.models.pick_arch(text)

    def cancel(self) -> None:
        """Stop the run: planes done stay in the overlay; Run works again at once."""
        if self._worker is None:
            return
        worker = self._worker
        worker.quit()  # it stops at the end of the batch it is running
        self._draining.append(worker)
        worker.finished.connect(lambda: worker in self._draining and self._draining.remove(worker))
        self._run_id += 1  # whatever it still yields is ignored
        self._end_run()
        shown = self._shown
        done = (
            f" after {shown.done} of {len(shown.planes)} planes" if shown and shown.is_stack else ""
        )
        self.status.value = f"Cancelled{done}."

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not is_overlay(layer)
        ]

    def _class_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        """The top classes first (by mean probability over a stack), then every class."""
        if self._shown is None:
            return []
        top = self._shown.top(TOP_K)
        mean = "mean " if self._shown.is_stack else ""
        head = [(f"{name}  ({mean}{100 * p:.1f} %)", index) for index, name, p in top]
        first = {index for index, _, _ in top}
        names = self._shown.result.class_names
        return head + [(f"{i}: {name}", i) for i, name in enumerate(names) if i not in first]

    def _pick_class_by_text(self, text: str) -> None:
        """Select the first class whose label contains ``text`` (any case)."""
        if not select_text(self.class_select.native, text):
            self.status.value = f"No class matches {text!r}."

    def _say(self, message: str) -> None:
        self.status.value = message

    # ----------------------------------------------------------------- events
    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()

    def _follow_active(self, _event: Any = None) -> None:
        active = self._viewer.layers.selection.active
        self.image.reset_choices()
        if isinstance(active, Image) and not is_overlay(active):
            self.image.value = active

    def _on_toggle(self, _value: Any = None) -> None:
        if self._shown is None:
            return
        source = self._shown.source
        for toggle, role in ((self.show_box, "box"), (self.show_mask, "mask")):
            layer = self._overlays.get(source, role)
            if not toggle.value and layer is not None:
                layer.visible = False
        self._refresh_localization()
        for toggle, role in ((self.show_box, "box"), (self.show_mask, "mask")):
            layer = self._overlays.get(source, role)
            if toggle.value and layer is not None:
                layer.visible = True

    def _on_class_picked(self, _value: Any = None) -> None:
        self._follow_top = False  # the user's choice stays while more planes arrive
        self._refresh_overlays()

    def _on_dims_step(self, _event: Any = None) -> None:
        """A stack's box follows the displayed plane."""
        if self._shown is not None and self._shown.is_stack and self.show_box.value:
            self._refresh_localization()

    # ----------------------------------------------------------------- running
    def _on_run_button(self, _value: Any = None) -> None:
        if self._worker is not None:
            self.cancel()
        else:
            self.run()

    def _input_size_for(self, spec: dict[str, Any]) -> int:
        """The input size a run will use (the model's default is known once it is loaded)."""
        if self.input_size.value:
            return int(self.input_size.value)
        if self._model is not None and spec == self._model_spec:
            return self._model.input_size
        return 224

    def run(self, _value: Any = None) -> None:
        """Start a run on the chosen layer: its displayed plane, or all planes."""
        if self.busy:
            return
        source = self.image.value
        try:
            if source is None:
                raise ValueError("No image layer: open an image (File ▸ Open) and press Run.")
            spec = self.models.spec()
            dims = self._viewer.dims
            planes = choose_planes(
                source,
                dims.point,
                tuple(dims.order),
                self._input_size_for(spec),
                all_planes=self.planes.value == ALL,
            )
        except ValueError as error:
            self._fail(error)
            return
        model = self._model if spec == self._model_spec else None
        if spec["name"] == IN_MEMORY:
            model = self.models.memory_model
        contrast = None if source.rgb else tuple(source.contrast_limits)
        loading = "" if model is not None else f"loading {spec['name']}, "
        self.status.value = f"Running: {loading}forward pass on {source.name!r}{planes.describe()}…"
        self._run_id += 1
        self._follow_top = True
        run_id, shape = self._run_id, spatial_shape(source)
        worker = create_worker(
            _compute,
            model,
            spec,
            planes,
            contrast,
            self.input_size.value,
            _ignore_errors=True,  # napari itself notifies (with the traceback)
        )
        self._progress = progress(total=len(planes) if len(planes) > 1 else 0)
        self._progress.set_description(f"napari-gapcam on {source.name}")
        worker.yielded.connect(lambda out: self._on_yield(out, run_id, spec, source, planes, shape))
        worker.errored.connect(lambda error: run_id == self._run_id and self._fail(error, False))
        worker.finished.connect(lambda: run_id == self._run_id and self._end_run())
        self._worker = worker
        self.run_button.text = "Cancel"
        worker.start()

    def _end_run(self) -> None:
        self._worker = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.run_button.text = "Run"
        self.run_button.enabled = self._class_worker is None

    def _fail(self, error: BaseException, notify: bool = True) -> None:
        self.status.value = f"Error: {error}"
        if notify:
            show_error(f"napari-gapcam: {error}")

    def _on_yield(
        self,
        out: tuple[str, Any],
        run_id: int,
        spec: dict[str, Any],
        source: Image,
        planes: Planes,
        shape: tuple[int, ...],
    ) -> None:
        if run_id != self._run_id:  # a cancelled run
            return
        kind, payload = out
        if kind == "error":
            self._fail(payload)
            return
        if kind == "model":
            if payload is not self._model:  # a new model: its suggested box threshold
                with self.threshold.changed.blocked():
                    self.threshold.value = payload.box_threshold
            self._model, self._model_spec = payload, spec
            return
        if source not in self._viewer.layers:
            self.status.value = f"Layer {source.name!r} was removed during the run."
            show_warning(f"napari-gapcam: layer {source.name!r} was removed; result dropped.")
            self.cancel()
            return
        result, seconds = payload
        first = kind == "result" or self._shown is None or self._shown.planes is not planes
        if first:
            self._shown = Shown(source, shape, planes, result, self._model, seconds)
        else:  # the next batch of the stack
            self._shown.result.extend(result)
            self._shown.seconds = seconds
        if self._progress is not None and kind == "batch":
            self._progress.update(self._shown.done - self._progress.n)
        self._show_result(first)

    def _show_result(self, first: bool) -> None:
        shown, model = self._shown, self._shown.model
        top = shown.top(TOP_K)
        mean = " (mean over the planes)" if shown.is_stack else ""
        self.predictions.value = "\n".join(f"{100 * p:5.1f} %  {name}" for _, name, p in top) + mean
        size, cells = (
            "×".join(str(s) for s in shape)
            for shape in (shown.result.input_shape, shown.result.features.shape[-2:])
        )
        done = f", {shown.done} of {len(shown.planes)} planes" if shown.is_stack else ""
        self.status.value = (
            f"{model.arch} ({model.method_label}) on {shown.source.name!r}"
            f"{shown.planes.describe()}: input {size}, {cells} map cells{done}, "
            f"{shown.seconds:.2f} s on {model.device}."
        )
        with self.class_select.changed.blocked():  # labels and order follow the planes done
            current = self.class_select.value
            self.class_select.reset_choices()
            self.class_select.value = top[0][0] if self._follow_top else current
        self._refresh_overlays()
        cam_layer = self._overlays.get(shown.source, "cam")
        if first and cam_layer is not None:  # ready for napari's opacity / colormap controls
            self._viewer.layers.selection.active = cam_layer

    # ----------------------------------------------------------------- overlays
    def _class_meta(self) -> dict[str, Any]:
        shown, index = self._shown, int(self.class_select.value)
        return {
            "class_index": index,
            "class_name": shown.result.class_names[index],
            "probability": float(shown.probabilities()[index]),
            "model": shown.model.arch,
            "weights": shown.model.weights,
            "plane": "all" if shown.is_stack else list(shown.planes.indices[0]),
            "planes_done": shown.done,
        }

    def _budget(self) -> int:
        """Overlay cells per plane: the user's megapixels, but over an nD source at most
        ``VOLUME_CELLS`` over the planes a 3D view would read (the overlay's resolution does
        not follow the view: napari slices a new view before a plugin hears of it)."""
        return max(1, min(int(self.overlay_mp.value * 1e6), VOLUME_CELLS // self._depth()))

    def _depth(self) -> int:
        """The planes a 3D view of an nD overlay reads at most: the source's longest plane axis
        (after a current-plane run too: the other planes are read, as zeros)."""
        shown = self._shown
        if shown is None or not shown.planes.lead_axes:
            return 1
        return max(shown.source_shape[a] for a in shown.planes.lead_axes)

    def _is_stale(self) -> bool:
        """The source's data changed shape since the run: say so instead of failing."""
        shown = self._shown
        if spatial_shape(shown.source) == shown.source_shape:
            return False
        self.status.value = (
            f"Layer {shown.source.name!r} changed shape since the run "
            f"({shown.source_shape} → {spatial_shape(shown.source)}): press Run for a new map."
        )
        return True

    def _can_show(self) -> bool:
        shown = self._shown
        if shown is None or self.class_select.value is None:
            return False
        return shown.source in self._viewer.layers and not self._is_stale()

    def _refresh_overlays(self, _value: Any = None) -> None:
        """Show the selected class's maps (and box/mask): cached maps, no forward pass."""
        if not self._can_show():
            return
        if not self._shown.is_stack and not self._result.is_ready(self.class_select.value):
            self._start_class_worker(self.class_select.value)
            return
        try:
            self._show_class()
        except Exception as error:  # keep the viewer alive; say what went wrong
            self._fail(error)

    def _start_class_worker(self, index: int) -> None:
        """Grad-CAM: the class's backward pass off the UI thread, then the overlays."""
        if self._class_worker is not None:  # when it ends, the class selected then is shown
            return
        result, status = self._result, self.status.value
        self.status.value = f"Grad-CAM of {result.class_names[index]!r}: one backward pass…"
        worker = create_worker(
            result.raw_cam,
            index,
            _progress={"desc": "napari-gapcam Grad-CAM"},
            _ignore_errors=True,
        )
        worker.errored.connect(lambda error: self._fail(error, notify=False))
        worker.finished.connect(lambda: self._on_class_finished(result, index, status))
        self._class_worker = worker
        self.run_button.enabled = False
        worker.start()

    def _on_class_finished(self, result: Any, index: int, status: str) -> None:
        self._class_worker = None
        self.run_button.enabled = True
        if result.is_ready(index):
            self.status.value = status  # the run's line again
        current = self.class_select.value
        if result is self._result and (current != index or result.is_ready(index)):
            self._refresh_overlays()

    def _show_class(self) -> None:
        shown, meta = self._shown, self._class_meta()
        placement = shown.placement(self._budget())
        fill = shown.cam_fill(meta["class_index"], placement.grid)
        self._overlays.show_cam(shown.source, placement, meta, fill)
        p = "mean p" if shown.is_stack else "p"
        self.showing.value = f"{meta['class_name']}  ({p} = {meta['probability']:.3f})"
        self._show_localization()

    def _refresh_localization(self, _value: Any = None) -> None:
        if not self._can_show():
            return
        if not self._shown.is_stack and not self._result.is_ready(self.class_select.value):
            return  # a Grad-CAM worker runs; it refreshes everything when done
        try:
            self._show_localization()
        except Exception as error:
            self._fail(error)

    def _show_localization(self) -> None:
        """Box (of the displayed plane) and mask on a grid of ≤ 0.25 MP: bounded cost."""
        if not (self.show_box.value or self.show_mask.value):
            return
        shown = self._shown
        meta = {**self._class_meta(), "threshold": float(self.threshold.value)}
        c, threshold = meta["class_index"], meta["threshold"]
        placement = shown.placement(min(self._budget(), LOCALIZE_PIXELS))
        if self.show_box.value:
            index = self._displayed_index()
            box = shown.box(c, placement.grid, threshold, index)
            pixels = None  # the box in the pixels of the image the model read
            if box is not None:
                pixels = grid_box_to_pixels(box, shown.image_shape, placement.grid)
            label = f"{meta['class_name']} {meta['probability']:.2f}"
            box_meta = {**meta, "box": pixels, "grid_box": box, "level": shown.planes.level}
            self._overlays.show_box(shown.source, box, index, placement, label, box_meta)
            if box is None and index in shown.position:
                self.status.value = "No region stands out in this class's map: no box."
        if self.show_mask.value:
            fill = shown.mask_fill(c, placement.grid, threshold)
            self._overlays.show_mask(shown.source, placement, meta, fill)

    def _displayed_index(self) -> tuple[int, ...]:
        """The plane napari displays now (for a stack), else the plane that was run."""
        shown = self._shown
        if not shown.is_stack:
            return shown.planes.indices[0]
        coords = shown.source.world_to_data(self._viewer.dims.point)
        shape = spatial_shape(shown.source)
        return tuple(
            int(min(max(round(coords[a]), 0), shape[a] - 1)) for a in shown.planes.lead_axes
        )
