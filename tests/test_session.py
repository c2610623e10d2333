"""The dock's view model alone: a Session on napari's ViewerModel, jobs run inline, no Qt."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from skimage import data

from _references import reference_raw_heat
from napari_gapcam._napari.class_view import ClassView
from napari_gapcam._napari.decompose import Decomposition
from napari_gapcam._napari.jobs import InlineJobs
from napari_gapcam._napari.objects import ObjectScores
from napari_gapcam._napari.session import RunRequest, Session
from napari_gapcam.models import DEMO_WEIGHTS
from napari_gapcam.models.spec import ModelSpec

DEMO = ModelSpec(arch="resnet18", weights=str(DEMO_WEIGHTS), device="cpu")


@pytest.fixture
def viewer():
    from napari.components import ViewerModel

    return ViewerModel()


def session_on(viewer) -> tuple[Session, ClassView, list]:
    """A session with its class view, and the events it sent as (name, value)."""
    session = Session(viewer, InlineJobs())
    view = ClassView(session)
    heard: list = []
    session.events.text.connect(lambda name, value: heard.append((name, value)))
    session.events.classes.connect(lambda value: heard.append(("classes", value)))
    return session, view, heard


def test_a_run_shows_its_result_and_says_so(viewer):
    from napari_gapcam.synthetic import sample_scene

    source = viewer.add_image(sample_scene(), name="scene", rgb=True)
    session, _, heard = session_on(viewer)
    session.run(RunRequest(source, DEMO))
    assert not session.busy and session.model is not None
    result = session.result
    top = result.topk(1)[0]
    assert session.choices.class_index == top[0] and ("classes", top[0]) in heard
    assert session.status.startswith("resnet18 (CAM) on 'scene'")
    assert session.texts["showing"].startswith(top[1])
    assert session.class_items()[0] == (f"{top[1]}  ({100 * top[2]:.1f} %)", top[0])
    cam = viewer.layers["scene CAM"]
    np.testing.assert_allclose(cam.data, result.cam(top[0]), atol=1e-6)
    assert viewer.layers.selection.active is cam
    assert session.choices.threshold == pytest.approx(0.55)  # the checkpoint's suggestion
    # a choice redraws what depends on it, with no forward pass
    session.model.features = None
    other = session.class_items()[2][1]
    session.choose("class_index", other)
    assert cam.metadata["gapcam"]["class_index"] == other and not session.follow_top
    np.testing.assert_allclose(cam.data, result.cam(other, scale="relative"), atol=1e-6)
    session.choose("show_box", True)
    box = viewer.layers["scene CAM box"]
    y0, x0, y1, x1 = result.box(other, session.choices.threshold)
    np.testing.assert_allclose(box.data[0].min(0), [y0 - 0.5, x0 - 0.5])
    session.choose("threshold", 0.8)
    assert box.metadata["gapcam"]["threshold"] == pytest.approx(0.8)
    # the source goes: its overlays go too, and the lines say so
    viewer.layers.remove(source)
    assert len(viewer.layers) == 0 and session.shown is None
    assert "'scene' was removed" in session.status and session.class_items() == []


def test_all_planes_each_plane_its_map_and_a_shared_scale(viewer):
    stack = np.stack([data.camera()[::8, ::8], data.camera()[::8, ::8][::-1], np.zeros((64, 64))])
    source = viewer.add_image(stack.astype(np.uint8), name="planes", contrast_limits=(0, 255))
    session, _, _ = session_on(viewer)
    session.run(RunRequest(source, DEMO, all_planes=True))
    assert len(session.result) == 3 and session.shown.done == 3
    assert (
        "3 of 3 planes" in session.status and "mean over the planes" in session.texts["predictions"]
    )
    c = session.choices.class_index
    cam = viewer.layers["planes CAM"]
    expected = session.result.cams(c, scale="relative")  # the default: p_c / p_top
    np.testing.assert_allclose(np.asarray(cam.data), expected, atol=1e-6)
    session.choose("scale", "shared")
    planes = np.asarray(cam.data)
    np.testing.assert_allclose(planes, session.result.cams(c, scale="shared"), atol=1e-6)
    assert planes[2].max() < 0.5 < planes[:2].max()  # the blank plane stays cool
    # the box follows the plane napari displays
    session.choose("show_box", True)
    viewer.dims.set_current_step(0, 1)
    assert viewer.layers["planes CAM box"].metadata["gapcam"]["plane"] == [1]


def test_features_sit_on_the_session(viewer):
    from napari_gapcam.synthetic import make_sample

    image, label, (y0, x0, y1, x1) = make_sample(np.random.default_rng(3), size=(224, 288))
    source = viewer.add_image(image, name="scene", rgb=True)
    objects = np.zeros(image.shape[:2], np.int32)
    objects[y0:y1, x0:x1] = 7
    cells = viewer.add_labels(objects, name="cells")
    session, _, _ = session_on(viewer)
    scores, parts = ObjectScores(session), Decomposition(session)
    scores.labels = cells
    session.run(RunRequest(source, DEMO))
    assert "cam_class" in cells.features  # scored when the run ended
    heat = reference_raw_heat(session.result, label)  # objects compare on the raw map
    column = cells.features.set_index("index").loc[7, session.result.class_names[label]]
    assert column == pytest.approx(float(heat[objects == 7].mean()), rel=1e-5)
    assert parts.enabled and "Σ w[c, k]" in parts.tooltip
    parts.add()
    name = session.result.class_names[session.choices.class_index]
    assert viewer.layers[f"scene CAM parts: {name}"].data.shape[0] == 8


def test_the_session_and_its_features_import_no_qt():
    """The view model needs napari's layer model only (vispy's colours, no Qt binding)."""
    code = (
        "import sys\n"
        "import napari_gapcam._napari.session, napari_gapcam._napari.class_view\n"
        "import napari_gapcam._napari.objects, napari_gapcam._napari.decompose\n"
        "import napari_gapcam._napari.calibrate, napari_gapcam._napari.jobs\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in\n"
        "       ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
