"""One big image split into blocks of tiles: the unit of work (and of resuming) of ``--tiles``.

The tiles of :func:`napari_gapcam.engine.tiling.plan_tiles` are grouped into blocks that
follow the source's chunk grid (bands of whole chunk rows, about ``block_tiles`` tile rows
tall: :mod:`~napari_gapcam.cli.chunk_blocks`), or of ``block_tiles`` × ``block_tiles`` tiles
for an image in memory. The run's process plans an input (:func:`plan_input`:
its level, the contrast and the foreground tiles, decided once so every block sees the same),
and each block is a task (:func:`process_blocks`, in that process or on a dask worker) that
runs its tiles through :func:`~napari_gapcam.engine.tiles.run_tiles` (``only=``) and saves its
grid cells, tile positions and probabilities in ``records/<stem>.parts/`` (atomically). A run
killed at any moment keeps every block saved; the next run with the same input and settings
computes only the blocks left (another input or other settings start afresh).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunk_blocks import chunk_blocks, follow_chunks, release_done
from .inputs import Item, fingerprint
from .outputs import TEMP_PREFIX, OutputFolder, atomic_path
from .pyramid import Levels, open_levels
from .read_peak import check_chunks
from .tiling_note import options_note

PLAN = "plan.json"


@dataclass(frozen=True)
class BlockTask:
    """A block of one input's tiles to run (``path`` names the input in outcomes)."""

    path: str
    stem: str
    block: tuple[int, int]
    tiles: tuple[tuple[int, int], ...]
    contrast: tuple[float, float]
    key: str  # the plan's identity: a block is saved only under the plan it belongs to


@dataclass
class TiledPlan:
    """An input's tiles, where its blocks are saved and which are left."""

    item: Item
    levels: Levels
    level: int
    tiling: Any  # napari_gapcam.engine.tiling.Tiling
    key: str
    source: dict[str, Any]  # the input's fingerprint, taken before reading
    parts: Path
    run: int  # tiles to run (the foreground)
    blocks: int  # blocks holding tiles to run
    left: list[BlockTask] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.tiling.tiles()) - self.run


def parts_folder(out: OutputFolder, stem: str) -> Path:
    return out.records / f"{stem}.parts"


def block_path(parts: Path, block: tuple[int, int]) -> Path:
    return parts / f"block-{block[0]}-{block[1]}.npz"


def _image(levels: Levels) -> Any:
    """What :func:`iter_tiled` gets: the levels (a pyramid), or the one array itself."""
    return levels.levels if len(levels.levels) > 1 else levels.levels[0]


