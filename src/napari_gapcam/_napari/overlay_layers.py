"""Overlay layers (CAM heat map, box, mask): created once per source layer, then updated in place.

Overlays are stored at a bounded grid (a few megapixels at most, whatever the image size), not
at the source's resolution. A :class:`Placement` says where the grid's cells sit in the source's
data coordinates (``napari_gapcam.engine.grid``); composed with the source's own transform (scale,
translate, rotate, shear, affine) it lines the overlay up with the source in world coordinates.
For nD sources the overlay has the source's other axes too and is lazy
(:class:`~napari_gapcam._napari.lazy_overlay.LazyPlanes`): planes are computed (from the
cached maps) only when napari reads them, so its memory does not grow with the stack and a
class change over a whole stack costs the displayed plane only (in a 3D view, every plane in
one batch).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes
from napari.utils.transforms import CompositeAffine

from . import box_layer
from .box_layer import BOX_COLOR, LABEL_PIXELS
from .camera import camera
from .lazy_overlay import Fill, LazyPlanes

META_KEY = "gapcam"  # layer.metadata[META_KEY] marks (and describes) our overlays
ROLES = ("box", "mask", "cam", "tiles", "parts")  # overlays of a source, removed with it
STACK = ("tiles", "cam", "parts", "mask", "box")  # directly above the source, bottom to top


def is_overlay(layer: Layer) -> bool:
    return META_KEY in layer.metadata


def spatial_shape(source: Image) -> tuple[int, ...]:
    """The source's (level 0) shape without its RGB(A) channel axis."""
    data = source.data[0] if source.multiscale else source.data
    return tuple(int(s) for s in data.shape[: source.ndim])


@dataclass(frozen=True)
class Placement:
    """A grid over two data axes of the source: cell → source data coordinate on those axes."""

    grid: tuple[int, int]  # cells (rows, columns)
    scale: tuple[float, float]
    translate: tuple[float, float]
    axes: tuple[int, int] = (-2, -1)  # the source's data axes of the grid's rows and columns


def transform_of(source: Layer, placement: Placement | None = None) -> dict[str, Any]:
    """Keyword arguments (or attributes) giving an overlay the source's transform.

    With a ``placement`` the overlay's grid is mapped into the source's data coordinates first:
    world = source ∘ grid, i.e. scale ``S·g`` and translate ``T + R·Sh·S·t``.
    """
    scale, translate = np.array(source.scale, float), np.array(source.translate, float)
    if placement is not None:
        grid_scale, grid_translate = np.ones(source.ndim), np.zeros(source.ndim)
        for axis, g, t in zip(placement.axes, placement.scale, placement.translate, strict=True):
            grid_scale[axis], grid_translate[axis] = g, t
        linear = CompositeAffine(
            scale=scale,
            translate=translate,
            rotate=source.rotate,
            shear=source.shear,
            ndim=source.ndim,
        ).linear_matrix
        scale, translate = scale * grid_scale, translate + linear @ grid_translate
    transform = {
        "scale": scale,
        "translate": translate,
        "rotate": np.array(source.rotate),
        "shear": np.array(source.shear),
        "affine": np.array(source.affine.affine_matrix),
    }
    if hasattr(source, "units"):
        transform["units"] = source.units
    return transform


def _same(current: Any, new: Any) -> bool:
    if hasattr(current, "affine_matrix"):
        current = current.affine_matrix
    try:
        return bool(np.allclose(np.asarray(current, float), np.asarray(new, float)))
    except (TypeError, ValueError):
        return current == new


