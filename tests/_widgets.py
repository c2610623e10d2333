"""Helpers shared by the widget tests: a docked widget with a random-init model, a waited run."""

from __future__ import annotations

from typing import Any

from napari_gapcam._napari.widget import RANDOM, GapCamWidget

TIMEOUT_MS = 120_000


def make_widget(viewer: Any, **settings: Any) -> GapCamWidget:
    """A docked widget on the CPU with random weights; ``settings`` set its controls in order."""
    widget = GapCamWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GAP-CAM")
    settings = {"weights": RANDOM, "device": "cpu", **settings}
    if "arch" in settings:  # the weights choices follow the model
        widget.arch.value = settings.pop("arch")
    for name, value in settings.items():
        getattr(widget, name).value = value
    return widget


def run_and_wait(widget: GapCamWidget, qtbot: Any) -> None:
    widget.run_button.clicked.emit()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT_MS)


def layer_rows(viewer: Any) -> list[str]:
    """The names the layer list shows, top to bottom (a blank row shows as '')."""
    from qtpy.QtCore import Qt

    view = viewer.window._qt_viewer.layers
    model = view.model()
    return [
        str(model.data(model.index(row, 0), Qt.ItemDataRole.DisplayRole) or "")
        for row in range(model.rowCount())
    ]


def combo_items(combo: Any, count: int | None = None) -> list[str]:
    """A combo box's item labels in the order the user sees them (the first ``count``)."""
    native = combo.native
    return [native.itemText(i) for i in range(native.count() if count is None else count)]
