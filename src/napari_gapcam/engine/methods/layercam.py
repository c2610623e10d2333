"""LayerCAM (Jiang et al., IEEE TIP 2021): positive gradients times the maps, element-wise."""

from __future__ import annotations

from collections.abc import Sequence

from .._torch import torch
from .gradcam import GradCam


class LayerCam(GradCam):
    """LayerCAM: ``L_c(x, y) = ReLU(Σ_k ReLU(∂y_c/∂A_k(x, y)) · A_k(x, y))``, element-wise (no
    channel weights: :meth:`maps` is overridden); one backward pass through the head for a
    batch. This is the map of one layer (the split's); the paper's fusion of several stages
    needs maps of earlier layers, not kept here.
    """

    name = "layercam"

    def maps(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        g = self.gradient(features, classes)
        return torch.relu((torch.relu(g) * features.float()).sum(dim=1)).to(features.dtype)
