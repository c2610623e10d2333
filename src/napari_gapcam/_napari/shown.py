"""What the overlays show: one run's result, the layer it belongs to, and where its planes sit.

A run gives one result (the engine's result protocol): of one image (the current plane), growing
batch by batch (all planes), or a slide's stitched tiles filling in. Whatever it is, the overlays
ask it for a class's grid map of a plane only when napari displays that plane; the overlay, the
mask and the box share each map through a small cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.grid import bounded_grid
from .input_planes import Planes
from .lazy_overlay import Fill, Index
from .names import EACH_TOP
from .overlay_layers import Placement

CACHED = 6  # maps and regions kept (a few MB): one class's overlay, mask and box
AT_ONCE = 64  # planes whose maps are made in one batch (a 3D view reads them all)
VOLUME_CELLS = 8_000_000  # a 3D view reads every plane: a stack's overlay volume stays this small
NEGLIGIBLE = 0.01  # a class under this share of a plane's top class's p gets no box there

if TYPE_CHECKING:
    from napari.layers import Image

    from ..engine.localize import Box
    from ..engine.protocol import CamMaps


@dataclass
class Shown:
    """A run's result on ``source``: ``result`` (any result of the result protocol: one plane,
    a growing batch of planes, a slide's tiles filling in) holds the ``done`` first of
    ``total`` units (planes or tiles) of ``planes``."""

    source: Image
    source_shape: tuple[int, ...]  # the source's shape at run time (a change makes it stale)
    planes: Planes
    result: CamMaps
    model: Any
    seconds: float = 0.0
    scale: str = "relative"  # how maps are scaled (``engine.maps.SCALES``)
    total: int = 1  # planes or tiles to run
    unit: str = "planes"  # what ``done`` and ``total`` count: "planes" or "tiles"
    position: dict[tuple[int, ...], int] = field(default_factory=dict)
    _cache: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.position = {index: i for i, index in enumerate(self.planes.indices)}

    @property
    def is_stack(self) -> bool:
        """Several planes, each with its own map (a tiled run is one plane)."""
        return len(self.planes) > 1

    @property
    def done(self) -> int:
        if self.unit == "tiles":
            return int(self.result.metadata()["tiles_run"])
        return len(self.result)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.result.image_shape

    @property
    def mean_label(self) -> str:
        """How the class list's probabilities are pooled ("mean " over a stack or tiles)."""
        return "mean " if self.result.averaged_over else ""

    def is_ready(self, c: int) -> bool:
        """True when the choice ``c``'s maps cost no network pass (a single Grad-CAM plane: one;
        a stack's planes are made as napari reads them, but for a method that reruns the
        network on each plane (Score-CAM: seconds a plane), which makes them in a job first)."""
        lazy = self.is_stack and not self.result.method_info.needs_input
        return lazy or maps_ready(self.result, c)

    def progress_note(self) -> str:
        """How far a cancelled run got."""
        if self.unit == "planes" and not self.is_stack:
            return ""
        return f" after {self.done} of {self.total} {self.unit}"

    def meta(self) -> dict[str, Any]:
        """What the overlays' metadata adds about the run."""
        extra = self.result.metadata() if self.unit == "tiles" else {}
        return {
            "scale": self.scale,
            **extra,
            "level": self.planes.level,
        }

    def box_pixels(self, box: Box, grid: tuple[int, int]) -> Box:
        """A box in cells of ``grid`` → pixels of the image read."""
        return self.result.placement(grid).to_pixels(box, self.image_shape)

    def probabilities(self) -> np.ndarray:
        """Per class: the plane's probability, or the mean over the planes or tiles done."""
        return self.result.probabilities

    def top(self, k: int) -> list[tuple[int, str, float]]:
        return self.result.topk(k)

    def plane_class(self, c: int, index: Index) -> tuple[int, float | None]:
        """The class shown on plane ``index`` for the choice ``c`` (:data:`EACH_TOP`: the
        plane's own top class) and its probability on that plane (None: not run yet)."""
        position = self.position.get(index) if self.is_stack else 0
        if position is None or position >= len(self.result):
            return (c if c != EACH_TOP else int(self.top(1)[0][0])), None
        c = own_classes(self.result, c, [position])[0]
        return c, float(self.plane_probabilities(position)[c])

    def plane_probabilities(self, position: int) -> np.ndarray:
        """Every class's probability on the ``position``-th plane run (a slide: over its tiles)."""
        if self.is_stack:
            return self.result.image_probabilities[position]
        return self.probabilities()

    def cells_per_plane(self, megapixels: float) -> int:
        """The overlays' cells per plane: the user's megapixels, but over an nD source at most
        ``VOLUME_CELLS`` over the planes a 3D view would read: the source's longest plane axis,
        after a current-plane run too (its other planes are read, as zeros). The overlay's
        resolution does not follow the view: napari slices a new view before a plugin hears."""
        depth = max((self.source_shape[a] for a in self.planes.lead_axes), default=1)
        return max(1, min(int(megapixels * 1e6), VOLUME_CELLS // depth))

    def grid(self, max_pixels: int) -> tuple[int, int]:
        """The grid the maps are shown at: at most ``max_pixels`` cells over the image read;
        a slide's tiles: their stitched cells themselves (filled as tiles run)."""
        if self.unit == "tiles":
            return self.result.map_shape
        return bounded_grid(self.image_shape, max_pixels)

    def placement(self, max_pixels: int) -> Placement:
        """The grid of :meth:`grid` over the image read, in the source's data coordinates."""
        placed = self.result.placement(self.grid(max_pixels))
        (sy, sx), (ty, tx) = placed.scale, placed.translate
        fy, fx = self.planes.level_scale  # level pixel → level-0 data (napari's convention)
        return Placement(placed.grid, (sy * fy, sx * fx), (ty * fy, tx * fx), self.planes.axes)

    def pixels(self) -> Placement:
        """The image read's own pixels, in the source's data coordinates (boxes given in
        pixels, such as a result's regions, are drawn on this)."""
        fy, fx = self.planes.level_scale
        return Placement(tuple(self.image_shape), (fy, fx), (0.0, 0.0), self.planes.axes)

    def _cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """A small cache: the CAM overlay, the mask and the box read the same maps and regions."""
        key = (id(self.result), self.done, self.scale, *key)
        if key not in self._cache:
            self._cache[key] = compute()
            while len(self._cache) > CACHED:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def grid_map(self, c: int, grid: tuple[int, int], index: tuple[int, ...]) -> np.ndarray | None:
        """Class ``c``'s normalised map of plane ``index`` at ``grid`` (None: not computed)."""
        if not self.has_map(index):
            return None
        return self._cached(("map", c, grid, index), lambda: self.fresh_map(c, grid, index))

    def has_map(self, index: tuple[int, ...]) -> bool:
        """Plane ``index`` was run (its maps can be made)."""
        position = self.position.get(index)
        return position is not None and position < len(self.result)

    def fresh_map(self, c: int, grid: tuple[int, int], index: tuple[int, ...]) -> np.ndarray:
        """:meth:`grid_map` made and not kept: what a worker asks for (a map that costs network
        passes, as Score-CAM's, is made there, never on the UI thread; the cache is the UI
        thread's)."""
        own = self.plane_class(c, index)[0]
        return self.result[self.position[index]].cam(own, grid, self.scale)

    def grid_maps(
        self, c: int, grid: tuple[int, int], indices: Sequence[Index]
    ) -> list[np.ndarray | None]:
        """:meth:`grid_map` of many planes: one from the cache, more (a 3D view) in batches."""
        if len(indices) == 1 or not self.is_stack:
            return [self.grid_map(c, grid, index) for index in indices]
        positions = [self.position.get(index) for index in indices]
        ready = [p for p in positions if p is not None and p < len(self.result)]
        maps: dict[int, np.ndarray] = {}
        for start in range(0, len(ready), AT_ONCE):
            chosen = ready[start : start + AT_ONCE]
            own = [self.plane_class(c, self.planes.indices[p])[0] for p in chosen]
            made = self.result.cams(own, shape=grid, images=chosen, scale=self.scale)
            maps.update(zip(chosen, made, strict=True))
        return [maps.get(p) for p in positions]

    def region(
        self, c: int, grid: tuple[int, int], threshold: float, index: tuple[int, ...]
    ) -> tuple[np.ndarray, Box | None] | None:
        """Mask and box (grid cells) of plane ``index``'s largest region (None: not computed)."""
        from ..engine.localize import largest_region

        heat = self.grid_map(c, grid, index)
        if heat is None:
            return None
        return self._cached(
            ("region", c, grid, threshold, index),
            lambda: largest_region(np.nan_to_num(heat), threshold),
        )

    def cam_fill(self, c: int, grid: tuple[int, int]) -> Fill:
        """The overlay's planes, computed when napari reads them."""
        return lambda indices: self.grid_maps(c, grid, indices)

    def mask_fill(self, c: int, grid: tuple[int, int], threshold: float) -> Fill:
        from ..engine.localize import largest_region

        def masks(indices: Sequence[Index]) -> list[np.ndarray | None]:
            if len(indices) == 1:
                region = self.region(c, grid, threshold, indices[0])
                return [None if region is None else region[0]]
            heats = self.grid_maps(c, grid, indices)
            return [
                None if h is None else largest_region(np.nan_to_num(h), threshold)[0] for h in heats
            ]

        return masks

    def box(
        self, c: int, grid: tuple[int, int], threshold: float, index: tuple[int, ...]
    ) -> Box | None:
        """The box (grid cells) of plane ``index``'s largest region, or None."""
        region = self.region(c, grid, threshold, index)
        return None if region is None else region[1]


def own_classes(result: CamMaps, c: int, images: Sequence[int]) -> list[int]:
    """The class each of ``images`` (positions in ``result``) shows for the choice ``c``: ``c``
    itself, or for :data:`EACH_TOP` the image's own most probable class."""
    if c != EACH_TOP:
        return [c] * len(images)
    if not isinstance(result, Sequence):  # one image (a slide: over its tiles)
        return [int(np.argmax(result.probabilities))] * len(images)
    return [int(k) for k in np.argmax(result.image_probabilities[list(images)], axis=1)]


def maps_ready(result: CamMaps, c: int) -> bool:
    """True when every image's map for the choice ``c`` (:data:`EACH_TOP`: each image's own
    top class) costs no network pass."""
    if c != EACH_TOP:
        return result.is_ready(c)
    if not isinstance(result, Sequence):
        return result.is_ready(own_classes(result, c, [0])[0])
    images = range(len(result))
    own = own_classes(result, c, images)
    return all(result[i].is_ready(k) for i, k in zip(images, own, strict=True))
