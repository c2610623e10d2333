"""LayerCAM (Jiang et al., IEEE TIP 2021): positive gradients times the maps, element-wise."""

from __future__ import annotations

from typing import Any

from .._torch import torch
from .gradient import GradientMethod
from .layercam_fusion import FusedLayers


class LayerCam(GradientMethod):
    """LayerCAM: ``L_c(x, y) = ReLU(Σ_k ReLU(∂y_c/∂A_k(x, y)) · A_k(x, y))``, element-wise (no
    channel weights); one backward pass through the head for a batch. This is the map of one
    layer (the split's); ``layers=[…]`` fuses the maps of several
    (:class:`~.layercam_fusion.FusedLayers`).
    """

    name = "layercam"

    @classmethod
    def for_network(cls, network: Any, layers: Any = None, **options: Any) -> GradientMethod:
        """LayerCAM at the split; with ``layers`` (names of modules at or after it, or one
        comma-separated string) their maps fused (``network.taps(layers)``)."""
        cls.refuse_unknown(options)
        if layers is None:
            return cls(network.head, network.fc)
        return FusedLayers(cls(network.head), network.taps(layers))

    def from_gradient(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.relu((torch.relu(g) * features).sum(dim=-3))

    def constant_gradient_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """A gradient constant in space factors out of the sum: ``α_k = ReLU(g_k)``."""
        return torch.relu(g)
