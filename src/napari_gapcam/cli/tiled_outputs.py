"""The files of a tiled run (``gapcam predict --tiles``): OME-Zarr map, per-tile CSV, GeoJSON.

- The map: an OME-Zarr (NGFF 0.4 ``multiscales``, zarr format 2, written by ``ome-zarr``) of
  float32 maps in [0, 1] (NaN where tiles were skipped): Y×X for one class, C×Y×X for ``--class
  all`` (channels named and coloured in ``omero``), with a few pyramid levels of the grid (2×2
  means, ``skimage.measure.block_reduce``). Each level's ``coordinateTransformations`` place it
  over the image's **level 0**: scale = stride × the level's downsample (× 2ᵏ for grid level
  k), translation = scale / 2 − 0.5 (cell centres), so napari opens it over the slide.
- The tiles: one CSV row per tile run (row, column, y0, x0, size in level-0 pixels, then the
  top-k classes with their probabilities, or one column per class).
- The regions: a GeoJSON FeatureCollection of the map's connected regions at or above the
  threshold as polygons in level-0 pixel coordinates ``[x, y]`` (the exact union of their cells,
  by shapely), each a QuPath annotation (``objectType``, ``classification.name``).

Every file is written under a temporary name and renamed into place. No torch here.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .outputs import TEMP_PREFIX, atomic_path, write_text_atomic
from .pages import local_reads

GRID_LEVELS = 3  # pyramid levels of the map written (fewer when the grid gets tiny)
CHUNK = 512  # cells per chunk side


def placement(cell_pixels: tuple[float, float], factor: int = 1) -> dict[str, list[float]]:
    """Scale and translation (y, x) of a grid whose cells are ``cell_pixels`` level-0 pixels
    (× ``factor`` for a downsampled grid level): cell i's centre at ``i·scale + translate``."""
    scale = [float(p * factor) for p in cell_pixels]
    return {"scale": scale, "translation": [s / 2 - 0.5 for s in scale]}


