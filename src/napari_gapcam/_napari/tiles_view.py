"""Native pixels (tiles) in the widget: a tiled run in a worker, the grid shown as it fills.

The network sees the image's own pixels (the pyramid level napari displays, the displayed plane
of a stack): :func:`napari_gapcam.engine.tiles.iter_tiled` runs the tiles nearest the canvas centre
first and fills one grid of every class in place, batch by batch. The overlay *is* that grid
(one cell per ``stride`` pixels: 1/stride² of the image), placed with scale ``stride ×
downsample`` and translate ``(stride − 1)/2 × downsample`` composed with the source's
transform, drawn with linear interpolation; cells no tile reached yet are NaN (transparent).

:class:`TilesRun` is a mixin of :class:`~napari_gapcam._napari.widget.GapCamWidget`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker

from .input_planes import Planes, choose_planes
from .model_controls import RANDOM
from .run import Cancelled, CancelToken
from .shown import Shown
from .status import predictions_text

if TYPE_CHECKING:
    from napari.layers import Image

    from ..models import GapCamModel
    from ..models.spec import ModelSpec

WHOLE, TILES = "whole image → input size", "native pixels (tiles)"


class LevelPlane:
    """The displayed plane of one pyramid level as a lazy H×W(×C) array: a read of a block of
    rows and columns reads only that block (zarr, dask, TIFF stores alike)."""

    def __init__(self, planes: Planes) -> None:
        sequence = planes.images
        self._data, self._axes = sequence.data, planes.axes
        self._at = dict(zip(planes.lead_axes, sequence.indices[0], strict=True))
        self.shape, self.dtype = tuple(sequence.shape[1:]), sequence.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        rows, cols = (tuple(key) + (slice(None),) * 2)[:2]
        full: list[Any] = [self._at.get(a, slice(None)) for a in range(len(self._data.shape))]
        full[self._axes[0]], full[self._axes[1]] = rows, cols
        block = np.asarray(self._data[tuple(full)])
        return np.swapaxes(block, 0, 1) if self._axes[0] > self._axes[1] else block

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[:, :]
        return data if dtype is None else data.astype(dtype, copy=False)


def canvas_centre(viewer: Any, source: Image, planes: Planes) -> tuple[float, float]:
    """The canvas centre in pixels of the level read (where the first tiles go)."""
    point = np.array(viewer.dims.point, float)
    displayed = list(viewer.dims.order[-2:])
    point[displayed] = np.asarray(viewer.scene.camera.center, float)[-2:]
    data = np.asarray(source.world_to_data(point), float)
    fy, fx = planes.level_scale
    return float(data[planes.axes[0]] / fy), float(data[planes.axes[1]] / fx)


def compute_tiled(
    model: GapCamModel | None,
    spec: ModelSpec,
    image: LevelPlane,
    contrast_limits: Any,
    tile_size: int | None,
    first: tuple[float, float],
    token: CancelToken,
) -> Iterator[tuple[str, Any]]:
    """Worker body: ``("model", model)``, then ``("tiles", (done, total, TiledResult,
    seconds))`` per batch (the same result, filled in place); errors as ``("error", e)``."""
    from ..engine.tiles import check_tiles, iter_tiled

    start = time.perf_counter()
    try:
        if model is None:
            model = spec.load()
        yield "model", model
        check_tiles(model)
        batches = iter_tiled(
            model, image, tile_size=tile_size, contrast_limits=contrast_limits, first=first
        )
        while True:
            with token.watching(model):
                part = next(batches, None)
            if part is None:
                return
            yield "tiles", (*part, time.perf_counter() - start)
    except Cancelled:
        return
    except Exception as error:
        yield "error", error


class TilesRun:
    """The widget's tiled runs (see the module docstring); uses the widget's controls."""

    def _start_tiled(self, source: Image, spec: ModelSpec) -> None:
        dims = self._viewer.dims
        level = source.data_level if source.multiscale else 0
        planes = choose_planes(source, dims.point, tuple(dims.order), 0, level=level)
        first = canvas_centre(self._viewer, source, planes)
        model, contrast, run_id, shape = self._new_run(spec, source)  # lifecycle.RunLifecycle
        self.status.value = (
            f"Running tiles at native pixels on {source.name!r}{planes.describe()}, "
            "the tiles in view first…"
        )
        worker = create_worker(
            compute_tiled,
            model,
            spec,
            LevelPlane(planes),
            contrast,
            self.input_size.value or None,
            first,
            self._token,
            _ignore_errors=True,
        )

        def on_yield(out: tuple[str, Any]) -> None:
            self._on_tiles(out, run_id, spec, source, planes, shape)

        self._launch(worker, run_id, spec, on_yield, 0, f"napari-gapcam tiles on {source.name}")

    def _on_tiles(
        self,
        out: tuple[str, Any],
        run_id: int,
        spec: ModelSpec,
        source: Image,
        planes: Planes,
        shape: tuple[int, ...],
    ) -> None:
        taken = self._run_payload(out, run_id, spec, source)  # see lifecycle.RunLifecycle
        if taken is None:
            return
        done, total, result, seconds = taken[1]
        shown = self._shown
        first = shown is None or shown.result is not result
        if first:
            shown = Shown(
                source, shape, planes, result, self._model, seconds, total=total, unit="tiles"
            )
            self._shown = shown
        shown.seconds, shown.total = seconds, total
        if self._progress is not None:
            self._progress.total = total
            self._progress.update(done - self._progress.n)
        self._show_tiles(first)

    def _show_tiles(self, first: bool) -> None:
        shown, model = self._shown, self._shown.model
        result = shown.result
        top = shown.top(5)
        text = predictions_text(top, False, model.weights == RANDOM)
        self.predictions.value = f"{text}\n(mean over the tiles)"
        facts = result.metadata()
        skipped = f", {facts['tiles_skipped']} skipped" if facts["tiles_skipped"] else ""
        h, w = result.map_shape
        self.status.value = (
            f"{model.arch} ({result.method}) on {shown.source.name!r}{shown.planes.describe()}: "
            f"tiles of {facts['tile_size']} px at native pixels, {shown.done} of {shown.total} "
            f"tiles{skipped}, {h}×{w} map cells ({facts['stride']} px each), "
            f"{shown.seconds:.2f} s on {model.device}."
        )
        self._run_line = self.status.value
        current = self.class_select.value
        self._rebuild_classes(top[0][0] if self._follow_top or current is None else current)
        self._refresh_overlays()
        self._show_tile_layer()
        cam_layer = self._overlays.get(shown.source, "cam")
        if first and cam_layer is not None:
            self._viewer.layers.selection.active = cam_layer

    def _show_tile_layer(self, _value: Any = None) -> None:
        """The optional layer of each tile's top probability."""
        shown = self._shown
        if shown is None or shown.unit != "tiles":
            return
        layer = self._overlays.get(shown.source, "tiles")
        if not self.show_tiles.value:
            if layer is not None:
                layer.visible = False
            return
        tops = shown.result.tile_top_grid()
        index = shown.planes.indices[0]
        meta = {**shown.meta(), "value": "top class probability per tile"}
        layer = self._overlays.show_image(
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
