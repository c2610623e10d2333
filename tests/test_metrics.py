"""Localization metrics (Choe et al., CVPR 2020): a hand-worked example and an independent
implementation (scikit-image's labelling, plain loops, AP over every distinct score)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure

from napari_gapcam import localization_metrics

A = np.array(  # the object (true box rows 1–2, columns 1–2) and a weaker blob on the right
    [[0, 0, 0, 0, 0, 0], [0, 9, 9, 0, 0, 0], [0, 9, 9, 0, 0, 4], [0, 0, 0, 0, 0, 4]], float
)
B = np.array([[4] * 4, [4] * 4, [1] * 4, [0] * 4], float)  # true box: rows 0–1
C = np.zeros((4, 4))
C[0, 0] = 1  # the map peaks away from the object (rows 2–3, columns 2–3)
MAPS = [A, B, C]
BOXES = [(1, 1, 3, 3), [(0, 0, 2, 4)], (2, 2, 4, 4)]


def test_a_hand_worked_example():
    """τ = 0: every map is one whole-image box (IoU 1/6, 1/2, 1/4). τ ∈ (0, 0.25]: A's object
    box (IoU 1), B's rows 0–2 (2/3), C's peak (0). τ ∈ (0.25, 0.44]: B's rows 0–1 (IoU 1)."""
    metrics = localization_metrics(MAPS, BOXES)
    taus = metrics["thresholds"]
    assert len(taus) == 101 and taus[0] == 0 and taus[-1] == 1
    acc = metrics["box_acc"]  # thresholds × (0.3, 0.5, 0.7)
    np.testing.assert_allclose(acc[0], [1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(acc[taus.searchsorted(0.2)], [2 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(acc[taus.searchsorted(0.3)], [2 / 3, 2 / 3, 2 / 3])
    assert metrics["max_box_acc"] == pytest.approx({0.3: 2 / 3, 0.5: 2 / 3, 0.7: 2 / 3})
    assert metrics["best_threshold"] == pytest.approx({0.3: 0.01, 0.5: 0.01, 0.7: 0.26})
    assert metrics["max_box_acc_v2"] == pytest.approx(2 / 3)
    assert metrics["pxap"] is None


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


def test_against_an_independent_implementation():
    rng = np.random.default_rng(0)
    maps, boxes, masks = [], [], []
    for _ in range(12):
        h, w = rng.integers(12, 30, 2)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        y1, x1 = y0 + rng.integers(3, h // 2), x0 + rng.integers(3, w // 2)
        heat = rng.random((h, w)) * 0.6
        heat[y0:y1, x0:x1] += rng.random() * 0.8
        heat = np.round(heat / heat.max() * 20) / 20  # scores on the threshold grid, for AP
        maps.append(heat)
        boxes.append([(int(y0), int(x0), int(y1), int(x1))])
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True
        masks.append(mask)
    metrics = localization_metrics(maps, boxes, masks)
    taus = metrics["thresholds"]
    for i, delta in enumerate((0.3, 0.5, 0.7)):
        np.testing.assert_allclose(
            metrics["box_acc"][:, i], reference_box_acc(maps, boxes, taus, delta)
        )
    scores = np.concatenate([((m - m.min()) / (m.max() - m.min())).ravel() for m in maps])
    positive = np.concatenate([m.ravel() for m in masks])
    assert metrics["pxap"] == pytest.approx(reference_average_precision(scores, positive))
    assert 0 < metrics["pxap"] < 1 and 0 < metrics["max_box_acc_v2"] <= 1


def test_bad_input_says_what_is_wrong():
    with pytest.raises(ValueError, match="2 maps and 1 true boxes"):
        localization_metrics([A, B], [BOXES[0]])
    with pytest.raises(ValueError, match="no pixel"):
        localization_metrics([A], [BOXES[0]], [np.zeros(A.shape, bool)])
