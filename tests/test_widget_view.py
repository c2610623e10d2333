"""Docking the widget narrows napari's canvas: an image napari had fitted stays whole (its sides
no longer cut off until Home); a view the user zoomed into stays as they left it."""

from __future__ import annotations

import numpy as np

from _widgets import TIMEOUT_MS
from napari_gapcam._napari.camera import camera
from napari_gapcam._napari.keep_view import shows_whole
from napari_gapcam._napari.widget import GapCamWidget


def _viewer_with_scene(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)  # a laptop screen
    viewer.add_image(np.zeros((2048, 2048), np.uint8), name="scene")
    qtbot.waitUntil(lambda: viewer.canvas.size[1] > 800, timeout=TIMEOUT_MS)
    viewer.reset_view()  # as napari fits the first layer
    return viewer


def test_docking_keeps_a_fitted_image_whole(make_napari_viewer, qtbot):
    viewer = _viewer_with_scene(make_napari_viewer, qtbot)
    width = viewer.canvas.size[1]
    assert shows_whole(viewer, viewer.canvas.size)
    viewer.window.add_dock_widget(GapCamWidget(viewer), area="right")
    qtbot.waitUntil(lambda: viewer.canvas.size[1] < width - 200, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: shows_whole(viewer, viewer.canvas.size), timeout=5000)
    # the image fills the narrower canvas as napari fits it: 95 % of its shorter side
    filled = camera(viewer).zoom * 2048 / min(viewer.canvas.size)
    assert 0.9 < filled <= 1.0


def test_a_view_the_user_zoomed_into_stays(make_napari_viewer, qtbot):
    viewer = _viewer_with_scene(make_napari_viewer, qtbot)
    width = viewer.canvas.size[1]
    camera(viewer).zoom, camera(viewer).center = 2.0, (0, 300, 400)  # a detail
    viewer.window.add_dock_widget(GapCamWidget(viewer), area="right")
    qtbot.waitUntil(lambda: viewer.canvas.size[1] < width - 200, timeout=TIMEOUT_MS)
    qtbot.wait(100)
    assert camera(viewer).zoom == 2.0 and tuple(camera(viewer).center[-2:]) == (300, 400)
