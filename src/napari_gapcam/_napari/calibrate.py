"""Calibrate the box threshold on boxes the user drew (Choe et al., CVPR 2020).

The user draws rectangles in a Shapes layer over the image (or over several planes of a stack
after *all planes*); *calibrate* computes :func:`napari_gapcam.localization_metrics` of each
box's own class's map against it in a job (the maps of the bounded grid the box uses, the drawn
boxes mapped into its cells through the layers' transforms), shows MaxBoxAccV2, the classes and
the best τ at IoU 0.5, and sets the box threshold to it. A box's class is the Shapes layer's
``class`` (or ``label``, ``name``) feature, else its text, else the plane's own top class (a
mixed stack calibrates each plane on its own class; true masks take the plane's top class); a
class name the model does not have is refused, naming it. Optionally τ is saved beside a checkpoint
file as ``<weights>.gapcam.json`` (``{"box_threshold": τ}``), which the loader reads.

:class:`Calibration` sits on the :class:`~napari_gapcam._napari.session.Session` (Qt-free).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Shapes

from .names import EACH_TOP
from .overlay_layers import is_overlay

if TYPE_CHECKING:
    from .session import Session

DELTA = 0.5  # the IoU whose best threshold becomes the box threshold
SIDECAR = ".gapcam.json"
LOCALIZE_PIXELS = 250_000  # as the box: maps of at most this many cells
THRESHOLDS = (0.05, 0.95)  # the box threshold's range (the dock's slider)


def shapes_choices(viewer: Any) -> list[tuple[str, Any]]:
    """Shapes layers of drawn rectangles, then Labels layers of true masks."""
    return [("none", None)] + [
        (layer.name, layer)
        for layer in viewer.layers
        if isinstance(layer, (Shapes, Labels)) and not is_overlay(layer)
    ]


def true_masks(labels: Labels, shown: Any, grid: tuple[int, int], index: tuple) -> Any:
    """A Labels layer of true masks on plane ``index``, sampled (nearest) to ``grid``: the
    boxes of its objects and the mask (``None`` without any object)."""
    from scipy import ndimage

    from .objects import labels_plane

    plane = labels_plane(labels, shown, index)
    rows = np.minimum(
        ((np.arange(grid[0]) + 0.5) * plane.shape[0] / grid[0]).astype(int), plane.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(grid[1]) + 0.5) * plane.shape[1] / grid[1]).astype(int), plane.shape[1] - 1
    )
    sampled = np.asarray(plane[rows][:, cols])  # dask: only these pixels are read
    boxes = [
        (s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndimage.find_objects(sampled) if s
    ]
    return (boxes, sampled > 0) if boxes else None


def sidecar_path(weights: str) -> Path:
    path = Path(weights)
    return path.with_name(path.name + SIDECAR)


CLASS_KEYS = ("class", "label", "name")  # a Shapes feature naming each box's class


def box_classes(shapes: Shapes) -> list[str | None]:
    """Each shape's class name: a ``class``/``label``/``name`` feature, else its text, else None."""
    count = len(shapes.data)
    for key in CLASS_KEYS:
        if key in shapes.features.columns:
            return [
                None if v is None or v != v or str(v) == "" else str(v)
                for v in shapes.features[key]
            ]
    texts = np.atleast_1d(np.asarray(getattr(shapes.text, "values", []), dtype=object))
    texts = np.repeat(texts, count) if texts.size == 1 else texts  # one text for every shape
    if len(texts) == count and any(str(t) for t in texts):
        return [str(t) or None for t in texts]
    return [None] * count


def drawn_boxes(shapes: Shapes, shown: Any, grid: tuple[int, int], point: Any) -> dict[tuple, list]:
    """The drawn rectangles as ``(box, class name or None)``, boxes half-open in cells of
    ``grid``, by plane index (a 2D Shapes layer over a stack: the plane at the viewer's world
    ``point``)."""
    source, planes = shown.source, shown.planes
    (h, w), (height, width) = grid, shown.image_shape
    fy, fx = planes.level_scale
    rows, cols = (a % source.ndim for a in planes.axes)
    found: dict[tuple, list] = {}
    named = box_classes(shapes)
    for vertices, kind, name in zip(shapes.data, shapes.shape_type, named, strict=True):
        if kind != "rectangle":
            continue
        world = np.asarray(shapes._data_to_world(np.asarray(vertices, float)))
        world = world[:, -source.ndim :] if world.shape[1] >= source.ndim else world
        if world.shape[1] < source.ndim:  # a 2D layer over a stack: the displayed plane
            lead = np.asarray(point, float)[-source.ndim :][: source.ndim - world.shape[1]]
            world = np.concatenate([np.tile(lead, (len(world), 1)), world], 1)
        data = np.asarray(source._data_to_world.inverse(world))
        index = tuple(int(round(float(np.mean(data[:, a])))) for a in planes.lead_axes)
        # an edge at data coordinate e is the boundary e + 0.5 of the pixels (level 0)
        y = (data[:, rows] + 0.5) / fy * h / height
        x = (data[:, cols] + 0.5) / fx * w / width
        box = (
            max(0, math.floor(y.min() + 0.5)),
            max(0, math.floor(x.min() + 0.5)),
            min(h, math.floor(y.max() + 0.5)),
            min(w, math.floor(x.max() + 0.5)),
        )
        if box[2] > box[0] and box[3] > box[1]:
            found.setdefault(index, []).append((box, name))
    return found


def readout(metrics: dict[str, Any], images: int, boxes: int, classes: str = "") -> str:
    tau, acc = metrics["best_threshold"][DELTA], metrics["max_box_acc"][DELTA]
    pxap = f", PxAP {metrics['pxap']:.3f}" if metrics.get("pxap") is not None else ""
    return (
        f"MaxBoxAccV2 {metrics['max_box_acc_v2']:.3f}{pxap} over {images} image(s), {boxes} "
        f"box(es){classes}; best τ {tau:.2f} at IoU {DELTA} (BoxAcc {acc:.2f})"
    )


