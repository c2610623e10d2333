"""The widget's object features: per-object CAM scores on a Labels layer, and their colours."""

from __future__ import annotations

import numpy as np
import pytest

from _references import reference_calibration, reference_object_means, reference_raw_heat
from _widgets import make_widget, run_and_wait
from napari_gapcam._napari.objects import COLOURS
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL
from napari_gapcam.synthetic import CLASS_NAMES, make_sample


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
    # the score is the object's mean map, checked by a plain loop over the labels
    heat = reference_raw_heat(widget.session.result, label)  # one scale for every class
    means = reference_object_means(heat, objects)
    assert table.loc[7, CLASS_NAMES[label]] == pytest.approx(means[7], rel=1e-5)
    assert table.loc[3, CLASS_NAMES[label]] == pytest.approx(means[3], rel=1e-5)
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


def test_decomposition_adds_the_top_channels_as_an_aligned_stack(viewer, qtbot):
    image, label, _ = scene()
    source = viewer.add_image(image, name="scene", scale=(0.5, 0.25), translate=(7, -3))
    widget = demo_widget(viewer)
    run_and_wait(widget, qtbot)
    assert widget.decompose.enabled
    c = widget.class_select.value
    widget.decompose.clicked.emit()
    layer = viewer.layers[f"scene CAM parts: {CLASS_NAMES[c]}"]
    parts = widget.session.result.contributions(c, 8)
    h, w = parts[0][2].shape
    assert layer.data.shape == (8, h, w)
    np.testing.assert_allclose(layer.data, np.stack([m for _, _, m in parts]), rtol=1e-6)
    meta = layer.metadata["gapcam"]
    assert meta["channels"] == [k for k, _, _ in parts]
    assert meta["weights"] == pytest.approx([wt for _, wt, _ in parts])
    assert meta["planes"][0].startswith(f"k={parts[0][0]} w=")
    # the 8 largest terms: together most of the class's raw map where it is hot
    summed = np.stack([m for _, _, m in parts]).sum(0)
    raw = widget.session.result.raw_cam(c)
    assert np.corrcoef(summed.ravel(), raw.ravel())[0, 1] > 0.5
    # aligned: feature cell (i, j) sits where the CAM puts it, (i + 0.5)·H/h − 0.5
    for cell in [(0, 0), (h - 1, w - 1), (2, 3)]:
        pixel = (np.array(cell) + 0.5) * np.array(image.shape[:2]) / (h, w) - 0.5
        expected = np.asarray(source.data_to_world(pixel))
        np.testing.assert_allclose(layer.data_to_world((0, *cell))[-2:], expected, atol=1e-6)
    assert widget.session.overlays.get(source, "parts") is layer
    # the channel axis's slider names the displayed channel
    (k0, w0, _), (k3, w3, _) = parts[0], parts[3]
    assert viewer.dims.axis_labels[0] == f"k = {k0}, w = {w0:+.4f}"
    viewer.dims.set_current_step(0, 3)
    assert viewer.dims.axis_labels[0] == f"k = {k3}, w = {w3:+.4f}"
    # a class change: the new class's channels, named so; the status names the new class
    other = widget.class_select.choices[1]
    widget.class_select.value = other
    qtbot.wait(50)
    names = [lyr.name for lyr in viewer.layers]
    assert f"scene CAM parts: {CLASS_NAMES[other]}" in names
    assert f"scene CAM parts: {CLASS_NAMES[c]}" not in names
    new = viewer.layers[f"scene CAM parts: {CLASS_NAMES[other]}"]
    assert new.metadata["gapcam"]["class_index"] == other
    assert f"Decomposition of {CLASS_NAMES[other]!r}" in widget.status.value
    k, w, _ = widget.session.result.contributions(other, 8)[int(viewer.dims.current_step[0])]
    assert viewer.dims.axis_labels[0] == f"k = {k}, w = {w:+.4f}"
    # a new run: the decomposition goes, and the axis names no channel
    run_and_wait(widget, qtbot)
    qtbot.wait(50)
    assert [lyr.name for lyr in viewer.layers] == ["scene", "scene CAM"]
    assert not any(label.startswith("k = ") for label in viewer.dims.axis_labels)


