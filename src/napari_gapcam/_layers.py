"""Overlay layers (CAM heat map, box, mask): created once per source layer, then updated in place.

Overlays are stored at a bounded grid (a few megapixels at most, whatever the image size), not
at the source's resolution. A :class:`Placement` says where the grid's cells sit in the source's
data coordinates (``napari_gapcam.grid``); composed with the source's own transform (scale,
translate, rotate, shear, affine) it lines the overlay up with the source in world coordinates.
For nD sources the overlay has the source's leading axes and holds only the planes that were
computed (the others read as zeros), so its memory does not grow with the stack.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes
from napari.utils.transforms import CompositeAffine
from napari.viewer import Viewer

META_KEY = "gapcam"  # layer.metadata[META_KEY] marks (and describes) our overlays
BOX_COLOR = "yellow"
_names = itertools.count()


def is_overlay(layer: Layer) -> bool:
    return META_KEY in layer.metadata


def spatial_shape(source: Image) -> tuple[int, ...]:
    """The source's (level 0) shape without its RGB(A) channel axis."""
    data = source.data[0] if source.multiscale else source.data
    return tuple(int(s) for s in data.shape[: source.ndim])


@dataclass(frozen=True)
class Placement:
    """A grid over the last two axes of the source: cell → source data coordinate (y, x)."""

    grid: tuple[int, int]  # cells
    scale: tuple[float, float]
    translate: tuple[float, float]


def transform_of(source: Layer, placement: Placement | None = None) -> dict[str, Any]:
    """Keyword arguments (or attributes) giving an overlay the source's transform.

    With a ``placement`` the overlay's grid is mapped into the source's data coordinates first:
    world = source ∘ grid, i.e. scale ``S·g`` and translate ``T + R·Sh·S·t``.
    """
    scale, translate = np.array(source.scale, float), np.array(source.translate, float)
    if placement is not None:
        grid_scale, grid_translate = np.ones(source.ndim), np.zeros(source.ndim)
        grid_scale[-2:], grid_translate[-2:] = placement.scale, placement.translate
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


class PlaneStack:
    """An nD overlay holding only the computed planes; the others read as zeros (lazy, dask)."""

    def __init__(self, leading: tuple[int, ...], plane: tuple[int, int], dtype: Any) -> None:
        self.leading, self.plane_shape, self.dtype = leading, plane, np.dtype(dtype)
        self.planes: dict[tuple[int, ...], np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.leading, *self.plane_shape)

    def set(self, index: tuple[int, ...], plane: np.ndarray) -> None:
        self.planes[tuple(index)] = np.asarray(plane, dtype=self.dtype)

    def array(self) -> Any:
        """A dask array of the current planes (a new one per call: napari re-reads it)."""
        import dask.array as da

        planes, zeros = dict(self.planes), np.zeros(self.plane_shape, self.dtype)
        lead = (1,) * len(self.leading)

        def block(block_id: tuple[int, ...] | None = None) -> np.ndarray:
            return planes.get(tuple(block_id[:-2]), zeros).reshape(lead + self.plane_shape)

        return da.map_blocks(
            block,
            chunks=(*((1,) * n for n in self.leading), *((s,) for s in self.plane_shape)),
            dtype=self.dtype,
            meta=np.empty((0,) * len(self.shape), self.dtype),
            name=f"gapcam-overlay-{next(_names)}",
        )


