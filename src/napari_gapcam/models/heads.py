"""Heads: what follows the last spatial maps, and whether it is GAP + one dense layer.

A model is split into ``features`` (image → maps ``A``, N×K×h×w) and ``head`` (maps → logits).
When ``head(A) = fc(mean_xy A)`` for a dense layer ``fc`` the CAM is exact; otherwise
Grad-CAM explains the head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..engine._torch import nn, torch


class Split(NamedTuple):
    """A network split at its last spatial maps."""

    features: nn.Module  # image N×3×H×W → maps N×K×h×w
    head: nn.Module  # maps → logits N×C
    fc: nn.Linear | None  # the dense layer when head(A) = fc(mean_xy A), else None
    description: str  # the head in words, for messages
    tap: Any = None  # layers → Taps (a split at a named layer: models.taps.Tapper), else None


class GapLinear(nn.Module):
    """Global average pooling, then ``classifier`` on the pooled N×K vector."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.classifier(maps.mean(dim=(2, 3)))


class Call(nn.Module):
    """A module around a function (googlenet's ``_transform_input``, ``net.extract_features``).

    A method of a module keeps that module as a child, so ``.to()``, ``.eval()`` and the
    batch-norm folding reach its layers.
    """

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        owner = getattr(function, "__self__", None)
        if isinstance(owner, nn.Module) and hasattr(function, "__func__"):
            self.owner, self.method = owner, function.__func__.__name__
            self.function = None
        else:
            self.owner, self.method, self.function = None, None, function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.owner is not None:
            return getattr(self.owner, self.method)(x)
        return self.function(x)


def as_linear(layer: nn.Module) -> nn.Linear | None:
    """``layer`` if dense; a 1×1 convolution as a dense layer sharing its weights; else None."""
    if isinstance(layer, nn.Linear):
        return layer
    if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1:
        dense = nn.Linear(layer.in_channels, layer.out_channels, bias=layer.bias is not None)
        dense.weight = nn.Parameter(layer.weight.detach().flatten(1), requires_grad=False)
        if layer.bias is not None:
            dense.bias = nn.Parameter(layer.bias.detach(), requires_grad=False)
        return dense.to(layer.weight.device)
    return None


def num_outputs(head: nn.Module) -> int | None:
    """Classes of a head: the outputs of its last dense or convolution layer."""
    last = None
    for module in head.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            last = module
    if isinstance(last, nn.Linear):
        return last.out_features
    return last.out_channels if last is not None else None


def _names(layers: list[nn.Module]) -> str:
    kept = [type(m).__name__ for m in layers if not isinstance(m, (nn.Identity, nn.Dropout))]
    return " → ".join(kept) or "(none)"


def describe(*modules: nn.Module) -> str:
    """The leaf layers of ``modules`` in order, e.g. ``AdaptiveAvgPool2d → Linear``."""
    return _names([m for module in modules for m in module.modules() if not list(m.children())])


@torch.no_grad()
def describe_calls(head: nn.Module, maps: torch.Tensor) -> str:
    """The leaf layers ``head`` calls on ``maps``, in order (a one-off probe with hooks)."""
    called: list[nn.Module] = []
    leaves = [m for m in head.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda m, *_: called.append(m)) for m in leaves]
    try:
        head(maps)
    finally:
        for handle in handles:
            handle.remove()
    return _names(called)


@torch.no_grad()
def is_gap_linear(head: nn.Module, fc: nn.Module, channels: int) -> bool:
    """True when ``head(A) == fc(mean_xy A)`` for any maps ``A``.

    Probed with random maps and, for the time of the probe, random weights in ``fc`` (a layer
    of the head itself): a zero-initialised classifier cannot pass a norm or MLP head for linear.
    """
    generator = torch.Generator().manual_seed(0)
    params = list(fc.parameters())
    saved = [p.detach().clone() for p in params]
    device = params[0].device if params else torch.device("cpu")
    try:
        for p in params:
            p.copy_(torch.randn(p.shape, generator=generator).to(p))
        maps = torch.randn(2, channels, 3, 4, generator=generator).to(device) * 3
        dense = as_linear(fc)
        if dense is None:
            return False
        expected = dense(maps.mean(dim=(2, 3)))
        got = head(maps)
        return got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    except RuntimeError:  # shapes that do not fit: not GAP + this layer
        return False
    finally:
        for p, value in zip(params, saved, strict=True):
            p.copy_(value)
