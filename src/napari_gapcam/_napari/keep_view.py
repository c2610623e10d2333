"""A view that shows every layer whole still does after the dock narrows napari's canvas.

napari fits the layers to the canvas when the first one is added; docking this widget then
narrows the canvas, and a fitted image loses its sides until the user presses Home. While the
view shows every layer whole and the camera is as it was at the canvas's last size, a canvas
that no longer shows them whole refits it (``reset_view``); a view the user zoomed into or moved
is left alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QWidget

from .camera import camera


def _pose(viewer: Any) -> tuple:
    """The camera's zoom, centre and angles (what a user's zoom or pan changes)."""
    shown = camera(viewer)
    return (shown.zoom, tuple(shown.center), tuple(shown.angles))


def shows_whole(viewer: Any, size: tuple[int, int]) -> bool:
    """Whether a 2D view on a canvas of ``size`` (height, width) shows every layer whole."""
    if viewer.dims.ndisplay != 2 or not len(viewer.layers):
        return False
    extent = np.asarray(viewer.layers.extent.world)[:, list(viewer.dims.displayed)]
    shown = camera(viewer)
    half = np.asarray(size, dtype=float) / 2 / shown.zoom  # world units each side
    centre = np.asarray(shown.center[-2:], dtype=float)
    slack = 1 / shown.zoom  # a canvas pixel
    return bool(
        np.all(extent[0] >= centre - half - slack) and np.all(extent[1] <= centre + half + slack)
    )


def keep_whole_view(viewer: Any, widget: QWidget) -> None:
    """Refit ``viewer`` when its canvas stops showing a whole, untouched view whole, while
    ``widget`` (the dock) exists. No-op on a napari without an evented canvas size."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is None or not hasattr(getattr(canvas, "events", None), "size"):
        return
    last = {"size": tuple(canvas.size), "camera": _pose(viewer)}
    last["whole"] = shows_whole(viewer, last["size"])

    def on_size(_event: Any = None) -> None:
        size = tuple(canvas.size)
        untouched = _pose(viewer) == last["camera"]
        if last["whole"] and untouched and not shows_whole(viewer, size):
            viewer.reset_view()
        last.update(size=size, camera=_pose(viewer), whole=shows_whole(viewer, size))

    canvas.events.size.connect(on_size)
    widget.destroyed.connect(lambda *_: canvas.events.size.disconnect(on_size))
