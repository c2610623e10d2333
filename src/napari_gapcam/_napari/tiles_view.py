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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker

from .input_planes import Planes, choose_planes
from .lazy_overlay import Fill, Index
from .model_controls import RANDOM
from .overlay_layers import Placement
from .run import Cancelled, CancelToken
from .shown import Shown
from .status import predictions_text

if TYPE_CHECKING:
    from napari.layers import Image

    from ..engine.localize import Box
    from ..models import GapCamModel
    from ..models.spec import ModelSpec

WHOLE, TILES = "whole image → input size", "native pixels (tiles)"
NEEDS_CAM = (
    "Tiles need the exact CAM (a GAP + dense head); {arch} uses {method}: pick a CAM model "
    "(method auto/cam) or 'whole image'."
)


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
    from ..engine.tiles import iter_tiled

    start = time.perf_counter()
    try:
        if model is None:
            model = spec.load()
        yield "model", model
        if model.method != "cam":
            raise ValueError(NEEDS_CAM.format(arch=model.arch, method=model.method_label))
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


@dataclass
class TiledShown(Shown):
    """A tiled run's result on ``source``: ``result`` is the engine's ``TiledResult``."""

    total: int = 0  # tiles to run

    @property
    def is_stack(self) -> bool:
        return False

    @property
    def done(self) -> int:
        return len(self.result.tile_boxes)

    @property
    def mean_label(self) -> str:
        return "mean "

    def probabilities(self) -> np.ndarray:
        return self.result.probabilities

    def top(self, k: int) -> list[tuple[int, str, float]]:
        return self.result.topk(k)

    def is_ready(self, c: int) -> bool:
        return True

    def progress_note(self) -> str:
        return f" after {self.done} of {self.total} tiles"

    def meta(self) -> dict[str, Any]:
        tiling = self.result.tiling
        return {
            "mode": "tiles",
            "scale": "shared",  # one min-max over the whole image
            "level": self.planes.level,
            "stride": self.result.stride,
            "tile_size": tiling.tile_size,
            "tiles_done": self.done,
            "tiles_total": self.total,
        }

    def placement(self, max_pixels: int = 0) -> Placement:
        """The grid itself: cell i centred at level pixel ``(i + 0.5)·stride − 0.5``."""
        s, (fy, fx) = self.result.stride, self.planes.level_scale
        t = (s - 1) / 2
        grid = tuple(int(g) for g in self.result.grids.shape[1:])
        return Placement(grid, (s * fy, s * fx), (t * fy, t * fx), self.planes.axes)

    def grid_map(self, c: int, grid: tuple[int, int], index: Index) -> np.ndarray | None:
        """Class ``c``'s grid, one min-max over the cells done (NaN: no tile yet)."""
        if index not in self.position:
            return None

        def compute() -> np.ndarray:
            raw = self.result.raw_cam(c)
            finite = raw[np.isfinite(raw)]
            if not finite.size:
                return raw
            low, high = float(finite.min()), float(finite.max())
            return (raw - low) / (high - low) if high > low else np.where(np.isnan(raw), raw, 0)

        return self._cached(("map", c, index), compute)

    def grid_maps(self, c: int, grid: tuple[int, int], indices: Sequence[Index]) -> list:
        return [self.grid_map(c, grid, index) for index in indices]

    def region(self, c: int, grid: tuple[int, int], threshold: float, index: Index) -> Any:
        from ..engine.localize import largest_region

        heat = self.grid_map(c, grid, index)
        if heat is None:
            return None
        return self._cached(
            ("region", c, threshold, index),
            lambda: largest_region(np.nan_to_num(heat), threshold),
        )

    def mask_fill(self, c: int, grid: tuple[int, int], threshold: float) -> Fill:
        def masks(indices: Sequence[Index]) -> list[np.ndarray | None]:
            regions = [self.region(c, grid, threshold, index) for index in indices]
            return [None if r is None else r[0] for r in regions]

        return masks

    def box_pixels(self, box: Box, grid: tuple[int, int]) -> Box:
        return self.result._to_pixels(box)

    def tile_tops(self) -> np.ndarray:
        """Each tile's top class probability over the grid cells that tile gave (its
        interior), so the blocks lie where the CAM's cells do; NaN: no tile yet."""
        tiling, result = self.result.tiling, self.result
        rows = {start * tiling.stride: i for i, start in enumerate(tiling.starts[0])}
        cols = {start * tiling.stride: j for j, start in enumerate(tiling.starts[1])}
        out = np.full(result.grids.shape[1:], np.nan, np.float32)
        done = min(len(result.tile_boxes), len(result.tile_probabilities))
        tops = result.tile_probabilities[:done].max(axis=1) if done else []
        for (y0, x0, _, _), top in zip(result.tile_boxes[:done], tops, strict=True):
            (a, b), (c, d) = tiling.kept(0, rows[y0]), tiling.kept(1, cols[x0])
            out[a:b, c:d] = top
        return out


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
        first = not isinstance(shown, TiledShown) or shown.result is not result
        if first:
            shown = TiledShown(source, shape, planes, result, self._model, seconds, total=total)
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
        skipped = f", {result.skipped} skipped" if result.skipped else ""
        h, w = result.grids.shape[1:]
        self.status.value = (
            f"{model.arch} (CAM) on {shown.source.name!r}{shown.planes.describe()}: tiles of "
            f"{result.tiling.tile_size} px at native pixels, {shown.done} of {shown.total} "
            f"tiles{skipped}, {h}×{w} map cells ({result.stride} px each), "
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
        if not isinstance(shown, TiledShown):
            return
        layer = self._overlays.get(shown.source, "tiles")
        if not self.show_tiles.value:
            if layer is not None:
                layer.visible = False
            return
        tops = shown.tile_tops()
        index = shown.planes.indices[0]
        meta = {**shown.meta(), "value": "top class probability per tile"}
        layer = self._overlays.show_image(
            "tiles",
            f"{shown.source.name} tile probability",
            shown.source,
            shown.placement(),
            meta,
            lambda indices: [tops if i == index else None for i in indices],
            colormap="viridis",
            interpolation2d="nearest",
            opacity=0.4,
        )
        layer.visible = True