def test_decomposition_is_disabled_and_explained_for_grad_cam(viewer, qtbot):
    image, _, _ = scene()
    viewer.add_image(image, name="scene")
    widget = demo_widget(viewer, method="gradcam")
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert not widget.decompose.enabled
    assert "CAM models only" in widget.decompose.text
    assert "ReLU" in widget.decompose.tooltip


def test_all_regions_boxes_every_region_with_its_share(viewer, qtbot):
    import torch

    from napari_gapcam.engine.result import CamResult

    viewer.add_image(np.zeros((224, 288), np.uint8), name="cells", contrast_limits=(0, 255))
    widget = make_widget(viewer, arch="resnet18")
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    features = torch.zeros(1, 7, 9)
    features[0, 1, 1], features[0, 5, 7], features[0, 5, 6] = 1.0, 0.9, 0.9  # two objects
    widget.session.shown.result = CamResult(
        features, torch.tensor([0.0]), torch.ones(1, 1), ["cell"], (224, 288)
    )
    widget.class_select.reset_choices()
    widget.class_select.value = 0
    widget.threshold.value = 0.5
    widget.min_area.value = 64
    widget.all_regions.value = True
    box = viewer.layers["cells CAM box"]
    assert len(box.data) == 2
    meta = box.metadata["gapcam"]
    shares = meta["shares"]
    heat = widget.session.result.cam(0)
    for (y0, x0, y1, x1), share in zip(meta["boxes"], shares, strict=True):
        inside = heat >= 0.5
        assert share == pytest.approx(
            heat[y0:y1, x0:x1][inside[y0:y1, x0:x1]].sum() / heat.sum(), rel=0.05
        )
    assert shares[0] > shares[1] > 0.05  # the larger region first
    assert list(box.features["label"]) == [f"cell {100 * s:.0f} %" for s in shares]
    # the minimum area drops the small region; unticked, one box again
    small = min((b[2] - b[0]) * (b[3] - b[1]) for b in meta["boxes"])
    widget.min_area.value = small + 1  # a region is no larger than its box
    assert len(viewer.layers["cells CAM box"].data) == 1
    widget.all_regions.value = False
    assert len(viewer.layers["cells CAM box"].data) == 1
    assert viewer.layers["cells CAM box"].metadata["gapcam"]["box"] is not None


def test_calibrate_on_drawn_boxes_sets_the_threshold_and_saves_it(viewer, qtbot, tmp_path):
    import json
    import shutil

    from napari_gapcam._napari.widget import FILE
    from napari_gapcam.models import DEMO_WEIGHTS

    image, label, (y0, x0, y1, x1) = scene(seed=5)
    source = viewer.add_image(image, name="scene", scale=(0.5, 0.5), translate=(5, 9))
    # the user draws the true box in world coordinates (pixel edges are at ±0.5)
    corners = np.array([[y0 - 0.5, x0 - 0.5], [y1 - 0.5, x1 - 0.5]])
    world = np.array([source.data_to_world(p) for p in corners])
    truth = viewer.add_shapes([world], shape_type="rectangle", name="truth")
    viewer.layers.selection.active = source
    weights = tmp_path / "shapes.pt"
    shutil.copy(DEMO_WEIGHTS, weights)
    widget = make_widget(viewer, arch="resnet18", weights=FILE, weights_file=weights)
    run_and_wait(widget, qtbot)
    widget.class_select.value = label
    widget.truth.value = truth
    widget.save_tau.value = True
    widget.calibrate.clicked.emit()
    qtbot.waitUntil(lambda: widget.calibrator.metrics is not None, timeout=30_000)
    # an independent reference: plain loops over 101 thresholds, skimage's labelling
    v2, tau = reference_calibration([widget.session.result.cam(label)], [[(y0, x0, y1, x1)]])
    metrics = widget.calibrator.metrics
    assert metrics["max_box_acc_v2"] == pytest.approx(v2)
    assert metrics["best_threshold"][0.5] == pytest.approx(tau)
    text = widget.calibration.value
    assert f"MaxBoxAccV2 {v2:.3f}" in text and f"best τ {tau:.2f}" in text
    assert widget.threshold.value == pytest.approx(min(max(tau, 0.05), 0.95), abs=0.026)
    sidecar = tmp_path / "shapes.pt.gapcam.json"
    assert json.loads(sidecar.read_text()) == {"box_threshold": pytest.approx(tau, abs=1e-4)}
    assert "Saved τ in shapes.pt.gapcam.json" in text
    from napari_gapcam import load_model  # the loader reads it back (the CLI uses it)

    assert load_model("resnet18", weights=weights).box_threshold == pytest.approx(tau, abs=1e-4)


