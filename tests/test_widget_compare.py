"""*Compare methods* in the dock: the method box's costs, one overlay per method for the displayed
plane (named, aligned, equal to that method's own map), the scores table, in place, Cancel.

``model.with_method`` and ``engine.faithfulness`` land in parallel: where they are missing a
stand-in is patched in (the same network under another method; a table whose scores are
computed here, independently, from each method's own map).
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
import types

import numpy as np
import pytest
from qtpy.QtWidgets import QScrollArea

from _widgets import TIMEOUT_MS, combo_items, layer_rows, make_widget, run_and_wait
from napari_gapcam._napari.score_table import shown_cells
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL
from napari_gapcam.engine.methods import METHODS

COLUMNS = ["drop ↓", "incr ↑", "del ↓", "ins ↑", "ROAD ↑"]


@functools.cache
def demo_with(method: str):
    """The bundled demo model loaded with ``method`` (the engine's own, not the widget's)."""
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    return napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu", method=method)


def own_map(name, image, c, grid, scale="relative"):
    """Method ``name``'s map of ``image`` straight from the engine (a model loaded with it)."""
    return demo_with(name).run(image).cam(c, grid, scale)


def scores_of(model, image, c) -> dict[str, float]:
    """The stand-in's scores: numbers of the method's own map (they differ by method)."""
    heat = model.run(image).cam(c)
    return {
        "avg_drop": float(heat.mean()),
        "increase": float(heat.max() > 0.5),
        "deletion": float(heat.std()),
        "insertion": float(np.median(heat)),
        "road": float(heat[heat > 0.5].mean()) if (heat > 0.5).any() else 0.0,
    }