def _halve(grid: np.ndarray) -> np.ndarray:
    """2×2 means over the last two axes (NaN ignored; an all-NaN block stays NaN; an odd edge
    is padded with NaN)."""
    from skimage.measure import block_reduce

    block = (1,) * (grid.ndim - 2) + (2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        return block_reduce(grid, block, func=np.nanmean, cval=np.nan).astype(np.float32)


def _turbo_hex(count: int) -> list[str]:
    """``count`` colours spread over turbo, as the hex codes of OMERO's ``color``."""
    from ..engine.overlay import turbo_lut

    lut = np.rint(turbo_lut() * 255).astype(np.uint8)
    picks = np.linspace(0, 255, count + 2)[1:-1] if count > 1 else [255 * 0.75]
    return [bytes(lut[int(round(p))]).hex().upper() for p in picks]


def write_ome_zarr(
    final: Path,
    maps: np.ndarray,
    cell_pixels: tuple[float, float],
    channel_names: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Write ``maps`` (h×w, or C×h×w with ``channel_names``) as an OME-Zarr pyramid (NGFF 0.4,
    zarr format 2, ``ome_zarr.writer.write_multiscale``) at ``final``, atomically: into a
    temporary sibling folder renamed into place. Returns each level's ``{"path", "shape",
    "scale", "translation"}``."""
    import zarr

    with warnings.catch_warnings():  # ome-zarr's own deprecations (its Scaler) at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_multiscale

    maps = np.asarray(maps, np.float32)
    channels = maps.ndim == 3
    pyramid = [maps]
    while len(pyramid) < GRID_LEVELS and min(pyramid[-1].shape[-2:]) >= 2:
        pyramid.append(_halve(pyramid[-1]))
    lead = [1.0] * channels
    places = [placement(cell_pixels, 2**k) for k in range(len(pyramid))]
    transforms = [
        [{"type": "scale", "scale": lead + place["scale"]},
         {"type": "translation", "translation": [0.0] * channels + place["translation"]}]
        for place in places
    ]  # fmt: skip
    storage = [
        {"chunks": (1,) * channels + tuple(min(CHUNK, s) for s in level.shape[-2:]),
         "fill_value": float("nan")}
        for level in pyramid
    ]  # fmt: skip
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]  # level-0 pixels
    extra: dict[str, Any] = {}
    if channels:
        axes.insert(0, {"name": "c", "type": "channel"})
        names = list(channel_names or [])
        extra["metadata"] = {"omero": {"channels": [
            {"label": str(n), "color": color, "active": i == 0,
             "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}}
            for i, (n, color) in enumerate(zip(names, _turbo_hex(len(names)), strict=True))
        ]}}  # fmt: skip
    temp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
    try:
        group = zarr.open_group(str(temp), mode="w", zarr_format=2)
        with warnings.catch_warnings(), local_reads():  # written here, not on a cluster
            # translations need coordinate_transformations, which ome-zarr 0.12+ deprecates
            # in favour of a scale alone
            warnings.simplefilter("ignore", DeprecationWarning)
            write_multiscale(
                pyramid, group, fmt=FormatV04(), axes=axes, coordinate_transformations=transforms,
                storage_options=storage, name=final.name, **extra,
            )  # fmt: skip
        group.attrs["gapcam"] = metadata or {}
        paths = [d["path"] for d in group.attrs["multiscales"][0]["datasets"]]
        with atomic_path(final) as target:
            os.replace(temp, target)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return [
        {"path": path, "shape": list(level.shape), **place}
        for path, level, place in zip(paths, pyramid, places, strict=True)
    ]


TABLE_HEAD = ["row", "column", "y0", "x0", "size"]


def tile_table(
    tiles: Sequence[tuple[int, int]],
    boxes_level0: Sequence[tuple[int, int, int]],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    topk: int | None,
) -> str:
    """CSV: ``row, column, y0, x0, size`` (level-0 pixels), then ``class_1, probability_1, …``
    for the top ``topk`` classes, or one probability column per class when ``topk`` is None;
    one row per tile, in tile order; probabilities as ``%.6g``."""
    import pandas as pd

    order = sorted(range(len(tiles)), key=lambda n: tiles[n])
    head = np.asarray([(*tiles[n], *boxes_level0[n]) for n in order], np.int64).reshape(-1, 5)
    p = np.asarray(probabilities).reshape(len(tiles), len(class_names))[order]
    columns: dict[str, Any] = {name: head[:, i] for i, name in enumerate(TABLE_HEAD)}
    if topk is None:
        table = pd.concat(
            [pd.DataFrame(columns), pd.DataFrame(p, columns=list(class_names))], axis=1
        )
    else:
        best = np.argsort(-p, axis=1, kind="stable")[:, : min(topk, len(class_names))]
        names = np.asarray(list(class_names), dtype=object)
        for k in range(best.shape[1]):
            columns[f"class_{k + 1}"] = names[best[:, k]]
            columns[f"probability_{k + 1}"] = np.take_along_axis(p, best[:, k : k + 1], 1)[:, 0]
        table = pd.DataFrame(columns)
    return table.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def _cells_polygon(region: np.ndarray, origin: tuple[int, int], cell: tuple[float, float]) -> Any:
    """The exact union of a region's cells (True in ``region``, whose [0, 0] is grid cell
    ``origin``) as squares of ``cell`` level-0 pixels: one box per run of cells in a row, unioned
    by shapely (holes become interior rings); the exterior counter-clockwise (RFC 7946)."""
    import shapely
    from shapely.geometry.polygon import orient

    edges = np.diff(np.pad(region.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    starts, stops = np.argwhere(edges == 1), np.argwhere(edges == -1)  # row-major, paired
    (top, left), (sy, sx) = origin, cell
    rows = top + starts[:, 0]
    boxes = shapely.box(
        np.round((left + starts[:, 1]) * sx, 2), np.round(rows * sy, 2),
        np.round((left + stops[:, 1]) * sx, 2), np.round((rows + 1) * sy, 2),
    )  # fmt: skip
    outline = shapely.simplify(shapely.union_all(boxes), 0.0)  # no vertex along a straight edge
    return orient(outline, sign=1.0)


def region_features(
    cam_grid: np.ndarray,
    threshold: float,
    cell_pixels: tuple[float, float],
    class_name: str,
    min_cells: int = 1,
) -> list[dict[str, Any]]:
    """Each region of ``cam_grid ≥ threshold · max`` (NaN: outside; the regions of the
    plugin's boxes, :func:`~napari_gapcam.engine.localize.boxes_from_map`) as a GeoJSON Polygon
    Feature in level-0 pixels: the exact outline of its cells (so its area is ``area_px``),
    holes as interior rings; a QuPath annotation of ``class_name``."""
    from scipy import ndimage
    from shapely.geometry import mapping

    grid = np.nan_to_num(np.asarray(cam_grid, np.float32), nan=0.0)
    if not grid.max() > grid.min():
        return []
    labels, _ = ndimage.label(grid >= threshold * grid.max())
    total = float(grid.sum())  # a region's share of the map's mass, as the widget labels it
    features = []
    sy, sx = cell_pixels
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[found] == index
        cells = int(region.sum())
        if cells < min_cells:
            continue
        polygon = _cells_polygon(region, (found[0].start, found[1].start), (sy, sx))
        values = np.asarray(cam_grid)[found][region]
        measurements = {
            "cells": cells,
            "area_px": cells * sy * sx,
            "share": float(grid[found][region].sum()) / total if total else 0.0,
            "max_cam": float(np.nanmax(values)),
            "mean_cam": float(np.nanmean(values)),
        }
        properties = {
            "objectType": "annotation",
            "classification": {"name": class_name},
            "name": f"{class_name} {index}",
            "measurements": measurements,
        }
        geometry = mapping(polygon)
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{class_name}/{index}/{found}")),
                "geometry": {
                    "type": geometry["type"],
                    "coordinates": [[list(xy) for xy in ring] for ring in geometry["coordinates"]],
                },
                "properties": properties,
            }
        )
    return features


def write_geojson(final: Path, features: list[dict[str, Any]]) -> None:
    write_text_atomic(final, json.dumps({"type": "FeatureCollection", "features": features}))


def write_csv(final: Path, text: str) -> None:
    write_text_atomic(final, text)