def test_calibrate_over_planes_of_a_stack_and_a_2d_shapes_layer(viewer, qtbot):
    from napari_gapcam._napari.widget import ALL

    samples = [scene(seed=s) for s in (5, 6)]
    stack = np.stack([image for image, _, _ in samples])  # 2×224×288×3
    source = viewer.add_image(stack, name="planes", rgb=True)
    rects = []
    for p, (_, _, (y0, x0, y1, x1)) in enumerate(samples):
        a, b, c, d = y0 - 0.5, x0 - 0.5, y1 - 0.5, x1 - 0.5
        rects.append(np.array([[p, a, b], [p, a, d], [p, c, d], [p, c, b]]))
    truth = viewer.add_shapes(rects, shape_type="rectangle", name="truth")
    viewer.layers.selection.active = source
    widget = demo_widget(viewer, planes=ALL)
    run_and_wait(widget, qtbot)
    c = samples[0][1]
    widget.class_select.value = c
    widget.truth.value = truth
    widget.calibrate.clicked.emit()
    qtbot.waitUntil(lambda: widget.calibrator.metrics is not None, timeout=30_000)
    result = widget.session.result
    boxes = [[box] for _, _, box in samples]
    tops = [int(np.argmax(p)) for p in result.image_probabilities]  # unnamed: each plane's own
    assert [CLASS_NAMES[t] for t in tops] == ["cross", "triangle"]  # a mixed stack
    v2, _ = reference_calibration([result[0].cam(tops[0]), result[1].cam(tops[1])], boxes)
    assert widget.calibrator.metrics["max_box_acc_v2"] == pytest.approx(v2)
    assert "over 2 image(s), 2 box(es) of cross (1), triangle (1)" in widget.calibration.value
    # a 2D Shapes layer over the stack: its boxes lie on the displayed plane
    flat = viewer.add_shapes([rects[1][:, 1:]], shape_type="rectangle", name="flat")
    viewer.layers.selection.active = source
    viewer.dims.set_current_step(0, 1)
    widget.calibrator.metrics = None
    widget.truth.value = flat
    widget.calibrate.clicked.emit()
    qtbot.waitUntil(lambda: widget.calibrator.metrics is not None, timeout=30_000)
    v2, _ = reference_calibration([result[1].cam(tops[1])], boxes[1:])
    assert widget.calibrator.metrics["max_box_acc_v2"] == pytest.approx(v2)
    assert "over 1 image(s), 1 box(es) of triangle (1)" in widget.calibration.value
    # boxes named in the layer's features: each on its named class's map
    truth.features = {"class": ["cross", "star"]}
    widget.truth.value = flat
    widget.truth.value = truth
    widget.calibrator.metrics = None
    widget.calibrate.clicked.emit()
    qtbot.waitUntil(lambda: widget.calibrator.metrics is not None, timeout=30_000)
    star = CLASS_NAMES.index("star")
    v2, _ = reference_calibration([result[0].cam(tops[0]), result[1].cam(star)], boxes)
    assert widget.calibrator.metrics["max_box_acc_v2"] == pytest.approx(v2)
    assert "2 box(es) of cross (1), star (1)" in widget.calibration.value
    # a class the model lacks: refused, named
    truth.features = {"class": ["cross", "blob"]}
    widget.calibrator.metrics = None
    widget.calibrate.clicked.emit()
    assert widget.calibrator.metrics is None
    assert "names class 'blob', which the model lacks" in widget.calibration.value


