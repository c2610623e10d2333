"""The dock widget end to end in a real (headless) napari viewer, with named weights offline."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels, Shapes
from qtpy.QtCore import Qt
from skimage import data

from napari_gapcam._napari.camera import camera
from napari_gapcam._napari.widget import FILE, GapCamWidget

TIMEOUT_MS = 120_000


def make_widget(viewer) -> GapCamWidget:
    widget = GapCamWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GAP-CAM")
    return widget


def run_and_wait(widget: GapCamWidget, qtbot) -> None:
    widget.run_button.clicked.emit()
    assert widget.busy and widget.run_button.text == "Cancel"  # Run turns into Cancel
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert widget.run_button.enabled and widget.run_button.text == "Run"


def cam_layer(viewer, source_name: str) -> Image:
    return viewer.layers[f"{source_name} CAM"]


def test_rgb_layer(viewer, qtbot):
    photo = data.chelsea()[::2, ::2]  # 150×226 RGB
    viewer.add_image(photo, name="cat")
    widget = make_widget(viewer)
    assert widget.image.value is viewer.layers["cat"]  # follows the active layer
    assert widget.weights.value == "IMAGENET1K_V1" and widget.device.value == "auto"
    run_and_wait(widget, qtbot)

    layer = cam_layer(viewer, "cat")
    assert layer.data.shape == photo.shape[:2] and layer.data.dtype == np.float32
    assert layer.colormap.name == "turbo"
    assert str(layer.blending) == "translucent"
    assert layer.opacity == pytest.approx(0.5)
    assert tuple(layer.contrast_limits) == (0.0, 1.0)

    result = widget.session.result
    top = result.topk(5)
    assert widget.class_select.value == top[0][0]
    meta = layer.metadata["gapcam"]
    assert meta["class_index"] == top[0][0] and meta["class_name"] == top[0][1]
    assert top[0][1] in widget.showing.value
    assert len(widget.predictions.value.splitlines()) == 5
    choices = widget.class_select.choices
    assert len(choices) == 1000 and list(choices[:5]) == [i for i, _, _ in top]
    np.testing.assert_allclose(layer.data, result.cam(top[0][0]))
    # the same numbers as the API in a notebook
    from napari_gapcam import load_model

    again = load_model("resnet50", "IMAGENET1K_V1", "cpu").run(photo)
    np.testing.assert_allclose(again.logits, result.logits, rtol=1e-4, atol=1e-4)


def test_grey_layer_with_transform(viewer, qtbot):
    grey = data.camera()[::4, ::4].astype(np.uint16) * 100  # 128×128
    source = viewer.add_image(
        grey, name="cells", scale=(2.0, 0.5), translate=(10.0, -5.0), rotate=15.0
    )
    source.contrast_limits = (0, 20000)
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    layer = cam_layer(viewer, "cells")
    assert layer.data.shape == grey.shape
    np.testing.assert_allclose(layer.scale, source.scale)
    np.testing.assert_allclose(layer.translate, source.translate)
    np.testing.assert_allclose(layer.rotate, source.rotate)
    np.testing.assert_allclose(layer.affine.affine_matrix, source.affine.affine_matrix)
    np.testing.assert_allclose(layer.data_to_world((64, 64)), source.data_to_world((64, 64)))
    # the layer's contrast limits are what the model saw
    from napari_gapcam import load_model

    expected = load_model("resnet50", "IMAGENET1K_V1", "cpu").run(grey, (0, 20000))
    np.testing.assert_allclose(widget.session.result.logits, expected.logits, rtol=1e-4, atol=1e-4)


def test_class_change_updates_in_place_without_forward_pass(viewer, qtbot):
    viewer.add_image(data.coffee()[::4, ::4], name="coffee")
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    layer = cam_layer(viewer, "coffee")
    before = layer.data.copy()
    layer.opacity, layer.colormap, layer.visible = 0.8, "magma", False  # the user's choices

    widget.session.model.features = None  # a forward pass would now fail
    other = widget.class_select.choices[3]
    widget.class_select.value = other

    assert cam_layer(viewer, "coffee") is layer
    assert len([lyr for lyr in viewer.layers if lyr.name.endswith("CAM")]) == 1
    assert not np.array_equal(layer.data, before)
    np.testing.assert_allclose(layer.data, widget.session.result.cam(other, scale="relative"))
    assert layer.metadata["gapcam"]["class_index"] == other
    assert layer.opacity == pytest.approx(0.8) and layer.colormap.name == "magma"
    assert not layer.visible
    assert widget.session.result.class_names[other] in widget.showing.value


def test_result_lands_on_the_layer_chosen_at_start(viewer, qtbot):
    first = viewer.add_image(data.chelsea()[::3, ::3], name="first")
    widget = make_widget(viewer)
    second = viewer.add_image(data.coffee()[::3, ::3], name="second")
    viewer.layers.selection.active = first
    assert widget.image.value is first
    widget.run_button.clicked.emit()
    viewer.layers.selection.active = second  # the user moves on while it runs
    assert widget.image.value is second
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert "first CAM" in viewer.layers and "second CAM" not in viewer.layers
    assert cam_layer(viewer, "first").data.shape == first.data.shape[:2]


def test_stack_uses_the_current_plane(viewer, qtbot):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (4, 64, 80), dtype=np.uint8)
    stack[2] = data.camera()[::8, ::6][:64, :80]
    source = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0))
    source.contrast_limits = (0, 255)
    viewer.dims.set_current_step(0, 2)
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    layer = cam_layer(viewer, "stack")
    assert layer.data.shape == stack.shape
    assert np.isnan(layer.data[[0, 1, 3]]).all() and layer.data[2].max() == pytest.approx(1.0)
    assert layer.metadata["gapcam"]["plane"] == [2]
    np.testing.assert_allclose(layer.scale, source.scale)
    from napari_gapcam import load_model

    expected = load_model("resnet50", "IMAGENET1K_V1", "cpu").run(stack[2], (0, 255))
    np.testing.assert_allclose(widget.session.result.logits, expected.logits, rtol=1e-4, atol=1e-4)


def test_rgb_stack(viewer, qtbot):
    stack = np.stack([data.chelsea()[::4, ::4], data.coffee()[:75, :113]])  # 2×75×113×3
    viewer.add_image(stack, name="movie", rgb=True)
    viewer.dims.set_current_step(0, 1)
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    layer = cam_layer(viewer, "movie")
    assert layer.data.shape == stack.shape[:3] and not layer.rgb
    assert np.isnan(layer.data[0]).all() and layer.data[1].max() == pytest.approx(1.0)


def test_errors_become_notifications_and_the_widget_recovers(viewer, qtbot, tmp_path):
    viewer.add_image(data.camera()[::4, ::4], name="cam")
    widget = make_widget(viewer)
    bad = tmp_path / "broken.pth"
    bad.write_text("not a checkpoint")
    widget.weights.value = FILE
    assert not widget.weights_file.native.isHidden()
    widget.weights_file.value = bad
    run_and_wait(widget, qtbot)
    status = widget.status.value  # a short line: the notification has the whole message
    assert status.startswith("Error: ") and "broken.pth" in status and len(status) < 260
    assert "cam CAM" not in viewer.layers
    # no image layer at all: a clear message, nothing runs
    viewer.layers.clear()
    widget.run()
    assert not widget.busy and "No image layer" in widget.status.value


def test_box_and_mask_layers(viewer, qtbot):
    photo = data.chelsea()[::2, ::2]
    source = viewer.add_image(photo, name="cat", scale=(0.5, 0.5), translate=(4.0, 8.0))
    widget = make_widget(viewer)
    widget.show_box.value = True
    widget.show_mask.value = True
    run_and_wait(widget, qtbot)

    box_layer, mask_layer = viewer.layers["cat CAM box"], viewer.layers["cat CAM mask"]
    assert isinstance(box_layer, Shapes) and isinstance(mask_layer, Labels)
    for layer in (box_layer, mask_layer):
        np.testing.assert_allclose(layer.scale, source.scale)
        np.testing.assert_allclose(layer.translate, source.translate)
    result, c = widget.session.result, widget.class_select.value
    y0, x0, y1, x1 = result.box(c, 0.2)
    vertices = box_layer.data[0]
    np.testing.assert_allclose(vertices.min(0), [y0 - 0.5, x0 - 0.5])
    np.testing.assert_allclose(vertices.max(0), [y1 - 0.5, x1 - 0.5])
    assert box_layer.shape_type == ["rectangle"]
    assert result.class_names[c] in box_layer.features["label"][0]
    np.testing.assert_array_equal(np.asarray(mask_layer.data) == 1, result.mask(c, 0.2))

    # threshold change: same layers, new geometry, no forward pass
    widget.session.model.features = None
    widget.threshold.value = 0.7
    assert viewer.layers["cat CAM box"] is box_layer
    assert viewer.layers["cat CAM mask"] is mask_layer
    y0, x0, y1, x1 = result.box(c, 0.7)
    np.testing.assert_allclose(box_layer.data[0].min(0), [y0 - 0.5, x0 - 0.5])
    np.testing.assert_array_equal(np.asarray(mask_layer.data) == 1, result.mask(c, 0.7))
    assert box_layer.metadata["gapcam"]["threshold"] == pytest.approx(0.7)

    # class change: same layers follow the class
    other = widget.class_select.choices[1]
    widget.class_select.value = other
    np.testing.assert_array_equal(np.asarray(mask_layer.data) == 1, result.mask(other, 0.7))
    assert result.class_names[other] in box_layer.features["label"][0]

    # toggles hide (and keep) the layers
    widget.show_box.value = False
    assert not box_layer.visible and "cat CAM box" in viewer.layers


def test_box_and_mask_on_a_stack_sit_at_the_plane(viewer, qtbot):
    stack = np.zeros((3, 64, 64), np.uint8)
    stack[1, 20:40, 10:30] = 255
    viewer.add_image(stack, name="zs", contrast_limits=(0, 255))
    viewer.dims.set_current_step(0, 1)
    widget = make_widget(viewer)
    widget.show_box.value = widget.show_mask.value = True
    run_and_wait(widget, qtbot)
    box_layer, mask_layer = viewer.layers["zs CAM box"], viewer.layers["zs CAM mask"]
    assert box_layer.ndim == 3 and np.all(box_layer.data[0][:, 0] == 1)
    assert mask_layer.data.shape == stack.shape
    assert not mask_layer.data[[0, 2]].any() and mask_layer.data[1].any()


def test_typing_in_the_class_box_finds_a_class(viewer, qtbot):
    viewer.add_image(data.chelsea()[::4, ::4], name="cat")
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    combo = widget.class_select.native
    completer = combo.completer()
    completer.setCompletionPrefix("TABB")  # any case, any part of the label
    matches = [completer.currentCompletion()]
    while completer.setCurrentRow(completer.currentRow() + 1):
        matches.append(completer.currentCompletion())
    assert any(text.endswith("tabby") or "tabby  (" in text for text in matches)
    completer.setCompletionPrefix("tabby")
    completer.activated[str].emit(completer.currentCompletion())  # the user picks it
    assert widget.class_select.value == 281
    assert widget.session.result.class_names[281] in widget.showing.value
    # typing part of a name and pressing Enter jumps to the first match
    combo.lineEdit().setText("goldfis")
    qtbot.keyClick(combo.lineEdit(), Qt.Key.Key_Return)
    assert widget.class_select.value == 1  # "goldfish"
    assert "goldfish" in widget.showing.value


def test_bundled_demo_model_on_the_shapes_sample(viewer, qtbot):
    from napari_gapcam._napari.sample_data import shapes
    from napari_gapcam._napari.widget import DEMO
    from napari_gapcam.synthetic import CLASS_NAMES

    image, kwargs, _ = shapes()[0]
    viewer.add_image(image, **kwargs)
    widget = make_widget(viewer)
    widget.arch.value = "resnet18"
    assert DEMO in widget.weights.choices
    widget.weights.value = DEMO
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    assert widget.session.result.class_names == list(CLASS_NAMES)
    assert widget.threshold.value == pytest.approx(0.55)  # the checkpoint's suggestion
    assert viewer.layers["synthetic shapes CAM box"].metadata["gapcam"]["threshold"] == 0.55
    assert len(widget.class_select.choices) == len(CLASS_NAMES)
    assert "synthetic shapes CAM box" in viewer.layers
    widget.arch.value = "resnet50"  # the demo belongs to resnet18 only
    assert DEMO not in widget.weights.choices


# ------------------------------------------------------- models: families, timm, Grad-CAM
def test_model_picker_lists_families_and_weights_follow(viewer):
    widget = make_widget(viewer)
    labels = [widget.arch.native.itemText(i) for i in range(widget.arch.native.count())]
    assert "resnet50  (resnet, CAM)" in labels
    assert "convnext_tiny  (convnext, Grad-CAM)" in labels
    assert any(label.startswith("swin_t  (swin, CAM)") for label in labels)
    widget.models.pick_arch("efficientnet_v2_s")  # typed text: the first match is selected
    assert widget.arch.value == "efficientnet_v2_s"
    assert list(widget.weights.choices)[0] == "IMAGENET1K_V1"
    combo = widget.arch.native
    combo.lineEdit().setText("timm:test_resnet")
    from qtpy.QtTest import QTest

    QTest.keyClick(combo.lineEdit(), Qt.Key.Key_Return)
    assert widget.arch.value == "timm:test_resnet"
    assert list(widget.weights.choices) == [FILE, "none (random init)"]


def test_typed_timm_model_runs(viewer, qtbot):
    pytest.importorskip("timm")
    viewer.add_image(data.coffee()[::4, ::4], name="coffee")
    widget = make_widget(viewer)
    widget.models.pick_arch("timm:test_resnet")
    widget.weights.value = "none (random init)"
    run_and_wait(widget, qtbot)
    assert "timm:test_resnet (CAM)" in widget.status.value
    assert "coffee CAM" in viewer.layers


def test_grad_cam_model_in_memory_class_change_in_a_worker(viewer, qtbot):
    from napari_gapcam import load_model

    viewer.add_image(data.chelsea()[::4, ::4], name="cat")
    widget = make_widget(viewer)
    model = load_model("mobilenet_v3_small", weights=None, device="cpu")
    widget.use_model(model)
    assert widget.arch.value == "in memory" and list(widget.weights.choices) == ["in memory"]
    run_and_wait(widget, qtbot)
    assert widget.session.model is model
    assert "(Grad-CAM)" in widget.status.value
    layer = cam_layer(viewer, "cat")
    result = widget.session.result
    np.testing.assert_allclose(layer.data, result.cam(widget.class_select.value))

    model.features = None  # a class change needs a backward pass through the head only
    other = widget.class_select.choices[2]
    assert not result.is_ready(other)
    widget.class_select.value = other
    assert widget.busy and widget.run_button.text == "Cancel"  # the backward pass: a worker
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert widget.run_button.enabled and widget.run_button.text == "Run"
    assert layer.metadata["gapcam"]["class_index"] == other
    np.testing.assert_allclose(layer.data, result.cam(other))


# ------------------------------------------------------- a first run that never dead-ends
def dock_width(viewer, qtbot) -> int:
    qtbot.wait(20)  # the layout settles
    return viewer.window.dock_widgets["GAP-CAM"].native.parent().width()


def test_offline_first_run_offers_the_ways_on_and_keeps_the_dock_width(
    make_napari_viewer, empty_torch_home, qtbot, monkeypatch
):
    from napari_gapcam._napari import session as lifecycle
    from napari_gapcam._napari.widget import DEMO_MODEL, RANDOM

    notified = []
    monkeypatch.setattr(lifecycle, "show_error", notified.append)
    viewer = make_napari_viewer(show=True)
    viewer.add_image(data.camera()[::4, ::4], name="cam")
    widget = make_widget(viewer)
    widget.device.value = "cpu"
    before = dock_width(viewer, qtbot)
    run_and_wait(widget, qtbot)  # the default: resnet50 IMAGENET1K_V1, not in the cache
    status = widget.status.value
    assert "IMAGENET1K_V1" in status and RANDOM in status and DEMO_MODEL in status
    assert FILE in status and len(status) < 300 and "resnet50-0676ba61.pth" not in status
    assert "resnet50-0676ba61.pth" in notified[0]  # the full detail: the notification (and log)
    assert dock_width(viewer, qtbot) == before
    # no status can widen the dock, not even one long word (a path)
    widget.status.value = "Error: " + "/very/long/path" * 30
    widget.showing.value = "x" * 400
    assert dock_width(viewer, qtbot) == before
    # the way on in two steps: the demo model (first in the model list) on the shapes sample
    from napari_gapcam._napari.sample_data import shapes

    image, kwargs, _ = shapes()[0]
    viewer.add_image(image, **kwargs)
    assert widget.arch.choices[0] == DEMO_MODEL
    widget.arch.value = DEMO_MODEL
    assert list(widget.weights.choices) == ["shapes demo (bundled)"]
    assert "Synthetic shapes" in widget.status.value
    run_and_wait(widget, qtbot)
    assert "resnet18 (CAM) on 'synthetic shapes'" in widget.status.value
    assert "synthetic shapes CAM" in viewer.layers
    assert "Random weights" not in widget.predictions.value
    assert dock_width(viewer, qtbot) == before


def test_random_weights_say_their_class_names_mean_nothing(viewer, qtbot):
    from napari_gapcam._napari.widget import RANDOM

    viewer.add_image(data.chelsea()[::4, ::4], name="cat")
    widget = make_widget(viewer)
    widget.weights.value = RANDOM
    run_and_wait(widget, qtbot)
    lines = widget.predictions.value.splitlines()
    assert len(lines) == 6 and "%" in lines[4]
    assert lines[5] == "Random weights: these class names carry no meaning."


def test_square_input_option(viewer, qtbot):
    viewer.add_image(data.chelsea()[::2, ::2], name="cat")  # 150×226
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    result = widget.session.result
    assert tuple(result.input_shape) == (224, 337)  # the model's own: keeps the aspect
    widget.square.value = True
    run_and_wait(widget, qtbot)
    assert tuple(widget.session.result.input_shape) == (224, 224)
    assert "input 224×224, 7×7 map cells" in widget.status.value


def test_all_nan_image_warns_it_holds_no_finite_value(viewer, qtbot, monkeypatch):
    from napari_gapcam._napari import session as lifecycle

    warned = []
    monkeypatch.setattr(lifecycle, "show_warning", warned.append)
    viewer.add_image(np.full((64, 80), np.nan, np.float32), name="empty", contrast_limits=(0, 1))
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    assert "no finite value" in widget.status.value and "no finite value" in warned[0]
    viewer.add_image(data.camera()[::8, ::8].astype(np.float32), name="fine")
    run_and_wait(widget, qtbot)
    assert "finite" not in widget.status.value  # a fresh status for the next run


def test_2d_mask_refuses_paint_and_the_cam_layer_stays_active(viewer, qtbot):
    viewer.add_image(data.camera()[::4, ::4], name="cam")
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    cam = viewer.layers["cam CAM"]
    assert viewer.layers.selection.active is cam
    widget.show_mask.value = True
    widget.show_box.value = True
    assert viewer.layers.selection.active is cam  # not the mask: no paint tools
    mask = viewer.layers["cam CAM mask"]
    with pytest.raises(TypeError, match="cannot be painted"):  # as a stack's mask does
        mask.paint((10, 10), 2)
    assert np.asarray(mask.data).any()


def test_removed_source_takes_its_overlays_and_status_along(viewer, qtbot):
    source = viewer.add_image(data.camera()[::4, ::4], name="cells")
    widget = make_widget(viewer)
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    viewer.layers.remove(source)
    qtbot.waitUntil(lambda: len(viewer.layers) == 0, timeout=2000)
    assert "'cells' was removed" in widget.status.value
    assert widget.showing.value == "—" and widget.predictions.value == "—"
    assert widget.class_select.native.count() == 0


def test_labels_show_their_start_and_the_mean_line_stands_alone(viewer, qtbot):
    viewer.add_image(data.chelsea()[::4, ::4], name="cat")
    widget = make_widget(viewer)
    run_and_wait(widget, qtbot)
    for combo in (widget.class_select.native, widget.arch.native):
        assert combo.lineEdit().cursorPosition() == 0  # "Norwich terrier", not "orwich …"
    widget.class_select.value = widget.class_select.choices[7]
    assert widget.class_select.native.lineEdit().cursorPosition() == 0


def test_box_edge_and_label_keep_their_screen_size_when_zoomed(
    make_napari_viewer, qtbot, torch_home
):
    viewer = make_napari_viewer(show=True)  # drawn: the test counts the pixels of the edge
    source = viewer.add_image(data.camera()[::2, ::2], name="cam")  # 256²
    widget = make_widget(viewer)
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    box = viewer.layers["cam CAM box"]
    source.visible = viewer.layers["cam CAM"].visible = False  # the box alone, on black

    def edge_pixels() -> int:
        """Yellow pixels across the box's bottom edge, in the middle of the canvas."""
        (_, left), (bottom, right) = box.data[0].min(0), box.data[0].max(0)
        camera(viewer).center = box.data_to_world((bottom, (left + right) / 2))
        qtbot.wait(20)
        shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
        column = shot[:, shot.shape[1] // 2]
        return int(np.sum((column[:, 0] > 100) & (column[:, 1] > 100) & (column[:, 2] < 80)))

    thin = edge_pixels()
    assert 1 <= thin <= 4
    camera(viewer).zoom *= 8
    assert edge_pixels() <= thin + 1  # a line, not a band 8 times as thick
    translation = np.asarray(box.text.translation)[0] * box.scale[0] * camera(viewer).zoom
    assert translation == pytest.approx(26.0, rel=0.05)  # the label: one line inside the box
    widget.class_select.value = widget.class_select.choices[1]  # a moved box too
    assert edge_pixels() <= thin + 1
