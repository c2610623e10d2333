"""Boxes and masks from a heat map: the thresholding rule of Zhou et al. 2016, §3.

Keep the pixels where ``map ≥ threshold · max`` (default 20 % of the max), take connected
components (scipy.ndimage), and report the largest one, or all above a minimum area.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open, in pixels


def _labelled_regions(heat_map: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Component labels of the thresholded map and each component's area (index 0 = label 1)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a fraction of the max in [0, 1], got {threshold}.")
    heat_map = np.asarray(heat_map, dtype=np.float32)
    if heat_map.ndim != 2:
        raise ValueError(f"Expected a 2D map, got shape {heat_map.shape}.")
    if heat_map.size == 0 or not heat_map.max() > heat_map.min():
        # A constant map (e.g. an untrained class) singles nothing out.
        return np.zeros(heat_map.shape, dtype=np.int32), np.zeros(0, dtype=np.int64)
    labels, count = ndimage.label(heat_map >= threshold * heat_map.max())
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return labels, areas


def largest_region(heat_map: np.ndarray, threshold: float = 0.2) -> tuple[np.ndarray, Box | None]:
    """The largest connected region where ``map ≥ threshold · max``: bool mask and its box.

    One labelling for both; an empty mask and ``None`` for a constant map.
    """
    labels, areas = _labelled_regions(heat_map, threshold)
    if areas.size == 0:
        return np.zeros(labels.shape, dtype=bool), None
    label = int(np.argmax(areas)) + 1
    rows, cols = ndimage.find_objects(labels, max_label=label)[label - 1]
    return labels == label, (rows.start, cols.start, rows.stop, cols.stop)


def mask_from_map(heat_map: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Bool mask of the largest connected region where ``map ≥ threshold · max``.

    Empty for a constant map.
    """
    return largest_region(heat_map, threshold)[0]


def boxes_from_map(heat_map: np.ndarray, threshold: float = 0.2, min_area: int = 1) -> list[Box]:
    """Bounding boxes of the regions of at least ``min_area`` pixels, largest first.

    Boxes are ``(y0, x0, y1, x1)`` with ``y1``/``x1`` exclusive. Empty for a constant map.
    """
    labels, areas = _labelled_regions(heat_map, threshold)
    slices = ndimage.find_objects(labels)
    order = np.argsort(-areas, kind="stable")
    return [
        (slices[i][0].start, slices[i][1].start, slices[i][0].stop, slices[i][1].stop)
        for i in order
        if areas[i] >= min_area
    ]


MAX_REGIONS = 100  # the largest regions reported; a noisy map at a low threshold has many


def regions_with_shares(
    heat_map: np.ndarray, threshold: float = 0.2, min_area: float = 1
) -> list[tuple[Box, float]]:
    """``(box, share of the map's mass)`` of every region of ``map ≥ threshold·max`` of at
    least ``min_area`` pixels (cells of the map), largest first (at most ``MAX_REGIONS``)."""
    heat = np.nan_to_num(np.asarray(heat_map, np.float64))
    if heat.size == 0 or not heat.max() > heat.min():
        return []
    labels, count = ndimage.label(heat >= threshold * heat.max())
    if not count:
        return []
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones_like(heat), labels, index)
    mass = ndimage.sum_labels(heat, labels, index)
    total = heat.sum()
    slices = ndimage.find_objects(labels)
    order = np.argsort(-areas, kind="stable")
    return [
        (
            (slices[i][0].start, slices[i][1].start, slices[i][0].stop, slices[i][1].stop),
            float(mass[i] / total) if total > 0 else 0.0,
        )
        for i in order[:MAX_REGIONS]
        if areas[i] >= min_area
    ]
