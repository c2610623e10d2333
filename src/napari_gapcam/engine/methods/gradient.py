"""The base of the gradient methods: a map from the maps ``A`` and the gradient ``∂y_c/∂A``.

A subclass says how (:meth:`GradientMethod.from_gradient`, or only the channel weights,
:meth:`GradientMethod.channel_weights`), written on shapes ``(..., N, K, h, w)`` that
broadcast: one class per image takes one backward pass through the head for a batch; every
class's maps (tiles) take one forward pass of the head and one batched backward pass
(``is_grads_batched``) per block of classes, never a forward pass of the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._torch import nn, torch
from .base import CLASS_CHUNK, Method


class GradientMethod(Method):
    """A method that reads ``g = ∂y_c/∂A`` (see the module docstring); a ReLU by default."""

    relu = True
    cached = True  # a backward pass per batch of maps: results keep them

    def __init__(self, head: nn.Module) -> None:
        self.head = head

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> GradientMethod:
        cls.refuse_unknown(options)
        return cls(network.head)

    def channel_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``α`` (..., N×K) from the maps (N×K×h×w) and gradients (..., N×K×h×w)."""
        raise NotImplementedError(f"{self.label}'s map is element-wise: it has no channel weights")

    def from_gradient(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Raw maps (..., N×h×w): ``act(Σ_k α_k · A_k)`` unless a subclass says otherwise."""
        raw = torch.einsum("...nk,nkhw->...nhw", self.channel_weights(features, g), features)
        return torch.relu(raw) if self.relu else raw

    def _device(self, features: torch.Tensor) -> torch.device:
        parameter = next(self.head.parameters(), None)
        return parameter.device if parameter is not None else features.device

    def _gradient(self, features: torch.Tensor, classes: Sequence[int]) -> tuple:
        """The maps (float32, on the head's device) and ``∂y_c/∂A`` of ``classes[i]`` for
        image i: one backward pass through the head for the whole batch."""
        device = self._device(features)
        with torch.inference_mode(False), torch.enable_grad():
            maps = features.detach().to(device).float().clone().requires_grad_(True)
            logits = self.head(maps)
            rows = torch.arange(len(classes), device=device)
            score = logits[rows, torch.as_tensor(list(classes), device=device)].sum()
            (gradient,) = torch.autograd.grad(score, maps)
        return maps.detach(), gradient

    def gradient(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """``∂y_c/∂A`` of ``classes[i]`` for image i (N×K×h×w float32, the features' device)."""
        return self._gradient(features, classes)[1].to(features.device)

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        maps, g = self._gradient(features, classes)
        return self.channel_weights(maps, g).to(features.device)

    def maps(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        maps, g = self._gradient(features, classes)
        return self.from_gradient(maps, g).to(features.device, features.dtype)

    def class_maps(self, features: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Every class's raw map of each image (N×C×h×w): one forward pass of the head, then
        one batched backward pass per ``CLASS_CHUNK`` classes (a head ``vmap`` cannot run
        falls back to the base's repeated maps)."""
        device = self._device(features)
        out = []
        with torch.inference_mode(False), torch.enable_grad():
            maps = features.detach().to(device).float().clone().requires_grad_(True)
            logits = self.head(maps)
            n, classes = logits.shape
            for start in range(0, num_classes, CLASS_CHUNK):
                chunk = torch.arange(start, min(start + CLASS_CHUNK, num_classes), device=device)
                picks = torch.zeros(len(chunk), n, classes, device=device)
                picks[torch.arange(len(chunk), device=device), :, chunk] = 1
                try:
                    (g,) = torch.autograd.grad(
                        logits, maps, picks, retain_graph=True, is_grads_batched=True
                    )
                except RuntimeError:  # an operation vmap does not know
                    return super().class_maps(features, num_classes)
                out.append(self.from_gradient(maps.detach(), g).transpose(0, 1))
        return torch.cat(out, dim=1).to(features.device, features.dtype)
