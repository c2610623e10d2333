"""napari-gapcam: class activation maps (CAM, Grad-CAM) of CNNs on napari image layers.

Four packages: :mod:`.engine` (torch + numpy: maps, methods, results), :mod:`.models` (the
family table, weights, loading), :mod:`.cli` (the ``gapcam`` command) and :mod:`._napari` (the
dock widget); :mod:`.synthetic` makes the demo's shapes. The public names below are imported
lazily: importing this package does not import torch.
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
    "CamResult": "engine.result",
    "class_activation_map": "engine.methods.cam",
    "CamMaps": "engine.protocol",
    "TiledResult": "engine.tiled_result",
    "Result": "engine.result",
    "METHODS": "engine.methods",
    "MethodInfo": "engine.methods",
    "mask_from_map": "engine.localize",
    "boxes_from_map": "engine.localize",
    "largest_region": "engine.localize",
    "InputTooLargeError": "engine.memory",
    "localization_metrics": "engine.metrics",
    "faithfulness": "engine.faithfulness",
    "FaithfulnessCancelled": "engine.faithfulness",
    "iter_batches": "engine.batch",
    "iter_tiled": "engine.tiles",
    "bounded_grid": "engine.grid",
    "grid_placement": "engine.grid",
}
__all__ = [
    "ARCHITECTURES",
    "METHODS",
    "CamMaps",
    "CamResult",
    "FaithfulnessCancelled",
    "GapCamModel",
    "InputTooLargeError",
    "MethodInfo",
    "ModelConfig",
    "Result",
    "TiledResult",
    "UnsupportedModelError",
    "WeightsError",
    "__version__",
    "available_devices",
    "bounded_grid",
    "boxes_from_map",
    "class_activation_map",
    "faithfulness",
    "grid_placement",
    "from_module",
    "iter_batches",
    "iter_tiled",
    "largest_region",
    "load_model",
    "localization_metrics",
    "mask_from_map",
]

if TYPE_CHECKING:
    from .engine.batch import iter_batches
    from .engine.faithfulness import FaithfulnessCancelled, faithfulness
    from .engine.grid import bounded_grid, grid_placement
    from .engine.localize import boxes_from_map, largest_region, mask_from_map
    from .engine.memory import InputTooLargeError
    from .engine.methods import METHODS, MethodInfo
    from .engine.methods.cam import class_activation_map
    from .engine.metrics import localization_metrics
    from .engine.protocol import CamMaps
    from .engine.result import CamResult, Result
    from .engine.tiled_result import TiledResult
    from .engine.tiles import iter_tiled
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
