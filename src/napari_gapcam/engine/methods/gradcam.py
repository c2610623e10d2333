"""Grad-CAM (Selvaraju et al., ICCV 2017): the CAM's generalisation to any differentiable head."""

from __future__ import annotations

from .._torch import nn, torch
from .gradient import GradientMethod


def grad_cam(features: torch.Tensor, head: nn.Module, c: int) -> torch.Tensor:
    """Grad-CAM of class ``c`` from the last maps before the pooling.

    ``L_c(x, y) = ReLU(Σ_k α_k · A_k(x, y))``, with ``α_k = mean_xy ∂y_c/∂A_k(x, y)``

    ``features`` holds the maps ``A_k`` (K×h×w), ``head`` maps them (N×K×h×w) to the logits
    ``y``. The ReLU is at the maps' resolution; upsampling and min-max come after, as for the
    CAM. On a GAP + dense head ``α_k = w[c, k] / (h·w)``, so ``L_c`` is the CAM's positive part
    over ``h·w``. One backward pass through the head (``torch.autograd.grad``, no hooks).
    """
    return GradCam(head)(features, c)


class GradCam(GradientMethod):
    """Grad-CAM: ``α_k = mean_xy ∂y_c/∂A_k``, one backward pass through ``head`` for a batch
    of images (one class each; the head treats images independently in eval mode); a ReLU."""

    name = "gradcam"

    def channel_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return g.mean(dim=(-2, -1))

    def constant_gradient_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The mean of a constant gradient is itself: ``α_k = g_k``."""
        return g
