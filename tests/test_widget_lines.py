"""The dock's lines as the user reads them at real size: a stack's plane said as a number (not a
Python tuple), and *compare methods*' line says what to do once a new run has ended."""

from __future__ import annotations

import numpy as np
import pandas as pd

from _widgets import TIMEOUT_MS, make_widget, run_and_wait
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL


def scene(seed, size=(64, 64)):
    from napari_gapcam.synthetic import make_sample

    return make_sample(np.random.default_rng(seed), size=size)[0]


class Reentrant:
    """napari's progress bar as it may behave: its ``update`` runs the events queued (the
    job's next yields among them) before it returns."""

    def __init__(self, total=0):
        from napari.utils import progress

        self._bar, self.n = progress(total=total), 0

    def set_description(self, text):
        self._bar.set_description(text)

    def update(self, n):
        import time

        from qtpy.QtWidgets import QApplication

        self.n += n
        self._bar.update(n)
        time.sleep(0.2)  # the job yields on meanwhile
        QApplication.processEvents()

    def close(self):
        self._bar.close()


def test_a_plane_is_a_number_and_the_compare_line_follows_the_run(viewer, qtbot, monkeypatch):
    from napari_gapcam._napari import compare, compare_job

    viewer.add_image(np.stack([scene(seed) for seed in range(3)]), name="stack", rgb=True)
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO)  # the current plane
    viewer.dims.set_current_step(0, 2)
    run_and_wait(widget, qtbot)
    assert "'stack' plane 2: input" in widget.status.value  # (was "plane (2,)")

    row = {"image": 0, "class": 0, "class_name": "", "method": "", "score": 0.5}
    monkeypatch.setattr(compare_job, "faithfulness_scores", lambda *_a, **_k: pd.DataFrame([row]))
    monkeypatch.setattr(compare, "progress", Reentrant)
    widget.compare.methods.value = ["gradcam"]
    widget.compare.button.clicked.emit()
    qtbot.waitUntil(lambda: widget.compare.worker is None, timeout=TIMEOUT_MS)
    qtbot.wait(100)  # every yield delivered
    line = widget.compare.status.value  # the outcome's line, not a step's said after it
    assert line.startswith("1 method(s) on 'stack' plane 2, class"), line

    widget.run_button.clicked.emit()  # a new run: the comparison goes, the line says so
    assert "once it ends" in widget.compare.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)
    line = widget.compare.status.value
    assert "once it ends" not in line and "press Compare" in line  # it has ended
