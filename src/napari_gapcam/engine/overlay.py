"""An image with its map on top: the map in turbo blended at 50 %, as uint8 RGB (no napari).

For a map at a bounded grid over a big image (:mod:`.grid`), the image is reduced to that grid
band by band (:func:`~.preprocess.reduce_image`: a lazy image is never read whole, never copied
to float at full size) before blending. Black and white are the values the model sees as such
by default (:func:`~.preprocess.intensity_range`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ._torch import F
from .preprocess import _to_unit, intensity_range, reduce_image

OPACITY = 0.5
TURBO = "turbo"  # Google's Turbo (2019), as cmap names it (napari's "turbo" within 1/255)


@lru_cache(maxsize=1)
def turbo_lut() -> np.ndarray:
    """Turbo at 256 levels, float32 256×3 in [0, 1] (the widget's colormap), from ``cmap``."""
    from cmap import Colormap

    return np.asarray(Colormap(TURBO).lut(256)[:, :3], np.float32)


def display_rgb(image: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image as float32 h×w×3 in [0, 1], at its own size or reduced to ``shape`` (block
    means band by band, then an antialiased bilinear resize)."""
    low, high = intensity_range(image)
    height, width = (int(s) for s in image.shape[:2])
    size = (height, width) if shape is None else (int(shape[0]), int(shape[1]))
    factor = max(1, min(height // size[0], width // size[1]))
    reduced = _to_unit(reduce_image(image, factor, low, high), low, high)  # 1×C×h×w
    if tuple(reduced.shape[-2:]) != size:
        reduced = F.interpolate(reduced, size=size, mode="bilinear", antialias=True)
    rgb = reduced[0].clamp_(0, 1).permute(1, 2, 0).numpy()
    return rgb if rgb.shape[-1] == 3 else np.repeat(rgb, 3, axis=-1)


def overlay(image: Any, cam: np.ndarray, opacity: float = OPACITY) -> np.ndarray:
    """uint8 h×w×3: the image blended with ``turbo(cam)`` (``cam`` in [0, 1], h×w: the image's
    size, or a grid over it, to which the image is reduced)."""
    levels = np.clip(np.rint(np.nan_to_num(cam) * 255), 0, 255).astype(np.uint8)
    blended = (1 - opacity) * display_rgb(image, cam.shape) + opacity * turbo_lut()[levels]
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
