"""Per-object scores in the widget: a Labels layer's objects get the run's CAM columns.

After a run (whole image, a stack's plane, or tiles: their stitched map), each object of the
chosen Labels layer (cellpose, stardist, painted) is scored for **every** class, on the raw map
(:func:`napari_gapcam.engine.objects.object_scores` says why); its ``cam_class`` and
``cam_share`` and the scores of the classes that matter (the top classes, the chosen one, every
object's ``cam_class``) go to the layer's ``features`` table, which napari shows on hover (a
class chosen later gets its column from the scores kept, with no new pass). An option colours
the objects by their CAM class and keeps them above the CAM. The scores are computed in a job
(one upsampled map per class at the image's size read, in chunks). The objects of the run's
plane (a stack's: the displayed plane) are scored; a label image at level-0 size is sampled
(nearest) at the level the model read.

:class:`ObjectScores` sits on the :class:`~napari_gapcam._napari.session.Session` (Qt-free).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels

from .overlay_layers import is_overlay

if TYPE_CHECKING:
    from .session import Session
    from .shown import Shown

COLOURS = (  # one per class, in the order of the classes scored (the top classes first)
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
)
COLOUR_NAMES = ("red", "green", "blue", "orange", "purple", "cyan", "magenta", "lime")
TOP = 5  # the classes shown in the table: the top 5, the chosen one, every object's cam_class
# map values (classes × pixels read) up to which every class is scored (≈ 4 s for 1000 ImageNet
# classes at 300×400 on 2 cores); above it (a slide's tiles) the top classes and the chosen one
ALL_CLASSES_VALUES = 2**27


def labels_choices(viewer: Any) -> list[tuple[str, Any]]:
    return [("none", None)] + [
        (layer.name, layer)
        for layer in viewer.layers
        if isinstance(layer, Labels) and not is_overlay(layer)
    ]


def labels_plane(labels: Labels, shown: Shown, index: tuple[int, ...]) -> Any:
    """The (lazy) level-0 label image of plane ``index``, rows and columns as displayed."""
    data = labels.data[0] if labels.multiscale else labels.data
    ndim, axes = len(data.shape), shown.planes.axes
    if ndim == len(shown.source_shape) and ndim > 2:
        key: list[Any] = [slice(None)] * ndim
        for axis, i in zip(shown.planes.lead_axes, index, strict=True):
            key[axis] = i
        plane = data[tuple(key)]
        plane = plane.T if axes[0] > axes[1] else plane
    elif ndim == 2:
        plane = data
    else:
        raise ValueError(
            f"Labels {labels.name!r} has {ndim} axes, the image {len(shown.source_shape)}: "
            "give one label image per plane or one 2D label image."
        )
    full = tuple(int(shown.source_shape[a]) for a in axes)
    if tuple(int(s) for s in plane.shape) != full:
        raise ValueError(
            f"Labels {labels.name!r} are {'×'.join(map(str, plane.shape))}, the image "
            f"{full[0]}×{full[1]}: a label image has the image's size."
        )
    return plane


def scores(result: Any, plane: Any, classes: list[int] | None) -> Any:
    """Worker body: the label ``plane`` sampled (nearest) at the size the model read, then
    ``result.object_scores``."""
    height, width = (int(s) for s in plane.shape)
    h, w = result.image_shape
    y = np.minimum(((np.arange(h) + 0.5) * height / h).astype(int), height - 1)
    x = np.minimum(((np.arange(w) + 0.5) * width / w).astype(int), width - 1)
    if (h, w) != (height, width):
        plane = np.asarray(plane[y])[:, x]
    return result.object_scores(np.asarray(plane).astype(np.int64, copy=False), classes)


class ObjectScores:
    """On top of the session: scores the chosen Labels layer's objects after a run (see the
    module docstring); the dock sets ``labels`` and ``colour``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.labels: Labels | None = None  # the Labels layer chosen
        self.colour = False  # colour the objects by their CAM class
        self.info = "—"
        self._saved: dict[Labels, Any] = {}  # the layers' own colormaps, while coloured
        self._job: Any = None
        self._table: tuple[Labels, Any] | None = None  # every class's scores of a layer
        session.parts.append(self)  # its events hold it weakly
        session.events.ended.connect(self.score)  # the run's last batch is shown
        session.events.shown_class.connect(self._on_class)

    def _say(self, text: str) -> None:
        self.info = text
        self.session.say(text, "objects")

    def score(self) -> None:
        """Score the objects of the run's plane (a stack's: the displayed plane), in a job."""
        session, labels, shown = self.session, self.labels, self.session.shown
        if shown is not None and shown.source not in session.viewer.layers:
            return
        if labels is None or shown is None or session.busy or labels not in session.viewer.layers:
            self.recolour()
            return
        try:
            index = session.displayed_index()
            plane = labels_plane(labels, shown, index)
        except ValueError as error:
            self._say(str(error))
            return
        result = shown.result[shown.position[index] if shown.is_stack else 0]
        h, w = result.image_shape
        classes, which = None, "every class"
        if result.num_classes * h * w > ALL_CLASSES_VALUES:
            classes = [i for i, _, _ in shown.top(TOP)]
            if session.choices.class_index is not None:
                classes = list(dict.fromkeys([*classes, session.chosen_class()]))
            every = f"{result.num_classes} classes at {h}×{w}: too many"
            which = f"the top {TOP} classes and the chosen one ({every})"
        self._say(f"Scoring the objects of {labels.name!r} for {which}…")
        self._job = session.jobs.start(
            scores,
            result,
            plane,
            classes,
            on_return=lambda table: self._took(labels, table),
            on_error=self._failed,
        )

    def _failed(self, error: BaseException) -> None:
        self._job = None
        self._say(str(error))

    def _took(self, labels: Labels, table: Any) -> None:
        self._job = None
        if labels not in self.session.viewer.layers:
            return
        self._table = (labels, table.rename(columns={"label": "index"}))
        features = self._features()
        labels.features = features
        counts = features["cam_class"].value_counts()
        summary = ", ".join(f"{name} {n}" for name, n in counts.items())
        self._say(f"{len(features)} objects in {labels.name!r}: {summary}.")
        self.recolour()

    def _features(self) -> Any:
        """The kept scores' columns that matter: the top classes, the chosen one, every
        object's ``cam_class`` (a 1000-column table would flood napari's hover line)."""
        session, (_, table) = self.session, self._table
        names = [name for _, name, _ in session.shown.top(TOP)]
        if session.choices.class_index is not None:
            names.append(session.shown.result.class_names[session.chosen_class()])
        names += list(table["cam_class"])
        names = [name for name in dict.fromkeys(names) if name in table.columns]
        columns = ["index", "area", *names, "cam_class", "cam_share"]
        return table[columns]

    def _on_class(self) -> None:
        """A class chosen after the scoring: its column comes from the scores kept (scored
        anew where only some classes were)."""
        session = self.session
        if self._table is None or session.shown is None or session.choices.class_index is None:
            return
        labels, table = self._table
        if session.shown.result.class_names[session.chosen_class()] not in table.columns:
            if self._job is None:
                self.score()
            return
        if labels is self.labels and labels in session.viewer.layers:
            features = self._features()
            if list(features.columns) != list(labels.features.columns):
                labels.features = features

    def recolour(self) -> None:
        """Objects coloured by their CAM class (or back to the layer's own colours)."""
        from napari.utils.colormaps import DirectLabelColormap

        labels, layers = self.labels, self.session.viewer.layers
        for layer, colormap in list(self._saved.items()):  # another layer chosen, or unticked
            if layer is not labels or not self.colour:
                if layer in layers:
                    layer.colormap = colormap
                del self._saved[layer]
        if labels is None or not self.colour:
            return
        features = labels.features
        if "cam_class" not in features:
            return
        names = list(dict.fromkeys(features.columns[2:-2]))  # the classes shown, in order
        colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}
        said = {name: COLOUR_NAMES[i % len(COLOURS)] for i, name in enumerate(names)}
        mapping: dict[Any, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
        for label, name in zip(features["index"], features["cam_class"], strict=True):
            mapping[int(label)] = colour[name]
        self._saved.setdefault(labels, labels.colormap)
        labels.colormap = DirectLabelColormap(color_dict=mapping)
        if self.session.shown is not None:  # above the CAM, which would hide the colours
            self.session.overlays.lift(labels, self.session.shown.source)
        legend = ", ".join(f"{name} {said[name]}" for name in features["cam_class"].unique())
        summary = self.info.split(" Colours:")[0]
        self._say(f"{summary} Colours: {legend}.")
