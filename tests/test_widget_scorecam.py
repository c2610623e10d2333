"""Score-CAM in the dock: a stack's maps cost network passes, so they are made in a job off the
UI thread; napari then reads each plane's map with no network pass (no frozen viewer), and each
plane shows its own Score-CAM map."""

from __future__ import annotations

import numpy as np

from _widgets import TIMEOUT_MS, make_widget, run_and_wait
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL
from napari_gapcam.synthetic import sample_scene


def test_a_score_cam_stack_is_made_in_a_job_and_read_with_no_pass(make_napari_viewer, qtbot):
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    viewer = make_napari_viewer()
    planes = np.stack([sample_scene(seed)[:64, :64] for seed in range(3)])
    viewer.add_image(planes, name="stack", rgb=True)
    widget = make_widget(
        viewer, arch=DEMO_MODEL, weights=DEMO, method="scorecam", planes="all planes"
    )
    widget.models.set_input_size_text("64")  # 512 masked inputs of 64² a plane
    run_and_wait(widget, qtbot)
    qtbot.waitUntil(lambda: widget.session.class_worker is None, timeout=TIMEOUT_MS)
    result = widget.session.result
    c = widget.session.choices.class_index
    assert result.is_ready(c)  # every plane's map made in the job, off the UI thread
    calls = []
    model = result.network
    forward = model.forward_batch
    model.forward_batch = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        viewer.dims.set_current_step(0, 2)
        layer = viewer.layers["stack CAM"]
        shown = np.asarray(layer.data[2])
    finally:
        model.forward_batch = forward
    assert calls == []  # napari read plane 2's map: no network pass on the UI thread
    own = napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu", method="scorecam")
    expected = own.run(planes[2], input_size=64).raw_cam(c)
    made = result[2].raw_cam(c)
    np.testing.assert_allclose(made, expected, rtol=0.02, atol=0.02 * np.abs(expected).max())
    assert shown.shape[-2:] == layer.data.shape[-2:]
