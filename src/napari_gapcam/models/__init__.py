"""Models: which networks can be explained, and how they are built with their weights.

- :mod:`.families`: the family table (one row per family of networks: where its maps end, its
  head, its input size); :mod:`.heads` the head adapters; :mod:`.timm_models` timm networks.
- :mod:`.weights`: where weights come from (named, cached, a file); :mod:`.checkpoints` reads a
  file with no code run; :mod:`.fitting` fits a checkpoint's tensors to the network.
- :mod:`.loading`: :func:`load_model` and :func:`from_module`; :mod:`.spec` the model spec the
  widget, the CLI and its workers share; :mod:`.class_names`, :mod:`.errors`.

The names below (but ``DEMO_WEIGHTS``, a path) are imported on first use: importing this
package (or :mod:`.spec`) imports no torch.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

# A resnet18 trained here on synthetic shapes (benchmarks/localization): an offline demo.
DEMO_WEIGHTS = Path(__file__).parents[1] / "data" / "shapes_resnet18.pt"

_LAZY = {
    "ARCHITECTURES": ".families",
    "FAMILIES": ".families",
    "METHODS": "..engine.methods",
    "method_names": "..engine.methods",
    "GapCamModel": "..engine.model",
    "ModelConfig": "..engine.config",
    "available_devices": "..engine.device",
    "resolve_device": "..engine.device",
    "UnsupportedModelError": ".errors",
    "WeightsError": ".errors",
    "from_module": ".loading",
    "load_model": ".loading",
    "imagenet_categories": ".class_names",
    "cached_weights_path": ".weights",
    "named_weights": ".weights",
}
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
    "method_names",
    "named_weights",
    "resolve_device",
]

if TYPE_CHECKING:
    from ..engine.config import ModelConfig
    from ..engine.device import available_devices, resolve_device
    from ..engine.methods import METHODS, method_names
    from ..engine.model import GapCamModel
    from .class_names import imagenet_categories
    from .errors import UnsupportedModelError, WeightsError
    from .families import ARCHITECTURES, FAMILIES
    from .loading import from_module, load_model
    from .weights import cached_weights_path, named_weights


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
