"""The dock's controls, built and returned (the widget holds them): magicgui widgets only.

Each function returns the controls of one part of the dock, in the order they appear; the
widget (:mod:`.widget`) puts them in :class:`Section` s that fold, in a scroll area, and
connects them to the session. Labels wrap at the dock's width (no long word, a path say, can
widen the dock and narrow the canvas).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFrame, QLabel, QScrollArea, QSizePolicy

from .calibrate import THRESHOLDS, shapes_choices
from .decompose import LABEL
from .objects import labels_choices

WHOLE, TILES = "whole image → input size", "native pixels (tiles)"
CURRENT, ALL = "current plane", "all planes"
OVERLAY_MEGAPIXELS = 1.0  # default per-plane budget of the overlays
SCALE_CHOICES = [  # engine.maps.SCALES, as the dock says them ("shared": stacks only)
    ("relative to the top class", "relative"),
    ("stretched (min-max)", "each"),
    ("shared across the stack", "shared"),
]


def fit_label(label: QLabel) -> None:
    """Wrap ``label``'s text at the dock's width: a long word (a path) never widens the dock."""
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    policy = label.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
    label.setSizePolicy(policy)
    label.setMinimumWidth(1)


def narrow(combo: QComboBox) -> None:
    """Long item labels must not widen the dock (and narrow the canvas)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(14)


def line(label: str, value: str = "—") -> Label:
    """A line of text that wraps at the dock's width."""
    widget = Label(label=label, value=value)
    fit_label(widget.native)
    return widget


class RunControls(NamedTuple):
    mode: ComboBox
    planes: ComboBox
    scale: ComboBox
    overlay_mp: FloatSpinBox
    run_button: PushButton


def run_controls() -> RunControls:
    """Resolution (whole image or tiles), planes, a stack's scale, the overlays' budget, Run."""
    return RunControls(
        ComboBox(
            label="resolution",
            choices=[WHOLE, TILES],
            value=WHOLE,
            tooltip="Whole image shrunk to the input size, or tiles at native pixels (the "
            "pyramid level displayed, the displayed plane; CAM models only).",
        ),
        ComboBox(label="planes", choices=[CURRENT, ALL], value=CURRENT),
        ComboBox(
            label="scale",
            choices=SCALE_CHOICES,
            value="relative",
            tooltip="How a map becomes heat. Relative: its min-max times p(class) / p(top "
            "class) on the plane (the top class at full heat, a class the network does not see "
            "cool). "
            "Stretched: each map's min-max alone (where the class looks, however unlikely). "
            "Shared: one min and max over every plane of the stack (planes compare).",
        ),
        FloatSpinBox(
            label="overlay MP",
            min=0.01,
            max=64.0,
            step=0.25,
            value=OVERLAY_MEGAPIXELS,
            tooltip="Overlay resolution per plane, in megapixels (the map is smooth: 1 is "
            "plenty). A stack's planes share 8 MP along their longest axis, so a 3D view stays "
            "light.",
        ),
        PushButton(text="Run"),
    )


class ShowControls(NamedTuple):
    threshold: FloatSlider
    show_box: CheckBox
    show_mask: CheckBox
    show_tiles: CheckBox
    all_regions: CheckBox
    min_area: SpinBox


def show_controls() -> ShowControls:
    """What is drawn besides the CAM: box or every region, mask, the tiles' probabilities."""
    low, high = THRESHOLDS
    return ShowControls(
        FloatSlider(label="box threshold", min=low, max=high, step=0.05, value=0.2),
        CheckBox(text="show box", value=False),
        CheckBox(text="show mask", value=False),
        CheckBox(text="tile probabilities", value=False),
        CheckBox(
            text="all regions",
            value=False,
            tooltip="Box every region above the threshold (not only the largest), each "
            "labelled with its share of the map.",
        ),
        SpinBox(label="min area (px)", min=1, max=10**8, value=64),
    )


class FeatureControls(NamedTuple):
    objects: ComboBox
    colour_objects: CheckBox
    objects_info: Label
    decompose: PushButton
    truth: ComboBox
    calibrate: PushButton
    save_tau: CheckBox
    calibration: Label


