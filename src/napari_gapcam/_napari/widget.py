"""The dock widget: pick an image layer and a model, Run, then pick a class.

Runs happen in a worker (``create_worker``): the current plane, or every plane of a stack in
batches that fill the overlay as they finish; Run turns into Cancel meanwhile. A class or
threshold change reuses the cached maps (no forward pass; a Grad-CAM class of a single plane
costs one backward pass, also in a worker). torch is imported when the widget is created, not
with napari.
"""

from __future__ import annotations

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
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox

from .calibrate import Calibration
from .class_view import ClassView
from .decompose import Decomposition
from .feature_controls import add_feature_controls, add_run_controls, reset_feature_choices
from .input_planes import Planes, choose_planes
from .model_controls import DEMO, DEMO_MODEL, FILE, IN_MEMORY, RANDOM, ModelControls
from .objects import ObjectsView
from .overlay_layers import Overlays, is_overlay, spatial_shape
from .regions import Regions
from .run import CancelToken, compute
from .searchable import make_searchable, select_text, show_start
from .shown import Shown
from .status import error_line, fit_label, no_finite_line
from .tiles_view import TILES, WHOLE, TilesRun

if TYPE_CHECKING:
    import napari

    from ..models import GapCamModel
    from ..models.spec import ModelSpec

__all__ = [
    "ALL",
    "CURRENT",
    "DEMO",
    "DEMO_MODEL",
    "FILE",
    "IN_MEMORY",
    "RANDOM",
    "TILES",
    "WHOLE",
    "GapCamWidget",
]

TOP_K = 5
CURRENT, ALL = "current plane", "all planes"
OVERLAY_MEGAPIXELS = 1.0  # default per-plane budget of the overlays
VOLUME_CELLS = 8_000_000  # a 3D view reads every plane: a stack's overlay volume stays this small


