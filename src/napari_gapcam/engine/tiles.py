"""Tiled runs: a slide's tiles through the one pipeline, their maps stitched into one grid.

:func:`~napari_gapcam.engine.tiling.plan_tiles` decides what to read; the tiles go through
:func:`~napari_gapcam.engine.pipeline.run_batches` like any images (only where their pixels come
from differs: :class:`~napari_gapcam.engine.tiling.TileSource`), and each batch's maps of
every class (the method's :meth:`~napari_gapcam.engine.methods.base.Method.class_maps`) go
into the grids of one :class:`~napari_gapcam.engine.tiled_result.TiledResult`, which fills in
place. Only methods whose row allows tiles (their maps stitch) run here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._torch import torch
from .pipeline import check_precision, run_batches
from .tiled_result import TiledResult
from .tiling import TilePlan, TileSource, plan_tiles, tile_stride

if TYPE_CHECKING:
    from .network import Network

MEMORY_GRIDS = 2**30  # bytes of class grids kept in memory; more go to a temporary file


def check_tiles(network: Network) -> None:
    """Refuse a method whose maps do not stitch (its row in the methods table says)."""
    info = network.method_info
    if not info.tiles:
        why = (
            f" ({info.label} reruns the network once per channel on each input it masks: "
            "thousands of passes per tile, and a tile's masks see that tile only, so its maps "
            "do not stitch)"
            if info.needs_input
            else ""
        )
        raise ValueError(
            f"Tiles need a method whose maps stitch across tiles ({', '.join(_tiled_methods())}"
            f"); this model uses {info.label}{why}. Use one of those methods (model.with_method, "
            "--method, the method box), or run the whole image."
        )


def _tiled_methods() -> list[str]:
    from .methods import METHODS

    return [row.label for row in METHODS.values() if row.tiles]


def iter_tiled(
    model: Network,
    image: Any,
    tile_size: int | None = None,
    overlap: int | None = None,
    level: int | None = None,
    contrast_limits: Sequence[float] | None = None,
    batch_size: int | None = None,
    background: str | None = None,
    first: tuple[float, float] | None = None,
    only: Sequence[tuple[int, int]] | None = None,
    precision: str = "fp32",
    check: Callable[[], None] | None = None,
) -> Iterator[tuple[int, int, TiledResult]]:
    """Yield ``(tiles done, tiles to run, result so far)`` after each batch; the result fills
    in place (NaN where no tile ran yet). ``first=(y, x)``: tiles nearest that pixel first (the
    part of the image in view). ``only``: run just these tiles (``(row, column)`` of the
    tiling, e.g. one block of a run split across workers; the others count as skipped).
    ``precision``: ``"fp32"``, ``"fp16"`` / ``"bf16"`` autocast (as ``run_batch``); ``check``
    is called before each batch is read. Grids of more than ``MEMORY_GRIDS`` bytes (many
    classes over a big slide) live in a temporary file (a numpy memmap) instead of memory.
    See :meth:`GapCamModel.run_tiled`."""
    check_precision(precision)
    check_tiles(model)
    size = int(tile_size or model.input_size)
    stride = tile_stride(model, size)
    plan = plan_tiles(image, size, stride, overlap, level, contrast_limits, background, first, only)
    yield from run_tiles(model, plan, batch_size, precision, check)


def run_tiles(
    model: Network,
    plan: TilePlan,
    batch_size: int | None = None,
    precision: str = "fp32",
    check: Callable[[], None] | None = None,
) -> Iterator[tuple[int, int, TiledResult]]:
    """:func:`iter_tiled` of a plan made already (the command line plans once per slide)."""
    check_tiles(model)
    tiling, classes = plan.tiling, len(model.class_names)
    method = model.method_object.on_host()
    grids = _grids((classes, *tiling.grid))
    result = TiledResult(
        grids, np.zeros((0, classes)), [], model.class_names, tiling, plan.level, plan.skipped,
        model.method_info,
    )  # fmt: skip
    if not plan.todo:
        yield 0, 0, result
        return
    size = (tiling.tile_size, tiling.tile_size)
    batches = run_batches(
        model, TileSource(plan), size, batch_size, precision, torch.float32, check
    )
    probabilities: list[np.ndarray] = []
    for batch in batches:
        chosen = plan.todo[batch.start : batch.start + len(batch.logits)]
        raw = method.class_maps(batch.features, classes).numpy()
        for (i, j), tile_raw in zip(chosen, raw, strict=True):
            (a, b), (c, d) = tiling.kept(0, i), tiling.kept(1, j)
            y, x = tiling.starts[0][i], tiling.starts[1][j]
            grids[:, a:b, c:d] = tile_raw[:, a - y : b - y, c - x : d - x]
            result.tiles.append((i, j))
            result.tile_boxes.append(tiling.pixels((i, j)))
        probabilities.append(torch.softmax(batch.logits, 1).numpy())
        result.tile_probabilities = np.concatenate(probabilities)
        yield len(result.tile_boxes), len(plan.todo), result


def _grids(shape: tuple[int, ...]) -> np.ndarray:
    """NaN-filled half-precision grids: in memory, or a temporary file beyond ``MEMORY_GRIDS``
    bytes (deleted when the array is: the file is unlinked at once)."""
    if 2 * math.prod(shape) <= MEMORY_GRIDS:
        return np.full(shape, np.nan, np.float16)
    import tempfile

    with tempfile.TemporaryFile(prefix="gapcam-grids-") as file:
        grids = np.memmap(file, dtype=np.float16, mode="w+", shape=shape)
    grids[:] = np.nan
    return grids