def plan_input(item: Item, options: Any, geometry: dict[str, Any], out: OutputFolder) -> TiledPlan:
    """Open the input, plan its tiles (the engine's :func:`~napari_gapcam.engine.tiling.
    plan_tiles`) and blocks, and find the blocks a killed run saved."""
    from ..engine.tiling import plan_tiles

    source = fingerprint(item.path)
    levels = open_levels(item.path)
    level = options.level or 0
    if level >= len(levels.levels):
        raise ValueError(
            f"--level {level}: the image has {len(levels.levels)} level(s) (0 to "
            f"{len(levels.levels) - 1})"
        )
    check_chunks(levels.levels[level], f"level {level} of this image")
    tiles = plan_tiles(
        _image(levels), geometry["tile_size"], geometry["stride"], options.overlap,
        level if len(levels.levels) > 1 else None, background=options.background,
    )  # fmt: skip
    identity = {
        "settings": options.settings(),
        "input": source,
        "shapes": levels.shapes,
        "stride": geometry["stride"],
        "contrast": [tiles.low, tiles.high],
        "blocks": options.block_tiles,
        "grouping": "chunk bands",  # blocks follow the chunk grid (N×N tiles before)
    }
    key = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    parts = parts_folder(out, item.stem)
    if options.overwrite:  # redo everything: no block of a killed run either
        shutil.rmtree(parts, ignore_errors=True)
    _prepare_parts(parts, key)
    n = max(1, int(options.block_tiles))
    blocks = chunk_blocks(tiles.tiling, tiles.todo, tiles.data, n)
    if blocks is None:  # an image in memory: blocks of n×n tiles
        blocks = {}
        for i, j in tiles.todo:
            blocks.setdefault((i // n, j // n), []).append((i, j))
    left = [
        BlockTask(item.path, item.stem, block, tuple(members), (tiles.low, tiles.high), key)
        for block, members in sorted(blocks.items())
        if not block_path(parts, block).is_file()
    ]
    run = len(tiles.todo)
    return TiledPlan(item, levels, level, tiles.tiling, key, source, parts, run, len(blocks), left)


def _prepare_parts(parts: Path, key: str) -> None:
    """The parts folder of this plan: kept when a killed run left it for the same plan."""
    plan_file = parts / PLAN
    try:
        same = json.loads(plan_file.read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError, AttributeError):
        same = False
    if not same:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
        with atomic_path(plan_file) as temp:
            temp.write_text(json.dumps({"key": key}), encoding="utf-8")
    for leftover in parts.glob(f"{TEMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)


def _belongs(parts: Path, key: str) -> bool:
    try:
        return json.loads((parts / PLAN).read_text(encoding="utf-8")).get("key") == key
    except (OSError, ValueError, AttributeError):
        return False


def process_blocks(tasks: Sequence[BlockTask], options: Any, root: str) -> list[dict[str, Any]]:
    """Run each block's tiles and save them; one outcome per block
    (``{"file", "status": "block" | "failed", "block", "error"}``)."""
    from ..engine.tiles import run_tiles
    from ..engine.tiling import plan_tiles, tile_stride
    from .infer import get_model

    model = get_model(options.model)
    out = OutputFolder(root)
    outcomes = []
    opened: dict[str, Levels] = {}
    for task in tasks:
        outcome = {"file": task.path, "status": "block", "block": list(task.block)}
        try:
            parts = parts_folder(out, task.stem)
            if not _belongs(parts, task.key):
                raise RuntimeError("its input or settings changed since it was planned")
            target = block_path(parts, task.block)
            if not target.is_file():
                if task.path not in opened:
                    opened[task.path] = open_levels(task.path)
                levels = opened[task.path]
                size = options.tile_size or options.input_size or model.input_size
                level = (options.level or 0) if len(levels.levels) > 1 else None
                plan = plan_tiles(
                    _image(levels), size, tile_stride(model, size), options.overlap, level,
                    task.contrast, only=task.tiles,
                )  # fmt: skip
                cache = follow_chunks(plan)  # each chunk decoded once in this block
                for done, _, result in run_tiles(model, plan, options.batch_size):  # noqa: B007
                    release_done(cache, done)
                _save_block(target, result, task)
        except Exception as error:
            outcome = {**outcome, "status": "failed", "error": f"{type(error).__name__}: {error}"}
        outcomes.append(outcome)
    return outcomes


def _save_block(target: Path, result: Any, task: BlockTask) -> None:
    with atomic_path(target) as temp, open(temp, "wb") as handle:
        np.savez(handle, **result.part(task.tiles))


def load_blocks(plan: TiledPlan) -> list[dict[str, np.ndarray]]:
    """Every saved block of ``plan`` (its :meth:`~napari_gapcam.engine.tiled_result.
    TiledResult.part`), to be merged."""
    parts = []
    for path in sorted(plan.parts.glob("block-*.npz")):
        with np.load(path) as part:
            parts.append({key: part[key] for key in part.files})
    return parts


def check_tiled(options: Any) -> dict[str, Any]:
    """:func:`~napari_gapcam.cli.infer.check_options` for ``--tiles``, and the tiles' geometry:
    ``class_names``, ``stride`` (input pixels per map cell), ``tile_size``, ``box_threshold``,
    ``note`` (the tile size or overlap adjusted: :mod:`~napari_gapcam.cli.tiling_note`)."""
    from dataclasses import replace

    from .infer import check_options, get_model

    every = options.class_ref == "all"  # every class: no class to look up
    names = check_options(replace(options, class_ref=None) if every else options)
    from ..engine.tiles import check_tiles
    from ..engine.tiling import tile_stride

    model = get_model(options.model)
    check_tiles(model)
    size = int(options.tile_size or options.input_size or model.input_size)
    if options.overlap is not None and options.overlap >= size:
        raise ValueError(
            f"--overlap {options.overlap} is not less than the tile size {size} (the model's "
            "input size): give a smaller --overlap, or a larger --tile-size."
        )
    model.check_memory((size, size), options.batch_size)
    stride = tile_stride(model, size)
    return {"class_names": names, "stride": stride, "tile_size": size,
            "box_threshold": model.box_threshold,
            "note": options_note(options, size, stride)}  # fmt: skip
