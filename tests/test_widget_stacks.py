"""The widget on stacks: all planes in batches, Cancel, the displayed plane, 4D, lazy stacks."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from _widgets import TIMEOUT_MS, combo_items, layer_rows, make_widget, run_and_wait
from napari_gapcam import mask_from_map
from napari_gapcam._napari.names import EACH_TOP, EACH_TOP_NAME
from napari_gapcam._napari.widget import ALL, DEMO, DEMO_MODEL


def photo_stack(n: int, size: int = 64) -> np.ndarray:
    """``n`` different crops of the astronaut (grey uint8), ``size`` × ``size``."""
    photo = data.astronaut().mean(-1).astype(np.uint8)
    room = 512 - 4 * size
    crops = [((9 * i) % room, (7 * i) % room) for i in range(n)]
    return np.stack([photo[y : y + 4 * size : 4, x : x + 4 * size : 4] for y, x in crops])


def test_all_planes_fills_every_plane_and_ranks_classes_by_mean(viewer, qtbot):
    stack = photo_stack(11)
    viewer.add_image(stack, name="movie", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    widget.show_mask.value = True
    run_and_wait(widget, qtbot)
    result = widget.session.result
    assert len(result) == 11 and widget.session.shown.done == 11
    assert "all 11 planes" in widget.status.value and "11 of 11 planes" in widget.status.value
    cam = viewer.layers["movie CAM"]
    assert cam.data.shape == stack.shape and not isinstance(cam.data, np.ndarray)  # lazy
    planes = np.asarray(cam.data)
    c = widget.class_select.value  # every plane: its own map times its own p_c / p_top
    np.testing.assert_allclose(planes, result.cams(c, shape=(64, 64), scale="relative"), atol=1e-6)
    assert all(planes[i].max() > 0 for i in range(11))
    # the class list is led by the highest mean probability over the stack
    mean = result.image_probabilities.mean(axis=0)
    assert widget.class_select.choices[:2] == (EACH_TOP, int(np.argmax(mean)))
    assert "mean" in widget.predictions.value
    # a class change updates every plane with no forward pass
    features, widget.session.model.features = widget.session.model.features, None
    other = widget.class_select.choices[2]
    widget.class_select.value = other
    planes = np.asarray(viewer.layers["movie CAM"].data)
    expected = result.cams(other, shape=(64, 64), scale="relative")
    np.testing.assert_allclose(planes, expected, atol=1e-6)
    assert np.asarray(viewer.layers["movie CAM mask"].data)[5].any()
    widget.session.shown.model.features = features
    single = widget.session.shown.model.run(stack[6], (0, 255))
    np.testing.assert_allclose(result[6].logits, single.logits, rtol=1e-3, atol=1e-3)


def test_cancel_keeps_finished_planes_and_run_works_again(viewer, qtbot):
    stack = photo_stack(40)
    viewer.add_image(stack, name="long", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    widget.run_button.clicked.emit()
    assert widget.run_button.text == "Cancel"
    session = widget.session
    qtbot.waitUntil(
        lambda: session.shown is not None and session.shown.done >= 8, timeout=TIMEOUT_MS
    )
    widget.run_button.clicked.emit()  # Cancel
    assert not widget.busy and widget.run_button.text == "Run"
    done = widget.session.shown.done
    assert 8 <= done < 40 and f"after {done} of 40 planes" in widget.status.value
    qtbot.waitUntil(lambda: not widget.session.draining, timeout=TIMEOUT_MS)  # its last batch ends
    qtbot.wait(200)
    assert widget.session.shown.done == done  # and is dropped
    planes = np.asarray(viewer.layers["long CAM"].data)
    assert all(planes[i].max() > 0 for i in range(done))
    assert np.isnan(planes[done:]).all()  # never computed: NaN, drawn transparent (not a 0 map)
    # Run works again at once
    widget.planes.value = "current plane"
    viewer.dims.set_current_step(0, 39)
    widget.run_button.clicked.emit()
    assert widget.status.value.startswith("Running")  # a fresh status for each run
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert widget.session.shown.planes.indices == ((39,),)
    assert "plane 39:" in widget.status.value and "Cancelled" not in widget.status.value
    assert "(mean over the planes)" not in widget.predictions.value


def test_transposed_view_runs_the_displayed_plane(viewer, qtbot):
    volume = photo_stack(16, size=48)  # Z×Y×X = 16×48×48
    volume = volume[:, :40, :]  # Y = 40
    source = viewer.add_image(volume, name="vol", contrast_limits=(0, 255), scale=(2.0, 1.0, 1.0))
    viewer.dims.order = (1, 0, 2)  # display Z (rows) × X (columns), slide along Y
    viewer.dims.set_current_step(1, 17)
    widget = make_widget(viewer, arch="resnet18")
    run_and_wait(widget, qtbot)
    result = widget.session.result
    assert result.image_shape == (16, 48)  # Z×X
    planes = widget.session.shown.planes
    assert planes.axes == (0, 2) and planes.indices == ((17,),)
    expected = widget.session.shown.model.run(np.ascontiguousarray(volume[:, 17, :]), (0, 255))
    np.testing.assert_allclose(result.logits, expected.logits, rtol=1e-3, atol=1e-3)
    cam = viewer.layers["vol CAM"]
    assert cam.data.shape == volume.shape
    plane = np.asarray(cam.data[:, 17, :])
    np.testing.assert_allclose(plane, result.cam(result.topk(1)[0][0]), atol=1e-6)
    assert np.isnan(np.asarray(cam.data[:, 16, :])).all()
    np.testing.assert_allclose(cam.scale, source.scale)


def test_4d_all_planes_runs_every_non_displayed_index(viewer, qtbot):
    stack = photo_stack(6, size=48).reshape(2, 3, 48, 48)
    viewer.add_image(stack, name="tz", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    assert len(widget.session.result) == 6
    assert widget.session.shown.planes.indices == tuple(np.ndindex(2, 3))
    planes = np.asarray(viewer.layers["tz CAM"].data)
    assert planes.shape == stack.shape
    assert all(planes[t, z].max() > 0 for t in range(2) for z in range(3))  # each plane's own
    # the box follows the displayed plane
    box = viewer.layers["tz CAM box"]
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 2)
    assert box.metadata["gapcam"]["plane"] == [1, 2]
    assert np.all(box.data[0][:, :2] == [1, 2])


def test_lazy_stack_reads_only_what_a_run_needs(viewer, qtbot, chunk_reads):
    import dask.array as da

    reads = chunk_reads
    rng = np.random.default_rng(0)
    base = da.from_array(rng.integers(0, 4000, (1, 2048, 2048), dtype=np.uint16), chunks=-1)
    lazy = reads.counted(da.concatenate([base] * 40).rechunk((1, 1024, 1024)))
    viewer.add_image(lazy, name="big stack", contrast_limits=(0, 4000))
    viewer.dims.set_current_step(0, 21)
    widget = make_widget(viewer, arch="resnet18")
    reads.clear()  # napari itself draws the displayed plane
    run_and_wait(widget, qtbot)
    assert set(reads) == {21}

    widget.planes.value = ALL
    reads.clear()
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.session.shown.done >= 8, timeout=TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.session.draining, timeout=TIMEOUT_MS)
    # streamed: the planes read are those of the batches started, not the whole stack
    assert set(reads) <= set(range(24)) and {0, 7} <= set(reads)


def test_rgb_stack_all_planes(viewer, qtbot):
    photo = data.astronaut()
    stack = np.stack(
        [photo[40 * i : 40 * i + 256 : 4, 30 * i : 30 * i + 256 : 4] for i in range(5)]
    )
    viewer.add_image(stack, name="rgb movie", rgb=True)
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    run_and_wait(widget, qtbot)
    assert len(widget.session.result) == 5 and widget.session.result.image_shape == (64, 64)
    planes = np.asarray(viewer.layers["rgb movie CAM"].data)
    assert planes.shape == stack.shape[:3]
    c = widget.class_select.value  # each plane's map times p_c / p_top on that plane
    np.testing.assert_allclose(planes, widget.session.result.cams(c, scale="relative"), atol=1e-6)
    single = widget.session.shown.model.run(stack[3])
    np.testing.assert_allclose(widget.session.result[3].logits, single.logits, rtol=1e-3, atol=1e-3)


def test_grad_cam_model_on_all_planes(viewer, qtbot):
    stack = photo_stack(3, size=64)
    viewer.add_image(stack, name="gc", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="mobilenet_v3_small", planes=ALL)
    run_and_wait(widget, qtbot)
    assert "Grad-CAM" in widget.status.value and len(widget.session.result) == 3
    first = np.asarray(viewer.layers["gc CAM"].data[1]).copy()
    widget.class_select.value = widget.class_select.choices[1]  # lazily, per displayed plane
    assert not widget.busy
    second = np.asarray(viewer.layers["gc CAM"].data[1])
    expected = widget.session.result[1].cam(widget.class_select.value)
    np.testing.assert_allclose(second, expected, atol=1e-6)
    assert first.shape == second.shape == (64, 64)


def test_a_3d_view_reads_every_plane_at_once_from_a_bounded_volume(viewer, qtbot, monkeypatch):
    from napari_gapcam._napari import shown as _shown

    monkeypatch.setattr(_shown, "VOLUME_CELLS", 40 * 32 * 32)  # a stack's overlay: 40 × 32²
    stack = photo_stack(40)
    viewer.add_image(stack, name="vol", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    run_and_wait(widget, qtbot)
    cam = viewer.layers["vol CAM"]
    assert cam.data.shape == (40, 32, 32)  # in 2D too (napari slices a 3D view before we hear)
    np.testing.assert_allclose(cam.scale[-2:], [2.0, 2.0])  # still over the whole 64² plane
    shown, reads = widget.session.shown, []
    grid_maps = shown.grid_maps
    monkeypatch.setattr(
        shown,
        "grid_maps",
        lambda c, grid, planes: reads.append(len(planes)) or grid_maps(c, grid, planes),
    )
    viewer.dims.ndisplay = 3
    assert reads == [40]  # every plane, in one batch
    other = widget.class_select.choices[3]
    widget.class_select.value = other
    assert reads == [40, 40]
    np.testing.assert_allclose(
        np.asarray(cam.data),
        widget.session.result.cams(other, shape=(32, 32), scale="relative"),
        atol=1e-6,
    )
    widget.show_mask.value = True  # every plane's mask
    expected = [mask_from_map(m, widget.threshold.value) for m in np.asarray(cam.data)]
    np.testing.assert_array_equal(np.asarray(viewer.layers["vol CAM mask"].data) > 0, expected)


def test_show_box_after_all_planes_adds_one_box_layer(viewer, qtbot):
    stack = photo_stack(8)
    viewer.add_image(stack, name="st", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    run_and_wait(widget, qtbot)
    widget.show_box.value = True  # crashed: a second box layer added while the first was added
    qtbot.wait(50)
    assert [layer.name for layer in viewer.layers] == ["st", "st CAM", "st CAM box"]
    assert layer_rows(viewer) == ["st CAM box", "st CAM", "st"]
    box = viewer.layers["st CAM box"]
    viewer.dims.set_current_step(0, 5)  # the one box layer follows the plane
    assert box.metadata["gapcam"]["plane"] == [5] and np.all(box.data[0][:, 0] == 5)
    assert [layer.name for layer in viewer.layers] == ["st", "st CAM", "st CAM box"]


def test_class_list_shows_the_stack_s_best_classes_first(viewer, qtbot):
    stack = photo_stack(24)  # three batches: the mean probabilities (the labels) change twice
    viewer.add_image(stack, name="movie", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    run_and_wait(widget, qtbot)
    top = widget.session.shown.top(5)
    expected = [f"{name}  (mean {100 * p:.1f} %)" for _, name, p in top]
    expected = [EACH_TOP_NAME, *expected]
    assert combo_items(widget.class_select, 6) == expected  # the order the user sees
    assert widget.class_select.native.currentText() == expected[1]
    assert widget.class_select.native.count() == 1001
    # a second run on another image: its own best classes lead
    viewer.add_image(np.ascontiguousarray(stack[3, ::-1].T), name="other")
    widget.planes.value = "current plane"
    run_and_wait(widget, qtbot)
    top = widget.session.shown.top(5)
    assert combo_items(widget.class_select, 5) == [f"{n}  ({100 * p:.1f} %)" for _, n, p in top]
    assert widget.class_select.value == top[0][0]


def test_cancel_stops_the_worker_inside_its_batch(viewer, qtbot):
    """Cancel stops the run's thread before its next layer, not at the end of its batch."""
    import threading

    import torch

    stack = photo_stack(40)
    viewer.add_image(stack, name="long", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18", planes=ALL)
    main, inside, release = threading.get_ident(), threading.Event(), threading.Event()
    calls = [0]  # module forward passes in the run's thread

    def hook(_module, _args):
        if threading.get_ident() == main:
            return
        calls[0] += 1
        shown = widget.session.shown
        if not inside.is_set() and shown is not None and shown.done >= 8:
            inside.set()  # inside a later batch's forward pass: hold it until Cancel
            release.wait(30)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        widget.run_button.clicked.emit()
        qtbot.waitUntil(inside.is_set, timeout=TIMEOUT_MS)
        widget.run_button.clicked.emit()  # Cancel
        at_cancel, done = calls[0], widget.session.shown.done
        release.set()
        qtbot.waitUntil(lambda: not widget.session.draining, timeout=TIMEOUT_MS)
    finally:
        release.set()
        handle.remove()
    assert calls[0] == at_cancel  # not one more layer of the batch it was in
    assert 8 <= done <= 16 and widget.session.shown.done == done
    assert f"after {done} of 40 planes" in widget.status.value


def test_batches_shrink_at_big_inputs_on_a_cpu():
    from napari_gapcam import load_model
    from napari_gapcam._napari.input_planes import choose_planes
    from napari_gapcam.engine.pipeline import auto_batch_size
    from napari_gapcam.engine.preprocess import target_size

    class Layer:  # what choose_planes reads of an image layer
        ndim, multiscale, rgb = 3, False, False
        data = np.zeros((31, 512, 512), np.uint8)

        def world_to_data(self, point):
            return point

    planes = choose_planes(Layer(), (0, 0, 0), (0, 1, 2), 224, all_planes=True)
    model = load_model("resnet18", weights=None, device="cpu")
    sizes = [target_size(*planes.shape, size) for size in (224, 448, 896)]
    assert [auto_batch_size(model, size) for size in sizes] == [8, 2, 1]


def test_scale_shared_across_the_stack_lets_planes_compare(viewer, qtbot):
    stack = photo_stack(4)
    stack[2] = 0  # a blank plane: per plane it looks as hot as the others
    viewer.add_image(stack, name="planes", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO, planes=ALL)  # fixed weights
    run_and_wait(widget, qtbot)
    cam = viewer.layers["planes CAM"]
    assert cam.metadata["gapcam"]["scale"] == "relative"
    assert combo_items(widget.scale) == [
        "relative to the top class",
        "stretched (min-max)",
        "shared across the stack",
    ]
    c = widget.class_select.value
    widget.scale.value = "shared"
    assert viewer.layers["planes CAM"] is cam and cam.metadata["gapcam"]["scale"] == "shared"
    planes = np.asarray(cam.data)
    np.testing.assert_allclose(
        planes, widget.session.result.cams(c, shape=(64, 64), scale="shared"), atol=1e-6
    )
    maxima = planes.reshape(4, -1).max(1)
    assert maxima.max() > 0.95 and maxima[2] < 0.5, maxima  # one range: the blank plane is cool
    widget.scale.value = "each"
    planes = np.asarray(cam.data)
    assert all(planes[i].max() == pytest.approx(1.0) for i in range(4))
