"""XGrad-CAM (Fu et al., BMVC 2020): gradients weighted by the normalised activations."""

from __future__ import annotations

from collections.abc import Sequence

from .._torch import torch
from .gradcam import GradCam

EPS = 1e-7  # pytorch-grad-cam's


class XGradCam(GradCam):
    """XGrad-CAM: ``L_c = ReLU(Σ_k α_k · A_k)`` with

        α_k = Σ_xy (A_k(x, y) / Σ_ab A_k(a, b)) · ∂y_c/∂A_k(x, y)

    (one backward pass through the head for a batch). The ReLU: pytorch-grad-cam applies
    one to every method's map, and so do we, to match it (the paper's map is the sum alone).
    """

    name = "xgradcam"

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        g = self.gradient(features, classes)
        a = features.float()
        return (g * a).sum(dim=(2, 3)) / (a.sum(dim=(2, 3)) + EPS)
