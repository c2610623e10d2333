"""Grids over an image: a map computed at h×w cells and where those cells sit in image pixels.

Bilinear upsampling with ``align_corners=False`` puts the centre of cell ``i`` of an ``h``-cell
grid over ``H`` pixels at pixel coordinate ``(i + 0.5)·H/h − 0.5``: the grid is the image seen
with scale ``H/h`` and translate ``(H/h − 1)/2``. An overlay stored at a small grid and given that
scale and translate lies exactly over the full-size map.
"""

from __future__ import annotations

import math
from typing import NamedTuple

Shape = tuple[int, int]
Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open


class Placement(NamedTuple):
    """Where a grid of cells lies over an image: cell ``i``'s centre is at pixel coordinate
    ``i·scale + translate`` (per axis), so a cell covers the pixels between
    ``i·scale + translate − (scale − 1)/2`` and that plus ``scale``."""

    grid: Shape
    scale: tuple[float, float]
    translate: tuple[float, float]

    def to_pixels(self, box: Box, image_shape: Shape) -> Box:
        """A half-open box of cells → the half-open box of image pixels those cells cover."""
        edges = [t - (s - 1) / 2 for s, t in zip(self.scale, self.translate, strict=True)]
        (sy, sx), (ey, ex), (height, width) = self.scale, edges, image_shape
        y0, x0, y1, x1 = box
        return (
            max(0, math.floor(y0 * sy + ey + 1e-9)),
            max(0, math.floor(x0 * sx + ex + 1e-9)),
            min(height, math.ceil(y1 * sy + ey - 1e-9)),
            min(width, math.ceil(x1 * sx + ex - 1e-9)),
        )


def bounded_grid(image_shape: Shape, max_pixels: int) -> Shape:
    """The largest grid of at most ``max_pixels`` cells with the image's aspect ratio.

    Never larger than the image itself, never smaller than 1×1.
    """
    height, width = (int(s) for s in image_shape)
    if height * width <= max_pixels:
        return height, width
    factor = math.sqrt(max_pixels / (height * width))
    rows, cols = max(1, math.floor(height * factor)), max(1, math.floor(width * factor))
    # a thin image: the short side stops at 1 cell, so the long side takes the rest
    return min(rows, max(1, max_pixels // cols)), min(cols, max(1, max_pixels // rows))


def grid_placement(image_shape: Shape, grid_shape: Shape) -> tuple[Shape, Shape]:
    """``(scale, translate)`` that place a ``grid_shape`` grid over ``image_shape`` pixels."""
    scale = tuple(i / g for i, g in zip(image_shape, grid_shape, strict=True))
    translate = tuple((s - 1) / 2 for s in scale)
    return scale, translate  # type: ignore[return-value]


def placed(image_shape: Shape, grid_shape: Shape) -> Placement:
    """The :class:`Placement` of a ``grid_shape`` grid spread over ``image_shape`` pixels."""
    scale, translate = grid_placement(image_shape, grid_shape)
    return Placement(tuple(int(g) for g in grid_shape), scale, translate)  # type: ignore[arg-type]


def grid_box_to_pixels(box: Box, image_shape: Shape, grid_shape: Shape) -> Box:
    """A half-open box in grid cells → the half-open box of image pixels those cells cover."""
    return placed(image_shape, grid_shape).to_pixels(box, image_shape)
