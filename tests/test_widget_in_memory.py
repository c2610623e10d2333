"""A model handed to the dock with ``use_model``: the boxes show what it runs (its method, its
layer, its device), and what the dock computes is that method's maps; its method's options
(Score-CAM's ``max_channels``) stay with it through a method switch, a Run and *compare*."""

from __future__ import annotations

import functools

import numpy as np

from _widgets import TIMEOUT_MS, make_widget, run_and_wait
from napari_gapcam.engine.methods import METHODS


@functools.cache
def demo(layer=None):
    """The bundled demo model (resnet18 trained on synthetic shapes): no download."""
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    return napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu", layer=layer)


def scene(seed=0, size=(96, 128)):
    from napari_gapcam.synthetic import make_sample

    return make_sample(np.random.default_rng(seed), size=size)[0]


def box_text(combo) -> str:
    """What the user reads in a combo box."""
    return combo.native.currentText()


def test_the_boxes_show_the_handed_over_model_s_method_layer_and_device(viewer):
    widget = make_widget(viewer)
    for name, row in METHODS.items():
        widget.use_model(demo().with_method(name))
        assert box_text(widget.method) == f"{name} — {row.cost}"
        assert widget.models.spec().method == name
        assert widget.models.memory_model.method == name
        assert widget.method.native.toolTip() == row.describe()
    assert box_text(widget.models.layer) == "as handed over (last maps)"
    assert box_text(widget.device) == "cpu" and not widget.device.enabled  # runs where it is
    layer3 = demo("layer3")  # split at layer3: Grad-CAM ('auto' there)
    widget.use_model(layer3)
    assert box_text(widget.method).startswith("gradcam — ")
    assert box_text(widget.models.layer) == "as handed over (layer3)"
    widget.method.value = "cam"  # its head is not GAP + dense: Run says why
    widget.run()
    assert "cam" in widget.status.value and "Error" in widget.status.value
    widget.arch.value = "resnet18"  # another model: its device is the user's to pick
    assert widget.device.enabled


def test_a_handed_over_score_cam_runs_its_maps_and_keeps_its_options(viewer, qtbot, monkeypatch):
    import pandas as pd

    from napari_gapcam._napari import compare_job

    image = scene()
    viewer.add_image(image, name="scene", rgb=True)
    widget = make_widget(viewer)
    handed = demo().with_method("scorecam", max_channels=8)  # 8 masked passes, not 512
    widget.use_model(handed)
    assert box_text(widget.method) == f"scorecam — {METHODS['scorecam'].cost}"
    run_and_wait(widget, qtbot)
    layer, c = viewer.layers["scene CAM"], widget.class_select.value
    assert widget.session.model is handed and "(Score-CAM)" in widget.status.value
    grid = layer.data.shape
    np.testing.assert_allclose(layer.data, handed.run(image).cam(c, grid), atol=1e-5)

    widget.method.value = "gradcam"  # the box changes what is computed: switched, no reload
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert widget.session.model.method == "gradcam"
    gradcam = demo().with_method("gradcam").run(image).cam(c, grid)
    np.testing.assert_allclose(layer.data, gradcam, atol=1e-5)

    scores = pd.DataFrame([{"image": 0, "class": c, "class_name": "", "method": "", "s": 0.5}])
    monkeypatch.setattr(compare_job, "faithfulness_scores", lambda *_a, **_k: scores)
    widget.compare.methods.value = ["scorecam"]  # compared: the handed-over options
    widget.compare.button.clicked.emit()
    qtbot.waitUntil(lambda: "scene · Score-CAM" in viewer.layers, timeout=TIMEOUT_MS)
    compared = viewer.layers["scene · Score-CAM"].data
    np.testing.assert_allclose(compared, handed.run(image).cam(c, grid), atol=1e-5)

    widget.method.value = "scorecam"  # back to its own method: the model as handed over
    assert "press Run" in widget.status.value
    run_and_wait(widget, qtbot)
    assert widget.session.model is handed
    np.testing.assert_allclose(layer.data, handed.run(image).cam(c, grid), atol=1e-5)
