"""HiResCAM (Draelos & Carin, 2020): the gradient times the maps, element-wise."""

from __future__ import annotations

from .._torch import torch
from .gradient import GradientMethod


class HiResCam(GradientMethod):
    """HiResCAM: ``L_c(x, y) = ReLU(Σ_k ∂y_c/∂A_k(x, y) · A_k(x, y))``, element-wise (no
    channel weights); one backward pass through the head for a
    batch. On a GAP + dense head the gradient is ``w[c, k] / (h·w)``, so the map is the CAM's
    positive part over ``h·w``. The ReLU: pytorch-grad-cam
    applies one to every method's map, and so do we, to match it (the paper's map is the sum).
    """

    name = "hirescam"

    def from_gradient(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.relu((g * features).sum(dim=-3))

    def constant_gradient_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """A gradient constant in space factors out of the sum: ``α_k = g_k``."""
        return g
