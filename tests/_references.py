"""Independent references shared by the tests (plain numpy, none of the engine's code paths)."""

from __future__ import annotations

import numpy as np
from skimage import measure

from napari_gapcam.engine.preprocess import intensity_range


def to_unit_range(image: np.ndarray, contrast_limits=None) -> np.ndarray:
    """The full-size float H×W×3 image in [0, 1]: the reference for the scaling rules."""
    low, high = intensity_range(image, contrast_limits)
    values = np.nan_to_num(np.asarray(image, np.float64), nan=low, posinf=high, neginf=low)
    span = high - low
    unit = np.clip((values - low) / span, 0, 1) if span > 0 else np.zeros_like(values)
    unit = unit[..., :3] if unit.ndim == 3 else np.repeat(unit[..., None], 3, axis=-1)
    return unit.astype(np.float32)


def reference_box_acc(maps, boxes, taus, delta):
    """BoxAcc(τ, δ) by scikit-image's 8-connected labelling and plain loops."""

    def iou(a, b):
        ih = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        iw = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ih * iw
        return ih * iw / union

    accs = []
    for tau in taus:
        correct = 0
        for heat, truth in zip(maps, boxes, strict=True):
            unit = (heat - heat.min()) / (heat.max() - heat.min())
            regions = measure.regionprops(measure.label(unit >= tau, connectivity=2))
            if any(iou(r.bbox, t) >= delta for r in regions for t in truth):
                correct += 1
        accs.append(correct / len(maps))
    return np.array(accs)


def reference_average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP over every distinct score, highest first: Σ (R_i − R_{i−1}) · P_i."""
    ap, last_recall = 0.0, 0.0
    for score in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= score
        tp = np.sum(chosen & positive)
        recall = tp / positive.sum()
        ap += (recall - last_recall) * tp / chosen.sum()
        last_recall = recall
    return ap


def reference_calibration(maps: list, truths: list, delta: float = 0.5) -> tuple[float, float]:
    """MaxBoxAccV2 (mean over δ ∈ {0.3, 0.5, 0.7} of the best BoxAcc over τ) and the lowest τ
    of the best BoxAcc at ``delta``: plain loops over 101 thresholds."""
    taus = np.linspace(0, 1, 101)
    best = {d: reference_box_acc(maps, truths, taus, d) for d in (0.3, 0.5, 0.7)}
    v2 = float(np.mean([acc.max() for acc in best.values()]))
    return v2, float(taus[int(np.argmax(best[delta]))])


def reference_object_means(heat: np.ndarray, labels: np.ndarray) -> dict[int, float]:
    """Each object's mean map value, by a plain loop over the labels."""
    return {int(k): float(heat[labels == k].mean()) for k in np.unique(labels) if k != 0}


def reference_raw_heat(result, c) -> np.ndarray:
    """A one-image result's raw map of ``c`` upsampled to the image by torch's own bilinear
    (``align_corners=False``): the scale objects are compared on."""
    import torch
    import torch.nn.functional as F

    raw = torch.from_numpy(np.asarray(result.raw_cam(c), np.float32))[None, None]
    size = tuple(result.image_shape)
    return F.interpolate(raw, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
