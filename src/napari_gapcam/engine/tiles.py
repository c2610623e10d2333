"""CAM at native pixels over images of any size: tiles, batched, stitched into one grid.

A whole slide or mosaic shrunk to the input size loses every small object. Here the network
sees the image's own pixels (of the pyramid level read): tiles of ``tile_size`` pixels (the
model's input size by default), ``overlap`` pixels apart at their borders, are read in blocks
(one read per block of tiles, never the whole image), run in batches through the one forward
path, and each tile's class maps go into one grid over the whole image with one cell per
feature-map cell (``stride`` pixels: 32 for a ResNet). Each tile gives only its interior
cells (all but ``overlap / 2`` at a border shared with another tile), so tile borders barely
show. The CAM is linear in the maps, so every class's map is stitched at once (``C`` grids
kept in half precision: ``2·C / stride²`` bytes per image pixel).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._torch import F, torch
from .batch import PRECISIONS
from .localize import Box, boxes_from_map, largest_region
from .preprocess import _to_unit, image_layout, intensity_range
from .result import ClassRef, class_index, top_classes

if TYPE_CHECKING:
    from .model import GapCamModel

BLOCK_TILES = 8  # tiles across one read
BACKGROUND_FRACTION = 0.05  # a tile with less foreground than this is skipped
MAX_DEFAULT_PIXELS = 2**26  # cam() at the image's own size up to this; give shape= beyond
MEMORY_GRIDS = 2**30  # bytes of class grids kept in memory; more go to a temporary file


@dataclass
class Tiling:
    """Where the tiles lie, in cells of ``stride`` pixels of the level read."""

    image_shape: tuple[int, int]
    stride: int
    tile_cells: int  # a tile's side in cells
    margin: int  # cells dropped at a border shared with another tile
    starts: tuple[list[int], list[int]]  # tile origins along rows and columns, in cells

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(math.ceil(s / self.stride) for s in self.image_shape)  # type: ignore

    @property
    def tile_size(self) -> int:
        return self.tile_cells * self.stride

    def kept(self, axis: int, k: int) -> tuple[int, int]:
        """The cells [a, b) tile ``k`` along ``axis`` gives to the grid (its interior)."""
        starts, n = self.starts[axis], self.grid[axis]
        a = 0 if k == 0 else starts[k] + self.margin
        b = n if k == len(starts) - 1 else starts[k] + self.tile_cells - self.margin
        return a, min(b, n)

    def tiles(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(len(self.starts[0])) for j in range(len(self.starts[1]))]


def plan(image_shape: tuple[int, int], stride: int, tile_size: int, overlap: int) -> Tiling:
    """Tiles of ``tile_size`` (rounded to the stride) overlapping by ``overlap`` pixels (rounded
    to an even number of cells) covering the image."""
    cells = max(1, round(tile_size / stride))
    overlap_cells = min(2 * round(overlap / stride / 2), cells - 1 - (cells - 1) % 2)
    margin, step = overlap_cells // 2, cells - overlap_cells
    grid = [math.ceil(s / stride) for s in image_shape]
    starts: list[list[int]] = []
    for n in grid:
        axis = [0]
        while axis[-1] + cells - margin < n:
            axis.append(axis[-1] + step)
        starts.append(axis)
    return Tiling(tuple(image_shape), stride, cells, margin, (starts[0], starts[1]))


class TiledResult:
    """The stitched maps of a tiled run over one image (of the pyramid level read).

    ``grids``: C×h×w raw class maps (half precision; NaN where a tile was skipped), one cell per
    ``stride`` pixels; ``tile_probabilities`` (tiles × classes) with ``tile_boxes`` (each tile's
    pixels ``(y0, x0, y1, x1)`` in the level read) and ``skipped`` (tiles not run).
    """

    def __init__(
        self,
        grids: np.ndarray,
        tile_probabilities: np.ndarray,
        tile_boxes: list[Box],
        class_names: Sequence[str],
        tiling: Tiling,
        level: int,
        skipped: int,
    ) -> None:
        self.grids = grids
        self.tile_probabilities = tile_probabilities
        self.tile_boxes = tile_boxes
        self.class_names = list(class_names)
        self.tiling = tiling
        self.image_shape = tiling.image_shape
        self.stride = tiling.stride
        self.level = level
        self.skipped = skipped

    def __repr__(self) -> str:
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk(3))
        return (
            f"TiledResult({len(self.tile_boxes)} tiles of {self.tiling.tile_size}² over "
            f"{self.image_shape}, {self.skipped} skipped, mean top-3: {best})"
        )

    @property
    def probabilities(self) -> np.ndarray:
        """Each class's probability averaged over the tiles run."""
        if not len(self.tile_probabilities):
            return np.zeros(len(self.class_names))
        return self.tile_probabilities.mean(axis=0)

    def topk(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` classes of highest mean tile probability."""
        return top_classes(self.probabilities, self.class_names, k)

    def raw_cam(self, c: ClassRef) -> np.ndarray:
        """The stitched raw map (h×w float32, one cell per ``stride`` pixels; NaN: skipped)."""
        return self.grids[class_index(self.class_names, c)].astype(np.float32)

    def cam(self, c: ClassRef, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The map over the whole image at ``shape`` (default: the image's own size, up to
        ``MAX_DEFAULT_PIXELS``), bilinear, with **one** min-max for the whole image (NaN where
        tiles were skipped)."""
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        if shape is None and size[0] * size[1] > MAX_DEFAULT_PIXELS:
            raise ValueError(
                f"The image is {size[0]}×{size[1]}: give the map's grid, e.g. "
                f"cam(c, shape={tuple(self.grids.shape[1:])}) (one cell per {self.stride} px)."
            )
        raw = self.raw_cam(c)
        finite = raw[np.isfinite(raw)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        up = _resample(torch.from_numpy(raw), self.image_shape, self.stride, size)
        return ((up - low) / (high - low) if high > low else up * 0).numpy()

    def box(self, c: ClassRef, threshold: float = 0.2) -> Box | None:
        """The largest region of ``cam ≥ threshold`` on the grid, in pixels of the level read."""
        found = largest_region(np.nan_to_num(self.cam(c, self.grids.shape[1:])), threshold)[1]
        return None if found is None else self._to_pixels(found)

    def boxes(self, c: ClassRef, threshold: float = 0.2, min_area: int = 1) -> list[Box]:
        """Every region (at least ``min_area`` cells) in pixels of the level read."""
        grid = np.nan_to_num(self.cam(c, self.grids.shape[1:]))
        return [self._to_pixels(b) for b in boxes_from_map(grid, threshold, min_area)]

    def mask(self, c: ClassRef, threshold: float = 0.2) -> np.ndarray:
        """The largest region of ``cam ≥ threshold`` on the grid (bool, one cell per stride)."""
        return largest_region(np.nan_to_num(self.cam(c, self.grids.shape[1:])), threshold)[0]

    def _to_pixels(self, box: Box) -> Box:
        s, (h, w) = self.stride, self.image_shape
        return (box[0] * s, box[1] * s, min(h, box[2] * s), min(w, box[3] * s))


def _resample(raw: torch.Tensor, image: tuple[int, int], stride: int, size: tuple[int, int]):
    """The grid (cell i centred at pixel ``(i + 0.5)·stride − 0.5``) sampled bilinearly at the
    centres of a ``size`` grid over the image's pixels."""
    axes = []
    for n_cells, pixels, n in zip(raw.shape, image, size, strict=True):
        centres = (torch.arange(n, dtype=torch.float64) + 0.5) * pixels / n - 0.5
        cell = (centres + 0.5) / stride - 0.5
        axes.append((cell / max(n_cells - 1, 1) * 2 - 1).float())
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None]
    out = F.grid_sample(
        raw[None, None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0, 0]


def _level(image: Any, level: int | None) -> tuple[Any, int, Any]:
    """The level to read, its index, and the smallest level (for the background)."""
    if isinstance(image, (list, tuple)):
        index = 0 if level is None else int(level)
        if not 0 <= index < len(image):
            raise ValueError(f"Level {index} does not exist: the pyramid has {len(image)}.")
        return image[index], index, image[-1]
    if level not in (None, 0):
        raise ValueError("level= picks a pyramid level: pass the levels as a list.")
    return image, 0, None


def foreground_tiles(
    thumbnail: np.ndarray, image_shape: tuple[int, int], tiling: Tiling
) -> set[tuple[int, int]]:
    """Tiles holding foreground: Otsu's threshold on a low-resolution grey version, the class
    that holds most of the border pixels being the background (bright or dark)."""
    from skimage.filters import threshold_otsu

    grey = np.asarray(thumbnail, dtype=np.float32)
    grey = grey[..., :3].mean(axis=-1) if grey.ndim == 3 else grey
    grey = np.nan_to_num(grey)
    if grey.max() <= grey.min():
        return set(tiling.tiles())
    above = grey > threshold_otsu(grey)
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    foreground = ~above if border.mean() > 0.5 else above
    fy, fx = grey.shape[0] / image_shape[0], grey.shape[1] / image_shape[1]
    keep = set()
    size = tiling.tile_size
    for i, j in tiling.tiles():
        y0, x0 = tiling.starts[0][i] * tiling.stride, tiling.starts[1][j] * tiling.stride
        part = foreground[
            int(y0 * fy) : max(int(y0 * fy) + 1, int((y0 + size) * fy)),
            int(x0 * fx) : max(int(x0 * fx) + 1, int((x0 + size) * fx)),
        ]
        if part.size and part.mean() >= BACKGROUND_FRACTION:
            keep.add((i, j))
    return keep


def iter_tiled(
    model: GapCamModel,
    image: Any,
    tile_size: int | None = None,
    overlap: int | None = None,
    level: int | None = None,
    contrast_limits: Sequence[float] | None = None,
    batch_size: int | None = None,
    background: str | None = None,
    first: tuple[float, float] | None = None,
    only: Sequence[tuple[int, int]] | None = None,
    precision: str = "fp32",
) -> Iterator[tuple[int, int, TiledResult]]:
    """Yield ``(tiles done, tiles to run, result so far)`` after each batch; the result fills
    in place (NaN where no tile ran yet). ``first=(y, x)``: tiles nearest that pixel first (the
    part of the image in view). ``only``: run just these tiles (``(row, column)`` of
    :func:`plan`'s tiling, e.g. one block of a run split across workers; the others count as
    skipped). ``precision``: ``"fp32"``, ``"fp16"`` / ``"bf16"`` autocast (as ``run_batch``).
    Grids of more than ``MEMORY_GRIDS`` bytes (many classes over a big slide) live in a
    temporary file (a numpy memmap) instead of memory. See :meth:`GapCamModel.run_tiled`."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
    if model.method != "cam":
        raise ValueError(
            "Tiled runs stitch the exact CAM (a GAP + dense head); this model uses "
            f"{model.method_label}. Use a CAM model, or run the whole image (model.run)."
        )
    data, index, smallest = _level(image, level)
    rgb = image_layout(data)
    shape = tuple(int(s) for s in data.shape[:2])
    tile_size = int(tile_size or model.input_size)
    stride = _stride(model, tile_size)
    tiling = plan(shape, stride, tile_size, stride * 2 if overlap is None else int(overlap))
    size = tiling.tile_size
    low, high = intensity_range(smallest if smallest is not None else data, contrast_limits)
    if contrast_limits is None and rgb and np.dtype(data.dtype) == np.uint8:
        low, high = 0.0, 255.0
    todo = tiling.tiles()
    if only is not None:
        wanted = {(int(i), int(j)) for i, j in only}
        todo = [t for t in todo if t in wanted]
    if background == "auto":
        thumbnail = smallest if smallest is not None else _thumbnail(data)
        keep = foreground_tiles(np.asarray(thumbnail), shape, tiling)
        todo = [t for t in todo if t in keep]
    elif background is not None:
        raise ValueError(f"background is None or 'auto', got {background!r}.")
    if first is not None:

        def distance(t: tuple[int, int]) -> float:
            cy = (tiling.starts[0][t[0]] * stride + size / 2) - first[0]
            cx = (tiling.starts[1][t[1]] * stride + size / 2) - first[1]
            return cy * cy + cx * cx

        todo.sort(key=distance)
    skipped = len(tiling.tiles()) - len(todo)
    weight = model.method_object.on_host().weight.float()  # C×K
    classes = weight.shape[0]
    grids = _grids((classes, *tiling.grid))
    result = TiledResult(
        grids, np.zeros((0, classes)), [], model.class_names, tiling, index, skipped
    )
    batch_size = batch_size or max(1, min(16, 8 * 224 * 224 // (size * size)))
    model.check_memory((size, size), batch_size)
    probabilities: list[np.ndarray] = []
    for start in range(0, len(todo), batch_size):
        chosen = todo[start : start + batch_size]
        pixels = _read_tiles(data, tiling, chosen, rgb)
        tensor = _normalise(pixels, low, high, model.config.mean, model.config.std)
        with torch.inference_mode():
            maps, logits = model.forward_batch(tensor.to(model.device), PRECISIONS[precision])
            maps, logits = maps.float().cpu(), logits.float().cpu()
        raw = torch.einsum("ck,nkhw->nchw", weight, maps).numpy()
        for (i, j), tile_raw in zip(chosen, raw, strict=True):
            (a, b), (c, d) = tiling.kept(0, i), tiling.kept(1, j)
            y, x = tiling.starts[0][i], tiling.starts[1][j]
            grids[:, a:b, c:d] = tile_raw[:, a - y : b - y, c - x : d - x]
            y0, x0 = y * stride, x * stride
            result.tile_boxes.append((y0, x0, min(shape[0], y0 + size), min(shape[1], x0 + size)))
        probabilities.append(torch.softmax(logits, 1).numpy())
        result.tile_probabilities = np.concatenate(probabilities)
        yield min(start + batch_size, len(todo)), len(todo), result
    if not todo:
        yield 0, 0, result


def _grids(shape: tuple[int, ...]) -> np.ndarray:
    """NaN-filled half-precision grids: in memory, or a temporary file beyond ``MEMORY_GRIDS``
    bytes (deleted when the array is: the file is unlinked at once)."""
    if 2 * math.prod(shape) <= MEMORY_GRIDS:
        return np.full(shape, np.nan, np.float16)
    import tempfile

    with tempfile.TemporaryFile(prefix="gapcam-grids-") as file:
        grids = np.memmap(file, dtype=np.float16, mode="w+", shape=shape)
    grids[:] = np.nan
    return grids


def _stride(model: GapCamModel, tile_size: int) -> int:
    """Input pixels per feature-map cell, measured on one blank tile."""
    with torch.inference_mode():
        probe = torch.zeros(1, 3, tile_size, tile_size, device=model.device)
        cells = model.forward_features(probe, (tile_size, tile_size)).shape[-1]
    return max(1, round(tile_size / cells))


def _thumbnail(data: Any, side: int = 512) -> np.ndarray:
    """A low-resolution copy for the background mask, read band by band."""
    from .preprocess import reduce_image

    factor = max(1, math.ceil(max(data.shape[:2]) / side))
    low, high = intensity_range(data)
    return reduce_image(data, factor, low, high)[0].permute(1, 2, 0).numpy()


def _read_tiles(
    data: Any, tiling: Tiling, tiles: Sequence[tuple[int, int]], rgb: bool
) -> torch.Tensor:
    """The tiles' pixels as N×C×T×T float32 (zero past the image's edge), read in blocks:
    tiles of one row, up to ``BLOCK_TILES`` apart, share one read (a zarr or TIFF chunk is
    decompressed on every read)."""
    size, s = tiling.tile_size, tiling.stride
    out = np.zeros((len(tiles), 3 if rgb else 1, size, size), np.float32)
    rows: dict[int, list[int]] = {}
    for n, (i, _) in enumerate(tiles):
        rows.setdefault(i, []).append(n)
    for i, members in rows.items():
        members.sort(key=lambda n: tiles[n][1])
        groups: list[list[int]] = [[members[0]]]
        for n in members[1:]:
            if tiles[n][1] - tiles[groups[-1][0]][1] < BLOCK_TILES:
                groups[-1].append(n)
            else:
                groups.append([n])
        y0 = tiling.starts[0][i] * s
        for group in groups:
            x_first = tiling.starts[1][tiles[group[0]][1]] * s
            x_last = tiling.starts[1][tiles[group[-1]][1]] * s + size
            block = np.asarray(data[y0 : y0 + size, x_first:x_last])
            block = block[..., :3] if rgb else block[..., None]
            for n in group:
                x0 = tiling.starts[1][tiles[n][1]] * s - x_first
                part = block[:, x0 : x0 + size]
                out[n, :, : part.shape[0], : part.shape[1]] = np.moveaxis(part, -1, 0)
    return torch.from_numpy(out)


def _normalise(
    pixels: torch.Tensor, low: float, high: float, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    pixels = torch.nan_to_num(pixels, nan=low, posinf=high, neginf=low)
    unit = _to_unit(pixels, low, high).expand(-1, 3, -1, -1)
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (unit - mean_t) / std_t
