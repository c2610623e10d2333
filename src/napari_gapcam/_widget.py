"""The dock widget: pick an image layer and a model, Run, then pick a class.

The forward pass runs in a ``thread_worker``; a class or threshold change reuses the cached
features (no forward pass; a Grad-CAM class costs one backward pass, also in a worker). torch is
imported when the widget is created, not with napari.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QCompleter

from ._layers import Overlays, Placement, is_overlay, spatial_shape
from ._planes import PlaneChoice, choose_plane
from .grid import bounded_grid, grid_box_to_pixels, grid_placement

if TYPE_CHECKING:
    import napari

    from .cam import CamResult
    from .models import GapCamModel

FILE = "file…"
RANDOM = "none (random init)"
DEMO = "shapes demo (bundled)"  # resnet18 trained on synthetic shapes, for offline use
IN_MEMORY = "in memory"  # a model handed over with GapCamWidget.use_model
TIMM = "timm:"
TOP_K = 5
DEFAULT_SIZE = 0  # input size choice: the model's own (224, or the checkpoint's)
SIZE_PRESETS = (448, 896, 1344)
OVERLAY_MEGAPIXELS = 1.0  # default per-plane budget of the overlays
LOCALIZE_PIXELS = 250_000  # box and mask come from a grid of at most this many cells


def _compute(
    model: GapCamModel | None,
    spec: dict[str, Any],
    plane: Any,
    contrast_limits: Any,
    input_size: int | None,
) -> tuple[GapCamModel, CamResult, float]:
    """Worker body: load the model if needed, then one forward pass (off the UI thread).

    ``plane`` may be lazy (dask, zarr): the engine reads it band by band.
    """
    from .models import load_model

    start = time.perf_counter()
    if model is None:
        model = load_model(**spec)
    result = model.run(plane, contrast_limits, input_size=input_size or None)
    result.raw_cam(result.topk(1)[0][0])  # Grad-CAM: the top class's backward pass, here too
    return model, result, time.perf_counter() - start


class GapCamWidget(Container):
    """Class activation maps (CAM, or Grad-CAM) of a CNN (ResNet-50 by default) on the active
    image layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from .models import DEMO_WEIGHTS, METHODS, available_devices, named_weights

        super().__init__(labels=True)
        self._viewer = viewer
        self._named_weights = named_weights
        self._demo_weights = DEMO_WEIGHTS
        self._overlays = Overlays(viewer)
        self._model: GapCamModel | None = None
        self._model_spec: dict[str, Any] | None = None
        self._memory_model: GapCamModel | None = None  # from use_model
        self._typed_models: list[str] = []  # timm:<name> typed in the model box
        self._result: CamResult | None = None
        self._source: Image | None = None  # the layer the current result belongs to
        self._choice: PlaneChoice | None = None  # the plane (and level) of the current result
        self._source_shape: tuple[int, ...] = ()  # the source's shape at run time
        self._custom_sizes: list[int] = []
        self._worker = None
        self._class_worker = None  # a Grad-CAM backward pass for a class change

        self.image = ComboBox(label="image", choices=self._image_choices)
        self.arch = ComboBox(label="model", choices=self._arch_choices, value="resnet50")
        self.weights = ComboBox(label="weights", choices=self._weight_choices)
        self.method = ComboBox(label="method", choices=METHODS, value="auto")
        self.weights_file = FileEdit(
            label="weights file", mode="r", filter="*.pt *.pth *.ckpt *.tar"
        )
        self.names_file = FileEdit(label="class names", mode="r", filter="*.json *.txt")
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.input_size = ComboBox(label="input size", choices=self._size_choices)
        self.overlay_mp = FloatSpinBox(
            label="overlay MP",
            min=0.01,
            max=64.0,
            step=0.25,
            value=OVERLAY_MEGAPIXELS,
            tooltip="Overlay resolution per plane, in megapixels (the map is smooth: 1 is plenty)",
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
                self.arch,
                self.weights,
                self.weights_file,
                self.names_file,
                self.method,
                self.device,
                self.input_size,
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
        self.weights.value = "IMAGENET1K_V1"
        self._make_class_select_searchable()
        self._make_input_size_typeable()
        self._make_arch_searchable()
        self._on_weights_changed()
        for label in (self.status, self.predictions, self.showing):
            label.native.setWordWrap(True)
            label.native.setTextInteractionFlags(Qt.TextSelectableByMouse)

        self.arch.changed.connect(self._on_arch_changed)
        self.weights.changed.connect(self._on_weights_changed)
        self.run_button.changed.connect(self.run)
        self.class_select.changed.connect(self._refresh_overlays)
        self.threshold.changed.connect(self._refresh_localization)
        self.show_box.changed.connect(self._on_toggle)
        self.show_mask.changed.connect(self._on_toggle)
        self.overlay_mp.changed.connect(self._refresh_overlays)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._follow_active)
        self._follow_active()

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not is_overlay(layer)
        ]

    def _arch_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        """torchvision architectures labelled with their family and method, typed timm names,
        and the model handed over with :meth:`use_model`."""
        from .families import architectures, family_of

        choices = []
        for arch in architectures():
            family = family_of(arch)
            choices.append(
                (f"{arch}  ({family.name}, {'CAM' if family.exact else 'Grad-CAM'})", arch)
            )
        choices += [(f"{name}  (timm)", name) for name in self._typed_models]
        if self._memory_model is not None:
            choices.append((f"{IN_MEMORY}: {self._memory_model.arch}", IN_MEMORY))
        return choices

    def _weight_choices(self, _widget: Any = None) -> list[str]:
        arch = self.arch.value if hasattr(self, "arch") else "resnet50"
        if arch == IN_MEMORY:
            return [IN_MEMORY]
        if str(arch).startswith(TIMM):
            return [FILE, RANDOM]
        demo = [DEMO] if arch == "resnet18" and self._demo_weights.is_file() else []
        return [*self._named_weights(arch), *demo, FILE, RANDOM]

    def _class_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        if self._result is None:
            return []
        result = self._result
        top = result.topk(TOP_K)
        first = {index for index, _, _ in top}
        head = [(f"{name}  ({100 * p:.1f} %)", index) for index, name, p in top]
        rest = [
            (f"{index}: {name}", index)
            for index, name in enumerate(result.class_names)
            if index not in first
        ]
        return head + rest

    def _size_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        sizes = [*SIZE_PRESETS, *self._custom_sizes]
        return [("model default", DEFAULT_SIZE)] + [(f"{size} px", size) for size in sizes]

    def _make_input_size_typeable(self) -> None:
        """The input size box also takes a typed short side (e.g. 640)."""
        combo: QComboBox = self.input_size.native
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.setToolTip(
            "Short side of the network input: larger gives finer maps (stride 32: 448 → 14 cells)"
        )
        combo.lineEdit().editingFinished.connect(
            lambda: self.set_input_size_text(combo.lineEdit().text())
        )

    def set_input_size_text(self, text: str) -> None:
        """Select the input size typed as ``text`` ("640", "640 px" or a listed choice)."""
        combo: QComboBox = self.input_size.native
        if combo.findText(text, Qt.MatchFlag.MatchExactly) >= 0:
            return
        try:
            size = int(text.lower().removesuffix("px").strip())
        except ValueError:
            self.status.value = f"Input size {text!r} is not a number of pixels (e.g. 640)."
            combo.lineEdit().setText(combo.itemText(combo.currentIndex()))
            return
        if size < 32:
            self.status.value = f"Input size {size} is too small: at least 32 pixels."
            combo.lineEdit().setText(combo.itemText(combo.currentIndex()))
            return
        if size not in (*SIZE_PRESETS, *self._custom_sizes):
            self._custom_sizes.append(size)
            self.input_size.reset_choices()
        self.input_size.value = size

    def _make_class_select_searchable(self) -> None:
        """Typing in the class box filters the classes (substring, any case)."""
        placeholder = "run first; then type to search the classes"
        _make_searchable(self.class_select.native, placeholder, self._pick_class_by_text)

    def _make_arch_searchable(self) -> None:
        """Typing in the model box filters the architectures; Enter accepts ``timm:<name>``."""
        _make_searchable(self.arch.native, "type to search, or timm:<name>", self._pick_arch)

    def _pick_arch(self, text: str) -> None:
        """Select the first model whose label contains ``text``; a new ``timm:<name>`` is added."""
        combo: QComboBox = self.arch.native
        text = text.strip()
        if text.startswith(TIMM) and len(text) > len(TIMM):
            name = text.split()[0]
            if name not in self._typed_models:
                self._typed_models.append(name)
                self.arch.reset_choices()
            self.arch.value = name
            return
        index = combo.findText(text, Qt.MatchFlag.MatchContains)
        if index >= 0:
            combo.setCurrentIndex(index)
        else:
            self.status.value = f"No model matches {text!r} (a timm model: timm:<name>)."

    def _pick_class_by_text(self, text: str) -> None:
        """Select the first class whose label contains ``text`` (any case)."""
        combo: QComboBox = self.class_select.native
        index = combo.findText(text, Qt.MatchFlag.MatchExactly)
        if index < 0:
            index = combo.findText(text, Qt.MatchFlag.MatchContains)
        if index >= 0:
            combo.setCurrentIndex(index)
        else:
            self.status.value = f"No class matches {text!r}."

    # ----------------------------------------------------------------- events
    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()

    def _follow_active(self, _event: Any = None) -> None:
        active = self._viewer.layers.selection.active
        self.image.reset_choices()
        if isinstance(active, Image) and not is_overlay(active):
            self.image.value = active

    def _on_arch_changed(self, _value: Any = None) -> None:
        current = self.weights.value
        self.weights.reset_choices()
        if current in self.weights.choices:
            self.weights.value = current

    def _on_weights_changed(self, _value: Any = None) -> None:
        from_file = self.weights.value == FILE
        self.weights_file.visible = from_file
        self.names_file.visible = from_file

    def _on_toggle(self, _value: Any = None) -> None:
        if self._source is None:
            return
        for toggle, role in ((self.show_box, "box"), (self.show_mask, "mask")):
            layer = self._overlays.get(self._source, role)
            if not toggle.value and layer is not None:
                layer.visible = False
        self._refresh_localization()
        for toggle, role in ((self.show_box, "box"), (self.show_mask, "mask")):
            layer = self._overlays.get(self._source, role)
            if toggle.value and layer is not None:
                layer.visible = True

    # ----------------------------------------------------------------- running
    @property
    def busy(self) -> bool:
        """True while a forward pass (or a Grad-CAM backward pass) runs."""
        return self._worker is not None or self._class_worker is not None

    def use_model(self, model: GapCamModel) -> None:
        """Use a model built in Python (``load_model``, ``from_module``) from now on."""
        self._memory_model = model
        self.arch.reset_choices()
        self.arch.value = IN_MEMORY
        self.status.value = f"Using {model.arch} ({model.method_label}), in memory: press Run."

    def _spec(self) -> dict[str, Any]:
        if self.arch.value == IN_MEMORY:
            return {"name": IN_MEMORY, "model": id(self._memory_model)}
        weights: Any = self.weights.value
        names: Any = None
        if weights == RANDOM:
            weights = None
        elif weights == DEMO:
            weights = str(self._demo_weights)
        elif weights == FILE:
            path = self.weights_file.value
            if path is None or not str(path) or str(path) == ".":
                raise ValueError("Choose a weights file (or pick named weights).")
            weights = str(path)
            named = self.names_file.value
            names = str(named) if named is not None and str(named) not in ("", ".") else None
        return {
            "name": self.arch.value,
            "weights": weights,
            "device": self.device.value,
            "class_names": names,
            "method": self.method.value,
        }

    def _input_size_for(self, spec: dict[str, Any]) -> int:
        """The input size a run will use (the model's default is known once it is loaded)."""
        if self.input_size.value:
            return int(self.input_size.value)
        if self._model is not None and spec == self._model_spec:
            return self._model.input_size
        return 224

    def run(self, _value: Any = None) -> None:
        """Start a forward pass on the chosen layer's current plane."""
        if self.busy:
            return
        source = self.image.value
        try:
            if source is None:
                raise ValueError("No image layer: open an image (File ▸ Open) and press Run.")
            spec = self._spec()
            choice = choose_plane(source, self._viewer.dims.point, self._input_size_for(spec))
        except ValueError as error:
            self._fail(error)
            return
        model = self._model if spec == self._model_spec else None
        if spec["name"] == IN_MEMORY:
            model = self._memory_model
        contrast = None if source.rgb else tuple(source.contrast_limits)
        self.run_button.enabled = False
        loading = "" if model is not None else f"loading {spec['name']}, "
        self.status.value = f"Running: {loading}forward pass on {source.name!r}{choice.describe()}…"
        worker = create_worker(
            _compute,
            model,
            spec,
            choice.data,
            contrast,
            self.input_size.value,
            _progress={"desc": f"napari-gapcam on {source.name}"},
            _ignore_errors=True,  # napari itself notifies (with the traceback)
        )
        shape = spatial_shape(source)
        worker.returned.connect(lambda out: self._on_result(out, spec, source, choice, shape))
        worker.errored.connect(lambda error: self._fail(error, notify=False))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _on_finished(self) -> None:
        self._worker = None
        self.run_button.enabled = not self.busy

    def _fail(self, error: BaseException, notify: bool = True) -> None:
        self.status.value = f"Error: {error}"
        if notify:
            show_error(f"napari-gapcam: {error}")

    def _on_result(
        self,
        out: tuple[GapCamModel, CamResult, float],
        spec: dict[str, Any],
        source: Image,
        choice: PlaneChoice,
        shape: tuple[int, ...],
    ) -> None:
        model, result, seconds = out
        if model is not self._model:  # a new model: its suggested box threshold
            with self.threshold.changed.blocked():
                self.threshold.value = model.box_threshold
        self._model, self._model_spec = model, spec
        if source not in self._viewer.layers:
            self.status.value = f"Layer {source.name!r} was removed during the run."
            show_warning(f"napari-gapcam: layer {source.name!r} was removed; result dropped.")
            return
        self._result, self._source, self._choice = result, source, choice
        self._source_shape = shape
        top = result.topk(TOP_K)
        self.predictions.value = "\n".join(f"{100 * p:5.1f} %  {name}" for _, name, p in top)
        size, cells = (
            "×".join(str(s) for s in shape)
            for shape in (result.input_shape, result.features.shape[-2:])
        )
        self.status.value = (
            f"{model.arch} ({model.method_label}) on {source.name!r}{choice.describe()}: "
            f"input {size}, {cells} map cells, {seconds:.2f} s on {model.device}."
        )
        with self.class_select.changed.blocked():
            self.class_select.reset_choices()
            self.class_select.value = top[0][0]
        self._refresh_overlays()
        cam_layer = self._overlays.get(source, "cam")
        if cam_layer is not None:  # ready for napari's opacity / colormap controls
            self._viewer.layers.selection.active = cam_layer

    # ----------------------------------------------------------------- overlays
    def _class_meta(self) -> dict[str, Any]:
        result, index = self._result, self.class_select.value
        return {
            "class_index": int(index),
            "class_name": result.class_names[index],
            "probability": float(result.probabilities[index]),
            "model": self._model.arch,
            "weights": self._model.weights,
        }

    def _placement(self, max_pixels: int | None = None) -> Placement:
        """The overlay grid (bounded by ``overlay MP``) and where it sits in the source's data."""
        image_shape = self._result.image_shape
        budget = max(1, int(self.overlay_mp.value * 1e6))
        grid = bounded_grid(image_shape, min(budget, max_pixels or budget))
        (sy, sx), (ty, tx) = grid_placement(image_shape, grid)
        fy, fx = self._choice.level_scale  # level pixel → level-0 data (napari's convention)
        return Placement(grid, (sy * fy, sx * fx), (ty * fy, tx * fx))

    def _is_stale(self) -> bool:
        """The source's data changed shape since the run: say so instead of failing."""
        if spatial_shape(self._source) == self._source_shape:
            return False
        self.status.value = (
            f"Layer {self._source.name!r} changed shape since the run "
            f"({self._source_shape} → {spatial_shape(self._source)}): press Run for a new map."
        )
        return True

    def _refresh_overlays(self, _value: Any = None) -> None:
        """Show the selected class's CAM (and box/mask): cached features, no forward pass."""
        if self._result is None or self.class_select.value is None:
            return
        if self._source not in self._viewer.layers or self._is_stale():
            return
        if not self._result.is_ready(self.class_select.value):
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

    def _on_class_finished(self, result: CamResult, index: int, status: str) -> None:
        self._class_worker = None
        self.run_button.enabled = not self.busy
        if result.is_ready(index):
            self.status.value = status  # the run's line again
        current = self.class_select.value
        if result is self._result and (current != index or result.is_ready(index)):
            self._refresh_overlays()

    def _show_class(self) -> None:
        meta = self._class_meta()
        placement = self._placement()
        heat_map = self._result.cam(meta["class_index"], shape=placement.grid)
        index = self._choice.index
        self._overlays.show_cam(self._source, heat_map, index, placement, meta)
        self.showing.value = f"{meta['class_name']}  (p = {meta['probability']:.3f})"
        self._show_localization(heat_map, placement)

    def _refresh_localization(self, _value: Any = None) -> None:
        if self._result is None or self._source not in self._viewer.layers or self._is_stale():
            return
        if not self._result.is_ready(self.class_select.value):
            return  # a Grad-CAM worker runs; it refreshes everything when done
        try:
            self._show_localization()
        except Exception as error:
            self._fail(error)

    def _show_localization(
        self, heat_map: np.ndarray | None = None, placement: Placement | None = None
    ) -> None:
        """Box and mask of the grid map (the overlay's grid: bounded cost at any image size)."""
        if not (self.show_box.value or self.show_mask.value):
            return
        from .localize import largest_region

        meta = {**self._class_meta(), "threshold": float(self.threshold.value)}
        placement_here = self._placement(LOCALIZE_PIXELS)
        if heat_map is None or placement is None or placement_here.grid != placement.grid:
            heat_map = self._result.cam(meta["class_index"], shape=placement_here.grid)
        placement = placement_here
        mask, box = largest_region(heat_map, meta["threshold"])
        index = self._choice.index
        if self.show_box.value:
            label = f"{meta['class_name']} {meta['probability']:.2f}"
            pixels = None  # the box in the pixels of the image the model read
            if box is not None:
                pixels = grid_box_to_pixels(box, self._result.image_shape, placement.grid)
            box_meta = {**meta, "box": pixels, "grid_box": box, "level": self._choice.level}
            self._overlays.show_box(self._source, box, index, placement, label, box_meta)
            if box is None:
                self.status.value = "No region stands out in this class's map: no box."
        if self.show_mask.value:
            self._overlays.show_mask(self._source, mask, index, placement, meta)


def _make_searchable(combo: QComboBox, placeholder: str, pick: Any) -> None:
    """An editable combo box whose popup filters its items (substring, any case)."""
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    completer = combo.completer()
    completer.setFilterMode(Qt.MatchFlag.MatchContains)
    completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
    combo.lineEdit().setPlaceholderText(placeholder)
    completer.activated[str].connect(pick)
    combo.lineEdit().returnPressed.connect(lambda: pick(combo.lineEdit().text()))
