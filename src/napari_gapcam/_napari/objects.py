"""Per-object scores in the widget: a Labels layer's objects get the run's CAM columns.

After a run (whole image, a stack's plane, or tiles: their stitched map), each object of the
chosen Labels layer (cellpose, stardist, painted) gets its mean map of the top classes,
``cam_class`` and ``cam_share`` (:func:`napari_gapcam.engine.objects.object_scores`) in the layer's
``features`` table, which napari shows on hover; an option colours the objects by their CAM
class. The scores are computed in a job (one upsampled map per class at the image's size
read). The objects of the run's plane (a stack's: the displayed plane) are scored; a label
image at level-0 size is sampled (nearest) at the level the model read.

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
TOP = 5  # classes scored: the top 5 and the selected one


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


def scores(result: Any, plane: Any, classes: list[int]) -> Any:
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
        session.parts.append(self)  # its events hold it weakly
        session.events.ended.connect(self.score)  # the run's last batch is shown

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
        classes = [i for i, _, _ in shown.top(TOP)]
        chosen = session.choices.class_index
        if chosen is not None and chosen not in classes:
            classes.append(int(chosen))
        self._say(f"Scoring the objects of {labels.name!r}…")
        self._job = session.jobs.start(
            scores,
            result,
            plane,
            classes,
            on_return=lambda table: self._took(labels, table),
            on_error=lambda error: self._say(str(error)),
        )

    def _took(self, labels: Labels, table: Any) -> None:
        self._job = None
        if labels not in self.session.viewer.layers:
            return
        features = table.rename(columns={"label": "index"})
        labels.features = features
        counts = features["cam_class"].value_counts()
        summary = ", ".join(f"{name} {n}" for name, n in counts.items())
        self._say(f"{len(features)} objects in {labels.name!r}: {summary}.")
        self.recolour()

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
        names = list(dict.fromkeys(features.columns[2:-2]))  # the classes scored, in order
        colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}
        said = {name: COLOUR_NAMES[i % len(COLOURS)] for i, name in enumerate(names)}
        mapping: dict[Any, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
        for label, name in zip(features["index"], features["cam_class"], strict=True):
            mapping[int(label)] = colour[name]
        self._saved.setdefault(labels, labels.colormap)
        labels.colormap = DirectLabelColormap(color_dict=mapping)
        legend = ", ".join(f"{name} {said[name]}" for name in features["cam_class"].unique())
        summary = self.info.split(" Colours:")[0]
        self._say(f"{summary} Colours: {legend}.")
