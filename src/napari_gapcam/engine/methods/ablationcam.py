"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): the drop in the class score when a channel goes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._torch import nn, torch
from ..words import ParameterError, Term
from .base import Method

BATCH = 128  # ablated copies of the maps per head pass (a general head)


class AblationCam(Method):
    """Ablation-CAM: ``L_c = ReLU(Σ_k α_k · A_k)`` with

        α_k = (y_c − y_c^(k)) / y_c

    ``y_c`` the class's score, ``y_c^(k)`` its score with channel ``A_k`` set to zero (the
    paper's weights; pytorch-grad-cam's too). On a GAP + dense head the drop is analytic,
    ``y_c − y_c^(k) = w[c, k] · mean_xy A_k``: no pass at all. Any other head: the ``K``
    ablated copies of each image's maps run through the head, ``batch_size`` copies per
    pass (images and channels mixed in one batch). pytorch-grad-cam zeroes a channel only
    when the layer's smallest value is 0 (after a ReLU) and otherwise sets it to that
    minimum − 1e7; we always zero it, as the paper does.
    """

    name = "ablationcam"
    relu = True

    def __init__(self, head: nn.Module, fc: nn.Linear | None = None, batch_size: int = BATCH):
        self.head, self.fc, self.batch_size = head, fc, batch_size
        self.cached = fc is None  # head passes: kept; analytic: as cheap as the CAM

    @classmethod
    def for_network(cls, network: Any, batch_size: int = BATCH, **options: Any) -> AblationCam:
        cls.refuse_unknown(options)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ParameterError(
                Term("batch_size"), f" must be a positive whole number, not {batch_size!r}."
            )
        return cls(network.head, network.fc, batch_size)

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        if self.fc is not None:
            score, drop = self._analytic(features, classes)
        else:
            score, drop = self._ablated(features, classes)
        return (drop / score[:, None]).to(features.device)

    def _analytic(self, features: torch.Tensor, classes: Sequence[int]) -> tuple:
        weight = self.fc.weight.detach()
        bias = None if self.fc.bias is None else self.fc.bias.detach()
        pooled = features.float().mean(dim=(2, 3)).to(weight.device)  # N×K
        rows = weight[torch.as_tensor(list(classes), device=weight.device)].float()  # N×K
        drop = rows * pooled
        score = drop.sum(dim=1)
        if bias is not None:
            score = score + bias[torch.as_tensor(list(classes), device=bias.device)].float()
        return score, drop

    def _ablated(self, features: torch.Tensor, classes: Sequence[int]) -> tuple:
        parameter = next(self.head.parameters(), None)
        device = parameter.device if parameter is not None else features.device
        maps = features.to(device).float()
        n, k = maps.shape[:2]
        chosen = torch.as_tensor(list(classes), device=device)
        with torch.inference_mode():
            score = self.head(maps)[torch.arange(n, device=device), chosen].float()
            ablated = torch.empty(n * k, device=device)
            for start in range(0, n * k, self.batch_size):
                pairs = torch.arange(start, min(start + self.batch_size, n * k), device=device)
                image, channel = pairs // k, pairs % k
                copies = maps[image].clone()
                copies[torch.arange(len(pairs), device=device), channel] = 0
                logits = self.head(copies)
                ablated[pairs] = logits[torch.arange(len(pairs), device=device), chosen[image]]
        return score, score[:, None] - ablated.view(n, k)
