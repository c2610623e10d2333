"""The class activation map (Zhou et al., CVPR 2016): the exact method for GAP + dense heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._torch import torch
from .base import Method


def class_activation_map(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CAM of one class from the last conv block's maps.

    ``M_c(x, y) = Σ_k w[c, k] · A_k(x, y)``

    ``features`` holds the maps ``A_k`` (K×h×w), ``weight`` is ``w[c, :]`` (K,), the dense
    layer's row for class ``c``. No ReLU, bias or normalisation: since the network's logit is
    ``z_c = Σ_k w[c, k] · mean_xy A_k + b_c``, the map's mean plus the bias is the logit.
    """
    return torch.einsum("k,khw->hw", weight, features)


class Cam(Method):
    """The CAM: ``α_k(c) = w[c, k]``, the dense layer's weights ``w`` (C×K); no ReLU.

    A map is one product over the channels (:func:`class_activation_map` for one image): cheap,
    so never cached; every class at once is one product too (:meth:`class_maps`).
    """

    name = "cam"

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.detach()
        self._host: tuple[int, Cam] | None = None  # (weights' version, copy on the host)
        self._devices: dict[torch.device, Cam] = {}  # copies on GPUs

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> Cam:
        cls.refuse_unknown(options)
        return cls(network.fc.weight)

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        return self.weight[torch.as_tensor(list(classes), device=self.weight.device)]

    def class_maps(self, features: torch.Tensor, num_classes: int) -> torch.Tensor:
        weight = self.weight[:num_classes].to(features.device, features.dtype)
        return torch.einsum("ck,nkhw->nchw", weight, features)

    def on_host(self) -> Cam:
        """This method with its weights on the host in float32. Copying them off a GPU waits
        for the GPU (8 MB for ResNet-50: 4 ms on an H200), so the copy is kept and made again
        only after the weights change in place (fine-tuning the head in a notebook)."""
        if self.weight.device.type == "cpu" and self.weight.dtype == torch.float32:
            return self
        version = self.weight._version
        if self._host is None or self._host[0] != version:
            self._host = (version, Cam(self.weight.float().cpu()))
        return self._host[1]

    def on(self, device: torch.device) -> Cam:
        """The weights sent to ``device`` once (a device without index matches its tensors')."""
        if self.weight.device == device:
            return self
        if device not in self._devices:
            self._devices[device] = Cam(self.weight.to(device))
        return self._devices[device]
