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
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox

from .calibrate import Calibration
from .class_view import ClassView
from .decompose import Decomposition
from .feature_controls import add_feature_controls, add_run_controls, reset_feature_choices
from .lifecycle import ALL, CURRENT, RunLifecycle
from .model_controls import DEMO, DEMO_MODEL, FILE, IN_MEMORY, RANDOM, ModelControls
from .objects import ObjectsView
from .overlay_layers import Overlays, is_overlay
from .regions import Regions
from .run import CancelToken
from .searchable import make_searchable
from .status import fit_label
from .tiles_view import TILES, WHOLE, TilesRun

if TYPE_CHECKING:
    import napari
    from napari.utils import progress

    from ..models import GapCamModel
    from ..models.spec import ModelSpec
    from .shown import Shown

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

OVERLAY_MEGAPIXELS = 1.0  # default per-plane budget of the overlays


class GapCamWidget(
    RunLifecycle, TilesRun, ObjectsView, Decomposition, Regions, Calibration, ClassView, Container
):
    """Class activation maps (CAM, or Grad-CAM) of a CNN (ResNet-50 by default) on the active
    image layer. Wiring only: the controls and their signals; each job is a mixin of its own
    module (the run's lifecycle, the class view, tiles, objects, regions, decomposition,
    calibration)."""

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
    def _result(self) -> Any:
        """The shown result (a ``Result`` of one plane, or of all planes)."""
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

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not is_overlay(layer)
        ]

    def _say(self, message: str) -> None:
        self.status.value = message

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
