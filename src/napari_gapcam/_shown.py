"""What the overlays show: one run's result, the layer it belongs to, and where its planes sit.

A run gives one :class:`~napari_gapcam.cam.CamResult` (the current plane) or a
:class:`~napari_gapcam.batch.StackResult` that grows batch by batch (all planes). Either way
the overlays ask it for a class's grid map of a plane only when napari displays that plane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._layers import Fill, Placement
from ._planes import Planes
from .grid import bounded_grid, grid_placement

if TYPE_CHECKING:
    from napari.layers import Image

    from .localize import Box


@dataclass
class Shown:
    """A run's result on ``source``: ``result`` holds the first ``done`` planes of ``planes``."""

    source: Image
    source_shape: tuple[int, ...]  # the source's shape at run time (a change makes it stale)
    planes: Planes
    result: Any  # CamResult (one plane) or StackResult (all planes, growing)
    model: Any
    seconds: float = 0.0
    position: dict[tuple[int, ...], int] = field(default_factory=dict)

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

    def probabilities(self) -> np.ndarray:
        """Per class: the plane's probability, or the mean over the planes done."""
        if self.is_stack:
            return self.result.mean_probabilities()
        return self.result.probabilities

    def top(self, k: int) -> list[tuple[int, str, float]]:
        return self.result.topk_mean(k) if self.is_stack else self.result.topk(k)

    def placement(self, max_pixels: int) -> Placement:
        """A grid of at most ``max_pixels`` cells over the image read, in the source's data."""
        grid = bounded_grid(self.image_shape, max_pixels)
        (sy, sx), (ty, tx) = grid_placement(self.image_shape, grid)
        fy, fx = self.planes.level_scale  # level pixel → level-0 data (napari's convention)
        return Placement(grid, (sy * fy, sx * fx), (ty * fy, tx * fx), self.planes.axes)

    def grid_map(self, c: int, grid: tuple[int, int], index: tuple[int, ...]) -> np.ndarray | None:
        """Class ``c``'s normalised map of plane ``index`` at ``grid`` (None: not computed)."""
        position = self.position.get(index)
        if position is None or position >= self.done:
            return None
        if self.is_stack:
            return self.result.cams(c, shape=grid, images=[position])[0]
        return self.result.cam(c, shape=grid)

    def cam_fill(self, c: int, grid: tuple[int, int]) -> Fill:
        """The overlay's planes: a stack's computed lazily, one plane's now (it is shown anyway)."""
        if self.is_stack:
            return lambda index: self.grid_map(c, grid, index)
        plane = self.grid_map(c, grid, self.planes.indices[0])
        return lambda index: plane if index == self.planes.indices[0] else None

    def mask_fill(self, c: int, grid: tuple[int, int], threshold: float) -> Fill:
        from .localize import largest_region

        def mask(index: tuple[int, ...]) -> np.ndarray | None:
            heat = self.grid_map(c, grid, index)
            return None if heat is None else largest_region(heat, threshold)[0]

        if self.is_stack:
            return mask
        plane = mask(self.planes.indices[0])
        return lambda index: plane if index == self.planes.indices[0] else None

    def box(
        self, c: int, grid: tuple[int, int], threshold: float, index: tuple[int, ...]
    ) -> Box | None:
        """The box (grid cells) of plane ``index``'s largest region, or None."""
        from .localize import largest_region

        heat = self.grid_map(c, grid, index)
        return None if heat is None else largest_region(heat, threshold)[1]
