"""An image with its map on top: napari's ``turbo`` colormap blended at 50 %, as uint8 RGB."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

OPACITY = 0.5


@lru_cache(maxsize=1)
def turbo_lut() -> np.ndarray:
    """napari's ``turbo`` at 256 levels, float32 256×3 in [0, 1] (the widget's colormap)."""
    from napari.utils.colormaps import ensure_colormap

    return ensure_colormap("turbo").map(np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def display_rgb(image: np.ndarray) -> np.ndarray:
    """The image as float32 H×W×3 in [0, 1], scaled the way the model sees it by default.

    Grey: its finite min/max; integer RGB: the dtype's range; float RGB: [0, 1] when it lies
    there, else its min/max.
    """
    rgb = image.ndim == 3
    values = np.asarray(image[..., :3] if rgb else image)
    if values.dtype.kind == "b":
        low, high = 0.0, 1.0
    elif rgb and np.issubdtype(values.dtype, np.integer):
        low, high = 0.0, float(np.iinfo(values.dtype).max)
    else:
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if rgb and 0.0 <= low and high <= 1.0:
            low, high = 0.0, 1.0
    scaled = np.nan_to_num(values.astype(np.float32), nan=low, posinf=high, neginf=low)
    scaled = np.clip((scaled - low) / (high - low), 0, 1) if high > low else scaled * 0
    return scaled if rgb else np.repeat(scaled[..., None], 3, axis=-1)


def overlay(image: np.ndarray, cam: np.ndarray, opacity: float = OPACITY) -> np.ndarray:
    """uint8 H×W×3: the image blended with ``turbo(cam)`` (``cam`` in [0, 1], H×W)."""
    levels = np.clip(np.rint(cam * 255), 0, 255).astype(np.uint8)
    blended = (1 - opacity) * display_rgb(image) + opacity * turbo_lut()[levels]
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
