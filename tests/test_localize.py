"""Boxes and masks from hand-made maps (the 20 %-of-max rule of Zhou et al. 2016)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_gapcam import boxes_from_map, mask_from_map
from napari_gapcam.engine.result import CamResult


def two_blobs() -> np.ndarray:
    heat = np.zeros((40, 60), np.float32)
    heat[5:10, 5:12] = 1.0  # small and hottest: 35 px
    heat[20:35, 30:50] = 0.6  # large and warm: 300 px
    return heat


def test_largest_component_wins():
    mask = mask_from_map(two_blobs(), 0.2)
    assert mask.sum() == 300 and mask[25, 40] and not mask[7, 7]
    assert boxes_from_map(two_blobs(), 0.2)[0] == (20, 30, 35, 50)


def test_all_boxes_largest_first_and_min_area():
    assert boxes_from_map(two_blobs(), 0.2) == [(20, 30, 35, 50), (5, 5, 10, 12)]
    assert boxes_from_map(two_blobs(), 0.2, min_area=100) == [(20, 30, 35, 50)]


def test_threshold_edges():
    heat = two_blobs()
    # a pixel exactly at threshold·max is kept (≥)
    assert boxes_from_map(heat, 0.6)[0] == (20, 30, 35, 50)
    # just above it, only the hottest blob remains
    assert boxes_from_map(heat, 0.61) == [(5, 5, 10, 12)]
    assert mask_from_map(heat, 1.0).sum() == 35
    assert mask_from_map(heat, 0.0).all()  # everything ≥ 0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            mask_from_map(heat, bad)


def test_constant_map_has_no_box():
    for value in (0.0, 0.7):
        flat = np.full((10, 10), value, np.float32)
        assert not mask_from_map(flat).any()
        assert boxes_from_map(flat) == []


def test_diagonal_pixels_are_separate_components():
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = heat[1, 1] = heat[2, 2] = 1.0
    assert len(boxes_from_map(heat, 0.5)) == 3  # scipy.ndimage.label's default 4-connectivity


def test_result_box_and_mask_in_image_pixels():
    """One feature map with a hot 2×2 patch: the box is that patch, scaled to the image."""
    features = torch.zeros(1, 8, 8)
    features[0, 2:4, 4:6] = 1.0
    result = CamResult(features, torch.tensor([0.0]), torch.ones(1, 1), ["thing"], (80, 80))
    y0, x0, y1, x1 = result.box("thing", threshold=0.5)
    assert (y0, x0, y1, x1) == (20, 40, 40, 60)  # half-open, image pixels
    mask = result.mask(0, threshold=0.5)
    assert mask.shape == (80, 80) and mask[30, 50] and not mask[50, 50]
    rows, cols = np.nonzero(mask)  # the box is the mask's bounding box
    assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == (y0, x0, y1, x1)
    assert result.boxes(0, threshold=0.5) == [(y0, x0, y1, x1)]


def test_result_box_of_a_constant_map_is_none():
    result = CamResult(torch.ones(1, 4, 4), torch.tensor([0.0]), torch.ones(1, 1), ["x"], (16, 16))
    assert result.box(0) is None and not result.mask(0).any() and result.boxes(0) == []
