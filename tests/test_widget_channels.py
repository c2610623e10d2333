"""The dock's *channels* box (Score-CAM's ``max_channels``): shown only for a method that takes
it, "all" by default; N channels reach the model the dock runs (N masked passes, the engine's
map), its method switch and *compare methods*; a handed-over Score-CAM shows its own number,
greyed."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from _widgets import TIMEOUT_MS, make_widget, run_and_wait
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL
from napari_gapcam.engine.methods import METHODS


@functools.cache
def demo():
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    return napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu")


def scene(seed=0, size=(96, 128)):
    from napari_gapcam.synthetic import make_sample

    return make_sample(np.random.default_rng(seed), size=size)[0]


def seen(widget) -> bool:
    """The user sees the channels box and its label (once the dock shows)."""
    box = widget.models.channels
    label = box._labeled_widget()
    parts = [box.native] + ([label.native] if label is not None else [])
    return all(part.isVisibleTo(widget.native) for part in parts)


def shown_text(box) -> str:
    return box.native.currentText()


def items(box) -> list[str]:
    """The box's list as the user sees it when it opens, top to bottom."""
    return [box.native.itemText(i) for i in range(box.native.count())]


def type_into(box, text: str) -> None:
    """Type ``text`` in the box and press Enter, as a user does."""
    line = box.native.lineEdit()
    line.setText(text)
    line.editingFinished.emit()


@pytest.fixture
def passes(monkeypatch):
    """The images of every forward batch any model runs from now on (a network pass each)."""
    from napari_gapcam.engine.network import Network

    sizes, forward = [], Network.forward_batch

    def counted(self, tensor, *args, **kwargs):
        sizes.append(len(tensor))
        return forward(self, tensor, *args, **kwargs)

    monkeypatch.setattr(Network, "forward_batch", counted)
    return sizes


def test_the_box_shows_for_score_cam_only_and_says_its_cost(make_napari_viewer):
    widget = make_widget(make_napari_viewer(), arch=DEMO_MODEL, weights=DEMO)
    box = widget.models.channels
    assert not seen(widget)  # auto
    for name, row in METHODS.items():
        widget.method.value = name
        assert seen(widget) == ("max_channels" in row.options), name
    widget.method.value = "scorecam"
    assert seen(widget) and box.enabled and shown_text(box) == "all"
    assert "one forward pass per channel" in box.tooltip
    assert widget.models.spec().options == ()  # all: Score-CAM's default
    assert items(box) == ["all", "32", "128", "512"]
    type_into(box, "8")
    assert shown_text(box) == "8" and widget.models.spec().options == (("max_channels", 8),)
    type_into(box, "256")
    type_into(box, "8")
    assert items(box) == ["all", "8", "32", "128", "256", "512"]  # typed ones in their place
    widget.method.value = "cam"
    assert not seen(widget) and widget.models.spec().options == ()
    widget.method.value = "scorecam"
    assert shown_text(box) == "8" and widget.models.spec().options == (("max_channels", 8),)


def test_eight_channels_run_eight_passes_and_give_the_engine_s_map(
    make_napari_viewer, qtbot, monkeypatch, passes
):
    from napari_gapcam._napari import compare_job

    viewer = make_napari_viewer()
    image = scene()
    viewer.add_image(image, name="scene", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, method="scorecam")
    type_into(widget.models.channels, "8")
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: widget.session.class_worker is None, timeout=TIMEOUT_MS)
    ran = list(passes)
    assert ran[0] == 1 and sum(ran[1:]) <= 8  # the run, then ≤ 8 masked inputs (not 512)
    assert widget.session.spec.options == (("max_channels", 8),)
    layer, c = viewer.layers["scene CAM"], widget.class_select.value
    expected = demo().with_method("scorecam", max_channels=8).run(image)
    np.testing.assert_allclose(layer.data, expected.cam(c, layer.data.shape), atol=1e-5)

    type_into(widget.models.channels, "4")  # a switch, no reload: Run makes 4 channels' map
    model = widget.session.model
    assert model.method_object.max_channels == 4 and widget.session.spec == widget.models.spec()
    widget.method.value = "cam"
    run_and_wait(widget, qtbot)  # the CAM shown; Score-CAM compared with the box's 4
    scores = pd.DataFrame([{"image": 0, "class": c, "class_name": "", "method": "", "s": 0.5}])
    monkeypatch.setattr(compare_job, "faithfulness_scores", lambda *_a, **_k: scores)
    passes.clear()
    widget.compare.methods.value = ["cam", "scorecam"]
    widget.compare.button.clicked.emit()
    qtbot.waitUntil(lambda: "scene · Score-CAM" in viewer.layers, timeout=TIMEOUT_MS)
    assert passes[0] == 1 and sum(passes[1:]) <= 4  # the plane again, ≤ 4 masked inputs
    c = viewer.layers["scene CAM"].metadata["gapcam"]["class_index"]
    compared = viewer.layers["scene · Score-CAM"].data
    four = demo().with_method("scorecam", max_channels=4).run(image).cam(c, compared.shape)
    np.testing.assert_allclose(compared, four, atol=1e-5)


def test_a_handed_over_score_cam_shows_its_channels_greyed(make_napari_viewer, qtbot):
    widget = make_widget(make_napari_viewer())
    box = widget.models.channels
    type_into(box, "16")  # the user's number, kept
    handed = demo().with_method("scorecam", max_channels=32)
    widget.use_model(handed)
    assert seen(widget) and shown_text(box) == "32" and not box.enabled
    assert widget.models.memory_model is handed
    widget.method.value = "cam"
    assert not seen(widget)
    widget.method.value = "scorecam"  # its own method: as handed over
    assert shown_text(box) == "32" and not box.enabled
    assert widget.models.memory_model is handed

    widget.use_model(demo())  # a handed CAM: Score-CAM under the box's number
    assert not seen(widget)
    widget.method.value = "scorecam"
    assert seen(widget) and box.enabled and shown_text(box) == "16"
    assert widget.models.memory_model.method_object.max_channels == 16
    type_into(box, "8")
    assert widget.models.memory_model.method_object.max_channels == 8
    type_into(box, "all")
    assert widget.models.memory_model.method_object.max_channels is None
    type_into(box, "many")  # not a number: said, the box as it was
    assert shown_text(box) == "all" and "type a number" in widget.status.value