def class_counts(names: list[str]) -> str:
    """`` of cross (2), star (1)``: the classes calibrated on, and how many boxes of each."""
    from collections import Counter

    return " of " + ", ".join(f"{name} ({n})" for name, n in Counter(names).items())


def _maps_in_the_job(shown: Any, keys: list[tuple], grid: tuple[int, int]) -> Any:
    """What makes the maps of ``keys`` ((plane, class) pairs) in the calibration's job, off the
    UI thread: a method's maps may cost network passes (Score-CAM), many planes' many ms."""
    return lambda: [np.nan_to_num(shown.fresh_map(c, grid, index)) for index, c in keys]


class Calibration:
    """On top of the session: the *calibrate* button (see the module docstring); the dock sets
    ``truth`` (the Shapes or Labels layer) and ``save``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.truth: Shapes | Labels | None = None
        self.save = False  # save τ beside the weights file
        self.metrics: dict[str, Any] | None = None
        self._job: Any = None
        session.parts.append(self)  # its events hold it weakly

    def _say(self, text: str) -> None:
        self.session.say(text, "calibration")

    def calibrate(self) -> None:
        from ..engine.metrics import localization_metrics

        session, shapes, shown = self.session, self.truth, self.session.shown
        if shapes is None or not session.can_show():
            self._say("Draw rectangles in a Shapes layer, pick it, then calibrate.")
            return
        grid = shown.placement(min(session.budget(), LOCALIZE_PIXELS)).grid
        if isinstance(shapes, Labels):
            self._on_masks(shapes, grid)
            return
        groups: dict[tuple, list] = {}  # (plane, class) → its boxes: each on its class's map
        names = shown.result.class_names
        for index, found in drawn_boxes(shapes, shown, grid, session.viewer.dims.point).items():
            for box, name in found:
                if name is None:  # the plane's own top class
                    c = shown.plane_class(EACH_TOP, index)[0]
                elif (c := self._named(names, name, shapes.name)) is None:
                    return
                groups.setdefault((index, c), []).append(box)
        keys = [key for key in groups if shown.has_map(key[0])]
        if not keys:
            self._say(
                f"No rectangle of {shapes.name!r} lies on a plane with a map: draw boxes over "
                "the image (rectangle tool) after a run."
            )
            return
        truth = [groups[key] for key in keys]
        count, images = sum(len(b) for b in truth), len({i for i, _ in keys})
        classes = class_counts([names[c] for key in keys for c in [key[1]] * len(groups[key])])
        self._say(f"Calibrating on {images} image(s), {count} box(es){classes}…")
        maps = _maps_in_the_job(shown, keys, grid)
        self._start(lambda: localization_metrics(maps(), truth), (), images, count, classes)

    def _named(self, names: Any, name: str, layer: str) -> int | None:
        """The class a box names, or None, saying why (a name the model does not have)."""
        from ..engine.maps import class_index

        try:
            return class_index(names, name)
        except (KeyError, IndexError) as error:
            self._say(f"A box of {layer!r} names class {name!r}, which the model lacks: {error}")
            return None

    def _on_masks(self, labels: Labels, grid: tuple[int, int]) -> None:
        """True masks: each object's box for the box metrics, the masks for PxAP; each plane
        on its own top class's map."""
        from ..engine.metrics import localization_metrics

        shown = self.session.shown
        keys, boxes, masks, named = [], [], [], []
        for index in shown.planes.indices:
            c = shown.plane_class(EACH_TOP, index)[0]
            try:
                found = true_masks(labels, shown, grid, index) if shown.has_map(index) else None
            except ValueError as error:
                self._say(str(error))
                return
            if found is not None:
                named += [shown.result.class_names[c]] * len(found[0])
                keys.append((index, c))
                boxes.append(found[0])
                masks.append(found[1])
        if not keys:
            self._say(f"{labels.name!r} holds no object on a plane with a map.")
            return
        count, classes = sum(len(b) for b in boxes), class_counts(named)
        self._say(f"Calibrating on {len(keys)} image(s), {count} mask(s){classes}…")
        maps = _maps_in_the_job(shown, keys, grid)
        images = len(keys)
        self._start(lambda: localization_metrics(maps(), boxes, masks), (), images, count, classes)

    def _start(self, function: Any, args: tuple, images: int, count: int, classes: str) -> None:
        self._job = self.session.jobs.start(
            function,
            *args,
            on_return=lambda metrics: self._done(metrics, images, count, classes),
            on_error=lambda error: self._say(str(error)),
        )

    def _done(self, metrics: dict[str, Any], images: int, boxes: int, classes: str) -> None:
        self._job = None
        self.metrics = metrics
        tau = metrics["best_threshold"][DELTA]
        text = readout(metrics, images, boxes, classes)
        low, high = THRESHOLDS
        threshold = min(max(tau, low), high)
        self.session.choose("threshold", threshold)
        text += f"; box threshold set to {threshold:.2f}."
        if self.save:
            text += " " + self._save_tau(tau)
        self._say(text)

    def _save_tau(self, tau: float) -> str:
        model = self.session.shown.model if self.session.shown is not None else None
        weights = getattr(model, "weights", None)
        if not weights or not Path(str(weights)).is_file():
            return "τ not saved: these weights have no checkpoint file to put it beside."
        path = sidecar_path(str(weights))
        try:
            path.write_text(json.dumps({"box_threshold": round(float(tau), 4)}) + "\n")
        except OSError as error:
            return f"τ not saved: {error}"
        return f"Saved τ in {path.name}."
