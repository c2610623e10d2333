"""Grad-CAM (Selvaraju et al., ICCV 2017): the CAM's generalisation to any differentiable head."""

from __future__ import annotations

from ._torch import nn, torch


def grad_cam(features: torch.Tensor, head: nn.Module, c: int) -> torch.Tensor:
    """Grad-CAM of class ``c`` from the last maps before the pooling.

    ``L_c(x, y) = ReLU(Σ_k α_k · A_k(x, y))``, with ``α_k = mean_xy ∂y_c/∂A_k(x, y)``

    ``features`` holds the maps ``A_k`` (K×h×w), ``head`` maps them (N×K×h×w) to the logits
    ``y``. The ReLU is at the maps' resolution; upsampling and min-max come after, as for the
    CAM. On a GAP + dense head ``α_k = w[c, k] / (h·w)``, so ``L_c`` is the CAM's positive part
    over ``h·w``. One backward pass through the head (``torch.autograd.grad``, no hooks).
    """
    with torch.inference_mode(False), torch.enable_grad():
        maps = features.detach().clone().requires_grad_(True)
        score = head(maps[None])[0, c]
        (gradient,) = torch.autograd.grad(score, maps)
    alpha = gradient.mean(dim=(1, 2))
    return torch.relu(torch.einsum("k,khw->hw", alpha, maps.detach()))


class GradCam:
    """The Grad-CAM method: one backward pass through ``head`` per class."""

    name = "Grad-CAM"

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    def __call__(self, features: torch.Tensor, c: int) -> torch.Tensor:
        return grad_cam(features, self.head, c)
