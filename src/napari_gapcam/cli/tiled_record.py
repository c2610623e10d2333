"""A tiled input's last step: its saved blocks merged into one result, its files, its record.

Runs in the run's own process once every block of the input is saved
(:mod:`~napari_gapcam.cli.tile_blocks`): the blocks' grids make one
:class:`~napari_gapcam.engine.tiled_result.TiledResult` (one min-max over the whole image), from
which come the OME-Zarr map, the per-tile CSV and the GeoJSON regions
(:mod:`~napari_gapcam.cli.tiled_outputs`), written into the run's staging folder; the run lands
them with the record (:meth:`~napari_gapcam.cli.store.Store.land`), then deletes the blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .infer import class_ref
from .outputs import OutputFolder
from .tile_blocks import TiledPlan, load_blocks
from .tiled_outputs import region_features, tile_table, write_csv, write_geojson, write_ome_zarr
from .verify import complete, output_files


def tiled_paths(out: OutputFolder, stem: str) -> dict[str, Path]:
    return {
        "cam": out.root / f"{stem}_cam.ome.zarr",
        "tiles": out.root / f"{stem}_tiles.csv",
        "regions": out.root / f"{stem}_regions.geojson",
    }


def finish_tiled(
    plan: TiledPlan,
    options: Any,
    out: OutputFolder,
    class_names: list[str],
    threshold: float,
) -> dict[str, Any]:
    """Merge ``plan``'s blocks, write its files and its record; returns the outcome."""
    from ..engine.maps import class_index
    from ..engine.tiled_result import TiledResult

    tiling, stride = plan.tiling, plan.tiling.stride
    parts = load_blocks(plan)
    result = TiledResult.merged(parts, tiling, class_names, plan.level, plan.skipped)
    grids, tiles, probabilities, boxes = (
        result.grids,
        result.tiles,
        result.tile_probabilities,
        result.tile_boxes,
    )
    dy, dx = plan.levels.downsample(plan.level)
    cell = (stride * dy, stride * dx)  # level-0 pixels per grid cell
    top = result.topk(options.topk)
    reference = class_ref(options.class_ref, class_names)
    every = reference == "all"
    best = top[0][0] if top else 0  # no tile run (all background): the first class
    index = best if every or reference is None else class_index(class_names, reference)
    grid = tuple(grids.shape[1:])
    chosen = list(range(len(class_names))) if every else [index]
    maps = [result.cam(c, grid) for c in chosen]
    paths = tiled_paths(out, plan.item.stem)
    meta = {
        "class": "all" if every else class_names[index],
        "stride": stride,
        "level": plan.level,
        "cell_pixels": list(cell),
    }
    staged = {key: out.target(path) for key, path in paths.items()}
    levels = write_ome_zarr(
        staged["cam"],
        np.stack(maps) if every else maps[0],
        cell,
        class_names if every else None,
        meta,
    )
    level0 = [
        (round(y0 * dy), round(x0 * dx), round(tiling.tile_size * dy)) for y0, x0, *_ in boxes
    ]
    topk = None if options.all_probabilities else options.topk
    write_csv(staged["tiles"], tile_table(tiles, level0, probabilities, class_names, topk))
    features = []
    for c, cam in zip(chosen, maps, strict=True):
        features.extend(region_features(cam, threshold, cell, class_names[c]))
    write_geojson(staged["regions"], features)
    missing = [path.name for path in staged.values() if not complete(path)]
    if missing:  # never a record for outputs that are not all there
        raise OSError(f"{', '.join(missing)} vanished after being written")
    box = result.box(index, threshold)
    if box is not None:
        box = [round(box[0] * dy), round(box[1] * dx), round(box[2] * dy), round(box[3] * dx)]
    h0, w0 = plan.levels.shapes[0]
    record = {
        "file": plan.item.path,
        "stem": plan.item.stem,
        "input": plan.source,
        "outputs": (names := {key: out.name_of(path) for key, path in paths.items()}),
        "output_files": output_files(out.written, names.values()),
        "shape": [h0, w0],
        "level": plan.level,
        "level_shape": list(tiling.image_shape),
        "tiles": {
            "size": tiling.tile_size,
            "stride": stride,
            "overlap_cells": 2 * tiling.margin,
            "grid": [len(tiling.starts[0]), len(tiling.starts[1])],
            "run": len(tiles),
            "skipped": plan.skipped,
            "blocks": plan.blocks,
        },
        "map": {"shape": list(grid), "cell_pixels": list(cell), "levels": levels},
        "pages": 1,
        "threshold": threshold,
        "regions": len(features),
        "results": [
            {
                "topk": [{"index": i, "name": n, "probability": p} for i, n, p in top],
                "class": {
                    "index": index,
                    "name": class_names[index],
                    "probability": float(result.probabilities[index]),
                },
                "box": box,  # level-0 pixels
            }
        ],
        "settings": options.settings(),
    }
    return {
        "file": plan.item.path,
        "status": "done",
        "record": record,
        "stage": str(out.written),
        "input_key": None,  # a slide is checked in full (a stat, above 1 MiB)
        "parts": str(plan.parts),  # deleted once landed
    }
