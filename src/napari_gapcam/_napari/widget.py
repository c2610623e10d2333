"""The dock widget: pick an image layer and a model, Run, then pick a class.

A thin view over the Qt-free :class:`~napari_gapcam._napari.session.Session` and the features
on it: the controls write the session's choices and call its operations; its events set the
lines of text, the class list and the buttons. Runs and class jobs run in napari's
workers (:class:`~napari_gapcam._napari.qt_jobs.QtJobs`). torch is imported when the widget is
created, not with napari.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container
from napari.layers import Image

from .calibrate import Calibration
from .class_view import ClassView
from .compare import CompareMethods
from .controls import (
    ALL,
    CURRENT,
    TILES,
    WHOLE,
    dock_sections,
    feature_controls,
    line,
    narrow_all,
    run_controls,
    scrolled,
    show_applicable,
    show_controls,
)
from .decompose import Decomposition
from .keep_view import keep_whole_view
from .method_switch import MethodSwitch
from .model_controls import ModelControls
from .names import DEMO, DEMO_MODEL, FILE, IN_MEMORY, RANDOM
from .objects import ObjectScores
from .overlay_layers import is_overlay
from .qt_jobs import QtJobs
from .searchable import make_searchable, select_text, show_start
from .session import RunRequest, Session

if TYPE_CHECKING:
    import napari

    from ..models import GapCamModel

__all__ = [
    "ALL",
    "CURRENT",
    "DEMO",
    "DEMO_MODEL",
    "FILE",
    "IN_MEMORY",
    "RANDOM",
    "TILES",
    "WHOLE",
    "GapCamWidget",
]
CHOICES = ("threshold", "show_box", "show_mask", "show_tiles", "all_regions", "min_area")


class GapCamWidget(Container):
    """Class activation maps (CAM, or Grad-CAM) of a CNN (ResNet-50 by default) on the active
    image layer. The view of a :class:`Session` (``self.session``) and its features:
    ``classes`` (the chosen class's overlays), ``scores`` (objects), ``decomposition`` and
    ``calibrator``."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self.content = Container(labels=False)  # in a scroll area: the dock fits any screen
        self._viewer = viewer
        self.session = session = Session(viewer, QtJobs())
        self.classes = ClassView(session)
        self.scores = ObjectScores(session)
        self.decomposition = Decomposition(session)
        self.calibrator = Calibration(session)

        self.image = ComboBox(label="image", choices=self._image_choices)
        self.models = m = ModelControls(say=session.say)
        self.arch, self.weights, self.method, self.device = m.arch, m.weights, m.method, m.device
        self.weights_file, self.names_file = m.weights_file, m.names_file
        self.input_size, self.square = m.input_size, m.square
        run = run_controls()
        self.mode, self.planes, self.scale, self.overlay_mp, self.run_button = run
        self.status, self.predictions = line("status", session.status), line("top-5")
        self.class_select = ComboBox(label="class", choices=lambda _w=None: session.class_items())
        self.showing = line("showing")
        show = show_controls()
        self.threshold, self.show_box, self.show_mask, self.show_tiles = show[:4]
        self.all_regions, self.min_area = show[4:]
        features = feature_controls(viewer)
        self.objects, self.colour_objects, self.objects_info, self.decompose = features[:4]
        self.truth, self.calibrate, self.save_tau, self.calibration = features[4:]
        self.compare = CompareMethods(self)  # the *compare methods* section and its work
        self.switch = MethodSwitch(self)  # a method picked after a run: no reload
        self.sections = parts = {**dock_sections(self), "compare": self.compare.section}
        lines = Container(widgets=[self.status, self.predictions], labels=True)
        top = [Container(widgets=[self.image], labels=True), parts["model"], parts["run"]]
        rest = [self.run_button, lines, parts["display"], parts["compare"], parts["objects"]]
        self.content.extend([*top, *rest, parts["truth"]])
        self.native.layout().addWidget(scrolled(self.content))
        placeholder = "run first; then type to search the classes"
        make_searchable(self.class_select.native, placeholder, self._pick_class_by_text)
        narrow_all(self.content)
        self._connect()
        self._follow_active()
        show_applicable(self)
        keep_whole_view(viewer, self.native)  # docked, the canvas narrows: images stay whole

    # ----------------------------------------------------------------- wiring
    def _connect(self) -> None:
        session, viewer = self.session, self._viewer
        self.run_button.changed.connect(self._on_run_button)
        self.class_select.changed.connect(lambda c: session.choose("class_index", c))
        self.scale.changed.connect(lambda value: session.choose("scale", value))
        self.overlay_mp.changed.connect(lambda value: session.choose("megapixels", value))
        for name in CHOICES:
            control = getattr(self, name)
            control.changed.connect(lambda value, name=name: session.choose(name, value))
        for control in (self.image, self.mode, self.all_regions):
            control.changed.connect(lambda _value=None: show_applicable(self))
        self.objects.changed.connect(self._on_objects)
        self.colour_objects.changed.connect(self._on_colour)
        self.decompose.changed.connect(self.decomposition.add)
        self.truth.changed.connect(lambda layer: setattr(self.calibrator, "truth", layer))
        self.save_tau.changed.connect(lambda save: setattr(self.calibrator, "save", save))
        self.calibrate.changed.connect(self.calibrator.calibrate)
        session.events.text.connect(self._show_text)
        session.events.classes.connect(self._rebuild_classes)
        session.events.choice.connect(self._show_choice)
        session.events.running.connect(self._on_busy)
        session.events.busy.connect(self._on_busy)
        self.decomposition.changed.connect(self._show_decompose)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._follow_active)

    def _show_text(self, name: str, value: str) -> None:
        control = {"objects": self.objects_info}.get(name) or getattr(self, name, None)
        if control is not None:
            control.value = value

    def _show_choice(self, name: str, value: Any) -> None:
        """A choice the session made (a model's threshold, a calibrated one) on its control."""
        control = getattr(self, {"megapixels": "overlay_mp"}.get(name, name), None)
        if control is not None and name != "class_index" and control.value != value:
            with control.changed.blocked():
                control.value = value

    def _rebuild_classes(self, value: int | None) -> None:
        """New class items in their order (magicgui's ``reset_choices`` keeps the items it
        has where they are, and moves an item whose label changed to the end)."""
        with self.class_select.changed.blocked():
            self.class_select.native.clear()
            self.class_select.reset_choices()
            if value in self.class_select.choices:
                self.class_select.value = value
            elif value is None:  # no class chosen: any pick (the last one too) is a change
                self.class_select.native.setCurrentIndex(-1)
        show_start(self.class_select.native)

    def _on_busy(self, busy: bool) -> None:
        """Run reads Cancel while a run or a class job runs (``busy``: one is starting)."""
        self.run_button.text = "Cancel" if busy or self.session.busy else "Run"

    def _show_decompose(self) -> None:
        part = self.decomposition
        self.decompose.enabled, self.decompose.text = part.enabled, part.text
        self.decompose.tooltip = part.tooltip

    def _on_objects(self, labels: Any) -> None:
        self.scores.labels = labels
        self.scores.score()

    def _on_colour(self, colour: bool) -> None:
        self.scores.colour = colour
        self.scores.recolour()

    def _on_run_button(self, _value: Any = None) -> None:
        if self.session.busy:
            self.cancel()
        else:
            self.run()

    # ----------------------------------------------------------------- public
    @property
    def busy(self) -> bool:
        """True while a run or a class job (a costly class's maps) is in progress."""
        return self.session.busy

    def run(self, _value: Any = None) -> None:
        """Start a run on the chosen layer: its displayed plane, all planes, or tiles."""
        try:
            spec = self.models.spec()
        except ValueError as error:
            self.session.fail(error)
            return
        self.session.run(
            RunRequest(
                self.image.value,
                spec,
                tiles=self.mode.value == TILES,
                all_planes=self.planes.value == ALL,
                input_size=self.input_size.value or None,
                square=True if self.square.value else None,  # unticked: the model's own
                model=self.models.memory_model if self.arch.value == IN_MEMORY else None,
            )
        )

    def cancel(self) -> None:
        """Stop the run (planes done stay) and a class job (the overlay stays as it was)."""
        self.classes.job.cancel()
        self.session.cancel()

    def use_model(self, model: GapCamModel) -> None:
        """Use a model built in Python (``load_model``, ``from_module``) from now on."""
        self.models.use_model(model)
        self.session.say(f"Using {model.arch} ({model.method_label}), in memory: press Run.")

    def set_input_size_text(self, text: str) -> None:
        """Select the input size typed as ``text`` ("640", "640 px" or a listed choice)."""
        self.models.set_input_size_text(text)

    # ----------------------------------------------------------------- layers
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not is_overlay(layer)
        ]

    def _pick_class_by_text(self, text: str) -> None:
        """Select the first class whose label contains ``text`` (any case)."""
        if not select_text(self.class_select.native, text):
            self.session.say(f"No class matches {text!r}.")

    def _on_layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()
        self.objects.reset_choices()
        self.truth.reset_choices()
        show_applicable(self)

    def _follow_active(self, _event: Any = None) -> None:
        active = self._viewer.layers.selection.active
        self.image.reset_choices()
        if isinstance(active, Image) and not is_overlay(active):
            self.image.value = active
