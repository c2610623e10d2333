"""Score-CAM in the dock: a stack's maps cost network passes, so they are made in a job off the
UI thread; napari then reads each plane's map with no network pass (no frozen viewer), and each
plane shows its own Score-CAM map. The class job's Cancel (the Run button) stops it within a
step and leaves the overlay as it was; another class chosen cancels it; its late steps are
ignored. *Each plane's top class* is made in the same job, each plane its own class's map."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from _widgets import TIMEOUT_MS, layer_rows, make_widget, run_and_wait
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


# ------------------------------------------------------------------ the class job's Cancel
PLANES = 8  # two steps of the class job


class Gate:
    """Class jobs watched: each one's yields (``steps``: class, step), and a forward pre-hook on
    every module that, once armed, holds the first class job's thread to run a module there
    until released, then counts that thread's module calls."""

    def __init__(self) -> None:
        self.jobs: set[int] = set()  # the class jobs' threads
        self.steps: list[tuple[int, tuple[int, int]]] = []
        self.armed, self.held, self.calls_after = False, None, 0
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, _module, _args) -> None:
        me = threading.get_ident()
        if not self.armed or me not in self.jobs or self.held not in (None, me):
            return
        if self.release.is_set():
            self.calls_after += 1
            return
        self.held = me
        self.inside.set()
        self.release.wait(60)

    def watched(self, class_maps):
        def job(result, index, model, token):
            self.jobs.add(threading.get_ident())
            for step in class_maps(result, index, model, token):
                self.steps.append((index, step))
                yield step

        return job


@pytest.fixture
def gate(monkeypatch):
    import torch

    from napari_gapcam._napari import class_job

    held = Gate()
    monkeypatch.setattr(class_job, "class_maps", held.watched(class_job.class_maps))
    handle = torch.nn.modules.module.register_module_forward_pre_hook(held)
    yield held
    held.release.set()
    handle.remove()


@pytest.fixture
def drawn(monkeypatch):
    """Every CAM overlay drawn: the class it was drawn for, in order."""
    from napari_gapcam._napari.overlay_layers import Overlays

    classes: list[int] = []
    show_cam = Overlays.show_cam

    def spy(self, source, placement, meta, fill):
        classes.append(meta["class_index"])
        return show_cam(self, source, placement, meta, fill)

    monkeypatch.setattr(Overlays, "show_cam", spy)
    return classes


def scorecam_stack(viewer, qtbot, monkeypatch, wait: bool = True):
    """A Score-CAM run on a stack (``wait``: until its top class is drawn); each class's maps
    rerun the network (no channel scores kept, as on a stack too big to keep them)."""
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    monkeypatch.setattr("napari_gapcam.engine.kept_inputs.SCORES_BYTES", 0)
    viewer.add_image(np.stack([sample_scene(s)[:64, :64] for s in range(PLANES)]), name="stack",
                     rgb=True)  # fmt: skip
    widget = make_widget(viewer, planes="all planes")
    model = napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu", method="scorecam")
    widget.use_model(model.with_method("scorecam", max_channels=32))  # a few passes a plane
    widget.models.set_input_size_text("64")
    if not wait:
        widget.run_button.clicked.emit()
        return widget
    run_and_wait(widget, qtbot)  # the run, then its top class's job
    assert viewer.layers["stack CAM"].metadata["gapcam"]["class_index"] == widget.class_select.value
    return widget


def what_is_seen(viewer, widget):
    layer = viewer.layers["stack CAM"]
    seen = (layer.name, layer.metadata["gapcam"]["class_index"], layer_rows(viewer))
    return (*seen, widget.class_select.value), np.asarray(layer.data).copy()


def wait_job_ended(job, qtbot) -> None:
    qtbot.waitUntil(lambda: not job.is_running, timeout=TIMEOUT_MS)
    qtbot.wait(100)  # its last signals are delivered


def test_cancel_stops_a_class_job_and_leaves_the_overlay_as_it_was(
    make_napari_viewer, qtbot, monkeypatch, gate, drawn
):
    viewer = make_napari_viewer()
    widget = scorecam_stack(viewer, qtbot, monkeypatch)
    session, result = widget.session, widget.session.result
    seen, data = what_is_seen(viewer, widget)
    other = widget.class_select.choices[2]
    gate.armed, drawn[:] = True, []
    widget.class_select.value = other
    qtbot.waitUntil(gate.inside.is_set, timeout=TIMEOUT_MS)  # inside its first step
    assert widget.run_button.text == "Cancel" and widget.run_button.enabled
    assert widget.status.value.startswith("Score-CAM of")
    job = session.class_worker
    widget.run_button.clicked.emit()  # Cancel
    assert widget.run_button.text == "Run" and widget.run_button.enabled and not widget.busy
    name = result.class_names[other]
    assert widget.status.value.startswith(f"Cancelled Score-CAM of {name!r} after 0 of 8 planes")
    gate.release.set()
    wait_job_ended(job, qtbot)
    assert gate.calls_after == 0  # its thread stopped before the next module
    assert not any(result[i].is_ready(other) for i in range(PLANES))  # nothing of it made
    assert drawn == []  # nothing drawn: the overlay, its name, the list are as they were
    now, now_data = what_is_seen(viewer, widget)
    assert now == seen and seen[-1] != other  # the class list shows the overlay's class again
    np.testing.assert_array_equal(now_data, data)
    assert widget.status.value.startswith("Cancelled")
    widget.class_select.value = other  # chosen again: made, then drawn
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert drawn == [other]
    assert viewer.layers["stack CAM"].metadata["gapcam"]["class_index"] == other


