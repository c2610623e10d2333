"""Grad-CAM++ (Chattopadhay et al., WACV 2018): Grad-CAM with pixel-wise gradient weights."""

from __future__ import annotations

from .._torch import torch
from .gradient import GradientMethod

EPS = 1e-6  # pytorch-grad-cam's


class GradCamPP(GradientMethod):
    """Grad-CAM++: ``L_c = ReLU(Σ_k α_k · A_k)`` with

        α_k = Σ_xy a_k(x, y) · ReLU(g_k(x, y)),
        a_k(x, y) = g² / (2 g² + Σ_ab A_k(a, b) · g³)   (0 where g = 0)

    ``g = ∂y_c/∂A_k(x, y)`` (one backward pass through the head for a batch). The paper's
    eq. 19: its second and third derivatives of ``exp(y_c)`` become powers of the first, as in
    pytorch-grad-cam (which adds ``1e-6`` to the denominator; so do we).
    """

    name = "gradcam++"

    def channel_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        a = _a(g, features.sum(dim=(-2, -1), keepdim=True))
        return (a * torch.relu(g)).sum(dim=(-2, -1))

    def constant_gradient_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """With ``g`` the same at every cell ``a_k`` is too, so the sum over the ``h·w`` cells is
        ``α_k = h·w · a_k · ReLU(g_k)``, ``a_k = g² / (2 g² + S_k · g³ + 1e-6)``, ``S_k = Σ_xy
        A_k(x, y)`` (C×N×K: ``S`` is each image's)."""
        a = _a(g, features.sum(dim=(-2, -1)))
        return features.shape[-2] * features.shape[-1] * (a * torch.relu(g))


def _a(g: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``a = g² / (2 g² + total · g³ + EPS)``, 0 where ``g = 0``; ``total`` is ``Σ_xy A_k``."""
    g2 = g * g
    return torch.where(g != 0, g2 / (2 * g2 + total * g2 * g + EPS), torch.zeros_like(g))
