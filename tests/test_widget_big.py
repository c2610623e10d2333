"""The widget on big, pyramid, lazy and changing layers: bounded overlays that stay aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from _widgets import make_widget, run_and_wait
from napari_gapcam.engine.result import CamResult


def put_peak(widget, cell: tuple[int, int], cells=(7, 9)) -> tuple[float, float]:
    """Replace the result by one whose map peaks at feature ``cell``; its image position."""
    height, width = widget.session.result.image_shape
    features = torch.zeros(1, *cells)
    features[0, cell[0], cell[1]] = 1.0
    widget.session.shown.result = CamResult(
        features, torch.tensor([0.0]), torch.ones(1, 1), ["peak"], (height, width)
    )
    widget.class_select.reset_choices()
    widget.class_select.value = 0
    widget.classes.refresh()
    # bilinear, align_corners=False: cell i's centre is at pixel (i + 0.5)·H/h − 0.5
    return (cell[0] + 0.5) * height / cells[0] - 0.5, (cell[1] + 0.5) * width / cells[1] - 0.5


def world_peak(layer, centroid: bool = False) -> np.ndarray:
    """World coordinates of the overlay's brightest cell (or its mask's centroid)."""
    plane = np.asarray(layer.data)
    while plane.ndim > 2:
        plane = plane.max(0)
    if centroid:
        y, x = np.argwhere(plane).mean(0)
    else:
        y, x = np.unravel_index(np.argmax(plane), plane.shape)
    point = np.zeros(layer.ndim)
    point[-2:] = y, x
    return np.asarray(layer.data_to_world(point))[-2:]


def test_big_layer_gets_a_bounded_overlay_aligned_in_world(viewer, qtbot):
    image = np.zeros((3000, 2000), np.uint16)
    source = viewer.add_image(
        image,
        name="mosaic",
        scale=(0.4, 0.25),
        translate=(100.0, -30.0),
        rotate=25.0,
        contrast_limits=(0, 1000),
    )
    widget = make_widget(viewer, overlay_mp=0.06)
    widget.show_box.value = widget.show_mask.value = True
    run_and_wait(widget, qtbot)
    cam = viewer.layers["mosaic CAM"]
    assert cam.data.size <= 60_000 and cam.data.shape[0] / cam.data.shape[1] == pytest.approx(1.5)
    assert cam.interpolation2d == "linear"

    expected = put_peak(widget, (5, 2))
    target = np.asarray(source.data_to_world(expected))
    cell = 3000 / cam.data.shape[0] * 0.4  # one overlay cell, in world units
    np.testing.assert_allclose(world_peak(cam), target, atol=cell)
    mask = viewer.layers["mosaic CAM mask"]
    np.testing.assert_allclose(world_peak(mask, centroid=True), target, atol=2 * cell)
    # the box's centre sits on the peak too (a symmetric peak: a symmetric region)
    box = viewer.layers["mosaic CAM box"]
    centre = box.data[0].mean(0)
    world_centre = np.asarray(box.data_to_world(centre))
    np.testing.assert_allclose(world_centre, target, atol=2 * cell)
    y0, x0, y1, x1 = box.metadata["gapcam"]["box"]  # image pixels of the level read
    assert y0 <= expected[0] <= y1 and x0 <= expected[1] <= x1


def test_overlay_budget_is_a_setting(viewer, qtbot):
    viewer.add_image(data.camera(), name="cam")  # 512×512
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    layer = viewer.layers["cam CAM"]
    assert layer.data.shape == (512, 512)  # under the 1 MP default: full size
    widget.overlay_mp.value = 0.01
    assert layer.data.shape == (100, 100) and viewer.layers["cam CAM"] is layer
    np.testing.assert_allclose(layer.scale, [5.12, 5.12])
    np.testing.assert_allclose(layer.translate, [2.06, 2.06])


class CountingLevel:
    """A big pyramid level that costs nothing to hold and counts every read."""

    def __init__(self, shape, dtype) -> None:
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)
        self.size, self.reads = int(np.prod(shape)), 0
        self._zeros = np.broadcast_to(np.zeros((), self.dtype), shape)

    def __getitem__(self, key):
        self.reads += 1
        return np.ascontiguousarray(self._zeros[key])

    def __array__(self, *args, **kwargs):
        self.reads += 1
        return np.zeros(self.shape, self.dtype)


def test_multiscale_runs_on_the_smallest_sufficient_level(viewer, qtbot):
    photo = data.chelsea()  # 300×451×3
    level1 = np.kron(photo, np.ones((2, 2, 1), np.uint8))  # 600×902
    level0 = CountingLevel((2400, 3608, 3), np.uint8)
    pyramid = [level0, level1, photo, photo[::2, ::2]]
    source = viewer.add_image(
        pyramid,
        name="slide",
        multiscale=True,
        rgb=True,
        scale=(0.5, 0.5),
        rotate=10.0,
        contrast_limits=(0, 255),
    )
    widget = make_widget(viewer)
    widget.show_box.value = True
    level0.reads = 0  # napari may have drawn it
    run_and_wait(widget, qtbot)
    assert level0.reads == 0
    assert "level 2 of 4 (300×451)" in widget.status.value  # short side 300 ≥ 224 > 150
    assert widget.session.result.image_shape == (300, 451)
    expected = widget.session.model.run(photo)
    np.testing.assert_allclose(widget.session.result.logits, expected.logits, rtol=1e-4, atol=1e-4)

    # a peak at a known position of level 2 lands where napari draws that position
    peak = put_peak(widget, (1, 6))
    at_level0 = np.array(peak) * 8  # napari: level pixel p is level-0 coordinate p·factor
    target = np.asarray(source.data_to_world(at_level0))
    cam = viewer.layers["slide CAM"]
    assert cam.data.shape == (300, 451)
    np.testing.assert_allclose(world_peak(cam), target, atol=8 * 0.5 * 1.5)

    # a larger input size moves to a larger level
    widget.set_input_size_text("448")
    run_and_wait(widget, qtbot)
    assert "level 1 of 4 (600×902)" in widget.status.value
    assert tuple(widget.session.result.features.shape[-2:]) == (14, 22)


def test_lazy_stack_reads_only_the_current_plane(viewer, qtbot, chunk_reads):
    import dask.array as da

    reads = chunk_reads
    base = np.random.default_rng(0).integers(0, 4000, (40, 512, 512), dtype=np.uint16)
    lazy = reads.counted(da.from_array(base, chunks=(1, 256, 256)))
    viewer.add_image(lazy, name="timelapse", contrast_limits=(0, 4000))
    viewer.dims.set_current_step(0, 17)
    widget = make_widget(viewer)
    reads.clear()  # napari itself draws the displayed plane
    run_and_wait(widget, qtbot)
    assert set(reads) == {17}
    cam = viewer.layers["timelapse CAM"]
    # a 3D view reads all 40 planes: together at most 8 M cells (447² each), over the whole plane
    assert cam.data.shape == (40, 447, 447)
    np.testing.assert_allclose(cam.scale[1:], 512 / 447)
    assert not hasattr(cam.data, "flags")  # a lazy stack, not a 40-plane float array
    assert np.asarray(cam.data[17]).max() == pytest.approx(1.0)
    assert np.isnan(np.asarray(cam.data[16])).all()


def test_stale_result_after_the_layer_changed_shape(viewer, qtbot):
    source = viewer.add_image(data.camera()[::4, ::4], name="cells")
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    source.data = data.camera()[::2, ::2]  # the user loads another image into the layer
    widget.class_select.value = widget.class_select.choices[2]
    assert "changed shape since the run" in widget.status.value
    assert "press Run" in widget.status.value
    widget.threshold.value = 0.5
    assert "Error" not in widget.status.value
    run_and_wait(widget, qtbot)
    assert viewer.layers["cells CAM"].data.shape == (256, 256)


def test_typed_input_size_and_the_memory_guard(viewer, qtbot):
    viewer.add_image(data.camera()[::2, ::2], name="cells")
    widget = make_widget(viewer)
    assert widget.input_size.value == 0  # the model's default
    widget.set_input_size_text("320")
    assert widget.input_size.value == 320
    run_and_wait(widget, qtbot)
    assert tuple(widget.session.result.features.shape[-2:]) == (10, 10)
    assert "input 320×320, 10×10 map cells" in widget.status.value
    widget.set_input_size_text("abc")
    assert "not a number" in widget.status.value and widget.input_size.value == 320

    widget.set_input_size_text("200000")
    run_and_wait(widget, qtbot)
    assert "needs about" in widget.status.value and "smaller input size" in widget.status.value
    assert widget.run_button.enabled and widget.run_button.text == "Run"  # it keeps working
    widget.input_size.value = 0
    run_and_wait(widget, qtbot)
    assert tuple(widget.session.result.features.shape[-2:]) == (7, 7)
