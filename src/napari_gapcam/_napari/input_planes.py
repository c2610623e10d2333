"""Which 2D images a run reads from a layer: the displayed plane(s), at the right pyramid level.

napari displays two axes (the last two of ``viewer.dims.order``); a run reads the plane those
axes span at the other axes' current indices, or every such plane ("all planes"). Nothing here
reads pixels: planes are lazy slices (numpy views, dask or zarr), so a run reads only the planes
and the level it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image


@dataclass(frozen=True)
class Planes:
    """One plane or every plane of a layer, as the model reads them."""

    axes: tuple[int, int]  # the displayed data axes: (rows, columns) of the image read
    lead_axes: tuple[int, ...]  # the other (non-displayed) data axes, in data order
    indices: tuple[tuple[int, ...], ...]  # the planes read: level-0 indices on ``lead_axes``
    level: int  # pyramid level read (0 when not multiscale)
    levels: int
    level_scale: tuple[float, float]  # level pixel → level-0 data coordinate on ``axes``
    images: Any  # N×h×w(×C) array-like of the planes (lazy; ``images[i]`` reads plane i)

    @property
    def shape(self) -> tuple[int, int]:
        """The h×w of each image read."""
        return tuple(int(s) for s in self.images.shape[1:3])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        if len(self.indices) > 1:
            where = f" all {len(self.indices)} planes"
        else:
            where = f" plane {self.indices[0]}" if self.indices[0] else ""
        if self.levels > 1:
            height, width = self.shape
            where += f" level {self.level} of {self.levels} ({height}×{width})"
        return where


class PlaneSequence:
    """Planes of an nD array as an N×h×w(×C) array-like: ``[i]`` slices plane i lazily."""

    def __init__(
        self,
        data: Any,
        axes: tuple[int, int],
        lead_axes: tuple[int, ...],
        indices: tuple[tuple[int, ...], ...],
        rgb: bool,
    ) -> None:
        self.data, self.axes, self.lead_axes, self.indices = data, axes, lead_axes, indices
        plane = tuple(int(data.shape[a]) for a in axes) + ((int(data.shape[-1]),) if rgb else ())
        self.shape = (len(indices), *plane)
        self.dtype = data.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        key: list[Any] = [slice(None)] * len(self.data.shape)
        for axis, value in zip(self.lead_axes, self.indices[i], strict=True):
            key[axis] = value
        plane = self.data[tuple(key)]
        if self.axes[0] > self.axes[1]:  # displayed transposed: rows are the later data axis
            plane = np.swapaxes(plane, 0, 1)  # lazy for dask (__array_function__)
        return plane


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
    images = PlaneSequence(levels[level], axes, lead_axes, level_indices, layer.rgb)
    scale = (float(factors[axes[0]]), float(factors[axes[1]]))
    return Planes(axes, lead_axes, indices, level, len(levels), scale, images)
