"""EigenCAM (Muhammad & Yeasin, IJCNN 2020): the first principal component of the maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._torch import torch
from .base import Method


class EigenCam(Method):
    """EigenCAM: one map for every class, the maps' projection on their first principal axis.

        M = ReLU(Ã · v₁),   Ã = A − mean_xy A   (A as hw×K: a row per cell),   Ã = U Σ Vᵀ

    ``v₁`` the first right singular vector (one SVD per image, batched, through the Gram
    matrix: :meth:`projection`). An SVD fixes ``v₁``
    only up to its sign: we take the sign that makes ``Σ_k v₁[k] ≥ 0``, so the map rises
    where the channels' sum does. pytorch-grad-cam keeps whatever sign LAPACK returns, so its
    map is ours or the ReLU of ``−Ã · v₁`` (the tests compare up to that). The centring and
    the ReLU are pytorch-grad-cam's; the paper writes the SVD of the maps themselves and
    does not say which sign.
    """

    name = "eigencam"
    relu = True
    cached = True  # an SVD per image: kept by the results

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> EigenCam:
        cls.refuse_unknown(options)
        return cls()

    def projection(self, features: torch.Tensor) -> torch.Tensor:
        """``Ã · v₁`` of each image (N×h×w), signed as the class docstring says, before the ReLU.

        The SVD through the smaller Gram matrix (``ÃÃᵀ``, hw×hw, or ``ÃᵀÃ``, K×K; in float64):
        its top eigenvector is ``u₁`` (then ``Ã · v₁ = σ₁ u₁``) or ``v₁``; a batched ``eigh``
        of a 49×49 matrix is far cheaper than the SVD of the 49×2048 maps."""
        n, k, h, w = features.shape
        cells = features.double().flatten(2).transpose(1, 2)  # N×hw×K
        centred = cells - cells.mean(dim=1, keepdim=True)
        if h * w <= k:
            values, vectors = torch.linalg.eigh(centred @ centred.transpose(1, 2))
            u = vectors[..., -1]  # N×hw
            projection = u * values[:, -1:].clamp(min=0).sqrt()
            total = (u * centred.sum(dim=2)).sum(dim=1)  # σ₁ · Σ_k v₁[k]
        else:
            _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
            axis = vectors[..., -1]  # N×K
            projection = (centred @ axis[..., None])[..., 0]
            total = axis.sum(dim=1)
        sign = torch.where(total < 0, -1.0, 1.0).to(projection.dtype)
        return (projection * sign[:, None]).view(n, h, w).to(features.device, torch.float32)

    def maps(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        return torch.relu(self.projection(features)).to(features.dtype)

    def class_maps(self, features: torch.Tensor, num_classes: int) -> torch.Tensor:
        maps = self.maps(features, [0] * len(features))
        return maps[:, None].expand(-1, num_classes, -1, -1)
