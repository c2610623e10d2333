"""The selected class's overlays: the CAM, box and mask of the shown result, kept current.

A mixin of :class:`~napari_gapcam._napari.widget.GapCamWidget` (it uses the widget's controls, its
shown result ``_shown``, its ``_overlays`` and ``_budget``): a class, threshold or plane change
reuses the cached maps; a Grad-CAM class of a single plane costs one backward pass in a worker.
"""

from __future__ import annotations

from typing import Any

from napari.qt.threading import create_worker

from .feature_controls import update_feature_state
from .model_controls import RANDOM
from .overlay_layers import spatial_shape
from .searchable import select_text, show_start
from .status import predictions_text

TOP = 5  # classes in the predictions text and first in the class list
LOCALIZE_PIXELS = 250_000  # box and mask come from a grid of at most this many cells
NO_BOX = "No region stands out in this class's map: no box."


class ClassView:
    """Shows the selected class of the widget's shown result (see the module docstring)."""

    def _class_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        """The top classes first (by mean probability over a stack), then every class."""
        if self._shown is None:
            return []
        top = self._shown.top(TOP)
        mean = self._shown.mean_label
        head = [(f"{name}  ({mean}{100 * p:.1f} %)", index) for index, name, p in top]
        first = {index for index, _, _ in top}
        names = self._shown.result.class_names
        return head + [(f"{i}: {name}", i) for i, name in enumerate(names) if i not in first]

    def _pick_class_by_text(self, text: str) -> None:
        """Select the first class whose label contains ``text`` (any case)."""
        if not select_text(self.class_select.native, text):
            self.status.value = f"No class matches {text!r}."

    def _rebuild_classes(self, value: int) -> None:
        """New class items in their order (magicgui's ``reset_choices`` keeps the items it
        has where they are, and moves an item whose label changed to the end)."""
        with self.class_select.changed.blocked():
            self.class_select.native.clear()
            self.class_select.reset_choices()
            if value in self.class_select.choices:
                self.class_select.value = value
        show_start(self.class_select.native)

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

    def _budget(self) -> int:
        """Overlay cells per plane (see :meth:`.shown.Shown.cells_per_plane`)."""
        return self._shown.cells_per_plane(self.overlay_mp.value)

    def _show_result(self, first: bool) -> None:
        shown, model = self._shown, self._shown.model
        top = shown.top(TOP)
        self.predictions.value = predictions_text(top, shown.is_stack, model.weights == RANDOM)
        size, cells = (
            "×".join(str(s) for s in shape)
            for shape in (shown.result.input_shape, shown.result.map_shape)
        )
        done = f", {shown.done} of {len(shown.planes)} planes" if shown.is_stack else ""
        warning = f" {self._warning}" if self._warning else ""
        self.status.value = (
            f"{model.arch} ({model.method_label}) on {shown.source.name!r}"
            f"{shown.planes.describe()}: input {size}, {cells} map cells{done}, "
            f"{shown.seconds:.2f} s on {model.device}.{warning}"
        )
        self._run_line = self.status.value
        current = self.class_select.value  # labels and order follow the planes done
        self._rebuild_classes(top[0][0] if self._follow_top or current is None else current)
        self._refresh_overlays()
        cam_layer = self._overlays.get(shown.source, "cam")
        if first and cam_layer is not None:  # ready for napari's opacity / colormap controls
            self._viewer.layers.selection.active = cam_layer

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
            **shown.meta(),
        }

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
        if not self._shown.is_ready(self.class_select.value):
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
        self._shown.scale = self.scale.value
        shown, meta = self._shown, self._class_meta()
        placement = shown.placement(self._budget())
        fill = shown.cam_fill(meta["class_index"], placement.grid)
        self._overlays.show_cam(shown.source, placement, meta, fill)
        p = "mean p" if shown.is_stack else "p"
        self.showing.value = f"{meta['class_name']}  ({p} = {meta['probability']:.3f})"
        update_feature_state(self)
        self._show_localization()

    def _refresh_localization(self, _value: Any = None) -> None:
        if not self._can_show():
            return
        if not self._shown.is_ready(self.class_select.value):
            return  # a Grad-CAM worker runs; it refreshes everything when done
        try:
            self._show_localization()
        except Exception as error:
            self._fail(error)

    def _show_localization(self) -> None:
        """Box (of the displayed plane) and mask; adding their layer moves napari's dims, whose
        event comes back here: it is answered once this update ends, not inside it."""
        if self._localizing:
            self._relocalize = True
            return
        self._localizing = True
        try:
            for _ in range(2):
                self._relocalize = False
                self._localize()
                if not self._relocalize:
                    break
        finally:
            self._localizing = False

    def _localize(self) -> None:
        """Box (of the displayed plane) and mask on a grid of ≤ 0.25 MP: bounded cost."""
        if not (self.show_box.value or self.show_mask.value):
            return
        shown = self._shown
        meta = {**self._class_meta(), "threshold": float(self.threshold.value)}
        c, threshold = meta["class_index"], meta["threshold"]
        placement = shown.placement(min(self._budget(), LOCALIZE_PIXELS))
        if self.show_box.value and self.all_regions.value:
            self._show_all_regions(meta, placement, self._displayed_index())
        elif self.show_box.value:
            index = self._displayed_index()
            box = shown.box(c, placement.grid, threshold, index)
            pixels = None  # the box in the pixels of the image the model read
            if box is not None:
                pixels = shown.box_pixels(box, placement.grid)
            label = f"{meta['class_name']} {meta['probability']:.2f}"
            box_meta = {**meta, "box": pixels, "grid_box": box, "level": shown.planes.level}
            self._overlays.show_box(shown.source, box, index, placement, label, box_meta)
            if box is None and index in shown.position:
                self.status.value = NO_BOX
            elif self.status.value == NO_BOX:
                self.status.value = self._run_line
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
