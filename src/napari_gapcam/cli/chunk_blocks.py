"""Blocks of tiles that follow the source's chunk grid, so each chunk is decoded at most twice.

A zarr or TIFF chunk is decoded whole on every read that touches it. A block of tiles is
therefore a band of whole chunk rows across the image (at least one tile tall, about
``block_tiles`` tile rows): the tiles whose origin lies in the band. A block reads its chunks
through a :class:`ChunkCache` (each chunk decoded once, whole), walking the band column of
chunks by column of chunks (the tiles in that order) and dropping the columns behind it, so it
holds a few columns of chunks, never the band. A chunk is decoded by its own band, and once more
by the band above where that band's tiles cross into it (the overlap of tiles and bands): at
most twice. (Blocks of N×N tiles cut across chunks: each was decoded ~24 times.) A source that
is not a dask array (an image in memory) keeps blocks of N×N tiles.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

Tile = tuple[int, int]


def chunk_edges(data: Any) -> tuple[list[int], list[int]] | None:
    """The chunk boundaries of ``data`` along rows and columns (``[0, …, H]``, ``[0, …, W]``),
    or None when it has no chunk grid (not a dask array)."""
    chunks = getattr(data, "chunks", None)
    if not chunks or not isinstance(chunks[0], tuple) or len(chunks) < 2:
        return None
    return [int(v) for v in np.cumsum((0, *chunks[0]))], [
        int(v) for v in np.cumsum((0, *chunks[1]))
    ]


def band_rows(edges: Sequence[int], tile_size: int, step: int, block_tiles: int) -> int:
    """Chunk rows in a band: as tall as a tile (so a tile crosses into the next band only) and
    about ``block_tiles`` rows of tiles (``step`` pixels apart)."""
    heights = [b - a for a, b in zip(edges[:-1], edges[1:], strict=False)]
    regular = max(1, min(heights[:-1]) if len(heights) > 1 else heights[0])
    return max(1, math.ceil(tile_size / regular), round(block_tiles * step / regular))


def chunk_blocks(
    tiling: Any, todo: Sequence[Tile], data: Any, block_tiles: int
) -> dict[tuple[int, int], list[Tile]] | None:
    """The tiles ``todo`` grouped in bands of whole chunk rows (block ``(band, 0)``), or None
    for a source without chunks."""
    edges = chunk_edges(data)
    if edges is None:
        return None
    starts = tiling.starts[0]
    step = (starts[1] - starts[0]) * tiling.stride if len(starts) > 1 else tiling.tile_size
    rows = band_rows(edges[0], tiling.tile_size, step, block_tiles)
    blocks: dict[tuple[int, int], list[Tile]] = {}
    for i, j in todo:
        y0 = tiling.pixels((i, j))[0]
        blocks.setdefault((_index(edges[0], y0) // rows, 0), []).append((i, j))
    return blocks


def _index(edges: Sequence[int], position: int) -> int:
    """The chunk holding pixel ``position``."""
    return min(len(edges) - 2, max(0, bisect.bisect_right(edges, position) - 1))


class ChunkCache:
    """``data`` (an H×W[×S] dask array) read by whole chunks, each decoded once while kept;
    sliced like an array (``[y0:y1, x0:x1]`` → numpy). :meth:`release` drops the chunk columns
    left of a pixel column. ``decoded`` counts the chunks read."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape, self.dtype, self.ndim = tuple(data.shape), np.dtype(data.dtype), data.ndim
        self.edges = chunk_edges(data)
        self.chunks: dict[tuple[int, int], np.ndarray] = {}
        self.decoded = 0
        self.left: list[int] = []  # by tiles run: the leftmost pixel column of the tiles left
        self._lock = threading.Lock()

    def _chunk(self, r: int, c: int) -> np.ndarray:
        with self._lock:
            chunk = self.chunks.get((r, c))
            if chunk is None:
                (ys, xs) = self.edges  # type: ignore[misc]
                chunk = np.asarray(self.data[ys[r] : ys[r + 1], xs[c] : xs[c + 1]])
                self.chunks[(r, c)] = chunk
                self.decoded += 1
            return chunk

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        (ys, xs) = self.edges  # type: ignore[misc]
        (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key[:2], self.shape, strict=False))
        out = np.empty((max(0, y1 - y0), max(0, x1 - x0), *self.shape[2:]), self.dtype)
        if y1 <= y0 or x1 <= x0:
            return out
        for r in range(_index(ys, y0), _index(ys, y1 - 1) + 1):
            for c in range(_index(xs, x0), _index(xs, x1 - 1) + 1):
                chunk = self._chunk(r, c)
                a, b = max(y0, ys[r]), min(y1, ys[r + 1])
                d, e = max(x0, xs[c]), min(x1, xs[c + 1])
                out[a - y0 : b - y0, d - x0 : e - x0] = chunk[
                    a - ys[r] : b - ys[r], d - xs[c] : e - xs[c]
                ]
        return out

    def release(self, x: int) -> None:
        """Drop the chunks that end at or left of pixel column ``x`` (no tile left needs them)."""
        xs = self.edges[1]  # type: ignore[index]
        with self._lock:
            for key in [k for k in self.chunks if xs[k[1] + 1] <= x]:
                del self.chunks[key]


def follow_chunks(plan: Any) -> ChunkCache | None:
    """Read ``plan`` (an engine :class:`~napari_gapcam.engine.tiling.TilePlan` of one block)
    through a :class:`ChunkCache`, its tiles ordered column of chunks by column of chunks;
    None (the plan unchanged) for a source without chunks."""
    edges = chunk_edges(plan.data)
    if edges is None:
        return None
    cache = ChunkCache(plan.data)
    tiling = plan.tiling

    def order(tile: Tile) -> tuple[int, int, int]:
        return (_index(edges[1], tiling.pixels(tile)[1]), *tile)

    plan.todo = sorted(plan.todo, key=order)
    plan.data = cache
    left = [tiling.pixels(t)[1] for t in plan.todo]
    for n in range(len(left) - 2, -1, -1):
        left[n] = min(left[n], left[n + 1])
    cache.left = left
    return cache


def release_done(cache: ChunkCache | None, done: int) -> None:
    """After ``done`` tiles of the plan ran: drop the chunks left of every tile still to run."""
    if cache is not None and done < len(cache.left):
        cache.release(cache.left[done])