def sixteen_objects(side: int = 256):
    """A 4×4 mosaic of synthetic scenes: three of each class but the disk, and one disk (so the
    disk is not among the image's top 5), with a label image of the 16 objects' boxes."""
    rng = np.random.default_rng(7)
    wanted = [c for c in range(len(CLASS_NAMES)) if CLASS_NAMES[c] != "disk"] * 3
    wanted.insert(9, CLASS_NAMES.index("disk"))
    canvas = np.zeros((4 * side, 4 * side, 3), np.uint8)
    objects, truths = np.zeros(canvas.shape[:2], np.int32), []
    for n, want in enumerate(wanted):
        image, label, (y0, x0, y1, x1) = make_sample(rng, size=(side, side))
        while label != want:
            image, label, (y0, x0, y1, x1) = make_sample(rng, size=(side, side))
        oy, ox = (n // 4) * side, (n % 4) * side
        canvas[oy : oy + side, ox : ox + side] = image
        objects[oy + y0 : oy + y1, ox + x0 : ox + x1] = n + 1
        truths.append(CLASS_NAMES[label])
    return canvas, objects, truths


def test_sixteen_objects_all_right_though_one_class_is_not_in_the_top_5(viewer, qtbot):
    from napari_gapcam._napari.widget import TILES

    canvas, objects, truths = sixteen_objects()
    source = viewer.add_labels(objects, name="cells")  # under the image: the CAM would hide it
    viewer.add_image(canvas, name="mosaic")
    viewer.layers.move(viewer.layers.index(source), 0)
    viewer.layers.selection.active = viewer.layers["mosaic"]
    widget = demo_widget(viewer, mode=TILES)
    widget.objects.value = source
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: "cam_class" in source.features, timeout=60_000)
    top5 = [name for _, name, _ in widget.session.shown.top(5)]
    assert "disk" not in top5  # scored all the same
    table = source.features.set_index("index")
    called = [table.loc[n + 1, "cam_class"] for n in range(16)]
    assert called == truths
    assert "disk" in table.columns and len(table.columns) <= 2 + 6 + 2
    widget.colour_objects.value = True  # coloured, and lifted above the CAM to be seen
    rows = [layer.name for layer in viewer.layers]
    assert rows.index("cells") > rows.index("mosaic CAM")


def test_too_many_maps_score_the_top_classes_and_a_later_class_anew(viewer, qtbot, monkeypatch):
    from napari_gapcam._napari import objects as objects_module

    monkeypatch.setattr(objects_module, "ALL_CLASSES_VALUES", 1)  # as for a slide's tiles
    image, label, (y0, x0, y1, x1) = scene()
    viewer.add_image(image, name="scene")
    cells = np.zeros(image.shape[:2], np.int32)
    cells[y0:y1, x0:x1] = 1
    layer = viewer.add_labels(cells, name="cells")
    viewer.layers.selection.active = viewer.layers["scene"]
    widget = demo_widget(viewer)
    widget.objects.value = layer
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: "cam_class" in layer.features, timeout=30_000)
    top5 = [name for _, name, _ in widget.session.shown.top(5)]
    assert list(layer.features.columns) == ["index", "area", *top5, "cam_class", "cam_share"]
    last = next(i for i, name in enumerate(CLASS_NAMES) if name not in top5)
    widget.class_select.value = last  # not scored: scored anew, its column comes
    qtbot.waitUntil(lambda: CLASS_NAMES[last] in layer.features.columns, timeout=30_000)
    heat = reference_raw_heat(widget.session.result, last)
    mean = reference_object_means(heat, cells)[1]
    assert layer.features.set_index("index").loc[1, CLASS_NAMES[last]] == pytest.approx(
        mean, rel=1e-5
    )
