"""What the overlays show: one run's result, the layer it belongs to, and where its planes sit.

A run gives one :class:`~napari_gapcam.engine.result.Result`: of one image (the current plane) or
growing batch by batch (all planes). Either way the overlays ask it for a class's grid map of a
plane only when napari displays that plane; the overlay, the mask and the box share each map through
a small cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.grid import bounded_grid, grid_placement
from .input_planes import Planes
from .lazy_overlay import Fill, Index
from .overlay_layers import Placement

CACHED = 6  # maps and regions kept (a few MB): one class's overlay, mask and box
AT_ONCE = 64  # planes whose maps are made in one batch (a 3D view reads them all)
VOLUME_CELLS = 8_000_000  # a 3D view reads every plane: a stack's overlay volume stays this small

if TYPE_CHECKING:
    from napari.layers import Image

    from ..engine.localize import Box


@dataclass
class Shown:
    """A run's result on ``source``: ``result`` holds the first ``done`` planes of ``planes``."""

    source: Image
    source_shape: tuple[int, ...]  # the source's shape at run time (a change makes it stale)
    planes: Planes
    result: Any  # a Result: one plane, or all planes (growing)
    model: Any
    seconds: float = 0.0
    scale: str = "each"  # a stack's maps: min-max per plane ("each") or over all ("shared")
    position: dict[tuple[int, ...], int] = field(default_factory=dict)
    _cache: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.position = {index: i for i, index in enumerate(self.planes.indices)}

    @property
    def is_stack(self) -> bool:
        return len(self.planes) > 1

    @property
    def done(self) -> int:
        return len(self.result) if self.is_stack else 1

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.result.image_shape

    @property
    def mean_label(self) -> str:
        """How the class list's probabilities are pooled ("mean " over a stack)."""
        return "mean " if self.is_stack else ""

    def is_ready(self, c: int) -> bool:
        """True when class ``c``'s maps cost no network pass (a single Grad-CAM plane: one)."""
        return self.is_stack or self.result.is_ready(c)

    def progress_note(self) -> str:
        """How far a cancelled run got."""
        return f" after {self.done} of {len(self.planes)} planes" if self.is_stack else ""

    def meta(self) -> dict[str, Any]:
        """What the overlays' metadata adds about the run."""
        return {"scale": self.scale if self.is_stack else "each"}

    def box_pixels(self, box: Box, grid: tuple[int, int]) -> Box:
        """A box in cells of ``grid`` → pixels of the image read."""
        from ..engine.grid import grid_box_to_pixels

        return grid_box_to_pixels(box, self.image_shape, grid)

    def probabilities(self) -> np.ndarray:
        """Per class: the plane's probability, or the mean over the planes done."""
        if self.is_stack:
            return self.result.mean_probabilities()
        return self.result.probabilities

    def top(self, k: int) -> list[tuple[int, str, float]]:
        return self.result.topk_mean(k) if self.is_stack else self.result.topk(k)

    def cells_per_plane(self, megapixels: float) -> int:
        """The overlays' cells per plane: the user's megapixels, but over an nD source at most
        ``VOLUME_CELLS`` over the planes a 3D view would read: the source's longest plane axis,
        after a current-plane run too (its other planes are read, as zeros). The overlay's
        resolution does not follow the view: napari slices a new view before a plugin hears."""
        depth = max((self.source_shape[a] for a in self.planes.lead_axes), default=1)
        return max(1, min(int(megapixels * 1e6), VOLUME_CELLS // depth))

    def placement(self, max_pixels: int) -> Placement:
        """A grid of at most ``max_pixels`` cells over the image read, in the source's data."""
        grid = bounded_grid(self.image_shape, max_pixels)
        (sy, sx), (ty, tx) = grid_placement(self.image_shape, grid)
        fy, fx = self.planes.level_scale  # level pixel → level-0 data (napari's convention)
        return Placement(grid, (sy * fy, sx * fx), (ty * fy, tx * fx), self.planes.axes)

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
        position = self.position.get(index)
        if position is None or position >= self.done:
            return None

        def compute() -> np.ndarray:
            if self.is_stack:
                return self.result.cams(c, shape=grid, images=[position], scale=self.scale)[0]
            return self.result.cam(c, shape=grid)

        return self._cached(("map", c, grid, index), compute)

    def grid_maps(
        self, c: int, grid: tuple[int, int], indices: Sequence[Index]
    ) -> list[np.ndarray | None]:
        """:meth:`grid_map` of many planes: one from the cache, more (a 3D view) in batches."""
        if len(indices) == 1 or not self.is_stack:
            return [self.grid_map(c, grid, index) for index in indices]
        positions = [self.position.get(index) for index in indices]
        ready = [p for p in positions if p is not None and p < self.done]
        maps: dict[int, np.ndarray] = {}
        for start in range(0, len(ready), AT_ONCE):
            chosen = ready[start : start + AT_ONCE]
            made = self.result.cams(c, shape=grid, images=chosen, scale=self.scale)
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
            ("region", c, grid, threshold, index), lambda: largest_region(heat, threshold)
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
            return [None if h is None else largest_region(h, threshold)[0] for h in heats]

        return masks

    def box(
        self, c: int, grid: tuple[int, int], threshold: float, index: tuple[int, ...]
    ) -> Box | None:
        """The box (grid cells) of plane ``index``'s largest region, or None."""
        region = self.region(c, grid, threshold, index)
        return None if region is None else region[1]
