"""The decomposition view: the CAM as the weighted sum of feature maps it is.

``result.contributions(c, 8)`` gives the 8 channels ``k`` with the largest contribution
``w[c, k]·mean(A_k)`` to class ``c`` and their maps ``w[c, k]·A_k`` at the feature grid. The
button adds them as one stack layer (one plane per channel, largest first; the metadata names
each plane's ``k`` and weight), placed over the image like the CAM: the feature grid's cell
centres composed with the source's transform, one leading axis for the channels. The exact CAM
only: Grad-CAM's ReLU makes its map no such sum (the button says so). The slider of the
channel axis is named by the displayed channel (``k = 1234, w = +0.0123``); the layer follows a
class change (a new class's channels, the layer renamed) and goes when a new run on its image
starts.

:class:`Decomposition` sits on the :class:`~napari_gapcam._napari.session.Session` (Qt-free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.transforms import CompositeAffine
from psygnal import Signal

from ..engine.grid import grid_placement
from .overlay_layers import META_KEY, Placement

if TYPE_CHECKING:
    from .session import Session

PARTS = 8
LABEL = "add decomposition (top 8 channels)"
CAM_ONLY = "decomposition: CAM models only"


def world_affine(source: Any, placement: Placement, index: tuple[int, ...], lead: tuple) -> Any:
    """The (ndim + 2)² affine of a channels × source-axes layer: the grid on the placement's
    axes, the plane ``index`` on the other axes, composed with the source's transform."""
    ndim = source.ndim
    scale, translate = np.ones(ndim), np.zeros(ndim)
    for axis, s, t in zip(placement.axes, placement.scale, placement.translate, strict=True):
        scale[axis % ndim], translate[axis % ndim] = s, t
    for axis, i in zip(lead, index, strict=True):
        translate[axis] = i
    grid = CompositeAffine(scale=scale, translate=translate, ndim=ndim).affine_matrix
    own = CompositeAffine(
        scale=source.scale,
        translate=source.translate,
        rotate=source.rotate,
        shear=source.shear,
        ndim=ndim,
    ).affine_matrix
    full = np.asarray(source.affine.affine_matrix) @ own @ grid
    out = np.eye(ndim + 2)
    out[1:, 1:] = full
    return out


