"""Which 2D image a run reads from a layer: the plane at the dims point, at the right pyramid level.

Nothing here reads pixels: the result holds a lazy slice (numpy view, dask or zarr), so a run
reads only that plane of that level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image


@dataclass(frozen=True)
class PlaneChoice:
    """The 2D (or 2D + RGB) data a run reads, and where it sits in the layer."""

    index: tuple[int, ...]  # leading (non-displayed) indices, in level-0 data coordinates
    level: int  # pyramid level read (0 when not multiscale)
    levels: int  # pyramid levels in the layer
    data: Any  # lazy H×W(×C) slice of that level
    level_scale: tuple[float, float]  # level pixel → level-0 data coordinate (napari's)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.data.shape[:2])  # type: ignore[return-value]

    def describe(self) -> str:
        where = f" plane {self.index}" if self.index else ""
        if self.levels > 1:
            height, width = self.shape
            where += f" level {self.level} of {self.levels} ({height}×{width})"
        return where


def pick_level(level_shapes: list[tuple[int, int]], input_size: int) -> int:
    """The smallest level whose short side is at least ``input_size``, else the largest one."""
    fits = [i for i, shape in enumerate(level_shapes) if min(shape) >= input_size]
    if fits:
        return min(fits, key=lambda i: level_shapes[i][0] * level_shapes[i][1])
    return max(range(len(level_shapes)), key=lambda i: level_shapes[i][0] * level_shapes[i][1])


def choose_plane(layer: Image, world_point: Any, input_size: int) -> PlaneChoice:
    """The plane of ``layer`` at ``world_point`` (the viewer's dims point), at the level to read."""
    ndim = layer.ndim  # spatial axes (an RGB layer's channel axis is not one)
    levels = list(layer.data) if layer.multiscale else [layer.data]
    shapes = [tuple(int(s) for s in level.shape[:ndim]) for level in levels]
    level = pick_level([shape[-2:] for shape in shapes], input_size) if len(levels) > 1 else 0
    factors = np.divide(shapes[0], shapes[level])  # napari's downsample factors
    index: tuple[int, ...] = ()
    if ndim > 2:
        coords = layer.world_to_data(world_point)[: ndim - 2]
        index = tuple(
            int(np.clip(np.round(c), 0, size - 1))
            for c, size in zip(coords, shapes[0][:-2], strict=True)
        )
    level_index = tuple(
        int(np.clip(np.round(i / f), 0, size - 1))
        for i, f, size in zip(index, factors[:-2], shapes[level][:-2], strict=True)
    )
    data = levels[level][level_index] if level_index else levels[level]
    scale = (float(factors[-2]), float(factors[-1]))
    return PlaneChoice(index, level, len(levels), data, scale)
