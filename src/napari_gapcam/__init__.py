"""napari-gapcam: class activation maps (CAM, Grad-CAM) of CNNs on napari image layers.

The engine (``load_model``, ``CamResult``, …) is imported lazily: importing this package does
not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "models",
    "from_module": "models",
    "ModelConfig": "models",
    "UnsupportedModelError": "models",
    "GapCamModel": "models",
    "WeightsError": "models",
    "ARCHITECTURES": "models",
    "available_devices": "models",
    "CamResult": "result",
    "class_activation_map": "cam",
    "mask_from_map": "localize",
    "boxes_from_map": "localize",
    "largest_region": "localize",
    "InputTooLargeError": "memory",
    "localization_metrics": "metrics",
    "bounded_grid": "grid",
    "grid_placement": "grid",
}
__all__ = [
    "ARCHITECTURES",
    "CamResult",
    "GapCamModel",
    "InputTooLargeError",
    "ModelConfig",
    "UnsupportedModelError",
    "WeightsError",
    "__version__",
    "available_devices",
    "bounded_grid",
    "boxes_from_map",
    "class_activation_map",
    "grid_placement",
    "from_module",
    "largest_region",
    "load_model",
    "localization_metrics",
    "mask_from_map",
]

if TYPE_CHECKING:
    from .cam import class_activation_map
    from .grid import bounded_grid, grid_placement
    from .localize import boxes_from_map, largest_region, mask_from_map
    from .memory import InputTooLargeError
    from .metrics import localization_metrics
    from .models import (
        ARCHITECTURES,
        GapCamModel,
        ModelConfig,
        UnsupportedModelError,
        WeightsError,
        available_devices,
        from_module,
        load_model,
    )
    from .result import CamResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
