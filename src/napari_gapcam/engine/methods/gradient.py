"""The base of the gradient methods: a map from the maps ``A`` and the gradient ``∂y_c/∂A``.

A subclass says how (:meth:`GradientMethod.from_gradient`, or only the channel weights,
:meth:`GradientMethod.channel_weights`), written on shapes ``(..., N, K, h, w)`` that
broadcast: one class per image takes one backward pass through the head for a batch; every
class's maps (tiles) take one forward pass of the head and one batched backward pass
(``is_grads_batched``) per block of classes, never a forward pass of the network.

On a GAP + dense head (``fc``, the dense layer ``W``) every class's maps take no backward
pass at all:

    y_c = b_c + Σ_k W[c, k] · mean_xy A_k(x, y),   so   ∂y_c/∂A_k(x, y) = W[c, k] / (h·w)

for every ``(x, y)``: a gradient constant in space. Each method's map is then
``act(Σ_k α[c, k] · A_k)`` with ``α`` in closed form
(:meth:`GradientMethod.constant_gradient_weights`, the subclass's own formula evaluated on that
constant), and all classes' maps are one product per batch, as the CAM's.
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

    def __init__(self, head: nn.Module, fc: nn.Linear | None = None) -> None:
        self.head = head
        self.fc = fc  # the dense layer when the head is GAP + dense: gradients in closed form

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> GradientMethod:
        cls.refuse_unknown(options)
        return cls(network.head, network.fc)

    def channel_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``α`` (..., N×K) from the maps (N×K×h×w) and gradients (..., N×K×h×w)."""
        raise NotImplementedError(f"{self.label}'s map is element-wise: it has no channel weights")

    def from_gradient(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Raw maps (..., N×h×w): ``act(Σ_k α_k · A_k)`` unless a subclass says otherwise."""
        raw = torch.einsum("...nk,nkhw->...nhw", self.channel_weights(features, g), features)
        return torch.relu(raw) if self.relu else raw

    def constant_gradient_weights(self, features: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``α`` (C×N×K, or C×1×K where it is the same for every image) such that the map is
        ``act(Σ_k α_k · A_k)`` when the gradient ``g`` (C×1×K) is the same at every ``(x, y)``
        of the maps (N×K×h×w): :meth:`from_gradient` on that gradient, with no C×N×K×h×w
        tensor. A subclass without it has every class's maps by backward passes."""
        raise NotImplementedError

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
        """Every class's raw map of each image (N×C×h×w). On a GAP + dense head one product
        (:meth:`dense_class_maps`); else one forward pass of the head, then one batched
        backward pass per ``CLASS_CHUNK`` classes (a head ``vmap`` cannot run falls back to
        the base's repeated maps)."""
        if self.fc is not None:
            try:
                return self.dense_class_maps(features, num_classes)
            except NotImplementedError:  # no closed form: the backward passes below
                pass
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

    def dense_class_maps(self, features: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Every class's raw map on a GAP + dense head: ``g = W[c, k] / (h·w)`` at every cell
        (the module docstring), ``α`` from :meth:`constant_gradient_weights`, then
        ``act(Σ_k α[c, k] · A_k)`` as one product per batch; no backward pass."""
        device = self._device(features)
        maps = features.detach().to(device).float()
        weight = self.fc.weight.detach()[:num_classes].to(device).float()
        g = (weight / (maps.shape[-2] * maps.shape[-1]))[:, None]  # C×1×K
        alpha = self.constant_gradient_weights(maps, g)
        if alpha.shape[1] == 1:  # the same for every image: one matrix product
            raw = torch.einsum("ck,nkhw->nchw", alpha[:, 0], maps)
        else:
            raw = torch.einsum("cnk,nkhw->nchw", alpha, maps)
        raw = torch.relu(raw) if self.relu else raw
        return raw.to(features.device, features.dtype)
