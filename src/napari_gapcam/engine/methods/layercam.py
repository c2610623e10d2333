"""LayerCAM (Jiang et al., IEEE TIP 2021): positive gradients times the maps, element-wise."""

from __future__ import annotations

from .._torch import torch
from .gradient import GradientMethod


class LayerCam(GradientMethod):
    """LayerCAM: ``L_c(x, y) = ReLU(Σ_k ReLU(∂y_c/∂A_k(x, y)) · A_k(x, y))``, element-wise (no
    channel weights); one backward pass through the head for a
    batch. This is the map of one layer (the split's); the paper's fusion of several stages
    needs maps of earlier layers, not kept here.
    """

    name = "layercam"

    def from_gradient(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.relu((torch.relu(g) * features).sum(dim=-3))
