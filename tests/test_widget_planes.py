"""Each plane's own answer: a stack's lines, box and class follow the displayed plane, and a
class the network does not see looks cool and gets no box (issue 24, item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import combo_items, make_widget, run_and_wait
from napari_gapcam._napari.names import EACH_TOP, EACH_TOP_NAME
from napari_gapcam._napari.widget import ALL, DEMO, DEMO_MODEL
from napari_gapcam.synthetic import CLASS_NAMES, make_sample


def star_and_cross(viewer, qtbot):
    """A stack of a star (plane 0) and a cross (plane 1), run on all planes by the demo model
    with *show box* ticked."""
    star, cross = (make_sample(np.random.default_rng(s), size=(224, 224))[0] for s in (0, 3))
    viewer.add_image(np.stack([star, cross]), name="pair", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, planes=ALL)
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    return widget


def test_each_plane_says_its_own_probability_and_an_absent_class_gets_no_box(viewer, qtbot):
    widget = star_and_cross(viewer, qtbot)
    result, p = widget.session.result, widget.session.result.image_probabilities
    names = result.class_names
    assert int(p[0].argmax()) == CLASS_NAMES.index("star")  # the demo model sees them
    assert int(p[1].argmax()) == CLASS_NAMES.index("cross")
    cross_c = CLASS_NAMES.index("cross")
    widget.class_select.value = cross_c
    viewer.dims.set_current_step(0, 1)  # the cross plane: its own p, and the stack's mean
    showing = widget.showing.value
    assert f"cross: p = {p[1, cross_c]:.3f} on this plane" in showing
    assert f"mean p = {p[:, cross_c].mean():.3f}" in showing
    box = viewer.layers["pair CAM box"]
    assert len(box.data) == 1 and list(box.features["label"]) == [f"cross {p[1, cross_c]:.2f}"]
    viewer.dims.set_current_step(0, 0)  # the star plane: p(cross) is negligible there
    assert f"cross: p = {p[0, cross_c]:.3f} on this plane" in widget.showing.value
    assert p[0, cross_c] < 0.01 * p[0].max()
    assert len(box.data) == 0  # no box around the whole image
    status = widget.status.value
    assert "no box" in status and f"p(cross) = {p[0, cross_c]:.3f}" in status
    assert f"({names[int(p[0].argmax())]} {p[0].max():.2f})" in status
    heat = np.asarray(viewer.layers["pair CAM"].data)
    assert heat[0].max() < 0.05 and heat[1].max() == pytest.approx(1.0)  # cool where absent
    viewer.dims.set_current_step(0, 1)  # the box comes back, the run's line with it
    assert len(box.data) == 1 and "no box" not in widget.status.value


def test_each_plane_s_top_class_shows_on_every_plane_the_class_it_predicts(viewer, qtbot):
    widget = star_and_cross(viewer, qtbot)
    result, p = widget.session.result, widget.session.result.image_probabilities
    assert combo_items(widget.class_select, 1) == [EACH_TOP_NAME]  # first in the list
    widget.class_select.value = EACH_TOP
    cam, box = viewer.layers["pair CAM"], viewer.layers["pair CAM box"]
    assert cam.metadata["gapcam"]["class_name"] == EACH_TOP_NAME
    heat = np.asarray(cam.data)
    for i, name in enumerate(("star", "cross")):
        c = CLASS_NAMES.index(name)
        np.testing.assert_allclose(heat[i], result[i].cam(c, scale="relative"), atol=1e-6)
        viewer.dims.set_current_step(0, i)
        assert widget.showing.value == f"{EACH_TOP_NAME}: {name}: p = {p[i, c]:.3f} on this plane"
        assert list(box.features["label"]) == [f"{name} {p[i, c]:.2f}"]


def test_one_image_an_absent_class_stays_cool_and_unboxed(viewer, qtbot):
    image = make_sample(np.random.default_rng(3), size=(224, 224))[0]  # a cross
    viewer.add_image(image, name="cross", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO)
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    p = widget.session.result.probabilities
    absent = int(p.argmin())
    widget.class_select.value = absent
    heat = viewer.layers["cross CAM"].data
    assert heat.max() == pytest.approx(p[absent] / p.max(), rel=1e-4) and heat.max() < 0.05
    assert len(viewer.layers["cross CAM box"].data) == 0 and "no box" in widget.status.value
    widget.scale.value = "each"  # stretched: where the class would look, at full heat
    assert viewer.layers["cross CAM"].data.max() == pytest.approx(1.0)


def test_each_plane_s_top_class_then_one_image_shows_its_top_class(viewer, qtbot):
    widget = star_and_cross(viewer, qtbot)
    widget.class_select.value = EACH_TOP
    image = make_sample(np.random.default_rng(1), size=(224, 224))[0]  # a triangle
    viewer.add_image(image, name="one", rgb=True)
    widget.planes.value = "current plane"
    run_and_wait(widget, qtbot)
    top = widget.session.result.topk(1)[0]
    assert widget.class_select.value == top[0] and widget.session.choices.class_index == top[0]
    assert EACH_TOP_NAME not in combo_items(widget.class_select)  # a stack's choice only
    assert widget.showing.value == f"{top[1]}  (p = {top[2]:.3f})"
