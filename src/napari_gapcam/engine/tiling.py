"""Where the tiles of a slide lie, which to run, and how their pixels are read.

The network sees a big image's own pixels (of the pyramid level read) in tiles of
``tile_size`` pixels (the model's input size by default), ``overlap`` pixels apart at their
borders, on the grid of its feature cells (``stride`` input pixels per cell: 32 for a ResNet).
Each tile gives the grid only its interior cells (all but ``overlap / 2`` at a border shared
with another tile), so tile borders barely show. :func:`plan_tiles` decides everything a run
needs once (the level, the tiling, the intensity range, the tiles with foreground, their
order); :class:`TileSource` reads the tiles for the one pipeline, a block of neighbours per
read (a zarr or TIFF chunk is decoded on every read), never the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._torch import torch
from .preprocess import Reduced, image_layout, intensity_range, reduce_image

if TYPE_CHECKING:
    from .network import Network

BLOCK_TILES = 8  # tiles across one read
BACKGROUND_FRACTION = 0.05  # a tile with less foreground than this is skipped

Tile = tuple[int, int]  # (row, column) of the tiling


@dataclass
class Tiling:
    """Where the tiles lie, in cells of ``stride`` pixels of the level read."""

    image_shape: tuple[int, int]
    stride: int
    tile_cells: int  # a tile's side in cells
    margin: int  # cells dropped at a border shared with another tile
    starts: tuple[list[int], list[int]]  # tile origins along rows and columns, in cells

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(math.ceil(s / self.stride) for s in self.image_shape)  # type: ignore

    @property
    def tile_size(self) -> int:
        return self.tile_cells * self.stride

    def kept(self, axis: int, k: int) -> tuple[int, int]:
        """The cells [a, b) tile ``k`` along ``axis`` gives to the grid (its interior)."""
        starts, n = self.starts[axis], self.grid[axis]
        a = 0 if k == 0 else starts[k] + self.margin
        b = n if k == len(starts) - 1 else starts[k] + self.tile_cells - self.margin
        return a, min(b, n)

    def tiles(self) -> list[Tile]:
        return [(i, j) for i in range(len(self.starts[0])) for j in range(len(self.starts[1]))]

    def pixels(self, tile: Tile) -> tuple[int, int, int, int]:
        """The tile's pixels ``(y0, x0, y1, x1)`` in the level read (cut at the image's edge)."""
        y0, x0 = (self.starts[a][k] * self.stride for a, k in enumerate(tile))
        size, (h, w) = self.tile_size, self.image_shape
        return y0, x0, min(h, y0 + size), min(w, x0 + size)


def tile_cells(tile_size: int, stride: int, overlap: int) -> tuple[int, int]:
    """A tile's side and the tiles' overlap in map cells of ``stride`` pixels, as :func:`plan`
    uses them: the tile rounded to whole cells; the overlap rounded to an even number of cells
    (half of it dropped at each shared border) and at most the largest even number below the
    tile's cells (a tile keeps cells of its own). The caller says when they differ from what was
    asked (the command line prints a note)."""
    cells = max(1, round(tile_size / stride))
    return cells, min(2 * round(overlap / stride / 2), cells - 1 - (cells - 1) % 2)


def plan(image_shape: tuple[int, int], stride: int, tile_size: int, overlap: int) -> Tiling:
    """Tiles of ``tile_size`` overlapping by ``overlap`` pixels covering the image, both in whole
    cells (:func:`tile_cells`)."""
    cells, overlap_cells = tile_cells(tile_size, stride, overlap)
    margin, step = overlap_cells // 2, cells - overlap_cells
    grid = [math.ceil(s / stride) for s in image_shape]
    starts: list[list[int]] = []
    for n in grid:
        axis = [0]
        while axis[-1] + cells - margin < n:
            axis.append(axis[-1] + step)
        starts.append(axis)
    return Tiling(tuple(image_shape), stride, cells, margin, (starts[0], starts[1]))


def foreground_tiles(
    thumbnail: np.ndarray, image_shape: tuple[int, int], tiling: Tiling
) -> set[Tile]:
    """Tiles holding foreground: Otsu's threshold on a low-resolution grey version, the class
    that holds most of the border pixels being the background (bright or dark)."""
    from skimage.filters import threshold_otsu

    grey = np.asarray(thumbnail, dtype=np.float32)
    grey = grey[..., :3].mean(axis=-1) if grey.ndim == 3 else grey
    grey = np.nan_to_num(grey)
    if grey.max() <= grey.min():
        return set(tiling.tiles())
    above = grey > threshold_otsu(grey)
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    foreground = ~above if border.mean() > 0.5 else above
    fy, fx = grey.shape[0] / image_shape[0], grey.shape[1] / image_shape[1]
    keep = set()
    size = tiling.tile_size
    for i, j in tiling.tiles():
        y0, x0 = tiling.starts[0][i] * tiling.stride, tiling.starts[1][j] * tiling.stride
        part = foreground[
            int(y0 * fy) : max(int(y0 * fy) + 1, int((y0 + size) * fy)),
            int(x0 * fx) : max(int(x0 * fx) + 1, int((x0 + size) * fx)),
        ]
        if part.size and part.mean() >= BACKGROUND_FRACTION:
            keep.add((i, j))
    return keep


@dataclass
class TilePlan:
    """What a tiled run reads: the level's pixels, the tiling, the intensity range that maps to
    [0, 1] (one for every tile) and the tiles to run, in order."""

    data: Any  # the level read: H×W or H×W×3/4, lazy
    level: int
    tiling: Tiling
    low: float
    high: float
    rgb: bool
    todo: list[Tile]

    @property
    def skipped(self) -> int:
        return len(self.tiling.tiles()) - len(self.todo)


def tile_stride(network: Network, tile_size: int) -> int:
    """Input pixels per map cell for tiles of ``tile_size`` (the network's map of one tile)."""
    cells = network.map_size((int(tile_size), int(tile_size)))
    return max(1, round(int(tile_size) / cells[1]))


def plan_tiles(
    image: Any,
    tile_size: int,
    stride: int,
    overlap: int | None = None,
    level: int | None = None,
    contrast_limits: Sequence[float] | None = None,
    background: str | None = None,
    first: tuple[float, float] | None = None,
    only: Sequence[Tile] | None = None,
) -> TilePlan:
    """Plan a tiled run (see :meth:`GapCamModel.run_tiled` for the arguments; ``stride``: the
    network's, :func:`tile_stride`): the level read, the tiling, the intensity range (of the
    smallest level: the whole slide's, read cheaply), and the tiles to run (``only`` these;
    with ``background="auto"`` those with foreground; nearest the pixel ``first`` first)."""
    data, index, smallest = _level(image, level)
    rgb = image_layout(data)
    shape = tuple(int(s) for s in data.shape[:2])
    size = int(tile_size)
    tiling = plan(shape, stride, size, stride * 2 if overlap is None else int(overlap))
    low, high = intensity_range(smallest if smallest is not None else data, contrast_limits)
    if contrast_limits is None and rgb and np.dtype(data.dtype) == np.uint8:
        low, high = 0.0, 255.0
    todo = tiling.tiles()
    if only is not None:
        wanted = {(int(i), int(j)) for i, j in only}
        todo = [t for t in todo if t in wanted]
    if background == "auto":
        thumbnail = smallest if smallest is not None else _thumbnail(data)
        keep = foreground_tiles(np.asarray(thumbnail), shape, tiling)
        todo = [t for t in todo if t in keep]
    elif background is not None:
        raise ValueError(f"background is None or 'auto', got {background!r}.")
    if first is not None:
        half = tiling.tile_size / 2

        def distance(tile: Tile) -> float:
            y0, x0, _, _ = tiling.pixels(tile)
            return (y0 + half - first[0]) ** 2 + (x0 + half - first[1]) ** 2

        todo.sort(key=distance)
    return TilePlan(data, index, tiling, low, high, rgb, todo)


def _level(image: Any, level: int | None) -> tuple[Any, int, Any]:
    """The level to read, its index, and the smallest level (for the background)."""
    if isinstance(image, (list, tuple)):
        index = 0 if level is None else int(level)
        if not 0 <= index < len(image):
            raise ValueError(f"Level {index} does not exist: the pyramid has {len(image)}.")
        return image[index], index, image[-1]
    if level not in (None, 0):
        raise ValueError("level= picks a pyramid level: pass the levels as a list.")
    return image, 0, None


def _thumbnail(data: Any, side: int = 512) -> np.ndarray:
    """A low-resolution copy for the background mask, read band by band."""
    factor = max(1, math.ceil(max(data.shape[:2]) / side))
    low, high = intensity_range(data)
    return reduce_image(data, factor, low, high)[0].permute(1, 2, 0).numpy()


class TileSource:
    """The tiles of a :class:`TilePlan` as a :class:`~napari_gapcam.engine.pipeline.Source`:
    each tile's pixels (zero past the image's edge) with the plan's intensity range. Tiles of
    one row up to ``BLOCK_TILES`` apart share one read."""

    def __init__(self, plan: TilePlan) -> None:
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan.todo)

    def read(self, start: int, stop: int) -> list[Reduced]:
        plan = self.plan
        tiles, size = plan.todo[start:stop], plan.tiling.tile_size
        uint8 = np.dtype(plan.data.dtype) == np.uint8
        out = np.zeros(
            (len(tiles), size, size, 3 if plan.rgb else 1), np.uint8 if uint8 else np.float32
        )
        rows: dict[int, list[int]] = {}
        for n, (i, _) in enumerate(tiles):
            rows.setdefault(i, []).append(n)
        for members in rows.values():
            members.sort(key=lambda n: tiles[n][1])
            groups: list[list[int]] = [[members[0]]]
            for n in members[1:]:
                if tiles[n][1] - tiles[groups[-1][0]][1] < BLOCK_TILES:
                    groups[-1].append(n)
                else:
                    groups.append([n])
            for group in groups:
                y0, x_first, _, _ = plan.tiling.pixels(tiles[group[0]])
                x_last = plan.tiling.pixels(tiles[group[-1]])[1] + size
                block = np.asarray(plan.data[y0 : y0 + size, x_first:x_last])
                block = block[..., :3] if plan.rgb else block[..., None]
                for n in group:
                    x0 = plan.tiling.pixels(tiles[n])[1] - x_first
                    part = block[:, x0 : x0 + size]
                    out[n, : part.shape[0], : part.shape[1]] = part
        if not uint8:
            np.nan_to_num(out, copy=False, nan=plan.low, posinf=plan.high, neginf=plan.low)
        pixels = torch.from_numpy(out).permute(0, 3, 1, 2)
        return [
            Reduced(pixels[n : n + 1], (size, size), 1, (size, size), plan.low, plan.high)
            for n in range(len(tiles))
        ]
