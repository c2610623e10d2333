"""The widget's object features: per-object CAM scores on a Labels layer, and their colours."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import make_widget, run_and_wait
from napari_gapcam._objects import COLOURS
from napari_gapcam._widget import DEMO, DEMO_MODEL
from napari_gapcam.synthetic import CLASS_NAMES, make_sample


@pytest.fixture
def viewer(make_napari_viewer, torch_home):
    return make_napari_viewer()


def scene(seed: int = 3, size=(224, 288)):
    image, label, box = make_sample(np.random.default_rng(seed), size=size)
    return image, label, box


def demo_widget(viewer, **settings):
    return make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, **settings)


def test_objects_get_cam_columns_on_hover_and_colours_by_cam_class(viewer, qtbot):
    image, label, (y0, x0, y1, x1) = scene()
    viewer.add_image(image, name="scene")
    objects = np.zeros(image.shape[:2], np.int32)
    objects[y0:y1, x0:x1] = 7  # the object
    objects[:20, :20] = 3  # a background corner
    cells = viewer.add_labels(objects, name="cells")
    viewer.layers.selection.active = viewer.layers["scene"]
    widget = demo_widget(viewer)
    widget.objects.value = cells
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: "cam_class" in cells.features, timeout=30_000)
    table = cells.features.set_index("index")
    assert sorted(table.index) == [3, 7]
    assert table.loc[7, "cam_class"] == CLASS_NAMES[label]  # CAM pooling names the object
    assert table.loc[7, "cam_share"] > table.loc[3, "cam_share"]
    assert table.loc[7, "area"] == (y1 - y0) * (x1 - x0)
    expected = widget._result.object_scores(objects, [CLASS_NAMES[label]])
    assert table.loc[7, CLASS_NAMES[label]] == pytest.approx(
        expected.set_index("label").loc[7, CLASS_NAMES[label]]
    )
    # napari shows the columns on hover
    status = cells.get_status(((y0 + y1) / 2, (x0 + x1) / 2))
    assert f"cam_class: {CLASS_NAMES[label]}" in str(status)
    assert "2 objects in 'cells'" in widget.objects_info.value
    # colour by CAM class; unticked, the layer's own colours come back
    own = cells.colormap
    widget.colour_objects.value = True
    names = list(table.columns[1:-2])
    colour = COLOURS[names.index(table.loc[7, "cam_class"])]
    np.testing.assert_allclose(cells.colormap.map(7), _rgba(colour), atol=1e-3)
    np.testing.assert_allclose(cells.colormap.map(0)[3], 0.0)
    assert "Colours:" in widget.objects_info.value
    widget.colour_objects.value = False
    assert cells.colormap is own


def _rgba(hex_colour: str) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(hex_colour)[0]


def test_objects_of_another_size_are_refused_with_the_reason(viewer, qtbot):
    image, _, _ = scene()
    viewer.add_image(image, name="scene")
    cells = viewer.add_labels(np.ones((10, 10), np.int32), name="small")
    viewer.layers.selection.active = viewer.layers["scene"]
    widget = demo_widget(viewer)
    widget.objects.value = cells
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: "image's size" in widget.objects_info.value, timeout=10_000)
    assert "cam_class" not in cells.features
