"""The result of a tiled run: every class's map stitched over a whole slide, one cell per stride.

The CAM is linear in the maps, so each tile's maps of every class go into one grid per class
(C grids kept in half precision: ``2·C / stride²`` bytes per image pixel; NaN where no tile
ran). :class:`TiledResult` answers the result protocol (:mod:`.protocol`) for its one image:
one min-max over the whole slide, its probabilities the mean over the tiles run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._torch import F, torch
from .grid import Box, Placement, placed
from .maps import ClassRef, check_scale, relative
from .methods import METHODS
from .protocol import OneImage
from .tiling import Tiling

MAX_DEFAULT_PIXELS = 2**26  # cam() at the image's own size up to this; give shape= beyond


class TiledResult(OneImage):
    """The stitched maps of a tiled run over one image (of the pyramid level read).

    ``grids``: C×h×w raw class maps (half precision; NaN where a tile was skipped), one cell per
    ``stride`` pixels; ``tile_probabilities`` (tiles × classes) with ``tile_boxes`` (each tile's
    pixels ``(y0, x0, y1, x1)`` in the level read), ``tiles`` (each tile's ``(row, column)`` in
    the tiling) and ``skipped`` (tiles not run). A run split into blocks (workers, a resumed
    run) saves each block's :meth:`part` and stitches them back with :meth:`merged`.
    """

    averaged_over = "tiles"

    def __init__(
        self,
        grids: np.ndarray,
        tile_probabilities: np.ndarray,
        tile_boxes: list[Box],
        class_names: Sequence[str],
        tiling: Tiling,
        level: int,
        skipped: int,
        method_info: Any = None,
    ) -> None:
        self.grids = grids
        self.tile_probabilities = tile_probabilities
        self.tiles: list[tuple[int, int]] = []
        self.tile_boxes = tile_boxes
        self.class_names = list(class_names)
        self.tiling = tiling
        self.image_shape = tiling.image_shape
        self.stride = tiling.stride
        self.level = level
        self.skipped = skipped
        self.method_info = method_info or METHODS["cam"]

    def __repr__(self) -> str:
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk(3))
        return (
            f"TiledResult({len(self.tile_boxes)} tiles of {self.tiling.tile_size}² over "
            f"{self.image_shape}, {self.skipped} skipped, mean top-3: {best})"
        )

    @property
    def method(self) -> str:
        return self.method_info.label

    @property
    def decomposable(self) -> bool:
        return False  # the tiles' channels are not kept, only their stitched maps

    @property
    def map_shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.grids.shape[1:])  # type: ignore[return-value]

    @property
    def probabilities(self) -> np.ndarray:
        """Each class's probability averaged over the tiles run."""
        if not len(self.tile_probabilities):
            return np.zeros(len(self.class_names))
        return self.tile_probabilities.mean(axis=0)

    def is_ready(self, c: ClassRef) -> bool:
        return True

    def _version(self) -> int:
        return len(self.tile_boxes)  # the grids fill in as tiles run

    def default_grid(self) -> tuple[int, int]:
        """Boxes, masks and regions are taken on the stitched grid itself (a slide's pixels
        would be too many)."""
        return self.map_shape

    def placement(self, shape: tuple[int, int] | None = None) -> Placement:
        """The stitched grid: cell i centred at pixel ``(i + 0.5)·stride − 0.5``; another
        ``shape``: a grid spread over the image."""
        if shape is None or tuple(shape) == self.map_shape:
            s = float(self.stride)
            return Placement(self.map_shape, (s, s), ((s - 1) / 2, (s - 1) / 2))
        return placed(self.image_shape, shape)

    def metadata(self) -> dict[str, Any]:
        return {
            "mode": "tiles",
            "method": self.method,
            "level": self.level,
            "stride": self.stride,
            "tile_size": self.tiling.tile_size,
            "tiles_run": len(self.tile_boxes),
            "tiles_skipped": self.skipped,
        }

    def raw_cam(self, c: ClassRef) -> np.ndarray:
        """The stitched raw map (h×w float32, one cell per ``stride`` pixels; NaN: skipped)."""
        return self.grids[self.class_index(c)].astype(np.float32)

    def cam(self, c: ClassRef, shape: tuple[int, int] | None = None, scale: str = "each"):
        """The map with **one** min-max for the whole image (NaN where tiles were skipped or
        have not run yet): at the stitched grid for ``shape=map_shape``, else bilinear at a
        ``shape`` grid over the image (default: the image's own size, up to
        ``MAX_DEFAULT_PIXELS``). ``scale``: one image, one range either way; ``"relative"``
        also multiplies by ``p_c / p_top`` of the mean tile probabilities; ``"raw"``: no scaling."""
        check_scale(scale)
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        if shape is None and size[0] * size[1] > MAX_DEFAULT_PIXELS:
            raise ValueError(
                f"The image is {size[0]}×{size[1]}: give the map's grid, e.g. "
                f"cam(c, shape={self.map_shape}) (one cell per {self.stride} px)."
            )
        raw = self.raw_cam(c)
        finite = raw[np.isfinite(raw)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if size == self.map_shape:
            up = raw
        else:
            up = _resample(torch.from_numpy(raw), self.image_shape, self.stride, size).numpy()
        if scale == "raw":
            return up
        heat = (up - low) / (high - low) if high > low else up * 0
        if scale == "relative":
            heat = heat * relative(self.probabilities[None], [self.class_index(c)])[0]
        return heat

    def contributions(self, c: ClassRef, n: int | None = 8) -> list:
        raise ValueError(
            "A tiled run keeps each class's stitched map, not the channels behind it: "
            "decompose a whole-image run (model.run)."
        )

    def part(self, tiles: Sequence[tuple[int, int]]) -> dict[str, np.ndarray]:
        """What ``tiles`` (a block) gave, as arrays to save: ``cells`` (rows a:b, columns c:d
        of the grid), ``grids`` (those cells), ``tiles`` (those of them that ran) and their
        ``probabilities``."""
        rows = [self.tiling.kept(0, i) for i, _ in tiles]
        cols = [self.tiling.kept(1, j) for _, j in tiles]
        a, b = min(r[0] for r in rows), max(r[1] for r in rows)
        c, d = min(k[0] for k in cols), max(k[1] for k in cols)
        wanted = {tuple(t) for t in tiles}
        ran = [n for n, tile in enumerate(self.tiles) if tile in wanted]
        return {
            "cells": np.asarray([a, b, c, d], np.int64),
            "grids": np.asarray(self.grids[:, a:b, c:d]),
            "tiles": np.asarray([self.tiles[n] for n in ran], np.int64).reshape(-1, 2),
            "probabilities": np.asarray(self.tile_probabilities[ran], np.float32),
        }

    @classmethod
    def merged(
        cls,
        parts: Sequence[Any],
        tiling: Tiling,
        class_names: Sequence[str],
        level: int,
        skipped: int,
    ) -> TiledResult:
        """One result from the :meth:`part` s of one tiling (tiles in the tiling's order)."""
        classes = len(class_names)
        grids = np.full((classes, *tiling.grid), np.nan, np.float16)
        tiles: list[tuple[int, int]] = []
        probabilities = [np.zeros((0, classes), np.float32)]
        for part in parts:
            a, b, c, d = (int(v) for v in part["cells"])
            block = part["grids"]
            seen = ~np.isnan(block)
            grids[:, a:b, c:d][seen] = block[seen]
            tiles.extend((int(i), int(j)) for i, j in part["tiles"])
            probabilities.append(part["probabilities"])
        order = sorted(range(len(tiles)), key=lambda n: tiles[n])
        stacked = np.concatenate(probabilities)[order]
        boxes = [tiling.pixels(tiles[n]) for n in order]
        result = cls(grids, stacked, boxes, class_names, tiling, level, skipped)
        result.tiles = [tiles[n] for n in order]
        return result

    def tile_top_grid(self) -> np.ndarray:
        """Each tile's top class probability over the grid cells that tile gave (its
        interior), so the blocks lie where the map's cells do; NaN: no tile yet."""
        out = np.full(self.map_shape, np.nan, np.float32)
        done = min(len(self.tiles), len(self.tile_probabilities))
        tops = self.tile_probabilities[:done].max(axis=1) if done else []
        for (i, j), top in zip(self.tiles[:done], tops, strict=True):
            (a, b), (c, d) = self.tiling.kept(0, i), self.tiling.kept(1, j)
            out[a:b, c:d] = top
        return out


def _resample(raw: torch.Tensor, image: tuple[int, int], stride: int, size: tuple[int, int]):
    """The grid (cell i centred at pixel ``(i + 0.5)·stride − 0.5``) sampled bilinearly at the
    centres of a ``size`` grid over the image's pixels."""
    axes = []
    for n_cells, pixels, n in zip(raw.shape, image, size, strict=True):
        centres = (torch.arange(n, dtype=torch.float64) + 0.5) * pixels / n - 0.5
        cell = (centres + 0.5) / stride - 0.5
        axes.append((cell / max(n_cells - 1, 1) * 2 - 1).float())
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None]
    out = F.grid_sample(
        raw[None, None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0, 0]
