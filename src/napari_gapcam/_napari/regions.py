"""*All regions*: every region of the map above the threshold as a box, with its share.

For images with several objects of one class (cells, a mosaic): each connected region of
``map ≥ τ·max`` of at least the minimum area (in pixels of the image read) is boxed, largest
first, labelled with the share of the class's map mass that falls inside it. Regions come
from the bounded grid the box uses (as :meth:`CamResult.boxes` does at full size).

:class:`Regions` is a mixin of :class:`~napari_gapcam._napari.widget.GapCamWidget`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.localize import Box, regions_with_shares


def all_regions(heat: np.ndarray, threshold: float, min_cells: float) -> list[tuple[Box, float]]:
    """:func:`~napari_gapcam.engine.localize.regions_with_shares` (the CLI records the same)."""
    return regions_with_shares(heat, threshold, min_cells)


class Regions:
    """Draws every region of the displayed plane's map (see the module docstring)."""

    def _show_all_regions(self, meta: dict[str, Any], placement: Any, index: Any) -> None:
        shown = self._shown
        heat = shown.grid_map(meta["class_index"], placement.grid, index)
        grid = placement.grid
        sy, sx = shown.result.placement(grid).scale
        cell = sy * sx  # image pixels per cell
        found = (
            [] if heat is None else all_regions(heat, meta["threshold"], self.min_area.value / cell)
        )
        boxes = [box for box, _ in found]
        labels = [f"{meta['class_name']} {100 * share:.0f} %" for _, share in found]
        box_meta = {
            **meta,
            "boxes": [shown.box_pixels(box, grid) for box in boxes],
            "shares": [share for _, share in found],
            "min_area": int(self.min_area.value),
            "level": shown.planes.level,
        }
        self._overlays.show_boxes(shown.source, boxes, index, placement, labels, box_meta)
        if not boxes and index in shown.position:
            self.status.value = (
                f"No region of at least {self.min_area.value} px above the threshold."
            )
        elif self.status.value.startswith("No region"):
            self.status.value = self._run_line
