"""XGrad-CAM (Fu et al., BMVC 2020): gradients weighted by the normalised activations."""

from __future__ import annotations

from .._torch import torch
from .gradient import GradientMethod

EPS = 1e-7  # pytorch-grad-cam's


class XGradCam(GradientMethod):
    """XGrad-CAM: ``L_c = ReLU(Σ_k α_k · A_k)`` with

        α_k = Σ_xy (A_k(x, y) / Σ_ab A_k(a, b)) · ∂y_c/∂A_k(x, y)

    (one backward pass through the head for a batch). On a GAP + dense head
    ``∂y_c/∂A_k = w[c, k] / (h·w)``, so ``α_k = w[c, k] / (h·w)``: Grad-CAM's. The ReLU:
    pytorch-grad-cam applies
    one to every method's map, and so do we, to match it (the paper's map is the sum alone).
    """

    name = "xgradcam"

    def channel_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (g * features).sum(dim=(-2, -1)) / (features.sum(dim=(-2, -1)) + EPS)

    def constant_gradient_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """A gradient constant in space factors out of the sum: ``α_k = g_k · S_k / (S_k +
        1e-7)`` with ``S_k = Σ_xy A_k(x, y)`` (C×N×K: ``S`` is each image's)."""
        total = features.sum(dim=(-2, -1))
        return g * (total / (total + EPS))  # one C×N×K product
