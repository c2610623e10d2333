"""The one result protocol: what every result answers, whatever made it.

One image (``model.run``), an image of a batch (``stack[i]``), a whole batch (``run_batch``)
and a tiled slide (``run_tiled``) all answer :class:`CamMaps`; the widget and the command line
use nothing else. A result holds N ≥ 1 images (``len``; ``result[i]`` is image i, and a
one-image result is its own ``[0]``). Two kinds of answer:

- **about the classes** — ``probabilities`` (C,), ``topk``: the result's own. One image's;
  a batch's mean over its images; a tiled image's mean over its tiles (``averaged_over`` says
  which: ``""``, ``"images"``, ``"tiles"``);
- **about the maps** — ``raw_cam``, ``cam``, ``box``, ``boxes``, ``mask``, ``regions``,
  ``object_scores``, ``contributions``: image by image. One image answers for itself; a batch
  answers batch first (maps N×…, boxes and regions as a list per image, scores with an
  ``image`` column).

A map is taken at a grid over the image (``shape``; by default the image's pixels, for a tiled
slide its own cells) and :meth:`CamMaps.placement` says where that grid's cells lie in the
image's pixels; boxes and regions come back in the image's pixels. ``scale`` is one of
:data:`~.maps.SCALES` (``"each"``, ``"shared"``, ``"relative"``, ``"raw"``: see :mod:`.maps`).

:class:`OneImage` holds the answers a one-image result derives from its own ``cam``;
:class:`ManyImages` those a batch gives image by image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .grid import Box, Placement, placed
from .localize import boxes_from_map, largest_region, regions_with_shares
from .maps import ClassRef, class_index, top_classes

if TYPE_CHECKING:
    import pandas

    from .methods import MethodInfo

Shape = tuple[int, int]
CACHED_MAPS = 2  # a one-image result keeps its last maps: a box, a mask and regions share them


@runtime_checkable
class CamMaps(Protocol):
    """What every result answers (see the module docstring)."""

    class_names: list[str]
    image_shape: tuple[int, int]

    @property
    def method(self) -> str:
        """The method's label, ``"CAM"`` or ``"Grad-CAM"``."""

    @property
    def method_info(self) -> MethodInfo:
        """The method's row of the table: what it allows (exact, tiles, decomposition, …)."""

    @property
    def probabilities(self) -> np.ndarray:
        """Each class's probability (C,): the result's own (see ``averaged_over``)."""

    @property
    def averaged_over(self) -> str:
        """``""`` (one image's own), ``"images"`` (a batch's mean) or ``"tiles"``."""

    @property
    def map_shape(self) -> Shape:
        """The raw map's grid (feature cells; a tiled slide's stitched cells)."""

    @property
    def decomposable(self) -> bool:
        """True when :meth:`contributions` works (a weighted sum of kept channels)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> CamMaps: ...

    def class_index(self, c: ClassRef) -> int: ...

    def topk(self, k: int = 5) -> list[tuple[int, str, float]]: ...

    def is_ready(self, c: ClassRef) -> bool:
        """True when class ``c``'s maps cost no more network pass."""

    def raw_cam(self, c: ClassRef) -> np.ndarray: ...

    def cam(self, c: ClassRef, shape: Shape | None = None, scale: str = "each") -> np.ndarray: ...

    def cams(
        self,
        c: ClassRef | Sequence[ClassRef],
        shape: Shape | None = None,
        images: Sequence[int] | None = None,
        scale: str = "each",
    ) -> np.ndarray:
        """The maps of ``images`` (default all), batch first: n×h×w."""

    def placement(self, shape: Shape | None = None) -> Placement: ...

    def box(
        self, c: ClassRef, threshold: float = 0.2, shape: Shape | None = None, scale: str = "each"
    ) -> Any: ...

    def boxes(
        self,
        c: ClassRef,
        threshold: float = 0.2,
        min_area: float = 1,
        shape: Shape | None = None,
        scale: str = "each",
    ) -> Any: ...

    def mask(
        self, c: ClassRef, threshold: float = 0.2, shape: Shape | None = None, scale: str = "each"
    ) -> np.ndarray: ...

    def regions(
        self,
        c: ClassRef,
        threshold: float = 0.2,
        min_area: float = 1,
        shape: Shape | None = None,
        scale: str = "each",
    ) -> Any: ...

    def object_scores(self, labels: Any, classes: Sequence[ClassRef] | None = None) -> Any: ...

    def contributions(self, c: ClassRef, n: int | None = 8) -> Any: ...

    def metadata(self) -> dict[str, Any]:
        """How the maps were made, as plain data (for a layer's or a record's metadata)."""