def test_a_new_class_cancels_the_running_job_whose_late_step_is_ignored(
    make_napari_viewer, qtbot, monkeypatch, gate, drawn
):
    from napari_gapcam._napari import class_job

    class Deaf(class_job.CancelToken):
        """A token its job does not hear: the job ends its step and yields it late."""

        def set(self) -> None:
            return None

    viewer = make_napari_viewer()
    widget = scorecam_stack(viewer, qtbot, monkeypatch)
    monkeypatch.setattr(class_job, "CancelToken", Deaf)
    result, (first, second) = widget.session.result, widget.class_select.choices[2:4]
    gate.armed, drawn[:] = True, []
    widget.class_select.value = first
    qtbot.waitUntil(gate.inside.is_set, timeout=TIMEOUT_MS)
    old = widget.session.class_worker
    widget.class_select.value = second  # the first class's job is cancelled, the second's starts
    assert widget.session.class_worker is not old and widget.run_button.text == "Cancel"
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert drawn == [second] and widget.class_select.value == second
    seen, data = what_is_seen(viewer, widget)
    status = widget.status.value
    gate.release.set()  # the first job ends its step and yields it, late
    wait_job_ended(old, qtbot)
    assert (first, (4, PLANES)) in gate.steps  # it did yield ...
    assert drawn == [second]  # ... and nothing of it reached the overlay or the lines
    now, now_data = what_is_seen(viewer, widget)
    assert now == seen and seen[1] == second
    np.testing.assert_array_equal(now_data, data)
    assert widget.status.value == status and "planes…" not in status
    assert not widget.busy and widget.run_button.text == "Run"
    assert result.is_ready(second) and not result.is_ready(first)


def test_cancel_before_any_overlay_leaves_no_class_chosen(
    make_napari_viewer, qtbot, monkeypatch, gate, drawn
):
    viewer = make_napari_viewer()
    gate.armed = True  # the run's top class: its job is held
    widget = scorecam_stack(viewer, qtbot, monkeypatch, wait=False)
    qtbot.waitUntil(gate.inside.is_set, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: widget.session.worker is None, timeout=TIMEOUT_MS)  # the run ended
    top, job = widget.class_select.value, widget.session.class_worker
    assert widget.run_button.text == "Cancel" and job is not None
    widget.run_button.clicked.emit()  # Cancel
    gate.release.set()
    wait_job_ended(job, qtbot)
    name = widget.session.result.class_names[top]
    assert widget.status.value == (
        f"Cancelled Score-CAM of {name!r} after 0 of 8 planes: the overlay is not made yet."
    )
    assert drawn == [] and "stack CAM" not in layer_rows(viewer)
    assert widget.class_select.native.currentIndex() == -1  # no class: the same one is a pick
    assert widget.run_button.text == "Run" and widget.run_button.enabled
    widget.class_select.value = top
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert drawn == [top] and viewer.layers["stack CAM"].metadata["gapcam"]["class_index"] == top