class Overlays:
    """Finds, creates and updates the overlays of each source layer in one viewer."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        # (id(source), role) → (weak ref to the source, overlay): a reused id is not a match
        self._layers: dict[tuple[int, str], tuple[weakref.ref, Layer]] = {}
        self._arranging = False
        self._moved: list[Layer] = []  # sources moved by the user, arranged once it is over
        camera(viewer).events.zoom.connect(self._fit_box_edges)
        camera(viewer).events.center.connect(self._fit_box_edges)
        canvas = getattr(viewer, "canvas", None)
        if canvas is not None and hasattr(canvas.events, "size"):
            canvas.events.size.connect(self._fit_box_edges)
        viewer.layers.events.moved.connect(self._on_moved)
        viewer.layers.events.reordered.connect(self._on_reordered)

    @contextmanager
    def _keeping_active(self) -> Iterator[None]:
        """napari makes an added layer active (a Labels layer: paint tools): keep the one that
        was active (the CAM, after a run)."""
        active = self.viewer.layers.selection.active
        yield
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active

    def remove(self, source: Layer) -> None:
        """Remove the overlays of ``source`` (e.g. once it was removed)."""
        for role in ROLES:
            layer = self.get(source, role)
            if layer is not None:
                self.viewer.layers.remove(layer)
            self._layers.pop((id(source), role), None)

    def _fit_box_edges(self, _event: Any = None) -> None:
        for (_, role), (_, layer) in list(self._layers.items()):
            if role == "box" and layer in self.viewer.layers:
                box_layer.fit(layer, self.viewer)

    def track(self, source: Layer, role: str, layer: Layer) -> None:
        """Count ``layer`` (added elsewhere) as the ``role`` overlay of ``source``, placed with
        the source's other overlays directly above it."""
        self._layers[(id(source), role)] = (weakref.ref(source), layer)
        self.arrange(source)

    def arrange(self, source: Layer) -> None:
        """The overlays of ``source`` directly above it in the layer list (the CAM just above
        the source, the mask and the box above the CAM), wherever they were put."""
        layers = self.viewer.layers
        if self._arranging or source not in layers:
            return
        own = self._own(source)
        above = layers.index(source) + 1
        if list(layers)[above : above + len(own)] == own:
            return
        self._arranging = True
        try:
            layers.move_multiple([layers.index(layer) for layer in own], above)
        finally:
            self._arranging = False

    def _own(self, source: Layer) -> list[Layer]:
        """The live overlays of ``source``, bottom to top: :data:`STACK`'s roles, the compared
        methods' ("method:<name>", in the order added) just above the CAM."""
        methods = [role for key, role in self._layers if key == id(source) and ":" in role]
        roles = [r for role in STACK for r in ([role, *methods] if role == "cam" else [role])]
        return [layer for role in roles if (layer := self.get(source, role)) is not None]

    def lift(self, layer: Layer, source: Layer) -> None:
        """``layer`` (objects coloured by class) just above the overlays of ``source`` when it
        is under them, so the CAM does not hide it."""
        layers = self.viewer.layers
        own = self._own(source)
        if not own or layer not in layers:
            return
        top = max(layers.index(overlay) for overlay in own)
        if layers.index(layer) < top:
            self._arranging = True
            try:
                layers.move(layers.index(layer), top + 1)
            finally:
                self._arranging = False

    def _on_moved(self, event: Any) -> None:
        """A layer moved: if it is a source, its overlays follow once the move is over."""
        moved = getattr(event, "value", None)
        if not self._arranging and any(ref() is moved for ref, _ in self._layers.values()):
            self._moved.append(moved)

    def _on_reordered(self, _event: Any = None) -> None:
        """The user's move is over (one layer, or a drag of several): each source moved takes
        its overlays along (an overlay the user moved alone stays where it was put)."""
        moved, self._moved = self._moved, []
        for source in dict.fromkeys(moved):
            self.arrange(source)

    def tracked(self, source: Layer, role: str) -> Layer | None:
        """The ``role`` overlay of ``source`` as tracked, even once removed from the viewer."""
        ref, layer = self._layers.get((id(source), role), (None, None))
        return layer if ref is not None and ref() is source else None

    def get(self, source: Layer, role: str) -> Layer | None:
        """The live overlay of ``source`` for ``role`` ("cam", "box", "mask"), if any."""
        ref, layer = self._layers.get((id(source), role), (None, None))
        if ref is None or ref() is not source or layer not in self.viewer.layers:
            return None
        return layer

    def _update_common(
        self, layer: Layer, source: Layer, placement: Placement, meta: dict[str, Any]
    ) -> None:
        for name, value in transform_of(source, placement).items():
            if not _same(getattr(layer, name), value):  # each set refreshes the layer
                setattr(layer, name, value)
        layer.metadata = {**layer.metadata, META_KEY: meta}

    def _put(
        self,
        role: str,
        source: Image,
        placement: Placement,
        meta: dict[str, Any],
        fill: Fill,
        dtype: Any,
        add: Callable[..., Layer],
    ) -> Layer:
        """Set the ``role`` overlay's data (created with ``add`` if missing) from ``fill``."""
        shape = spatial_shape(source)
        data = LazyPlanes(shape, placement.axes, placement.grid, dtype, fill)
        if len(shape) == 2 and role in ("cam", "tiles"):
            data = data[...]  # one plane: computed now (a mask stays lazy: it refuses paint)
        layer = self.get(source, role)
        if layer is None:
            with self._keeping_active():
                layer = add(data, metadata={META_KEY: meta}, **transform_of(source, placement))
            self.track(source, role, layer)
        else:
            layer.data = data
            self._update_common(layer, source, placement, meta)
        return layer

    def show_cam(
        self, source: Image, placement: Placement, meta: dict[str, Any], fill: Fill
    ) -> Image:
        """Show the [0, 1] grid heat maps ``fill(planes)`` as ``"<source> CAM"``."""
        return self.show_image("cam", f"{source.name} CAM", source, placement, meta, fill)

    def show_image(
        self,
        role: str,
        name: str,
        source: Image,
        placement: Placement,
        meta: dict[str, Any],
        fill: Fill,
        **style: Any,
    ) -> Image:
        """Show the [0, 1] grids ``fill(planes)`` as the ``role`` image overlay ``name``."""
        meta = {"role": role, "source": source.name, **meta}
        style = {
            "colormap": "turbo",
            "blending": "translucent",
            "opacity": 0.5,
            "contrast_limits": (0.0, 1.0),
            "interpolation2d": "linear",
            **style,
        }

        def add(data: Any, **kwargs: Any) -> Image:
            return self.viewer.add_image(data, name=name, **style, **kwargs)

        return self._put(role, source, placement, meta, fill, np.float32, add)

    def show_mask(
        self, source: Image, placement: Placement, meta: dict[str, Any], fill: Fill
    ) -> Labels:
        """Show the grid masks ``fill(planes)`` (label 1) as ``"<source> CAM mask"``."""
        meta = {"role": "mask", "source": source.name, **meta}

        def add(data: Any, **kwargs: Any) -> Labels:
            return self.viewer.add_labels(
                data, name=f"{source.name} CAM mask", opacity=0.4, **kwargs
            )

        return self._put("mask", source, placement, meta, fill, np.uint8, add)

    def show_box(
        self,
        source: Image,
        box: tuple[int, int, int, int] | None,
        index: tuple[int, ...],
        placement: Placement,
        label: str,
        meta: dict[str, Any],
    ) -> Shapes:
        """Draw ``box`` (half-open, in grid cells, or None) of plane ``index`` as
        ``"<source> CAM box"``."""
        boxes = [] if box is None else [box]
        return self.show_boxes(source, boxes, index, placement, [label] * len(boxes), meta)

    def show_boxes(
        self,
        source: Image,
        boxes: list[tuple[int, int, int, int]],
        index: tuple[int, ...],
        placement: Placement,
        labels: list[str],
        meta: dict[str, Any],
    ) -> Shapes:
        """Draw ``boxes`` (half-open, in grid cells) of plane ``index``, each with its label,
        as ``"<source> CAM box"``."""
        ndim = len(spatial_shape(source))
        axes = tuple(a % ndim for a in placement.axes)
        meta = {"role": "box", "source": source.name, **meta, "plane": list(index)}
        meta["axes"] = list(axes)
        rectangles = box_layer.rectangles(boxes, index, axes, ndim)
        features = {"label": list(labels), "shown": list(labels)}
        layer = self.get(source, "box")
        if layer is None:
            with self._keeping_active():
                layer = self.viewer.add_shapes(
                    rectangles,
                    ndim=ndim,
                    shape_type="rectangle",
                    edge_color=BOX_COLOR,
                    face_color="transparent",
                    features=features,
                    text={"string": "{shown}", "color": BOX_COLOR, "size": LABEL_PIXELS},
                    name=f"{source.name} CAM box",
                    metadata={META_KEY: meta},
                    **transform_of(source, placement),
                )
            self.track(source, "box", layer)
            box_layer.fit(layer, self.viewer)
            return layer
        self._update_common(layer, source, placement, meta)  # the scale first: the width uses it
        layer.selected_data = set()
        if not rectangles:
            if len(layer.data):
                layer.data = []
        elif len(layer.data) == len(rectangles):  # move the boxes: keeps type, colours, width
            layer.data = rectangles
        else:
            layer.data = []
            layer.add_rectangles(rectangles, edge_color=BOX_COLOR, face_color="transparent")
        layer.features = features
        box_layer.fit(layer, self.viewer)
        layer.refresh_text()
        return layer