class Classes:
    """The class answers every result derives from ``class_names`` and ``probabilities``."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, c: ClassRef) -> int:
        """Index of a class given by index (int) or by name (exact, else case-insensitive)."""
        return class_index(self.class_names, c)

    def topk(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes as ``(index, name, probability)``, best first (a
        batch's: by mean probability over its images)."""
        return top_classes(self.probabilities, self.class_names, k)


class OneImage(Classes):
    """The answers a one-image result derives from its ``cam``: boxes, masks, regions and
    object scores in the image's pixels, ``len`` 1. A subclass gives ``class_names``,
    ``image_shape``, ``probabilities``, ``map_shape`` and ``cam``."""

    averaged_over = ""

    # ------------------------------------------------------------------ one image
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> OneImage:
        if index not in (0, -1):
            raise IndexError(f"Image {index} is out of range: this result holds one image.")
        return self

    def cams(
        self,
        c: ClassRef | Sequence[ClassRef],
        shape: Shape | None = None,
        images: Sequence[int] | None = None,
        scale: str = "each",
    ) -> np.ndarray:
        """:meth:`cam` batch first (1×h×w): this result's one image."""
        if images is not None and any(i not in (0, -1) for i in images):
            raise IndexError(f"Images {list(images)}: this result holds one image (0).")
        if isinstance(c, Sequence) and not isinstance(c, str):
            return np.stack([self.cam(k, shape, scale) for k in c])
        return np.stack([self.cam(c, shape, scale)] * (1 if images is None else len(images)))

    # ------------------------------------------------------------------ grids
    def default_grid(self) -> Shape:
        """The grid a map is taken at when no ``shape`` is given: the image's pixels."""
        return tuple(self.image_shape)  # type: ignore[return-value]

    def _grid(self, shape: Shape | None) -> Shape:
        return self.default_grid() if shape is None else (int(shape[0]), int(shape[1]))

    def placement(self, shape: Shape | None = None) -> Placement:
        """Where the cells of ``cam(c, shape)`` lie in the image's pixels."""
        return placed(self.image_shape, self._grid(shape))

    def heat(self, c: ClassRef, shape: Shape | None = None, scale: str = "each") -> np.ndarray:
        """:meth:`cam` with NaN as 0: the very map :meth:`box`, :meth:`boxes`, :meth:`mask` and
        :meth:`regions` read, made once and kept for them (do not modify it)."""
        return self._heat(c, shape, scale)[0]

    def _heat(self, c: ClassRef, shape: Shape | None, scale: str) -> tuple[np.ndarray, Shape]:
        """The map of ``c`` at ``shape`` (NaN as 0), kept for the next question about it."""
        grid = self._grid(shape)
        key = (self.class_index(c), grid, scale, self._version())
        kept: list = self.__dict__.setdefault("_kept_maps", [])
        for known, heat in kept:
            if known == key:
                return heat, grid
        heat = np.nan_to_num(self.cam(c, grid, scale))
        kept.insert(0, (key, heat))
        del kept[CACHED_MAPS:]
        return heat, grid

    def _version(self) -> int:
        """Changes when the maps may have (a tiled run filling in, a batch growing)."""
        return 0

    def _to_pixels(self, box: Box, grid: Shape) -> Box:
        if grid == tuple(self.image_shape):
            return tuple(int(v) for v in box)  # type: ignore[return-value]
        return self.placement(grid).to_pixels(box, self.image_shape)

    # ------------------------------------------------------------------ derived
    def box(
        self, c: ClassRef, threshold: float = 0.2, shape: Shape | None = None, scale: str = "each"
    ) -> Box | None:
        """Bounding box ``(y0, x0, y1, x1)`` (half-open, image pixels) of the largest region
        where the map ≥ ``threshold`` · max; ``None`` when the map is constant."""
        heat, grid = self._heat(c, shape, scale)
        found = largest_region(heat, threshold)[1]
        return None if found is None else self._to_pixels(found, grid)

    def boxes(
        self,
        c: ClassRef,
        threshold: float = 0.2,
        min_area: float = 1,
        shape: Shape | None = None,
        scale: str = "each",
    ) -> list[Box]:
        """Boxes (image pixels) of every region of at least ``min_area`` cells of the grid
        (pixels at the default grid), largest first."""
        heat, grid = self._heat(c, shape, scale)
        return [self._to_pixels(b, grid) for b in boxes_from_map(heat, threshold, min_area)]

    def mask(
        self, c: ClassRef, threshold: float = 0.2, shape: Shape | None = None, scale: str = "each"
    ) -> np.ndarray:
        """The largest region where the map ≥ ``threshold`` · max: bool, at ``shape``."""
        return largest_region(self._heat(c, shape, scale)[0], threshold)[0]

    def regions(
        self,
        c: ClassRef,
        threshold: float = 0.2,
        min_area: float = 1,
        shape: Shape | None = None,
        scale: str = "each",
    ) -> list[tuple[Box, float]]:
        """``(box, share)`` of every region of the map ≥ ``threshold`` · max covering at least
        ``min_area`` image pixels, largest first: its box in image pixels and its share of the
        map's mass (what the widget's *all regions* and the CLI's records show)."""
        heat, grid = self._heat(c, shape, scale)
        (sy, sx) = self.placement(grid).scale
        found = regions_with_shares(heat, threshold, min_area / (sy * sx))
        return [(self._to_pixels(box, grid), share) for box, share in found]

    def object_scores(
        self, labels: Any, classes: Sequence[ClassRef] | None = None
    ) -> pandas.DataFrame:
        """One row per labelled object: its mean map per class, ``cam_class``, ``cam_share``
        (:func:`napari_gapcam.engine.objects.object_scores`)."""
        from .objects import object_scores

        return object_scores(self, labels, classes)


