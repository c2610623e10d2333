"""Overlay layers (CAM heat map, box, mask): created once per source layer, then updated in place.

Each overlay copies the source layer's transform (scale, translate, rotate, shear, affine) so it
aligns pixel for pixel, and for nD sources holds the source's non-RGB shape with the result at
the plane that was computed.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes
from napari.viewer import Viewer

META_KEY = "gapcam"  # layer.metadata[META_KEY] marks (and describes) our overlays
BOX_COLOR = "yellow"


def is_overlay(layer: Layer) -> bool:
    return META_KEY in layer.metadata


def spatial_shape(source: Image) -> tuple[int, ...]:
    """The source's shape without its RGB(A) channel axis."""
    shape = tuple(source.data.shape)
    return shape[:-1] if source.rgb else shape


def transform_of(source: Layer) -> dict[str, Any]:
    """The source's transform, as keyword arguments for a new layer (or attributes to set)."""
    transform = {
        "scale": np.array(source.scale),
        "translate": np.array(source.translate),
        "rotate": np.array(source.rotate),
        "shear": np.array(source.shear),
        "affine": np.array(source.affine.affine_matrix),
    }
    if hasattr(source, "units"):
        transform["units"] = source.units
    return transform


class Overlays:
    """Finds, creates and updates the overlays of each source layer in one viewer."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        # (id(source), role) → (weak ref to the source, overlay): a reused id is not a match
        self._layers: dict[tuple[int, str], tuple[weakref.ref, Layer]] = {}

    def get(self, source: Layer, role: str) -> Layer | None:
        """The live overlay of ``source`` for ``role`` ("cam", "box", "mask"), if any."""
        ref, layer = self._layers.get((id(source), role), (None, None))
        if ref is None or ref() is not source or layer not in self.viewer.layers:
            return None
        return layer

    def _remember(self, source: Layer, role: str, layer: Layer) -> None:
        self._layers[(id(source), role)] = (weakref.ref(source), layer)

    def _update_common(self, layer: Layer, source: Layer, meta: dict[str, Any]) -> None:
        for name, value in transform_of(source).items():
            setattr(layer, name, value)
        layer.metadata = {**layer.metadata, META_KEY: meta}

    def show_cam(
        self, source: Image, heat_map: np.ndarray, plane: tuple[int, ...], meta: dict[str, Any]
    ) -> Image:
        """Put the [0, 1] heat map at ``plane`` of ``"<source> CAM"`` (created if missing)."""
        meta = {"role": "cam", "source": source.name, "plane": list(plane), **meta}
        layer = self.get(source, "cam")
        shape = spatial_shape(source)
        if layer is None or tuple(layer.data.shape) != shape:
            data = np.zeros(shape, dtype=np.float32)
            data[plane] = heat_map
            if layer is not None:  # the source changed shape: same layer, new array
                layer.data = data
                self._update_common(layer, source, meta)
                return layer
            layer = self.viewer.add_image(
                data,
                name=f"{source.name} CAM",
                colormap="turbo",
                blending="translucent",
                opacity=0.5,
                contrast_limits=(0.0, 1.0),
                metadata={META_KEY: meta},
                **transform_of(source),
            )
            self._remember(source, "cam", layer)
            return layer
        if plane:
            layer.data[plane] = heat_map
            layer.refresh()
        else:
            layer.data = heat_map
        self._update_common(layer, source, meta)
        return layer

    def show_box(
        self,
        source: Image,
        box: tuple[int, int, int, int] | None,
        plane: tuple[int, ...],
        label: str,
        meta: dict[str, Any],
    ) -> Shapes:
        """Draw ``box`` (half-open pixel box, or None) as ``"<source> CAM box"``."""
        meta = {"role": "box", "source": source.name, "plane": list(plane), "box": box, **meta}
        ndim = len(spatial_shape(source))
        rectangles = []
        if box is not None:
            y0, x0, y1, x1 = box
            # pixel i covers [i - 0.5, i + 0.5]: the rectangle hugs the boxed pixels
            top, left, bottom, right = y0 - 0.5, x0 - 0.5, y1 - 0.5, x1 - 0.5
            corners = [(top, left), (top, right), (bottom, right), (bottom, left)]
            rectangles = [np.array([[*plane, y, x] for y, x in corners], dtype=float)]
        features = {"label": [label] * len(rectangles)}
        layer = self.get(source, "box")
        if layer is None:
            height, width = spatial_shape(source)[-2:]
            layer = self.viewer.add_shapes(
                rectangles,
                ndim=ndim,
                shape_type="rectangle",
                edge_color=BOX_COLOR,
                face_color="transparent",
                edge_width=max(1.0, 0.006 * max(height, width)),
                features=features,
                text={"string": "{label}", "color": BOX_COLOR, "anchor": "upper_left", "size": 11},
                name=f"{source.name} CAM box",
                metadata={META_KEY: meta},
                **transform_of(source),
            )
            self._remember(source, "box", layer)
            return layer
        layer.selected_data = set()
        layer.data = rectangles
        if rectangles:
            layer.shape_type = ["rectangle"]
            layer.edge_color = BOX_COLOR
            layer.face_color = "transparent"
        layer.features = features
        layer.refresh_text()
        self._update_common(layer, source, meta)
        return layer

    def show_mask(
        self, source: Image, mask: np.ndarray, plane: tuple[int, ...], meta: dict[str, Any]
    ) -> Labels:
        """Put ``mask`` (label 1) at ``plane`` of ``"<source> CAM mask"``."""
        meta = {"role": "mask", "source": source.name, "plane": list(plane), **meta}
        shape = spatial_shape(source)
        layer = self.get(source, "mask")
        if layer is not None and tuple(layer.data.shape) == shape and plane:
            layer.data[plane] = mask
            layer.refresh()
            self._update_common(layer, source, meta)
            return layer
        data = np.zeros(shape, dtype=np.uint8)
        data[plane] = mask
        if layer is not None:
            layer.data = data
            self._update_common(layer, source, meta)
            return layer
        layer = self.viewer.add_labels(
            data,
            name=f"{source.name} CAM mask",
            opacity=0.4,
            metadata={META_KEY: meta},
            **transform_of(source),
        )
        self._remember(source, "mask", layer)
        return layer

    def hide(self, source: Layer, role: str) -> None:
        """Hide an overlay (kept, so the user's settings survive)."""
        layer = self.get(source, role)
        if layer is not None:
            layer.visible = False
