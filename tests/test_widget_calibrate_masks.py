"""Calibrate on a Labels layer of true masks: each object's box for MaxBoxAccV2, masks for PxAP."""

from __future__ import annotations

import numpy as np
import pytest

from _references import reference_average_precision, reference_calibration
from _widgets import make_widget, run_and_wait
from napari_gapcam._napari.widget import FILE
from napari_gapcam.models import DEMO_WEIGHTS
from napari_gapcam.synthetic import make_sample_with_mask


def test_calibrate_on_true_masks_gives_pxap_too(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, label, box, mask = make_sample_with_mask(np.random.default_rng(5), size=(224, 288))
    viewer.add_image(image, name="scene")
    truth = viewer.add_labels(mask.astype(np.uint8) * 3, name="true masks")
    viewer.layers.selection.active = viewer.layers["scene"]
    widget = make_widget(viewer, arch="resnet18", weights=FILE, weights_file=DEMO_WEIGHTS)
    run_and_wait(widget, qtbot)
    widget.class_select.value = label
    combo = widget.truth.native  # Labels layers are offered, by name
    assert "true masks" in [combo.itemText(i) for i in range(combo.count())]
    widget.truth.value = truth
    widget.calibrate.clicked.emit()
    qtbot.waitUntil(lambda: widget.calibrator.metrics is not None, timeout=30_000)
    # independent references: plain loops over the thresholds, AP over the pixels' scores
    heat = widget.session.result.cam(label)
    v2, tau = reference_calibration([heat], [[box]])
    unit = (heat - heat.min()) / (heat.max() - heat.min())
    taus = np.linspace(0, 1, 101)
    on_grid = taus[np.searchsorted(taus, unit, side="right") - 1]  # PxAP's 101 thresholds
    pxap = reference_average_precision(on_grid.ravel(), mask.ravel())
    metrics = widget.calibrator.metrics
    assert metrics["max_box_acc_v2"] == pytest.approx(v2)
    assert metrics["pxap"] == pytest.approx(pxap, abs=1e-6)
    assert f"PxAP {pxap:.3f}" in widget.calibration.value
    assert widget.threshold.value == pytest.approx(min(max(tau, 0.05), 0.95), abs=0.026)


def test_a_box_s_class_comes_from_the_shapes_features_or_text():
    from napari.layers import Shapes

    from napari_gapcam._napari.calibrate import box_classes

    r = np.array([[0, 0], [0, 5], [5, 5], [5, 0]])
    assert box_classes(Shapes([r, r], features={"class": ["ring", ""]})) == ["ring", None]
    assert box_classes(Shapes([r, r], features={"k": ["a", "b"]}, text="{k}")) == ["a", "b"]
    assert box_classes(Shapes([r, r], text={"string": {"constant": "star"}})) == ["star"] * 2
    assert box_classes(Shapes([r, r])) == [None, None]  # unnamed: the plane's top class