class Overlays:
    """Finds, creates and updates the overlays of each source layer in one viewer."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        # (id(source), role) → (weak ref to the source, overlay, its planes for nD sources)
        self._layers: dict[tuple[int, str], tuple[weakref.ref, Layer, PlaneStack | None]] = {}

    def get(self, source: Layer, role: str) -> Layer | None:
        """The live overlay of ``source`` for ``role`` ("cam", "box", "mask"), if any."""
        ref, layer, _ = self._layers.get((id(source), role), (None, None, None))
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

    def _put_plane(
        self,
        role: str,
        source: Image,
        plane: np.ndarray,
        index: tuple[int, ...],
        placement: Placement,
        meta: dict[str, Any],
        add: Any,
    ) -> Layer:
        """Put a grid ``plane`` at ``index`` of the ``role`` overlay (created with ``add``)."""
        leading = spatial_shape(source)[:-2]
        layer = self.get(source, role)
        stack = self._layers[(id(source), role)][2] if layer is not None else None
        if leading and (
            stack is None or stack.leading != leading or stack.plane_shape != plane.shape
        ):
            stack = PlaneStack(leading, plane.shape, plane.dtype)  # new, or the shape changed
        if stack is not None:
            stack.set(index, plane)
        data = stack.array() if stack is not None else plane
        if layer is None:
            layer = add(data, metadata={META_KEY: meta}, **transform_of(source, placement))
        else:
            layer.data = data
            self._update_common(layer, source, placement, meta)
        self._layers[(id(source), role)] = (weakref.ref(source), layer, stack)
        return layer

    def show_cam(
        self,
        source: Image,
        heat_map: np.ndarray,
        index: tuple[int, ...],
        placement: Placement,
        meta: dict[str, Any],
    ) -> Image:
        """Put the [0, 1] grid heat map at ``index`` of ``"<source> CAM"`` (created if missing)."""
        meta = {"role": "cam", "source": source.name, "plane": list(index), **meta}

        def add(data: Any, **kwargs: Any) -> Image:
            return self.viewer.add_image(
                data,
                name=f"{source.name} CAM",
                colormap="turbo",
                blending="translucent",
                opacity=0.5,
                contrast_limits=(0.0, 1.0),
                interpolation2d="linear",
                **kwargs,
            )

        return self._put_plane("cam", source, heat_map, index, placement, meta, add)

    def show_mask(
        self,
        source: Image,
        mask: np.ndarray,
        index: tuple[int, ...],
        placement: Placement,
        meta: dict[str, Any],
    ) -> Labels:
        """Put the grid ``mask`` (label 1) at ``index`` of ``"<source> CAM mask"``."""
        meta = {"role": "mask", "source": source.name, "plane": list(index), **meta}

        def add(data: Any, **kwargs: Any) -> Labels:
            return self.viewer.add_labels(
                data, name=f"{source.name} CAM mask", opacity=0.4, **kwargs
            )

        plane = np.asarray(mask, dtype=np.uint8)
        return self._put_plane("mask", source, plane, index, placement, meta, add)

    def show_box(
        self,
        source: Image,
        box: tuple[int, int, int, int] | None,
        index: tuple[int, ...],
        placement: Placement,
        label: str,
        meta: dict[str, Any],
    ) -> Shapes:
        """Draw ``box`` (half-open, in grid cells, or None) as ``"<source> CAM box"``."""
        meta = {"role": "box", "source": source.name, "plane": list(index), **meta}
        rectangles = []
        if box is not None:
            y0, x0, y1, x1 = box
            # cell i covers [i - 0.5, i + 0.5]: the rectangle hugs the boxed cells
            top, left, bottom, right = y0 - 0.5, x0 - 0.5, y1 - 0.5, x1 - 0.5
            corners = [(top, left), (top, right), (bottom, right), (bottom, left)]
            rectangles = [np.array([[*index, y, x] for y, x in corners], dtype=float)]
        features = {"label": [label] * len(rectangles)}
        layer = self.get(source, "box")
        if layer is None:
            layer = self.viewer.add_shapes(
                rectangles,
                ndim=len(spatial_shape(source)),
                shape_type="rectangle",
                edge_color=BOX_COLOR,
                face_color="transparent",
                edge_width=max(1.0, 0.006 * max(placement.grid)),
                features=features,
                text={"string": "{label}", "color": BOX_COLOR, "anchor": "upper_left", "size": 11},
                name=f"{source.name} CAM box",
                metadata={META_KEY: meta},
                **transform_of(source, placement),
            )
            self._layers[(id(source), "box")] = (weakref.ref(source), layer, None)
            return layer
        width = max(1.0, 0.006 * max(placement.grid))
        layer.selected_data = set()
        if not rectangles:
            if len(layer.data):
                layer.data = []
        elif len(layer.data) == 1:  # move the box: keeps its type, colours and width
            layer.data = rectangles
        else:
            layer.data = []
            layer.add_rectangles(
                rectangles, edge_width=width, edge_color=BOX_COLOR, face_color="transparent"
            )
        if rectangles and not np.allclose(layer.edge_width, width):
            layer.edge_width = [width]
        layer.features = features
        layer.refresh_text()
        self._update_common(layer, source, placement, meta)
        return layer

    def hide(self, source: Layer, role: str) -> None:
        """Hide an overlay (kept, so the user's settings survive)."""
        layer = self.get(source, role)
        if layer is not None:
            layer.visible = False
