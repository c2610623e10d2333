"""Defects a user met, each fixed with a test that failed before the fix."""

from __future__ import annotations

import numpy as np
from skimage import data

from _widgets import TIMEOUT_MS, make_widget, run_and_wait
from napari_gapcam._napari.camera import camera
from napari_gapcam._napari.widget import ALL


def test_closing_the_viewer_during_a_run_raises_nothing(make_napari_viewer, qtbot, torch_home):
    viewer = make_napari_viewer()
    stack = np.stack([data.camera()[::8, ::8]] * 24)
    viewer.add_image(stack, name="long", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    widget.show_box.value = True
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.session.shown is not None, timeout=TIMEOUT_MS)
    viewer.close()  # pytest-qt fails the test on any exception raised in a Qt callback
    qtbot.waitUntil(lambda: not widget.busy and not widget.session.draining, timeout=TIMEOUT_MS)
    qtbot.wait(300)  # the run's last batch arrives after the close


def test_a_box_layer_the_user_deleted_stays_deleted(viewer, qtbot):
    viewer.add_image(data.camera()[::4, ::4], name="cam")
    widget = make_widget(viewer)
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    viewer.layers.remove("cam CAM box")
    assert not widget.show_box.value  # the toggle says what is shown
    widget.threshold.value = 0.6
    assert "cam CAM box" not in viewer.layers
    widget.show_box.value = True  # and ticking it again brings the box back
    assert "cam CAM box" in viewer.layers


def test_the_offline_way_on_names_the_whole_menu_path():
    from napari_gapcam._napari.status import WAYS_ON

    assert "File ▸ Open Sample ▸ GAP-CAM ▸ Synthetic shapes" in WAYS_ON


def _label_columns(shot: np.ndarray, top: int) -> np.ndarray:
    """Columns of yellow text pixels in the line under the box's top edge (row ``top``)."""
    yellow = (shot[..., 0] > 150) & (shot[..., 1] > 150) & (shot[..., 2] < 100)
    band = yellow[top + 4 : top + 24]
    band = band[:, band.sum(0) < band.shape[0] - 2]  # not the box's vertical edges
    return np.nonzero(band.any(0))[0]


def test_a_box_label_stays_on_the_canvas_when_the_box_does_not(make_napari_viewer, qtbot):
    from napari_gapcam._napari.overlay_layers import Overlays, Placement

    viewer = make_napari_viewer(show=True)
    source = viewer.add_image(np.zeros((256, 256), np.uint8), name="img")
    overlays = Overlays(viewer)
    placement = Placement((256, 256), (1.0, 1.0), (0.0, 0.0), (-2, -1))
    overlays.show_box(source, (100, 0, 200, 256), (), placement, "Egyptian cat 0.48", {})
    layer = viewer.layers["img CAM box"]
    for centre in ((140, 200), (140, 60), (140, 128)):  # the box runs off one side, the other, both
        camera(viewer).zoom, camera(viewer).center = 4.0, centre
        qtbot.wait(50)
        shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
        top = int(round(layer._data_to_world((99.5, 0))[0] - centre[0]) * 4 + shot.shape[0] / 2)
        columns = _label_columns(shot, top)
        assert len(columns) > 60, centre  # the whole label is drawn …
        assert columns.min() >= 2 and columns.max() <= shot.shape[1] - 3, centre  # … in view


def test_all_regions_draw_no_label_wider_than_its_box():
    from napari.components import ViewerModel

    from napari_gapcam._napari.overlay_layers import Overlays, Placement

    viewer = ViewerModel()
    source = viewer.add_image(np.zeros((256, 256), np.uint8), name="img")
    camera(viewer).zoom = 1.0
    placement = Placement((256, 256), (1.0, 1.0), (0.0, 0.0), (-2, -1))
    boxes, labels = [(10, 10, 120, 200), (200, 200, 210, 212)], ["disk 92 %", "disk 0 %"]
    overlays = Overlays(viewer)  # kept: napari holds its callbacks weakly
    overlays.show_boxes(source, boxes, (), placement, labels, {})
    layer = viewer.layers["img CAM box"]
    assert list(layer.features["label"]) == labels
    assert list(layer.features["shown"]) == ["disk 92 %", ""]  # 12 px wide: no room
    camera(viewer).zoom = 8.0  # zoomed in, the small box has room
    assert list(layer.features["shown"]) == labels


def test_overlays_sit_just_above_their_source_and_follow_it(viewer, qtbot):
    from _widgets import layer_rows

    lower = viewer.add_image(data.camera()[::4, ::4], name="lower")
    viewer.add_image(data.camera()[::4, ::4][::-1], name="upper")
    viewer.layers.selection.active = lower
    widget = make_widget(viewer)
    widget.show_box.value = widget.show_mask.value = True
    viewer.layers.selection.active = viewer.layers["upper"]  # active elsewhere when it ends
    widget.image.value = lower
    run_and_wait(widget, qtbot)
    qtbot.wait(50)
    # the layer list, top to bottom: the upper image, then the lower one's overlays over it
    assert layer_rows(viewer) == ["upper", "lower CAM box", "lower CAM mask", "lower CAM", "lower"]
    viewer.layers.move(viewer.layers.index(lower), len(viewer.layers))  # the user lifts it
    qtbot.wait(50)
    assert layer_rows(viewer) == ["lower CAM box", "lower CAM mask", "lower CAM", "lower", "upper"]
