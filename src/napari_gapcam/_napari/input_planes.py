"""Which 2D images a run reads from a layer: the displayed plane(s), at the right pyramid level.

napari displays two axes (the last two of ``viewer.dims.order``); a run reads the plane those
axes span at the other axes' current indices, or every such plane ("all planes"). Nothing here
reads pixels: planes are numpy views or dask arrays over the layer's data (zarr, dask, …), so a
run reads only the planes, the level and, for tiles, the blocks it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image

from .camera import camera


@dataclass(frozen=True)
class Planes:
    """One plane or every plane of a layer, as the model reads them."""

    axes: tuple[int, int]  # the displayed data axes: (rows, columns) of the image read
    lead_axes: tuple[int, ...]  # the other (non-displayed) data axes, in data order
    indices: tuple[tuple[int, ...], ...]  # the planes read: level-0 indices on ``lead_axes``
    level: int  # pyramid level read (0 when not multiscale)
    levels: int
    level_scale: tuple[float, float]  # level pixel → level-0 data coordinate on ``axes``
    images: list[Any]  # each plane, lazy (``images[i]`` reads nothing until sliced)
    in_memory: bool = False  # numpy data: reading a plane costs nothing

    @property
    def shape(self) -> tuple[int, int]:
        """The h×w of each image read."""
        return tuple(int(s) for s in self.images[0].shape[:2])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        if len(self.indices) > 1:
            where = f" all {len(self.indices)} planes"
        else:
            where = f" plane {plane_text(self.indices[0])}" if self.indices[0] else ""
        if self.levels > 1:
            height, width = self.shape
            where += f" level {self.level} of {self.levels} ({height}×{width})"
        return where


def plane_text(index: tuple[int, ...]) -> str:
    """A plane's index as the dock's lines say it: ``5`` on one axis, ``(2, 5)`` on several."""
    return str(index[0]) if len(index) == 1 else str(tuple(index))


def plane_views(
    data: Any,
    axes: tuple[int, int],
    lead_axes: tuple[int, ...],
    indices: tuple[tuple[int, ...], ...],
) -> list[Any]:
    """Each plane of ``indices`` as an h×w(×C) array, rows and columns as displayed (a
    transposed view too): a numpy view of numpy data, else a slice of a dask array over it
    (zarr, dask, TIFF stores: only the rows and columns read are read)."""
    if isinstance(data, np.ndarray):
        array, move = data, np.moveaxis
    else:
        import dask.array as da

        array, move = data, da.moveaxis
        if not isinstance(data, da.Array):
            chunks = getattr(data, "chunks", "auto")
            array = da.from_array(data, chunks=chunks if chunks else "auto", name=False)
    order = [*lead_axes, *axes]  # the channels of RGB(A) data stay last
    moved = move(array, order, list(range(len(order))))
    return [moved[index] for index in indices]


def displayed_axes(layer: Image, dims_order: tuple[int, ...]) -> tuple[int, int]:
    """The layer's data axes napari displays as rows and columns (2D view)."""
    offset = len(dims_order) - layer.ndim  # napari aligns a layer's axes with the last world axes
    displayed = [axis - offset for axis in dims_order[-2:] if axis - offset >= 0]
    if len(displayed) != 2:
        return layer.ndim - 2, layer.ndim - 1
    return displayed[0], displayed[1]


def pick_level(level_shapes: list[tuple[int, int]], input_size: int) -> int:
    """The smallest level whose short side is at least ``input_size``, else the largest one."""
    fits = [i for i, shape in enumerate(level_shapes) if min(shape) >= input_size]
    if fits:
        return min(fits, key=lambda i: level_shapes[i][0] * level_shapes[i][1])
    return max(range(len(level_shapes)), key=lambda i: level_shapes[i][0] * level_shapes[i][1])


def choose_planes(
    layer: Image,
    world_point: Any,
    dims_order: tuple[int, ...],
    input_size: int,
    all_planes: bool = False,
    level: int | None = None,
) -> Planes:
    """The displayed plane of ``layer`` at ``world_point`` (or every plane), at the level read
    (``level``, or the smallest level whose short side reaches ``input_size``)."""
    ndim = layer.ndim  # spatial axes (an RGB layer's channel axis is not one)
    axes = displayed_axes(layer, tuple(dims_order))
    lead_axes = tuple(a for a in range(ndim) if a not in axes)
    levels = list(layer.data) if layer.multiscale else [layer.data]
    shapes = [tuple(int(s) for s in level.shape[:ndim]) for level in levels]
    if level is not None:
        level = min(max(int(level), 0), len(levels) - 1)
    elif len(levels) > 1:
        level = pick_level([(s[axes[0]], s[axes[1]]) for s in shapes], input_size)
    else:
        level = 0
    factors = np.divide(shapes[0], shapes[level])  # napari's downsample factors
    if all_planes:
        indices = tuple(np.ndindex(*(shapes[0][a] for a in lead_axes)))
    else:
        coords = layer.world_to_data(world_point)
        indices = (
            tuple(int(np.clip(np.round(coords[a]), 0, shapes[0][a] - 1)) for a in lead_axes),
        )
    level_indices = tuple(
        tuple(
            int(np.clip(np.round(i / factors[a]), 0, shapes[level][a] - 1))
            for i, a in zip(index, lead_axes, strict=True)
        )
        for index in indices
    )
    images = plane_views(levels[level], axes, lead_axes, level_indices)
    scale = (float(factors[axes[0]]), float(factors[axes[1]]))
    in_memory = isinstance(levels[level], np.ndarray)
    return Planes(axes, lead_axes, indices, level, len(levels), scale, images, in_memory)


def canvas_centre(viewer: Any, source: Image, planes: Planes) -> tuple[float, float]:
    """The canvas centre in pixels of the level read (where the first tiles go)."""
    point = np.array(viewer.dims.point, float)
    displayed = list(viewer.dims.order[-2:])
    point[displayed] = np.asarray(camera(viewer).center, float)[-2:]
    data = np.asarray(source.world_to_data(point), float)
    fy, fx = planes.level_scale
    return float(data[planes.axes[0]] / fy), float(data[planes.axes[1]] / fx)
