"""The widget's native-pixel runs: tiles in a worker, the grid overlay filling and aligned."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import TIMEOUT_MS, make_widget, run_and_wait
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL, TILES
from napari_gapcam.synthetic import make_sample


def mosaic(n: int = 2, side: int = 256, seed: int = 0):
    """``n``×``n`` synthetic scenes (RGB uint8) and each one's (class, box) in mosaic pixels."""
    rng = np.random.default_rng(seed)
    canvas, truths = np.zeros((n * side, n * side, 3), np.uint8), []
    for i in range(n):
        for j in range(n):
            image, label, (y0, x0, y1, x1) = make_sample(rng, size=(side, side))
            canvas[i * side : (i + 1) * side, j * side : (j + 1) * side] = image
            oy, ox = i * side, j * side
            truths.append((label, (y0 + oy, x0 + ox, y1 + oy, x1 + ox)))
    return canvas, truths


class CountingLevel:
    """A pyramid level that counts its reads."""

    def __init__(self, data: np.ndarray) -> None:
        self._data, self.reads = data, 0
        self.shape, self.dtype, self.ndim, self.size = data.shape, data.dtype, data.ndim, data.size

    def __getitem__(self, key):
        self.reads += 1
        return self._data[key]

    def __array__(self, *args, **kwargs):
        self.reads += 1
        return np.asarray(self._data)


def world_of_cell(layer, cell) -> np.ndarray:
    point = np.zeros(layer.ndim)
    point[-2:] = cell
    return np.asarray(layer.data_to_world(point))[-2:]


