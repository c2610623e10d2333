"""Grad-CAM (Selvaraju et al., ICCV 2017): the CAM's generalisation to any differentiable head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._torch import nn, torch
from .base import Method


def grad_cam(features: torch.Tensor, head: nn.Module, c: int) -> torch.Tensor:
    """Grad-CAM of class ``c`` from the last maps before the pooling.

    ``L_c(x, y) = ReLU(Σ_k α_k · A_k(x, y))``, with ``α_k = mean_xy ∂y_c/∂A_k(x, y)``

    ``features`` holds the maps ``A_k`` (K×h×w), ``head`` maps them (N×K×h×w) to the logits
    ``y``. The ReLU is at the maps' resolution; upsampling and min-max come after, as for the
    CAM. On a GAP + dense head ``α_k = w[c, k] / (h·w)``, so ``L_c`` is the CAM's positive part
    over ``h·w``. One backward pass through the head (``torch.autograd.grad``, no hooks).
    """
    return GradCam(head)(features, c)


class GradCam(Method):
    """Grad-CAM: ``α_k = mean_xy ∂y_c/∂A_k``, one backward pass through ``head`` for a batch
    of images (one class each; the head treats images independently in eval mode); a ReLU.
    The base of the other gradient methods (:meth:`gradient`)."""

    name = "gradcam"
    relu = True
    cached = True

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> GradCam:
        cls.no_options(options)
        return cls(network.head)

    def gradient(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """``∂y_c/∂A`` of ``classes[i]`` for image i (N×K×h×w float32, on the features'
        device): one backward pass through the head for the whole batch."""
        parameter = next(self.head.parameters(), None)
        device = parameter.device if parameter is not None else features.device
        with torch.inference_mode(False), torch.enable_grad():
            maps = features.detach().to(device).float().clone().requires_grad_(True)
            logits = self.head(maps)
            rows = torch.arange(len(classes), device=device)
            score = logits[rows, torch.as_tensor(list(classes), device=device)].sum()
            (gradient,) = torch.autograd.grad(score, maps)
        return gradient.to(features.device)

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        return self.gradient(features, classes).mean(dim=(2, 3))
