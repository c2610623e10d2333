"""Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++, 2018).

The normalised input tensor is multiplied by the map (upsampled to it, min-max normalised to
[0, 1]) and the class's softmax probability is read again, ``y`` before and ``y′`` after:

    avg_drop = max(0, y − y′) / y        (per image; lower is better)
    increase = [y′ > y]                  (per image; its mean is the share of images; higher)

as TorchCAM's ``ClassificationMetric`` computes them (``y + 1e-7`` in the division).
"""

from __future__ import annotations

from .._torch import torch
from .scoring import Scorer


def confidence(
    scorer: Scorer,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    before: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """``avg_drop`` and ``increase`` of each row: ``inputs`` R×3×h×w (normalised), ``maps``
    R×h×w in [0, 1], ``classes`` R, ``before`` the class's probability on the input (R)."""

    def masked(start: int, stop: int) -> torch.Tensor:
        return inputs[start:stop] * maps[start:stop, None].to(inputs.dtype)

    after = scorer.scores(len(inputs), masked, classes)
    drop = torch.relu(before - after) / (before + 1e-7)
    return {"avg_drop": drop, "increase": (before < after).double()}