class Faith:
    """A stand-in for ``napari_gapcam.engine.faithfulness`` (its signature), recording calls;
    ``gate`` (a threading.Event) makes it wait, asking ``progress`` until it says stop."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.gate: threading.Event | None = None

    def faithfulness(self, model, images, classes=None, method=None, metrics=(), progress=None,
                     boxes=None):  # fmt: skip
        import pandas as pd

        self.calls.append({"method": method, "boxes": boxes, "classes": classes})
        while self.gate is not None and not self.gate.is_set():
            if progress is not None and progress(0, 1) is False:
                raise RuntimeError("cancelled")
            self.gate.wait(0.01)
        row = {"image": 0, "class": classes[0], "class_name": "", "method": method}
        boxed = {"max_box_acc_v2": 0.5} if boxes is not None else {}
        return pd.DataFrame([{**row, **scores_of(model, images[0], classes[0]), **boxed}])


@pytest.fixture
def faith(monkeypatch):
    from napari_gapcam.engine.methods import resolve
    from napari_gapcam.engine.model import GapCamModel

    if not hasattr(GapCamModel, "with_method"):

        def with_method(self, name):
            other = copy.copy(self)
            info = resolve(name, self.fc is not None, self.head_description)
            other.method, other._method = info.name, info.load().for_network(other)
            return other

        monkeypatch.setattr(GapCamModel, "with_method", with_method, raising=False)
    stand_in = Faith()
    module = types.ModuleType("napari_gapcam.engine.faithfulness")
    module.faithfulness = stand_in.faithfulness
    monkeypatch.setitem(sys.modules, "napari_gapcam.engine.faithfulness", module)
    return stand_in


def compare_and_wait(widget, qtbot, methods=("cam", "gradcam")):
    widget.compare.methods.value = list(methods)
    widget.compare.button.clicked.emit()
    assert widget.compare.button.text == "Cancel"
    qtbot.waitUntil(lambda: widget.compare.worker is None, timeout=TIMEOUT_MS)
    assert widget.compare.button.text == "Compare"


def scene(seed=0, size=(96, 128)):
    from napari_gapcam.synthetic import make_sample

    return make_sample(np.random.default_rng(seed), size=size)[0]


def test_the_method_box_shows_each_method_with_its_cost(viewer):
    widget = make_widget(viewer)
    items = combo_items(widget.method)
    assert items[0].startswith("auto — ")
    assert items[1:] == [f"{name} — {row.cost}" for name, row in METHODS.items()]
    assert items[2] == "gradcam — one backward pass through the head"
    widget.method.value = "gradcam"  # the value stays the name (the CLI's, the spec's)
    assert widget.models.spec().method == "gradcam"
    assert widget.method.native.toolTip() == METHODS["gradcam"].describe()
    assert widget.method.native.sizeHint().width() < 300  # the box stays narrow, the dock too
    scroll = widget.native.findChildren(QScrollArea)[0]
    assert scroll.sizeHint().width() <= 400  # (383 px before the costs and the compare section)


def test_compare_two_methods_adds_their_aligned_overlays_and_scores(viewer, qtbot, faith):
    image = scene()
    viewer.add_image(image, name="scene", rgb=True, scale=(2.0, 0.5), translate=(5, -3))
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO)
    assert widget.sections["compare"].folded
    run_and_wait(widget, qtbot)
    main = viewer.layers["scene CAM"]
    c = widget.class_select.value
    compare_and_wait(widget, qtbot)

    names = ["scene · CAM", "scene · Grad-CAM"]
    rows = layer_rows(viewer)
    assert [r for r in rows if "·" in r] == names[::-1]  # exactly those, the last added on top
    for name, method in zip(names, ("cam", "gradcam"), strict=True):
        layer = viewer.layers[name]
        np.testing.assert_allclose(layer.extent.world, main.extent.world, atol=1e-6)
        assert layer.colormap.name == main.colormap.name
        np.testing.assert_allclose(
            layer.data, own_map(method, image, c, main.data.shape), atol=1e-5
        )
        assert layer.metadata["gapcam"]["class_index"] == c
    assert viewer.layers["scene · CAM"].visible and not viewer.layers["scene · Grad-CAM"].visible
    shown_rows, columns, cells = shown_cells(widget.compare.table)
    assert shown_rows == ["CAM", "Grad-CAM"] and columns == COLUMNS
    for row, method in zip(cells, ("cam", "gradcam"), strict=True):
        expected = scores_of(demo_with(method), image, c)
        assert row == [f"{expected[k]:.3f}" for k in expected]
    assert "2 method(s)" in widget.compare.status.value
    widget.compare.table.native.selectRow(1)  # a row shows its method's map alone
    assert viewer.layers["scene · Grad-CAM"].visible and not viewer.layers["scene · CAM"].visible
    assert not main.visible  # not blended with the main overlay under it

    # again, with another class and one method: in place, the other method's layer goes
    cam_layer = viewer.layers["scene · CAM"]
    other = widget.class_select.choices[1]
    widget.class_select.value = other
    compare_and_wait(widget, qtbot, methods=("cam",))
    assert viewer.layers["scene · CAM"] is cam_layer and "scene · Grad-CAM" not in viewer.layers
    np.testing.assert_allclose(
        cam_layer.data, own_map("cam", image, other, main.data.shape), atol=1e-5
    )
    assert shown_cells(widget.compare.table)[0] == ["CAM"]
    widget.compare.table.native.selectRow(0)
    assert cam_layer.visible and not main.visible
    run_and_wait(widget, qtbot)  # a new run: its map shows, the compared layers go
    assert main.visible and "scene · CAM" not in viewer.layers


def test_cancel_leaves_the_layers_and_table_as_they_were(viewer, qtbot, faith):
    viewer.add_image(scene(1), name="scene", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO)
    run_and_wait(widget, qtbot)
    compare_and_wait(widget, qtbot, methods=("cam",))
    before = viewer.layers["scene · CAM"].data.copy()
    table = shown_cells(widget.compare.table)
    faith.gate = threading.Event()  # the next scores wait until cancelled
    widget.compare.methods.value = ["cam", "gradcam"]
    widget.class_select.value = widget.class_select.choices[2]
    widget.compare.button.clicked.emit()
    qtbot.waitUntil(lambda: len(faith.calls) == 2, timeout=TIMEOUT_MS)
    widget.compare.button.clicked.emit()  # Cancel
    assert widget.compare.worker is None and widget.compare.button.text == "Compare"
    qtbot.wait(200)  # the job drains: nothing of it lands
    assert [r for r in layer_rows(viewer) if "·" in r] == ["scene · CAM"]
    np.testing.assert_array_equal(viewer.layers["scene · CAM"].data, before)
    assert shown_cells(widget.compare.table) == table
    assert "Cancelled" in widget.compare.status.value
    faith.gate = None
    # it works again at once; true boxes picked: the localization column too
    truth = viewer.add_shapes([[[9.5, 19.5], [49.5, 69.5]]], shape_type="rectangle", name="true")
    widget.truth.value = truth
    compare_and_wait(widget, qtbot, methods=("gradcam",))
    assert "scene · Grad-CAM" in viewer.layers
    assert faith.calls[-1]["boxes"] == [[(10, 20, 50, 70)]]  # image pixels, half-open
    assert shown_cells(widget.compare.table)[1] == [*COLUMNS, "MaxBoxAccV2 ↑"]
    assert "1 true box(es) of 'true'" in widget.compare.status.value


def test_a_stack_compares_the_displayed_plane(viewer, qtbot, faith):
    planes = np.stack([scene(seed, (96, 96)) for seed in range(3)])
    viewer.add_image(planes, name="stack", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, planes="all planes")
    run_and_wait(widget, qtbot)
    viewer.dims.set_current_step(0, 2)
    main = viewer.layers["stack CAM"]
    c = widget.session.chosen_class()
    compare_and_wait(widget, qtbot, methods=("gradcam",))
    layer = viewer.layers["stack · Grad-CAM"]
    assert layer.metadata["gapcam"]["plane"] == [2]
    world = main.extent.world.copy()
    world[:, 0] = 2  # the displayed plane only, on the main overlay's place
    np.testing.assert_allclose(layer.extent.world, world, atol=1e-6)
    grid = main.data.shape[1:]
    # a stack's maps are kept in half precision: the switched map is within that of its own
    np.testing.assert_allclose(layer.data[0], own_map("gradcam", planes[2], c, grid), atol=2e-4)
    assert faith.calls[-1]["classes"] == [c]
    viewer.layers.remove(viewer.layers["stack"])  # the source goes: its method overlays too
    qtbot.waitUntil(lambda: "stack · Grad-CAM" not in viewer.layers, timeout=2000)


def test_compare_before_a_run_says_what_to_do(viewer, faith):
    viewer.add_image(scene(), name="scene", rgb=True)
    widget = make_widget(viewer)
    widget.compare.button.clicked.emit()
    assert widget.compare.worker is None and "Run first" in widget.compare.status.value


def switch_result(result, model):
    """A stand-in for ``result.with_method(model)``: the same maps and logits, another method."""
    from napari_gapcam.engine.result import CamResult, Result

    batch = result._batch if isinstance(result, CamResult) else result
    out = Result(batch.features, torch_of(batch.image_logits), model.method_object,
                 batch.class_names, batch.image_shape, batch.input_shape)  # fmt: skip
    return out[0] if isinstance(result, CamResult) else out


def torch_of(array):
    import torch

    return torch.from_numpy(np.asarray(array))


def test_a_method_picked_after_a_run_switches_the_result_without_a_forward_pass(
    viewer, qtbot, faith, monkeypatch
):
    from napari_gapcam._napari import compare_job
    from napari_gapcam.engine.network import Network
    from napari_gapcam.engine.result import CamResult, Result

    for kind in (CamResult, Result):
        if not hasattr(kind, "with_method"):
            monkeypatch.setattr(kind, "with_method", switch_result, raising=False)
    if not any(getattr(row, "head_only", False) for row in METHODS.values()):
        monkeypatch.setattr(compare_job, "head_only", lambda row: row.name == "gradcam")
        monkeypatch.setattr("napari_gapcam._napari.method_switch.head_only", compare_job.head_only)
    image = scene(2)
    viewer.add_image(image, name="scene", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO)
    run_and_wait(widget, qtbot)
    layer, c = viewer.layers["scene CAM"], widget.class_select.value

    def no_pass(*_args, **_kwargs):
        raise AssertionError("a forward pass")

    with monkeypatch.context() as patched:
        patched.setattr(Network, "forward_batch", no_pass)
        widget.method.value = "gradcam"
        qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert viewer.layers["scene CAM"] is layer and widget.session.result.method == "Grad-CAM"
    expected = own_map("gradcam", image, c, layer.data.shape)
    np.testing.assert_allclose(layer.data, expected, atol=1e-5)
    assert "no forward pass" in widget.status.value
    assert widget.session.model.method == "gradcam" and widget.session.spec.method == "gradcam"


def test_with_two_images_the_method_overlays_sit_with_their_own_source(viewer, qtbot, faith):
    viewer.add_image(scene(3), name="a", rgb=True)
    viewer.add_image(scene(4), name="b", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, image=viewer.layers["a"])
    run_and_wait(widget, qtbot)
    compare_and_wait(widget, qtbot)
    # top to bottom: the other image stays above a's overlays, which stay above a
    assert layer_rows(viewer) == ["b", "a · Grad-CAM", "a · CAM", "a CAM", "a"]
