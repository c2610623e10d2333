"""The box layer: rectangles around regions, each with its label, readable at any zoom.

napari sizes a Shapes layer's edges and its text offset in data units. Here they follow the
screen: the edge is ``BOX_PIXELS`` wide and a label sits one line inside its box's top, at any
zoom. A single box's label starts where both the box and the view are (never cut at the canvas
edge: on the box's right side when the text would run past the view's right); with several
boxes (*all regions*), a label that would spill out of its box on screen is not drawn (its
text stays in the layer's ``label`` feature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Shapes

from .camera import camera

BOX_COLOR = "yellow"
BOX_PIXELS = 2.0  # the box's edge width on screen, whatever the zoom
LABEL_PIXELS = 11  # the label's font size; the label sits inside the box, under its top
CHAR_WIDTH = 0.62  # a character's width in font sizes (DejaVu Sans, napari's font): an estimate
MARGIN = 4  # screen pixels between a label and its box's (or the view's) side


def rectangles(
    boxes: list[tuple[int, int, int, int]], index: tuple[int, ...], axes: tuple[int, int], ndim: int
) -> list[np.ndarray]:
    """The vertices of each half-open box of cells (cell i covers [i − 0.5, i + 0.5]) on the
    plane ``index`` of the other axes."""
    rows, cols = axes
    lead = [a for a in range(ndim) if a not in (rows, cols)]
    out = []
    for y0, x0, y1, x1 in boxes:
        top, left, bottom, right = y0 - 0.5, x0 - 0.5, y1 - 0.5, x1 - 0.5
        vertices = np.zeros((4, ndim))
        vertices[:, lead] = index
        vertices[:, rows] = [top, top, bottom, bottom]
        vertices[:, cols] = [left, right, right, left]
        out.append(vertices)
    return out


def text_width(label: str) -> float:
    """A label's width on screen, in pixels (an estimate from the font size)."""
    return CHAR_WIDTH * LABEL_PIXELS * len(label)


def _pixel(layer: Shapes, viewer: Any) -> float:
    """One screen pixel in the layer's data units along its columns, at the current zoom."""
    world_per_data = float(abs(layer.scale[-1]))
    return 1.0 / max(camera(viewer).zoom * world_per_data, 1e-9)


def _view_columns(viewer: Any) -> tuple[float, float]:
    """The world x range the canvas shows now."""
    canvas = getattr(viewer, "canvas", None)  # napari ≥ 0.6: viewer.canvas.size is (h, w)
    size = getattr(canvas, "size", None) or getattr(viewer, "_canvas_size", (600, 800))
    width = float(size[1])
    centre = float(np.asarray(camera(viewer).center)[-1])
    half = width / 2 / max(camera(viewer).zoom, 1e-9)
    return centre - half, centre + half


def fit(layer: Shapes, viewer: Any) -> None:
    """Edge width, label anchor, label offset and the labels drawn, for the current view."""
    pixel = _pixel(layer, viewer)
    mean_scale = float(np.sqrt(np.prod(np.abs(layer.scale[-2:]))))
    width = BOX_PIXELS / max(camera(viewer).zoom * mean_scale, 1e-9)
    if len(layer.data) and not np.allclose(layer.edge_width, width, rtol=0.02):
        layer.edge_width = [width] * len(layer.data)
        layer.refresh()  # napari's setter updates the mesh but not what is drawn
    rows, cols = layer.metadata["gapcam"]["axes"]
    labels = [str(label) for label in layer.features.get("label", [])]
    edges = [(float(v[:, cols].min()), float(v[:, cols].max())) for v in layer.data]
    anchor, shift = "upper_left", MARGIN * pixel
    if len(edges) == 1:
        anchor, shift = _single(layer, viewer, edges[0], labels[0] if labels else "", pixel)
        shown = labels
    else:  # several boxes: a label no wider than its box on screen
        shown = [
            label if text_width(label) + 2 * MARGIN <= (right - left) / pixel else ""
            for label, (left, right) in zip(labels, edges, strict=True)
        ]
    if str(layer.text.anchor) != anchor:
        layer.text.anchor = anchor
    offset = np.zeros(layer.ndim)
    offset[rows] = (2 * LABEL_PIXELS + 2 * BOX_PIXELS) * pixel  # one line down
    offset[cols] = shift
    if np.shape(layer.text.translation) != offset.shape or not np.allclose(
        layer.text.translation, offset, rtol=0.02, atol=1e-9
    ):
        layer.text.translation = offset
    if list(layer.features.get("shown", [])) != shown:
        features = layer.features.copy()
        features["shown"] = shown
        layer.features = features
        layer.refresh_text()


def _single(
    layer: Shapes, viewer: Any, edges: tuple[float, float], label: str, pixel: float
) -> tuple[str, float]:
    """Anchor and column offset (data units) of one box's label: from the left of what is in
    view of the box, or from its right when the text would run past the view's right."""
    view_left, view_right = _view_columns(viewer)
    scale, origin = float(layer.scale[-1]), float(layer.translate[-1])
    left, right = (origin + scale * e for e in edges)  # world x of the box's sides
    start = max(left, view_left) + MARGIN * pixel * scale
    needed = text_width(label) * pixel * scale
    if start + needed <= view_right or left >= view_right:
        return "upper_left", (start - left) / scale
    end = min(right, view_right) - MARGIN * pixel * scale
    return "upper_right", (end - right) / scale
