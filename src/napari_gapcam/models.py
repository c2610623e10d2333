"""The engine's public names in one place (each lives in its own small module)."""

from __future__ import annotations

from pathlib import Path

from .class_names import imagenet_categories
from .config import ModelConfig
from .device import available_devices, resolve_device
from .errors import UnsupportedModelError, WeightsError
from .families import FAMILIES, architectures
from .loading import from_module, load_model
from .model import METHODS, GapCamModel
from .weights import cached_weights_path, named_weights

# every torchvision architecture of the family table
ARCHITECTURES = architectures()
# A resnet18 trained here on synthetic shapes (benchmarks/localization): an offline demo.
DEMO_WEIGHTS = Path(__file__).parent / "data" / "shapes_resnet18.pt"

__all__ = [
    "ARCHITECTURES",
    "DEMO_WEIGHTS",
    "FAMILIES",
    "METHODS",
    "GapCamModel",
    "ModelConfig",
    "UnsupportedModelError",
    "WeightsError",
    "available_devices",
    "cached_weights_path",
    "from_module",
    "imagenet_categories",
    "load_model",
    "named_weights",
    "resolve_device",
]
