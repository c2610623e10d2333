"""The model spec: what :func:`napari_gapcam.load_model` needs, in one hashable value.

The dock widget, the command line and its dask workers all describe a model with it, and each
process loads one model per spec (a random init is seeded, so every process makes the same
model). Importing this module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine.model import GapCamModel

from ..engine.methods import check_options, method_names


@dataclass(frozen=True)
class ModelSpec:
    """A model by its architecture, weights (a torchvision name, a file, or None: a random
    init seeded by ``seed``), device, class names (a file), method, layer (a module name
    where the maps are taken; None: the last maps), layers (LayerCAM's fused layers) and options
    (the method's other options as ``(name, value)`` pairs, e.g. ``(("max_channels", 8),)``:
    ``load_model(..., **dict(options))``)."""

    arch: str = "resnet50"
    weights: str | None = "IMAGENET1K_V1"
    device: str = "auto"
    class_names: str | None = None
    method: str = "auto"
    seed: int | None = None  # the random init's seed (weights None)
    layer: str | None = None  # load_model(layer=...): None, the last spatial maps
    layers: tuple[str, ...] = ()  # load_model(layers=...): (), none fused
    options: tuple[tuple[str, Any], ...] = ()  # load_model(**dict(options)): the method's

    def __post_init__(self) -> None:
        if self.method not in method_names():
            names = ", ".join(method_names())
            raise ValueError(f"Unknown method {self.method!r}: use one of {names}.")
        check_options(self.method, [name for name, _ in self.options])

    def load(self) -> GapCamModel:
        """Build the model (the caller's random state is left alone)."""
        import torch

        from .loading import load_model

        with torch.random.fork_rng(devices=[]):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            return load_model(
                self.arch,
                self.weights,
                self.device,
                self.class_names,
                self.method,
                self.layer,
                layers=list(self.layers) or None,
                **dict(self.options),
            )