class GapCamWidget(
    TilesRun, ObjectsView, Decomposition, Regions, Calibration, ClassView, Container
):
    """Class activation maps (CAM, or Grad-CAM) of a CNN (ResNet-50 by default) on the active
    image layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = viewer
        self._overlays = Overlays(viewer)
        self._model: GapCamModel | None = None
        self._model_spec: ModelSpec | None = None
        self._shown: Shown | None = None
        self._worker = None
        self._run_id = 0  # a cancelled run's late batches are ignored
        self._progress: progress | None = None
        self._class_worker = None  # a Grad-CAM backward pass for a class change
        self._draining: list[Any] = []  # cancelled workers finishing their last batch
        self._token = CancelToken()
        self._follow_top = True  # the class follows the top class until the user picks one
        self._run_line, self._warning = "", ""  # the last run's status line and its warning
        self._localizing = self._relocalize = False  # adding a layer moves the dims: no re-entry

        self.image = ComboBox(label="image", choices=self._image_choices)
        self.models = ModelControls(say=self._say)
        m = self.models
        self.arch, self.weights, self.method, self.device = m.arch, m.weights, m.method, m.device
        self.weights_file, self.names_file, self.input_size, self.square = (
            m.weights_file,
            m.names_file,
            m.input_size,
            m.square,
        )
        add_run_controls(self)  # mode (whole image or tiles), scale, tile probabilities
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
                self.mode,
                self.planes,
                self.scale,
                self.overlay_mp,
                self.run_button,
                self.status,
                self.predictions,
                self.class_select,
                self.showing,
                self.threshold,
                self.show_box,
                self.show_mask,
                self.show_tiles,
                *add_feature_controls(self),
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
            fit_label(label.native)

        self.run_button.changed.connect(self._on_run_button)
        self.class_select.changed.connect(self._on_class_picked)
        self.threshold.changed.connect(self._refresh_localization)
        self.show_box.changed.connect(self._on_toggle)
        self.show_mask.changed.connect(self._on_toggle)
        self.overlay_mp.changed.connect(self._refresh_overlays)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layer_removed)
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
        worker.finished.connect(lambda: worker in self._draining and self._draining.remove(worker))
        if worker.is_running:  # else it ended already: its finished signal may be gone
            self._draining.append(worker)
        worker.quit()  # a generator worker stops at its next yield ...
        self._token.set()  # ... and the run's thread before its next layer or plane
        self._run_id += 1  # whatever it still yields is ignored
        self._end_run()
        done = self._shown.progress_note() if self._shown is not None else ""
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
        mean = self._shown.mean_label
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

    def _rebuild_classes(self, value: int) -> None:
        """New class items in their order (magicgui's ``reset_choices`` keeps the items it
        has where they are, and moves an item whose label changed to the end)."""
        with self.class_select.changed.blocked():
            self.class_select.native.clear()
            self.class_select.reset_choices()
            if value in self.class_select.choices:
                self.class_select.value = value
        show_start(self.class_select.native)

    # ----------------------------------------------------------------- events
    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()
        reset_feature_choices(self)

    def _on_layer_removed(self, event: Any) -> None:
        """The shown result's source was removed: its overlays go too, and the widget says so."""
        shown = self._shown
        if shown is None or event.value is not shown.source:
            return
        if self._worker is not None:
            self.cancel()
        self._shown = None
        self._rebuild_classes(-1)
        self.predictions.value = self.showing.value = "—"
        self.status.value = f"Layer {shown.source.name!r} was removed, its CAM overlays with it."
        QTimer.singleShot(0, lambda: self._overlays.remove(shown.source))  # not inside an event

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

    def _input_size_for(self, spec: ModelSpec) -> int:
        """The input size a run will use (the model's default is known once it is loaded)."""
        if self.input_size.value:
            return int(self.input_size.value)
        if self._model is not None and spec == self._model_spec:
            return self._model.input_size
        if spec.arch == IN_MEMORY:
            return self.models.memory_model.input_size
        from ..models.loading import default_input_size

        return default_input_size(spec.arch, spec.weights)

    def run(self, _value: Any = None) -> None:
        """Start a run on the chosen layer: its displayed plane, or all planes."""
        if self.busy:
            return
        source = self.image.value
        try:
            if source is None:
                raise ValueError("No image layer: open an image (File ▸ Open) and press Run.")
            spec = self.models.spec()
            if self.mode.value == TILES:
                self._start_tiled(source, spec)
                return
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
        self._run_line, self._warning = "", ""
        self._token = CancelToken()
        model = self._model if spec == self._model_spec else None
        if spec.arch == IN_MEMORY:
            model = self.models.memory_model
        contrast = None if source.rgb else tuple(source.contrast_limits)
        loading = "" if model is not None else f"loading {spec.arch}, "
        self.status.value = f"Running: {loading}forward pass on {source.name!r}{planes.describe()}…"
        self._run_id += 1
        self._follow_top = True
        run_id, shape = self._run_id, spatial_shape(source)
        worker = create_worker(
            compute,
            model,
            spec,
            planes,
            contrast,
            self.input_size.value,
            True if self.square.value else None,  # unticked: the model's own setting
            self._token,
            _ignore_errors=True,  # napari itself notifies (with the traceback)
        )
        total = len(planes) if len(planes) > 1 else 0

        def on_yield(out: tuple[str, Any]) -> None:
            self._on_yield(out, run_id, spec, source, planes, shape)

        self._launch(worker, run_id, spec, on_yield, total, f"napari-gapcam on {source.name}")

    def _launch(
        self, worker: Any, run_id: int, spec: ModelSpec, on_yield: Any, total: int, title: str
    ) -> None:
        """Start a run's worker with napari's progress bar; Run turns into Cancel."""
        self._progress = progress(total=total)
        self._progress.set_description(title)
        worker.yielded.connect(on_yield)
        worker.errored.connect(
            lambda error: run_id == self._run_id and self._fail(error, False, spec)
        )
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
        self._score_objects()  # the run's last batch is shown: its objects' scores

    def _fail(self, error: BaseException, notify: bool = True, spec: Any = None) -> None:
        """A short status line; the full message goes to the notification (and the log)."""
        self.status.value = error_line(error, spec)
        if notify:
            show_error(f"napari-gapcam: {error}")

    def _on_yield(
        self,
        out: tuple[str, Any],
        run_id: int,
        spec: ModelSpec,
        source: Image,
        planes: Planes,
        shape: tuple[int, ...],
    ) -> None:
        if run_id != self._run_id:  # a cancelled run
            return
        kind, payload = out
        if kind == "error":
            self._fail(payload, spec=spec)
            return
        if kind == "no finite":
            self._warning = no_finite_line(payload, len(planes))
            show_warning(f"napari-gapcam: {source.name!r}: {self._warning}")
            return
        if kind == "model":
            self._took_model(payload, spec)
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

    def _took_model(self, model: GapCamModel, spec: ModelSpec) -> None:
        if model is not self._model:  # a new model: its suggested box threshold
            with self.threshold.changed.blocked():
                self.threshold.value = model.box_threshold
        self._model, self._model_spec = model, spec

    # ----------------------------------------------------------------- overlays
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