class Decomposition:
    """On top of the session: whether the shown result decomposes, and its layer on demand
    (see the module docstring). ``changed`` fires when ``enabled``, ``text`` or ``tooltip``
    change (the dock's button shows them)."""

    changed = Signal()

    def __init__(self, session: Session) -> None:
        self.session = session
        self.enabled, self.text, self.tooltip = False, LABEL, ""
        session.parts.append(self)  # its events hold it weakly
        self._axis: tuple[int, str] | None = None  # the viewer axis named, and its own label
        session.events.shown_class.connect(self.update)
        session.events.running.connect(self._on_running)
        session.viewer.dims.events.current_step.connect(self._name_axis)
        session.viewer.layers.events.removed.connect(self._on_removed)

    # ------------------------------------------------------------------ following the session
    def layer(self) -> Any:
        """The shown result's decomposition layer, or None."""
        shown = self.session.shown
        return None if shown is None else self.session.overlays.get(shown.source, "parts")

    def _on_running(self, running: bool) -> None:
        """A new run starts: the decomposition of the last one goes."""
        layer = self.layer()
        if running and layer is not None:
            self.session.jobs.later(lambda: self._remove(layer))

    def _remove(self, layer: Any) -> None:
        if layer in self.session.viewer.layers:
            self.session.viewer.layers.remove(layer)

    def _on_removed(self, event: Any) -> None:
        """The layer was removed: the channel axis's own label comes back."""
        meta = event.value.metadata.get(META_KEY, {})
        if meta.get("role") == "parts" and self._axis is not None:
            axis, label = self._axis
            labels = list(self.session.viewer.dims.axis_labels)
            if axis < len(labels) and labels[axis].startswith("k = "):
                labels[axis] = label
                self.session.viewer.dims.axis_labels = labels
            self._axis = None

    def _name_axis(self, _event: Any = None) -> None:
        """The channel axis's slider says which channel is displayed: ``k = …, w = …``."""
        layer, dims = self.layer(), self.session.viewer.dims
        if layer is None or layer not in self.session.viewer.layers:
            return
        meta = layer.metadata[META_KEY]
        axis = dims.ndim - layer.ndim  # the layer's first axis: its channels
        i = int(np.clip(round(dims.point[axis]), 0, len(meta["channels"]) - 1))
        label = f"k = {meta['channels'][i]}, w = {meta['weights'][i]:+.4f}"
        labels = list(dims.axis_labels)
        if self._axis is None or self._axis[0] != axis:
            self._axis = (axis, labels[axis])
        if labels[axis] != label:
            labels[axis] = label
            dims.axis_labels = labels

    def update(self) -> None:
        """The button says what it can do with the shown result."""
        result = self.session.result
        summed = result is None or result.method_info.decomposition  # a sum of channels
        self.enabled = result is not None and result.decomposable
        self.text = LABEL if summed else CAM_ONLY
        self.tooltip = (
            f"{result.method}'s map is no weighted sum of channels (a ReLU, or weights that "
            "vary by pixel): pick a CAM model (method auto or cam) for the decomposition."
            if not summed
            else "Whole-image runs only (tiles keep no channels)."
            if result is not None and not result.decomposable
            else "The CAM is Σ w[c, k]·A_k: adds the 8 largest terms as a stack layer."
        )
        self.changed.emit()
        layer = self.layer()  # a class change: the decomposition of the new class
        if layer is not None and layer.metadata[META_KEY]["class_index"] != self._class():
            self.session.jobs.later(self.add if self.enabled else lambda: self._remove(layer))

    def _class(self) -> int | None:
        session = self.session
        return None if session.choices.class_index is None else session.chosen_class()

    def add(self) -> None:
        """Add (or replace) the chosen class's decomposition layer for the displayed plane."""
        session = self.session
        if not session.can_show():
            return
        shown, c = session.shown, session.chosen_class()
        index = session.displayed_index()
        if shown.is_stack and shown.position.get(index, shown.done) >= shown.done:
            session.say("This plane has no map yet: the decomposition needs its run.")
            return
        result = shown.result[shown.position[index] if shown.is_stack else 0]
        try:
            parts = result.contributions(c, PARTS)
        except ValueError as error:
            session.fail(error, notify=False)
            return
        maps = np.stack([m for _, _, m in parts]).astype(np.float32)  # n×h×w
        h, w = maps.shape[1:]
        (sy, sx), (ty, tx) = grid_placement(shown.image_shape, (h, w))
        fy, fx = shown.planes.level_scale
        placement = Placement((h, w), (sy * fy, sx * fx), (ty * fy, tx * fx), shown.planes.axes)
        axes = tuple(a % shown.source.ndim for a in placement.axes)
        lead = shown.planes.lead_axes
        data = maps if axes[0] < axes[1] else maps.transpose(0, 2, 1)
        data = data.reshape(
            len(parts),
            *[
                1 if a in lead else data.shape[1 + sorted(axes).index(a)]
                for a in range(shown.source.ndim)
            ],
        )
        name = shown.result.class_names[c]
        meta = {
            "role": "parts",
            "source": shown.source.name,
            "class_index": c,
            "class_name": name,
            "channels": [k for k, _, _ in parts],
            "weights": [w for _, w, _ in parts],
            "planes": [f"k={k} w={w:+.4f}" for k, w, _ in parts],
            "plane": list(index),
        }
        low, high = float(maps.min()), float(maps.max())
        layer = session.overlays.get(shown.source, "parts")
        affine = world_affine(shown.source, placement, index, lead)
        if layer is not None:
            session.viewer.layers.remove(layer)
        layer = session.viewer.add_image(
            data,
            name=f"{shown.source.name} CAM parts: {name}",
            affine=affine,
            colormap="turbo",
            opacity=0.6,
            blending="translucent",
            interpolation2d="linear",
            contrast_limits=(low, high if high > low else low + 1),
            metadata={META_KEY: meta},
        )
        session.overlays.track(shown.source, "parts", layer)
        self._name_axis()
        session.say(
            f"Decomposition of {name!r}: planes k = "
            + ", ".join(f"{k} ({w:+.3f})" for k, w, _ in parts)
            + " (the slider picks one)."
        )