class ManyImages(Classes):
    """The map answers of a batch, batch first: each image's own answer (``self[i]``), as a
    list, a stack or a table with an ``image`` column. A subclass is a sequence of images
    with ``cams``."""

    averaged_over = "images"

    def cam(self, c: ClassRef, shape: Shape | None = None, scale: str = "each") -> np.ndarray:
        """Every image's normalised map of ``c``, N×H×W (``cams`` of all images)."""
        return self.cams(c, shape, scale=scale)

    def placement(self, shape: Shape | None = None) -> Placement:
        """Where the cells of ``cam(c, shape)`` lie in each image's pixels."""
        return placed(self.image_shape, self.image_shape if shape is None else shape)

    def box(self, c: ClassRef, threshold=0.2, shape=None, scale="each") -> list[Box | None]:
        """Each image's :meth:`OneImage.box` (image pixels, or None)."""
        return [image.box(c, threshold, shape, scale) for image in self]

    def boxes(self, c: ClassRef, threshold=0.2, min_area=1, shape=None, scale="each") -> list:
        return [image.boxes(c, threshold, min_area, shape, scale) for image in self]

    def mask(self, c: ClassRef, threshold=0.2, shape=None, scale="each") -> np.ndarray:
        return np.stack([image.mask(c, threshold, shape, scale) for image in self])

    def regions(self, c: ClassRef, threshold=0.2, min_area=1, shape=None, scale="each") -> list:
        return [image.regions(c, threshold, min_area, shape, scale) for image in self]

    def contributions(self, c: ClassRef, n: int | None = 8) -> list:
        return [image.contributions(c, n) for image in self]

    def object_scores(
        self, labels: Any, classes: Sequence[ClassRef] | None = None
    ) -> pandas.DataFrame:
        """:meth:`OneImage.object_scores` of every image (``labels``: N×H×W, one label image
        per image) in one DataFrame, with an ``image`` column first."""
        import pandas as pd

        if len(labels) != len(self):
            raise ValueError(f"{len(labels)} label images for {len(self)} images: one each.")
        tables = [image.object_scores(labels[i], classes) for i, image in enumerate(self)]
        for i, table in enumerate(tables):
            table.insert(0, "image", i)
        return pd.concat(tables, ignore_index=True)
