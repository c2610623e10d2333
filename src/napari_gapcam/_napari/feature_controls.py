"""The controls of the objects, regions, decomposition and calibration features.

:func:`add_feature_controls` creates them on the widget (as attributes), connects them to the
widget's mixins (:mod:`._objects`, :mod:`._regions`, :mod:`._decompose`, :mod:`._calibrate`)
and returns them in the order they appear in the dock.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Label, PushButton, SpinBox

from .calibrate import shapes_choices
from .decompose import LABEL
from .objects import labels_choices
from .status import fit_label
from .tiles_view import TILES, WHOLE


def add_run_controls(widget: Any) -> None:
    """The resolution (whole image or tiles), the stack overlays' scale, the tile layer."""
    widget.mode = ComboBox(
        label="resolution",
        choices=[WHOLE, TILES],
        value=WHOLE,
        tooltip="Whole image shrunk to the input size, or tiles at native pixels (the "
        "pyramid level displayed, the displayed plane; CAM models only).",
    )
    widget.scale = ComboBox(
        label="scale",
        choices=[("per plane", "each"), ("shared across the stack", "shared")],
        value="each",
        tooltip="A stack's maps: each plane min-max normalised on its own, or one min and "
        "max over every plane (so planes compare).",
    )
    widget.show_tiles = CheckBox(text="tile probabilities", value=False)
    widget.scale.changed.connect(widget._refresh_overlays)
    widget.show_tiles.changed.connect(widget._show_tile_layer)


def add_feature_controls(widget: Any) -> list[Any]:
    viewer = widget._viewer
    widget._saved_colormaps = {}
    widget._objects_worker = None
    widget.objects = ComboBox(
        label="objects",
        choices=lambda _w=None: labels_choices(viewer),
        tooltip="A Labels layer (e.g. cellpose): after a run its features table gets each "
        "object's mean map of the top classes, cam_class and cam_share (shown on hover).",
    )
    widget.colour_objects = CheckBox(text="colour objects by CAM class", value=False)
    widget.objects_info = Label(label="objects", value="—")
    widget.decompose = PushButton(text=LABEL, enabled=False)
    widget.all_regions = CheckBox(
        text="all regions",
        value=False,
        tooltip="Box every region above the threshold (not only the largest), each labelled "
        "with its share of the map.",
    )
    widget.min_area = SpinBox(label="min area (px)", min=1, max=10**8, value=64)
    widget._calibration_worker = None
    widget.calibration_metrics = None
    widget.truth = ComboBox(
        label="true boxes",
        choices=lambda _w=None: shapes_choices(viewer),
        tooltip="A Shapes layer of rectangles drawn around the true objects, or a Labels "
        "layer of their true masks (then PxAP too).",
    )
    widget.calibrate = PushButton(text="calibrate threshold")
    widget.save_tau = CheckBox(text="save τ beside the weights file", value=False)
    widget.calibration = Label(label="calibration", value="—")
    fit_label(widget.calibration.native)
    controls = [
        widget.all_regions,
        widget.min_area,
        widget.objects,
        widget.colour_objects,
        widget.objects_info,
        widget.decompose,
        widget.truth,
        widget.calibrate,
        widget.save_tau,
        widget.calibration,
    ]
    widget.calibrate.changed.connect(widget._calibrate)
    widget.all_regions.changed.connect(widget._refresh_localization)
    widget.min_area.changed.connect(widget._refresh_localization)
    widget.decompose.changed.connect(widget._add_decomposition)
    widget.objects.changed.connect(widget._score_objects)
    widget.colour_objects.changed.connect(widget._colour_objects)
    fit_label(widget.objects_info.native)
    return controls


def update_feature_state(widget: Any) -> None:
    """A result is shown: the buttons say what they can do with it."""
    widget._update_decompose()


def reset_feature_choices(widget: Any) -> None:
    """Layers came or went: the layer choices follow."""
    widget.objects.reset_choices()
    widget.truth.reset_choices()
