"""Localization metrics (Choe et al., CVPR 2020): a hand-worked example and an independent
implementation (scikit-image's labelling, plain loops, AP over every distinct score)."""

from __future__ import annotations

import numpy as np
import pytest

from _references import reference_average_precision, reference_box_acc
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
