"""Localization metrics of Choe et al., CVPR 2020 ("Evaluating Weakly Supervised Object
Localization Methods Right", their wsolevaluation code): BoxAcc, MaxBoxAccV2, PxAP.

For each image the map is min-max normalised to [0, 1]. At a threshold τ, the boxes are those
of every connected region (8-connectivity) of ``map ≥ τ``; an image is correct at IoU δ when
one of its boxes has IoU ≥ δ with one of its true boxes.

- ``BoxAcc(τ, δ)``: the share of correct images;
- ``MaxBoxAccV2 = mean_δ max_τ BoxAcc(τ, δ)`` over δ ∈ {0.3, 0.5, 0.7}, and the best τ per δ;
- ``PxAP``: the average precision of the pixels against true masks over all thresholds,
  ``Σ_j (R_j − R_{j+1}) · P_j`` from the highest τ down (R: recall, P: precision of the pixels
  ``map ≥ τ_j`` over every image).

Boxes are half-open ``(y0, x0, y1, x1)`` pixel boxes, as everywhere in this package. The paper's
code thresholds with ``>`` on 8-bit maps and counts box corners inclusively; here ``≥`` on float
maps and half-open boxes, as the plugin's own boxes are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .localize import Box

THRESHOLDS = np.linspace(0.0, 1.0, 101)
IOUS = (0.3, 0.5, 0.7)
EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity


def normalised(heat_map: Any) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes zeros."""
    values = np.asarray(heat_map, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def region_boxes(heat_map: np.ndarray, threshold: float) -> list[Box]:
    """Boxes of every 8-connected region of ``heat_map ≥ threshold``."""
    labels, _ = ndimage.label(heat_map >= threshold, structure=EIGHT)
    return [(r.start, c.start, r.stop, c.stop) for r, c in ndimage.find_objects(labels)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n×4) with every box of ``b`` (m×4): n×m, half-open boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom - top, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def best_ious(heat_map: Any, true_boxes: Sequence[Box], thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the highest IoU of any region's box with any true box."""
    unit = normalised(heat_map)
    truth = np.asarray(true_boxes, np.float64).reshape(-1, 4)
    best = np.zeros(len(thresholds))
    for j, tau in enumerate(thresholds):
        boxes = region_boxes(unit, float(tau))
        if boxes and len(truth):
            best[j] = box_iou(np.asarray(boxes), truth).max()
    return best


def _as_boxes(boxes: Any) -> list[Box]:
    """One box ``(y0, x0, y1, x1)`` or a list of them."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return []
    return [tuple(int(v) for v in box) for box in array.reshape(-1, 4)]


def pixel_average_precision(
    maps: Sequence[Any], masks: Sequence[Any], thresholds: np.ndarray
) -> float:
    """PxAP: average precision of ``map ≥ τ`` against the masks, pixels of all images pooled."""
    tp = np.zeros(len(thresholds))
    fp = np.zeros(len(thresholds))
    positives = 0
    for heat_map, mask in zip(maps, masks, strict=True):
        unit, mask = normalised(heat_map), np.asarray(mask, dtype=bool)
        if unit.shape != mask.shape:
            raise ValueError(f"A true mask of shape {mask.shape} for a map of {unit.shape}.")
        positives += int(mask.sum())
        # pixels at or above each threshold: counts from a histogram over the thresholds
        edges = np.searchsorted(thresholds, unit, side="right")  # thresholds ≤ value
        tp += np.bincount(edges[mask], minlength=len(thresholds) + 1)[::-1].cumsum()[::-1][1:]
        fp += np.bincount(edges[~mask], minlength=len(thresholds) + 1)[::-1].cumsum()[::-1][1:]
    if positives == 0:
        raise ValueError("The true masks hold no pixel: PxAP needs some.")
    predicted = tp + fp
    precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), 1.0)
    recall = tp / positives
    higher = np.append(recall[1:], 0.0)  # recall at the next higher threshold
    return float(np.sum((recall - higher) * precision))


def localization_metrics(
    maps: Sequence[Any],
    true_boxes: Sequence[Any],
    true_masks: Sequence[Any] | None = None,
    thresholds: Sequence[float] = tuple(THRESHOLDS),
    iou: Sequence[float] = IOUS,
) -> dict[str, Any]:
    """BoxAcc, MaxBoxAccV2 (and the best threshold per IoU) and PxAP of ``maps``.

    ``maps``: one 2D map per image (any range: each is min-max normalised); ``true_boxes``:
    per image one box ``(y0, x0, y1, x1)`` or a list of them; ``true_masks``: per image a bool
    mask of the map's shape (for PxAP). Returns ``max_box_acc_v2`` (float), ``max_box_acc``
    ({δ: value}), ``best_threshold`` ({δ: τ}), ``box_acc`` (thresholds × δ array), ``pxap``
    (float, or None without masks) and ``thresholds``.
    """
    if len(maps) != len(true_boxes):
        raise ValueError(f"{len(maps)} maps and {len(true_boxes)} true boxes: give one per map.")
    if not len(maps):
        raise ValueError("No maps: localization metrics need at least one image.")
    taus = np.asarray(thresholds, dtype=np.float64)
    ious = np.stack(
        [best_ious(m, _as_boxes(b), taus) for m, b in zip(maps, true_boxes, strict=True)]
    )
    box_acc = np.stack([(ious >= delta).mean(axis=0) for delta in iou], axis=1)  # T×D
    best = box_acc.argmax(axis=0)  # the lowest τ among ties
    max_box_acc = {float(d): float(box_acc[best[i], i]) for i, d in enumerate(iou)}
    return {
        "max_box_acc_v2": float(np.mean(list(max_box_acc.values()))),
        "max_box_acc": max_box_acc,
        "best_threshold": {float(d): float(taus[best[i]]) for i, d in enumerate(iou)},
        "box_acc": box_acc,
        "thresholds": taus,
        "pxap": None if true_masks is None else pixel_average_precision(maps, true_masks, taus),
    }
