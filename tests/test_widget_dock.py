"""The dock as a user meets it: it fits a laptop screen, shows only what applies, folds."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QApplication, QScrollArea

from _widgets import combo_items, make_widget, run_and_wait
from napari_gapcam._napari.widget import DEMO, DEMO_MODEL, TILES


def settle(qtbot, ms: int = 50) -> None:
    qtbot.wait(ms)
    QApplication.processEvents()


def controls(widget) -> list:
    """Every control of the dock (the widget's own attributes that are magicgui widgets)."""
    from magicgui.widgets.bases import ValueWidget

    names = ["image", "arch", "weights", "method", "device", "input_size", "square", "mode"]
    names += ["planes", "scale", "overlay_mp", "run_button", "status", "predictions"]
    names += ["class_select", "showing", "threshold", "show_box", "show_mask", "all_regions"]
    names += ["min_area", "show_tiles", "objects", "colour_objects", "objects_info"]
    names += ["decompose", "truth", "calibrate", "save_tau", "calibration"]
    found = [getattr(widget, name) for name in names]
    found += [widget.compare.methods, widget.compare.button, widget.compare.status]
    assert all(isinstance(c, ValueWidget) or hasattr(c, "native") for c in found)
    return found


def test_the_dock_fits_a_laptop_screen_and_every_control_is_reachable(
    make_napari_viewer, qtbot, torch_home
):
    from napari_gapcam.synthetic import sample_scene

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1366, 768)
    viewer.add_image(sample_scene(), name="scene", rgb=True)
    settle(qtbot)
    before = window.minimumSizeHint().height()
    widget = make_widget(viewer, arch=DEMO_MODEL, weights=DEMO)
    dock = widget.native.parent()  # napari's dock widget
    settle(qtbot)
    assert dock.minimumSizeHint().height() <= 600
    assert window.minimumSizeHint().height() - before <= 600
    widget.show_box.value = True
    run_and_wait(widget, qtbot)
    widget.session.say("Error: " + "a long message that wraps " * 20)  # never grows it
    settle(qtbot)
    assert window.height() <= 768 and window.minimumSizeHint().height() <= 768
    scroll = next(w for w in dock.findChildren(QScrollArea))
    for section in widget.sections.values():
        section.fold(False)
    for control in controls(widget):
        if control.native.isHidden():  # does not apply here (a stack's planes, tiles' layer)
            continue
        scroll.ensureWidgetVisible(control.native)
        settle(qtbot, 5)
        viewport = scroll.viewport()
        top_left = control.native.mapTo(viewport, control.native.rect().topLeft())
        assert 0 <= top_left.y() <= viewport.height() - 5, control.label or control.text
        assert top_left.x() >= 0 and top_left.x() + 20 <= viewport.width()


def shown(control) -> bool:
    """Not hidden by the dock (``visible`` is False for every control until napari shows)."""
    return not control.native.isHidden()


def test_only_the_controls_that_apply_are_shown(viewer, qtbot):
    flat = viewer.add_image(np.zeros((64, 64), np.uint8), name="flat")
    widget = make_widget(viewer)
    assert not shown(widget.planes) and shown(widget.scale)  # one plane: no planes
    assert combo_items(widget.scale) == ["relative to the top class", "stretched (min-max)"]
    assert not shown(widget.show_tiles) and not shown(widget.min_area)
    stack = viewer.add_image(np.zeros((3, 64, 64), np.uint8), name="stack")
    widget.image.value = stack
    assert shown(widget.planes) and combo_items(widget.scale)[-1] == "shared across the stack"
    widget.mode.value = TILES
    assert shown(widget.show_tiles)  # the tiles' own layer, in tiles mode only
    widget.all_regions.value = True
    assert shown(widget.min_area)
    widget.image.value = flat
    assert not shown(widget.planes)


def test_rarely_used_sections_start_folded_and_labels_are_distinct(viewer):
    widget = make_widget(viewer)
    folded = {name for name, section in widget.sections.items() if section.folded}
    assert folded == {"objects", "truth", "compare"}
    objects = widget.sections["objects"]
    assert objects.header.text == "▸ Objects"
    objects.header.clicked.emit()  # the user opens it
    assert not objects.folded and objects.header.text == "▾ Objects"
    labels = [c.label for c in controls(widget) if getattr(c, "label", "")]
    assert len(labels) == len(set(labels)), labels  # "objects" and "scores", not two "objects"