# ------------------------------------------------------------------ each plane's top class
def test_each_planes_top_class_is_made_in_a_job_each_plane_its_own(
    make_napari_viewer, qtbot, monkeypatch, gate, drawn
):
    import napari_gapcam
    from napari_gapcam._napari.names import EACH_TOP, EACH_TOP_NAME
    from napari_gapcam.models import DEMO_WEIGHTS

    viewer = make_napari_viewer()
    widget = scorecam_stack(viewer, qtbot, monkeypatch)
    session, result = widget.session, widget.session.result
    said: list[str] = []
    session.events.text.connect(lambda name, value: name == "status" and said.append(value))
    drawn[:] = []
    widget.class_select.value = EACH_TOP
    assert widget.run_button.text == "Cancel"  # made in the class job, not here
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    assert threading.main_thread().ident not in gate.jobs  # never on the UI thread
    assert gate.steps[-2:] == [(EACH_TOP, (4, PLANES)), (EACH_TOP, (PLANES, PLANES))]
    assert f"Score-CAM of {EACH_TOP_NAME!r}: 4 of 8 planes…" in said  # its progress
    assert drawn == [EACH_TOP] and widget.class_select.value == EACH_TOP
    assert widget.status.value == session.run_line  # the run's line again, no error
    assert widget.showing.value.startswith(f"{EACH_TOP_NAME}: ")
    layer = viewer.layers["stack CAM"]
    assert layer.metadata["gapcam"]["class_name"] == EACH_TOP_NAME
    calls, model = [], result.network
    forward = model.forward_batch
    model.forward_batch = lambda *a, **k: calls.append(1) or forward(*a, **k)
    try:
        shown = [np.asarray(layer.data[i]) for i in range(PLANES)]
    finally:
        model.forward_batch = forward
    assert calls == []  # napari read every plane's map: no network pass on the UI thread
    own = napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu", method="scorecam")
    own = own.with_method("scorecam", max_channels=32)
    stack = viewer.layers["stack"].data
    tops = []
    for i in range(PLANES):  # each plane's own answer: its top class's Score-CAM map
        plane = own.run(stack[i], input_size=64)
        top = plane.topk(1)[0][0]
        tops.append(top)
        expected = plane.cam(top, shape=shown[i].shape, scale="relative")
        np.testing.assert_allclose(shown[i], expected, atol=0.03)
    assert len(set(tops)) > 1  # the planes' top classes differ: each shows its own


def test_cancel_each_planes_top_class_names_it_and_keeps_the_overlay(
    make_napari_viewer, qtbot, monkeypatch, gate, drawn
):
    from napari_gapcam._napari.names import EACH_TOP, EACH_TOP_NAME

    viewer = make_napari_viewer()
    widget = scorecam_stack(viewer, qtbot, monkeypatch)
    top, result = widget.class_select.value, widget.session.result
    gate.armed, drawn[:] = True, []
    widget.class_select.value = EACH_TOP
    qtbot.waitUntil(gate.inside.is_set, timeout=TIMEOUT_MS)
    job = widget.session.class_worker
    widget.run_button.clicked.emit()  # Cancel
    name = result.class_names[top]
    assert widget.status.value == (
        f"Cancelled Score-CAM of {EACH_TOP_NAME!r} after 0 of 8 planes: "
        f"the overlay still shows {name!r}."
    )
    gate.release.set()
    wait_job_ended(job, qtbot)
    assert drawn == [] and widget.class_select.value == top
    assert viewer.layers["stack CAM"].metadata["gapcam"]["class_index"] == top


def test_calibrating_a_score_cam_stack_makes_its_maps_in_the_job(
    make_napari_viewer, qtbot, monkeypatch
):
    """Before, *calibrate* made each boxed plane's map on the UI thread: with Score-CAM, boxes
    of classes other than the one shown (named, or each plane's own top class) ran the network
    there, a frozen viewer. Now the maps are made in the calibration's job; the scores are
    those of each plane's own map of the box's class."""
    from _references import reference_calibration

    viewer = make_napari_viewer()
    widget = scorecam_stack(viewer, qtbot, monkeypatch)
    result = widget.session.result
    names = result.class_names
    others = [c for c in range(len(names)) if c != widget.class_select.value][:2]
    boxes = [(10, 12, 40, 50), (20, 8, 60, 36)]  # (y0, x0, y1, x1), half-open, on planes 1, 5
    rects = []
    for plane, (y0, x0, y1, x1) in zip((1, 5), boxes, strict=True):
        a, b, c, d = y0 - 0.5, x0 - 0.5, y1 - 0.5, x1 - 0.5
        rects.append(np.array([[plane, a, b], [plane, a, d], [plane, c, d], [plane, c, b]]))
    truth = viewer.add_shapes(rects, shape_type="rectangle", name="truth")
    truth.features = {"class": [names[c] for c in others]}
    viewer.layers.selection.active = viewer.layers["stack"]
    widget.truth.value = truth
    on_ui, model = [], result.network
    forward = model.forward_batch

    def watched(*args, **kwargs):
        on_ui.append(threading.current_thread() is threading.main_thread())
        return forward(*args, **kwargs)

    model.forward_batch = watched
    try:
        widget.calibrate.clicked.emit()
        qtbot.waitUntil(lambda: widget.calibrator.metrics is not None, timeout=TIMEOUT_MS)
    finally:
        model.forward_batch = forward
    assert on_ui and not any(on_ui)  # the network ran, in the job only
    maps = [result[1].cam(others[0]), result[5].cam(others[1])]
    v2, _ = reference_calibration(maps, [[box] for box in boxes])
    assert widget.calibrator.metrics["max_box_acc_v2"] == pytest.approx(v2, abs=0.02)
    counted = ", ".join(f"{names[c]} (1)" for c in sorted(others, key=lambda c: names[c]))
    assert f"over 2 image(s), 2 box(es) of {counted}" in widget.calibration.value
