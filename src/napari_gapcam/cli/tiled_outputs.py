"""The files of a tiled run (``gapcam predict --tiles``): OME-Zarr map, per-tile CSV, GeoJSON.

- The map: an OME-Zarr (NGFF 0.4 ``multiscales``, zarr format 2) of float32 maps in [0, 1]
  (NaN where tiles were skipped): Y×X for one class, C×Y×X for ``--class all``, with a few
  pyramid levels of the grid (2×2 means). Each level's ``coordinateTransformations`` place it
  over the image's **level 0**: scale = stride × the level's downsample (× 2ᵏ for grid level
  k), translation = scale / 2 − 0.5 (cell centres), so napari opens it over the slide.
- The tiles: one CSV row per tile run (row, column, y0, x0, size in level-0 pixels, then the
  top-k classes with their probabilities, or one column per class).
- The regions: a GeoJSON FeatureCollection of the map's connected regions at or above the
  threshold as polygons in level-0 pixel coordinates ``[x, y]``, each a QuPath annotation
  (``objectType``, ``classification.name``).

Every file is written under a temporary name and renamed into place. No torch here.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .outputs import TEMP_PREFIX, atomic_path, write_text_atomic

GRID_LEVELS = 3  # pyramid levels of the map written (fewer when the grid gets tiny)
CHUNK = 512  # cells per chunk side


def placement(cell_pixels: tuple[float, float], factor: int = 1) -> dict[str, list[float]]:
    """Scale and translation (y, x) of a grid whose cells are ``cell_pixels`` level-0 pixels
    (× ``factor`` for a downsampled grid level): cell i's centre at ``i·scale + translate``."""
    scale = [float(p * factor) for p in cell_pixels]
    return {"scale": scale, "translation": [s / 2 - 0.5 for s in scale]}


def _halve(grid: np.ndarray) -> np.ndarray:
    """2×2 means over the last two axes (NaN ignored; an all-NaN block stays NaN)."""
    h, w = grid.shape[-2:]
    padded = np.full((*grid.shape[:-2], h + h % 2, w + w % 2), np.nan, np.float32)
    padded[..., :h, :w] = grid
    blocks = padded.reshape(*grid.shape[:-2], padded.shape[-2] // 2, 2, padded.shape[-1] // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        return np.nanmean(blocks, axis=(-3, -1)).astype(np.float32)


def write_ome_zarr(
    final: Path,
    maps: np.ndarray,
    cell_pixels: tuple[float, float],
    channel_names: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Write ``maps`` (h×w, or C×h×w with ``channel_names``) as an OME-Zarr pyramid at
    ``final`` (atomically); returns each level's ``{"path", "shape", "scale", "translation"}``."""
    import zarr

    maps = np.asarray(maps, np.float32)
    channels = maps.ndim == 3
    temp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
    temp.mkdir()
    datasets, written = [], []
    level = maps
    for k in range(GRID_LEVELS):
        if k and min(level.shape[-2:]) < 2:
            break
        place = placement(cell_pixels, 2**k)
        chunks = (1,) * channels + tuple(min(CHUNK, s) for s in level.shape[-2:])
        array = zarr.open_array(
            str(temp / str(k)), mode="w", shape=level.shape, chunks=chunks, dtype="f4",
            fill_value=float("nan"), zarr_format=2,
        )  # fmt: skip
        array[...] = level
        lead = [1.0] * channels
        datasets.append({
            "path": str(k),
            "coordinateTransformations": [
                {"type": "scale", "scale": lead + place["scale"]},
                {"type": "translation", "translation": [0.0] * channels + place["translation"]},
            ],
        })  # fmt: skip
        written.append({"path": str(k), "shape": list(level.shape), **place})
        level = _halve(level)
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]  # level-0 pixels
    if channels:
        axes.insert(0, {"name": "c", "type": "channel"})
    attrs: dict[str, Any] = {
        "multiscales": [{"version": "0.4", "name": final.name, "axes": axes, "datasets": datasets}],
        "gapcam": metadata or {},
    }
    if channels:
        attrs["omero"] = {
            "channels": [{"label": str(n), "window": {"start": 0.0, "end": 1.0, "min": 0.0,
                          "max": 1.0}, "active": i == 0} for i, n in enumerate(channel_names or [])]
        }  # fmt: skip
    (temp / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (temp / ".zattrs").write_text(json.dumps(attrs, indent=1))
    with atomic_path(final) as target:
        os.replace(temp, target)
    return written


def tile_table(
    tiles: Sequence[tuple[int, int]],
    boxes_level0: Sequence[tuple[int, int, int]],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    topk: int | None,
) -> str:
    """CSV: ``row, column, y0, x0, size`` (level-0 pixels), then ``class_1, probability_1, …``
    for the top ``topk`` classes, or one probability column per class when ``topk`` is None."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if topk is None:
        writer.writerow(["row", "column", "y0", "x0", "size", *class_names])
    else:
        k = min(topk, len(class_names))
        ranked = [f"{name}_{n}" for n in range(1, k + 1) for name in ("class", "probability")]
        writer.writerow(["row", "column", "y0", "x0", "size", *ranked])
    order = sorted(range(len(tiles)), key=lambda n: tiles[n])
    for n in order:
        p = probabilities[n]
        head = [*tiles[n], *boxes_level0[n]]
        if topk is None:
            writer.writerow([*head, *(f"{v:.6g}" for v in p)])
        else:
            best = np.argsort(-p, kind="stable")[: min(topk, len(class_names))]
            writer.writerow([*head, *(v for i in best for v in (class_names[i], f"{p[i]:.6g}"))])
    return buffer.getvalue()


def region_features(
    cam_grid: np.ndarray,
    threshold: float,
    cell_pixels: tuple[float, float],
    class_name: str,
    min_cells: int = 1,
) -> list[dict[str, Any]]:
    """Each region of ``cam_grid ≥ threshold · max`` (NaN: outside; the regions of the
    plugin's boxes, :func:`~napari_gapcam.engine.localize.boxes_from_map`) as a GeoJSON Polygon
    Feature in level-0 pixels (its outline through the middles of the cells' outer edges,
    holes as inner rings), a QuPath annotation of ``class_name``."""
    from scipy import ndimage
    from skimage.measure import find_contours

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
        padded = np.pad(region, 1).astype(np.float32)
        # corners at 0.5 offsets: a contour at 0.5 runs along cell edges (cut at diagonals)
        rings = []
        for contour in find_contours(padded, 0.5):
            y = (contour[:, 0] - 1 + found[0].start + 0.5) * sy
            x = (contour[:, 1] - 1 + found[1].start + 0.5) * sx
            ring = [[round(float(a), 2), round(float(b), 2)] for a, b in zip(x, y, strict=True)]
            if ring[0] != ring[-1]:
                ring.append(ring[0])
            if len(ring) >= 4:
                rings.append(ring)
        if not rings:
            continue
        rings.sort(key=lambda r: -abs(_area(r)))  # the outline first, then the holes
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
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{class_name}/{index}/{found}")),
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": properties,
            }
        )
    return features


def _area(ring: Sequence[Sequence[float]]) -> float:
    x, y = np.asarray(ring, np.float64).T
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def write_geojson(final: Path, features: list[dict[str, Any]]) -> None:
    write_text_atomic(final, json.dumps({"type": "FeatureCollection", "features": features}))


def write_csv(final: Path, text: str) -> None:
    write_text_atomic(final, text)