def test_tiles_over_a_scaled_translated_pyramid_find_the_objects_aligned(
    make_napari_viewer, torch_home, qtbot
):
    viewer = make_napari_viewer(show=True)  # drawn: napari picks the level it displays
    scenes, truths = mosaic()  # 512², four scenes of 256²
    level0 = CountingLevel(np.kron(scenes, np.ones((2, 2, 1), np.uint8)))  # the scenes at 2×
    pyramid = [level0, scenes, scenes[::2, ::2]]
    source = viewer.add_image(
        pyramid, name="slide", multiscale=True, rgb=True, scale=(0.5, 0.5), translate=(10, -20)
    )
    viewer.scene.camera.zoom = viewer.scene.camera.zoom / 1.6  # zoomed out: napari draws level 1
    qtbot.waitUntil(lambda: source.data_level == 1, timeout=5000)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, mode=TILES)
    level0.reads = 0  # napari may have drawn it
    run_and_wait(widget, qtbot)
    assert level0.reads == 0  # only the level displayed is read
    shown, result = widget.session.shown, widget.session.result
    assert shown.planes.level == 1 and result.image_shape == (512, 512)
    assert "level 1 of 3 (512×512)" in widget.status.value
    assert f"{shown.total} of {shown.total} tiles" in widget.status.value
    assert "mean over the tiles" in widget.predictions.value
    cam = viewer.layers["slide CAM"]
    stride = result.stride
    assert cam.data.shape == result.grids.shape[1:] == (512 // stride, 512 // stride)
    assert cam.interpolation2d == "linear"
    meta = cam.metadata["gapcam"]
    assert meta["mode"] == "tiles" and meta["level"] == 1 and meta["stride"] == stride
    # cell i's centre is level-1 pixel (i + 0.5)·stride − 0.5, i.e. level-0 data ×2
    for cell in [(0, 0), (3, 11), (15, 15)]:
        level1 = (np.array(cell) + 0.5) * stride - 0.5
        expected = np.asarray(source.data_to_world(level1 * 2))
        np.testing.assert_allclose(world_of_cell(cam, cell), expected, atol=1e-6)
    # what the user sees: each scene's class peaks inside that scene's object
    found = 0
    for label, (y0, x0, y1, x1) in truths:
        widget.class_select.value = label
        grid = np.asarray(viewer.layers["slide CAM"].data)
        p = widget.session.result.probabilities  # the mean over the tiles
        assert np.nanmax(grid) == pytest.approx(p[label] / p.max(), rel=1e-5)
        # the peak within this scene's quarter
        qy, qx = (y0 // 256) * 256 // stride, (x0 // 256) * 256 // stride
        quarter = grid[qy : qy + 256 // stride, qx : qx + 256 // stride]
        py, px = np.unravel_index(np.nanargmax(quarter), quarter.shape)
        y, x = (np.array([py + qy, px + qx]) + 0.5) * stride - 0.5
        found += y0 - stride / 2 <= y <= y1 + stride / 2 and x0 - stride / 2 <= x <= x1 + stride / 2
    assert found >= 3


def test_tiles_in_view_first_progress_cancel_and_nan_where_not_run(viewer, qtbot):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (1024, 1024), dtype=np.uint8)
    source = viewer.add_image(image, name="big", contrast_limits=(0, 255))
    viewer.scene.camera.center = (0, 900, 900)  # the user looks at the bottom right
    viewer.scene.camera.zoom = 4
    widget = make_widget(viewer, arch="resnet18", mode=TILES)
    widget.run_button.clicked.emit()
    assert widget.run_button.text == "Cancel" and widget.status.value.startswith("Running tiles")
    started = lambda: widget.session.shown is not None and widget.session.shown.done >= 8  # noqa: E731
    qtbot.waitUntil(started, timeout=TIMEOUT_MS)
    first = widget.session.result.tile_boxes[0]
    assert first[0] >= 700 and first[1] >= 700  # the tile under the canvas centre came first
    widget.run_button.clicked.emit()  # Cancel
    assert not widget.busy and widget.run_button.text == "Run"
    shown = widget.session.shown
    assert f"after {shown.done} of {shown.total} tiles" in widget.status.value
    assert shown.done < shown.total
    qtbot.waitUntil(lambda: not widget.session.draining, timeout=TIMEOUT_MS)
    grid = np.asarray(viewer.layers["big CAM"].data)
    assert np.isnan(grid[:4, :4]).all()  # the top left was never run: transparent
    assert np.isfinite(grid[26:31, 26:31]).all()  # the interior of the first tile run
    assert source in viewer.layers
    run_and_wait(widget, qtbot)  # Run works again
    assert np.isfinite(np.asarray(viewer.layers["big CAM"].data)).all()


def test_tiles_on_the_displayed_plane_of_a_stack_with_box_mask_class_and_tile_layer(viewer, qtbot):
    scenes, truths = mosaic(seed=2)
    grey = scenes.mean(-1).astype(np.uint8)
    stack = np.stack([grey[::-1], grey, grey[:, ::-1]])  # 3×512×512
    viewer.add_image(stack, name="stack", contrast_limits=(0, 255), scale=(1, 0.3, 0.3))
    viewer.dims.set_current_step(0, 1)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, mode=TILES)
    widget.show_box.value = widget.show_mask.value = widget.show_tiles.value = True
    run_and_wait(widget, qtbot)
    result = widget.session.result
    cam, stride = viewer.layers["stack CAM"], result.stride
    h, w = result.grids.shape[1:]
    assert cam.data.shape == (3, h, w)
    planes = np.asarray(cam.data)
    assert np.isnan(planes[0]).all() and np.isnan(planes[2]).all()
    assert np.nanmax(planes[1]) == pytest.approx(1.0)
    # a class change shows that class's grid (one min-max over the image)
    other = widget.class_select.choices[1]
    widget.class_select.value = other
    raw = result.raw_cam(other)
    p = result.probabilities
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * p[other] / p.max()
    np.testing.assert_allclose(np.asarray(viewer.layers["stack CAM"].data[1]), expected, atol=1e-3)
    box = viewer.layers["stack CAM box"]
    assert len(box.data) == 1 and box.metadata["gapcam"]["box"] is not None
    y0, x0, y1, x1 = box.metadata["gapcam"]["box"]  # pixels of the plane
    assert 0 <= y0 < y1 <= 512 and 0 <= x0 < x1 <= 512
    assert box.metadata["gapcam"]["box"] == result.box(other, widget.threshold.value)
    mask = np.asarray(viewer.layers["stack CAM mask"].data[1])
    np.testing.assert_array_equal(mask.astype(bool), result.mask(other, widget.threshold.value))
    widget.threshold.value = 0.8
    assert np.asarray(viewer.layers["stack CAM mask"].data[1]).sum() < mask.sum()
    tiles = viewer.layers["stack tile probability"]
    assert tiles.data.shape == (3, h, w)  # blocks on the CAM's grid: aligned with it
    np.testing.assert_allclose(tiles.scale, cam.scale)
    np.testing.assert_allclose(tiles.translate, cam.translate)
    tops = np.asarray(tiles.data[1])
    tiling = result.tiling
    for (y0, x0, _, _), p in zip(result.tile_boxes, result.tile_probabilities, strict=True):
        i, j = tiling.starts[0].index(y0 // stride), tiling.starts[1].index(x0 // stride)
        (a, b), (c, d) = tiling.kept(0, i), tiling.kept(1, j)
        np.testing.assert_allclose(tops[a:b, c:d], p.max(), rtol=1e-6)
    assert np.isfinite(tops).all()
    widget.show_tiles.value = False
    assert not tiles.visible


def test_tiles_refuse_a_method_whose_maps_do_not_stitch_and_say_why(viewer, qtbot):
    viewer.add_image(np.zeros((300, 300), np.uint8), name="img")
    widget = make_widget(viewer, arch="resnet18", mode=TILES, method="eigencam")
    run_and_wait(widget, qtbot)
    assert "Tiles need a method whose maps stitch" in widget.status.value
    assert "img CAM" not in [layer.name for layer in viewer.layers]
    assert widget.run_button.text == "Run" and widget.run_button.enabled


def test_objects_are_scored_on_the_stitched_map_of_a_tiled_run(viewer, qtbot):
    from napari_gapcam.synthetic import CLASS_NAMES

    scenes, truths = mosaic(seed=0)
    viewer.add_image(scenes, name="mosaic")
    objects = np.zeros(scenes.shape[:2], np.int32)
    for n, (_, (y0, x0, y1, x1)) in enumerate(truths):
        objects[y0:y1, x0:x1] = n + 1
    cells = viewer.add_labels(objects, name="cells")
    viewer.layers.selection.active = viewer.layers["mosaic"]
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, mode=TILES)
    widget.objects.value = cells
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: "cam_class" in cells.features, timeout=30_000)
    table = cells.features.set_index("index")
    assert sorted(table.index) == [1, 2, 3, 4]
    right = sum(
        table.loc[n + 1, "cam_class"] == CLASS_NAMES[label] for n, (label, _) in enumerate(truths)
    )
    assert right >= 3  # at native pixels, CAM pooling names most objects
    assert "4 objects in 'cells'" in widget.objects_info.value
