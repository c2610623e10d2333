"""The chosen class's overlays: the CAM, box (or every region) and mask of the shown result.

On top of the :class:`~napari_gapcam._napari.session.Session` (Qt-free; it shows each result
the session announces): a class, threshold or plane change reuses the cached maps; a class
whose maps cost network passes (a single plane's Grad-CAM backward pass, a Score-CAM stack) is
made first in a :mod:`~.class_job` (with progress and Cancel). Adding a layer moves napari's
dims, whose event comes back here: it is answered once the update ends, not inside it.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .class_job import ClassJob
from .names import EACH_TOP, EACH_TOP_NAME, RANDOM, class_name
from .shown import NEGLIGIBLE
from .status import TOP, predictions_text

if TYPE_CHECKING:
    from .session import Session

LOCALIZE_PIXELS = 250_000  # box and mask come from a grid of at most this many cells
NO_BOX = "No region stands out in this class's map: no box."
NO_REGION = "No region of at least {} px above the threshold."
ABSENT = "p({}) = {:.3f} on this plane, under {:.0%} of its top class's ({} {:.2f}): no box."


class ClassView:
    """Shows the chosen class of the session's shown result (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._localizing = self._relocalize = False  # re-entry through the dims event
        self._said = ""  # the status line this view said last (a missing box's reason)
        self._drawn: tuple[weakref.ref, int] | None = None  # (result, class) the CAM shows
        self.job = ClassJob(session, self)  # a costly method's class maps, off the UI thread
        session.parts.append(self)  # its events hold it weakly
        session.events.result.connect(self.show_result)
        session.events.choice.connect(self.on_choice)
        session.viewer.dims.events.current_step.connect(self.on_dims_step)

    # ------------------------------------------------------------------ a result arrives
    def show_result(self, first: bool) -> None:
        """A run's result (or its next batch of planes or tiles): the lines, the class list,
        the overlays; on the first, the CAM layer becomes the active one."""
        session = self.session
        shown, model = session.shown, session.shown.model
        top = shown.top(TOP)
        text = predictions_text(top, shown.is_stack, model.weights == RANDOM)
        if shown.unit == "tiles":
            text += "\n(mean over the tiles)"
        session.say(text, "predictions")
        session.run_line = self._run_line()
        session.say(session.run_line)
        current = session.choices.class_index
        if current == EACH_TOP and not shown.is_stack:  # one plane: its top class
            current = None
        self.rebuild_classes(top[0][0] if session.follow_top or current is None else current)
        self.refresh()
        self.show_tile_layer()
        cam_layer = session.overlays.get(shown.source, "cam")
        if first and cam_layer is not None:  # ready for napari's opacity / colormap controls
            session.viewer.layers.selection.active = cam_layer

    def _run_line(self) -> str:
        shown, model = self.session.shown, self.session.shown.model
        result, where = shown.result, f"{shown.source.name!r}{shown.planes.describe()}"
        if shown.unit == "tiles":
            facts = result.metadata()
            skipped = f", {facts['tiles_skipped']} skipped" if facts["tiles_skipped"] else ""
            h, w = result.map_shape
            return (
                f"{model.arch} ({result.method}) on {where}: tiles of {facts['tile_size']} px "
                f"at native pixels, {shown.done} of {shown.total} tiles{skipped}, {h}×{w} map "
                f"cells ({facts['stride']} px each), {shown.seconds:.2f} s on {model.device}."
            )
        size, cells = ("×".join(map(str, s)) for s in (result.input_shape, result.map_shape))
        done = f", {shown.done} of {shown.total} planes" if shown.is_stack else ""
        warning = f" {self.session.warning}" if self.session.warning else ""
        return (
            f"{model.arch} ({result.method}) on {where}: input {size}, {cells} map cells{done}, "
            f"{shown.seconds:.2f} s on {model.device}.{warning}"
        )

    def rebuild_classes(self, value: int | None) -> None:
        """The class list in its new order, ``value`` chosen."""
        self.session.choices.class_index = value
        self.session.events.classes.emit(value)

    # ------------------------------------------------------------------ user choices
    def on_choice(self, name: str, _value: Any) -> None:
        """A choice changed: redraw what depends on it."""
        if name == "class_index":  # the user's class stays while more planes arrive
            self.session.follow_top = False
            self.refresh()
        elif name in ("scale", "megapixels"):
            self.refresh()
        elif name in ("threshold", "all_regions", "min_area"):
            self.refresh_localization()
        elif name in ("show_box", "show_mask"):
            self.on_toggle()
        elif name == "show_tiles":
            self.show_tile_layer()

    def on_toggle(self) -> None:
        """*show box* / *show mask* changed: hide what is off, show what is on."""
        session = self.session
        if session.shown is None:
            return
        source, choices = session.shown.source, session.choices
        toggles = (("box", choices.show_box), ("mask", choices.show_mask))
        for role, on in toggles:
            layer = session.overlays.get(source, role)
            if not on and layer is not None:
                layer.visible = False
        self.refresh_localization()
        for role, on in toggles:
            layer = session.overlays.get(source, role)
            if on and layer is not None:
                layer.visible = True

    def on_dims_step(self, _event: Any = None) -> None:
        """A stack's line and box follow the displayed plane."""
        shown = self.session.shown
        if shown is None or not shown.is_stack or not self.session.can_show():
            return
        self.say_showing()
        if self.session.choices.show_box:
            self.refresh_localization()

    # ------------------------------------------------------------------ what is shown
    def class_meta(self) -> dict[str, Any]:
        """The overlays' metadata: the class chosen and its (mean) probability."""
        shown, index = self.session.shown, int(self.session.choices.class_index)
        each = index == EACH_TOP
        return {
            "class_index": index,
            "class_name": class_name(shown.result.class_names, index),
            "probability": None if each else float(shown.probabilities()[index]),
            "model": shown.model.arch,
            "weights": shown.model.weights,
            "plane": "all" if shown.is_stack else list(shown.planes.indices[0]),
            "planes_done": shown.done,
            **shown.meta(),
        }

    def refresh(self) -> None:
        """Show the chosen class's maps (and box/mask): cached maps, no forward pass."""
        if not self.session.can_show():
            return
        c = self.session.choices.class_index
        if not self.session.shown.is_ready(c):
            self.job.start(c)
            return
        try:
            self._show_class()
        except Exception as error:  # keep the viewer alive; say what went wrong
            self.session.fail(error)

    def _show_class(self) -> None:
        session = self.session
        session.shown.scale = session.choices.scale
        shown, meta = session.shown, self.class_meta()
        placement = shown.placement(self.session.budget())
        fill = shown.cam_fill(meta["class_index"], placement.grid)
        session.overlays.show_cam(shown.source, placement, meta, fill)
        self._drawn = (weakref.ref(shown.result), meta["class_index"])
        self.say_showing()
        session.events.shown_class.emit()
        self.show_localization()

    def drawn_class(self) -> int | None:
        """The class the CAM overlay of the shown result shows (None: none drawn yet)."""
        drawn, shown = self._drawn, self.session.shown
        return drawn[1] if drawn and shown is not None and drawn[0]() is shown.result else None

    def displayed_class(self) -> tuple[int, str, float | None]:
        """The class shown on the displayed plane, its name and its probability there."""
        shown, session = self.session.shown, self.session
        c, p = shown.plane_class(int(session.choices.class_index), session.displayed_index())
        return c, shown.result.class_names[c], p

    def absent_line(self) -> str:
        """Why the displayed plane gets no box: its class's p is negligible next to the plane's
        top class's (``NEGLIGIBLE`` of it); "" when it is not."""
        shown, index = self.session.shown, self.session.displayed_index()
        _, name, p = self.displayed_class()
        top, top_p = shown.plane_class(EACH_TOP, index)
        if p is None or top_p is None or p >= NEGLIGIBLE * top_p:
            return ""
        return ABSENT.format(name, p, NEGLIGIBLE, shown.result.class_names[top], top_p)

    def say_showing(self) -> None:
        """The *showing* line: the displayed plane's own class and probability (and a
        stack's mean, where it is the stack's)."""
        shown, choice = self.session.shown, int(self.session.choices.class_index)
        c, name, p = self.displayed_class()
        if not shown.is_stack:
            p_name = "mean p" if shown.result.averaged_over else "p"
            text = f"{name}  ({p_name} = {p:.3f})"
        else:
            here = "not run yet" if p is None else f"p = {p:.3f}"
            text = f"{name}: {here} on this plane"
            if choice == EACH_TOP:
                text = f"{EACH_TOP_NAME}: {text}"
            else:
                text += f"; mean p = {float(shown.probabilities()[c]):.3f}"
        self.session.say(text, "showing")

    # ------------------------------------------------------------------ box and mask
    def refresh_localization(self) -> None:
        if not self.session.can_show():
            return
        if not self.session.shown.is_ready(self.session.choices.class_index):
            return  # a Grad-CAM job runs; it refreshes everything when done
        try:
            self.show_localization()
        except Exception as error:
            self.session.fail(error)

    def show_localization(self) -> None:
        """Box (of the displayed plane) and mask, answered once per update (see the module
        docstring)."""
        if self._localizing:
            self._relocalize = True
            return
        self._localizing = True
        try:
            for _ in range(2):
                self._relocalize = False
                self._localize()
                if not self._relocalize:
                    break
        finally:
            self._localizing = False

    def _localize(self) -> None:
        """Box (of the displayed plane) and mask on a grid of ≤ 0.25 MP: bounded cost."""
        session, choices = self.session, self.session.choices
        if not (choices.show_box or choices.show_mask):
            return
        shown = session.shown
        meta = {**self.class_meta(), "threshold": float(choices.threshold)}
        c, threshold = meta["class_index"], meta["threshold"]
        placement = shown.placement(min(self.session.budget(), LOCALIZE_PIXELS))
        index = self.session.displayed_index()
        if choices.show_box and choices.all_regions:
            self._show_regions(meta, placement.grid, index)
        elif choices.show_box:
            own, name, p = self.displayed_class()
            absent = self.absent_line()
            box = None if absent else shown.box(c, placement.grid, threshold, index)
            pixels = None if box is None else shown.box_pixels(box, placement.grid)
            label = f"{name} {p:.2f}" if p is not None else name
            box_meta = {**meta, "box": pixels, "grid_box": box, "box_class": own, "box_p": p}
            session.overlays.show_box(shown.source, box, index, placement, label, box_meta)
            reason = absent or NO_BOX
            self._say_if(box is None and index in shown.position, reason)
        if choices.show_mask:
            fill = shown.mask_fill(c, placement.grid, threshold)
            session.overlays.show_mask(shown.source, placement, meta, fill)

    def _show_regions(self, meta: dict[str, Any], grid: tuple[int, int], index: Any) -> None:
        """*All regions*: every region above the threshold of at least the minimum area, each
        boxed and labelled with its share of the class's map (the result's own regions)."""
        shown, choices = self.session.shown, self.session.choices
        position = shown.position.get(index)
        c, name, p = self.displayed_class()
        absent = self.absent_line()
        found = []
        if position is not None and position < len(shown.result) and not absent:
            image = shown.result[position]
            threshold, area = meta["threshold"], choices.min_area
            found = image.regions(c, threshold, area, grid, shown.scale)
        boxes = [box for box, _ in found]
        labels = [f"{name} {100 * share:.0f} %" for _, share in found]
        box_meta = {**meta, "boxes": boxes, "shares": [s for _, s in found]}
        box_meta["min_area"] = int(choices.min_area)
        overlays = self.session.overlays
        overlays.show_boxes(shown.source, boxes, index, shown.pixels(), labels, box_meta)
        reason = absent or NO_REGION.format(choices.min_area)
        self._say_if(not boxes and index in shown.position, reason)

    def _say_if(self, missing: bool, line: str) -> None:
        """Say ``line`` while it holds; the run's line again once it no longer does."""
        if missing:
            self._said = line
            self.session.say(line)
        elif self._said and self.session.status == self._said:
            self._said = ""
            self.session.say(self.session.run_line)

    # ------------------------------------------------------------------ tiles
    def show_tile_layer(self) -> None:
        """The optional layer of each tile's top probability (tiled runs)."""
        session = self.session
        shown = session.shown
        if shown is None or shown.unit != "tiles":
            return
        layer = session.overlays.get(shown.source, "tiles")
        if not session.choices.show_tiles:
            if layer is not None:
                layer.visible = False
            return
        tops = shown.result.tile_top_grid()
        index = shown.planes.indices[0]
        meta = {**shown.meta(), "value": "top class probability per tile"}
        layer = session.overlays.show_image(
            "tiles",
            f"{shown.source.name} tile probability",
            shown.source,
            shown.placement(0),
            meta,
            lambda indices: [tops if i == index else None for i in indices],
            colormap="viridis",
            interpolation2d="nearest",
            opacity=0.4,
        )
        layer.visible = True
