"""Independent references shared by the tests (plain numpy, none of the engine's code paths)."""

from __future__ import annotations

import numpy as np

from napari_gapcam.engine.preprocess import intensity_range


def to_unit_range(image: np.ndarray, contrast_limits=None) -> np.ndarray:
    """The full-size float H×W×3 image in [0, 1]: the reference for the scaling rules."""
    low, high = intensity_range(image, contrast_limits)
    values = np.nan_to_num(np.asarray(image, np.float64), nan=low, posinf=high, neginf=low)
    span = high - low
    unit = np.clip((values - low) / span, 0, 1) if span > 0 else np.zeros_like(values)
    unit = unit[..., :3] if unit.ndim == 3 else np.repeat(unit[..., None], 3, axis=-1)
    return unit.astype(np.float32)
