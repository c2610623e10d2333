"""An image with its map on top: turbo blended at 50 %, as uint8 RGB (no napari needed).

For a map at a bounded grid over a big image (see :mod:`napari_gapcam.engine.grid`), the image is
reduced to that grid band by band (a lazy page is never read whole) before blending.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import numpy as np

OPACITY = 0.5
BAND_VALUES = 2**22  # values of one band of rows read at a time (16 MiB as float32)

TURBO = "turbo"  # Google's Turbo (2019), as cmap names it (napari's "turbo" within 1/255)


@lru_cache(maxsize=1)
def turbo_lut() -> np.ndarray:
    """Turbo at 256 levels, float32 256×3 in [0, 1] (the widget's colormap), from ``cmap``."""
    from cmap import Colormap

    return np.asarray(Colormap(TURBO).lut(256)[:, :3], np.float32)


def _bands(image: Any, multiple: int = 1) -> Iterator[np.ndarray]:
    """The image in bands of rows, a multiple of ``multiple`` each (lazy pages are read band
    by band, never whole)."""
    per_row = max(1, int(np.prod(image.shape[1:]))) * multiple
    rows = multiple * max(1, BAND_VALUES // per_row)
    for start in range(0, int(image.shape[0]), rows):
        yield np.asarray(image[start : start + rows])


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = np.nan_to_num(values.astype(np.float32), nan=low, posinf=high, neginf=low)
    return np.clip((scaled - low) / (high - low), 0, 1) if high > low else scaled * 0


def display_rgb(image: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image as float32 h×w×3 in [0, 1], at its own size or reduced to ``shape`` (block
    means band by band, then a bilinear resize). Black and white are the values the model sees
    as such by default: the engine's :func:`~napari_gapcam.engine.preprocess.intensity_range`."""
    from ..engine.preprocess import intensity_range

    low, high = intensity_range(image)
    height, width = (int(s) for s in image.shape[:2])
    shape = (height, width) if shape is None else tuple(int(s) for s in shape)
    factor = max(1, min(height // shape[0], width // shape[1]))
    parts = []
    for band in _bands(image, factor):
        values = _scaled(band[..., :3] if band.ndim == 3 else band[..., None], low, high)
        if factor > 1:
            values = _block_mean(values, factor)
        parts.append(values)
    reduced = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if reduced.shape[:2] != shape:
        from skimage.transform import resize

        reduced = resize(reduced, shape, order=1, anti_aliasing=False).astype(np.float32)
    return reduced if reduced.shape[-1] == 3 else np.repeat(reduced, 3, axis=-1)


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor``×``factor`` blocks (partial edge blocks cut off)."""
    rows, cols = values.shape[0] // factor, values.shape[1] // factor
    if rows == 0:  # a last band shorter than a block: its rows join no full block
        return values[:0, :cols]
    cut = values[: rows * factor, : cols * factor]
    return cut.reshape(rows, factor, cols, factor, -1).mean(axis=(1, 3), dtype=np.float32)


def overlay(image: Any, cam: np.ndarray, opacity: float = OPACITY) -> np.ndarray:
    """uint8 h×w×3: the image blended with ``turbo(cam)`` (``cam`` in [0, 1], h×w: the image's
    size, or a grid over it, to which the image is reduced)."""
    levels = np.clip(np.rint(cam * 255), 0, 255).astype(np.uint8)
    blended = (1 - opacity) * display_rgb(image, cam.shape) + opacity * turbo_lut()[levels]
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