def feature_controls(viewer: Any) -> FeatureControls:
    """Objects (a Labels layer's scores), the decomposition, the calibration."""
    return FeatureControls(
        ComboBox(
            label="objects",
            choices=lambda _w=None: labels_choices(viewer),
            tooltip="A Labels layer (e.g. cellpose): after a run its features table gets each "
            "object's mean map of the top classes, cam_class and cam_share (shown on hover).",
        ),
        CheckBox(text="colour objects by CAM class", value=False),
        line("scores"),
        PushButton(text=LABEL, enabled=False),
        ComboBox(
            label="true boxes",
            choices=lambda _w=None: shapes_choices(viewer),
            tooltip="A Shapes layer of rectangles drawn around the true objects, or a Labels "
            "layer of their true masks (then PxAP too).",
        ),
        PushButton(text="calibrate threshold"),
        CheckBox(text="save τ beside the weights file", value=False),
        line("calibration"),
    )


class Section(Container):
    """A titled part of the dock that folds: a header button (▾ open, ▸ folded) over its
    controls (labelled), then any ``wide`` ones (the dock's full width, no label: a table)."""

    def __init__(
        self, title: str, widgets: list[Any], folded: bool = False, wide: tuple = ()
    ) -> None:
        self.title = title
        self.header = PushButton(text=title)
        self.body = Container(widgets=widgets, labels=True)
        self.wide = Container(widgets=list(wide), labels=False, visible=bool(wide))
        for part in (self.body, self.wide):
            part.margins = (0, 0, 0, 0)
        super().__init__(widgets=[self.header, self.body, self.wide], labels=False)
        self.margins = (0, 0, 0, 0)
        self.header.native.setFlat(True)
        self.header.native.setStyleSheet("text-align: left; font-weight: bold; padding: 2px")
        self.header.changed.connect(lambda _value=None: self.fold(not self.folded))
        self.fold(folded)

    @property
    def folded(self) -> bool:
        return self.body.native.isHidden()  # (``visible`` is False too before the dock shows)

    def fold(self, folded: bool) -> None:
        self.body.visible = not folded
        self.wide.visible = not folded and len(self.wide) > 0
        self.header.text = f"{'▸' if folded else '▾'} {self.title}"


def dock_sections(widget: Any) -> dict[str, Section]:
    """The widget's controls in their sections, in the dock's order; the rarely used ones
    (objects, ground truth) folded."""
    return {
        "model": Section("Model", widget.models.widgets),
        "run": Section("Run", [widget.mode, widget.planes, widget.scale, widget.overlay_mp]),
        "display": Section(
            "Display",
            [widget.class_select, widget.showing, widget.threshold, widget.show_box]
            + [widget.show_mask, widget.all_regions, widget.min_area, widget.show_tiles],
        ),
        "objects": Section(
            "Objects",
            [widget.objects, widget.colour_objects, widget.objects_info, widget.decompose],
            folded=True,
        ),
        "truth": Section(
            "Ground truth",
            [widget.truth, widget.calibrate, widget.save_tau, widget.calibration],
            folded=True,
        ),
    }


def show_applicable(widget: Any) -> None:
    """Only the controls that apply to the chosen layer and mode: a stack's planes and shared
    scale for a stack, the tile layer in tiles mode, the minimum area with all regions."""
    layer = widget.image.value
    stack = layer is not None and layer.ndim > 2
    scales = SCALE_CHOICES if stack else SCALE_CHOICES[:2]
    if [value for _, value in scales] != list(widget.scale.choices):
        widget.scale.choices = scales  # "shared" chosen, then a 2D layer: the first one
    for control, shown in (
        (widget.planes, stack),
        (widget.show_tiles, widget.mode.value == TILES),
        (widget.min_area, bool(widget.all_regions.value)),
    ):
        if control.native.isHidden() == shown:  # (``visible`` is False before the dock shows)
            control.visible = shown


def scrolled(content: Container) -> QScrollArea:
    """``content`` in a vertical scroll area: the dock asks for little height on any screen.
    (napari docks a magicgui widget's ``native``, which for magicgui's own ``scrollable``
    container is the widget inside the scroll area: so the scroll area is made here.)"""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    content.native.layout().addStretch(1)  # extra height below the controls, not between
    for container in (content, *(w for w in content if isinstance(w, Container))):
        container.margins = (4, 2, 4, 2)
    scroll.setWidget(content.native)
    return scroll


def narrow_all(container: Any) -> None:
    """Every combo box of ``container`` (sections too): long items never widen the dock."""
    for widget in container:
        if isinstance(widget.native, QComboBox):
            narrow(widget.native)
        elif isinstance(widget, Container):
            narrow_all(widget)
