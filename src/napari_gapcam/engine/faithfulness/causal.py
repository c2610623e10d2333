"""Deletion and insertion (Petsiuk et al., RISE, 2018), as RISE's ``CausalMetric`` runs them.

Pixels of the network's normalised input tensor are ranked by the map (upsampled to it; ties
by pixel index), most salient first, and changed ``p = ⌈h·w / steps⌉`` at a time:

- deletion: the first ``i·p`` pixels set to the baseline (0 in the normalised tensor: the mean
  colour), ``s_0`` the input itself;
- insertion: the first ``i·p`` pixels revealed over a blurred copy (a Gaussian of 11 pixels,
  σ 5, made as RISE makes it: ``scipy.ndimage.gaussian_filter`` of a unit impulse), ``s_n`` the
  input itself.

``s_i`` is the class's softmax probability after step ``i`` (``n = ⌈h·w / p⌉`` steps), and the
score is the area under that curve, ``AUC = (Σ_i s_i − s_0/2 − s_n/2) / n``: low for deletion
(the class drops fast as its evidence goes), high for insertion. Every step of every image is
one input of a batch.
"""

from __future__ import annotations

import math

import numpy as np

from .._torch import F, torch
from .scoring import Scorer

STEPS = 224  # RISE's 224 pixels a step of a 224² input
KERNEL, SIGMA = 11, 5.0


def rise_kernel(size: int = KERNEL, sigma: float = SIGMA) -> np.ndarray:
    """RISE's blur kernel: ``gaussian_filter`` of an impulse at the centre of a size² grid."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1
    return gaussian_filter(impulse, sigma)


def substrate(inputs: torch.Tensor, kind: float | str) -> torch.Tensor:
    """What replaces the pixels: ``"blur"`` (RISE's blur, zero padding) or a constant."""
    if kind == "blur":
        kernel = torch.from_numpy(rise_kernel()).to(inputs)
        channels = inputs.shape[1]
        weights = kernel.expand(channels, 1, KERNEL, KERNEL)
        return F.conv2d(inputs, weights, padding=KERNEL // 2, groups=channels)
    if isinstance(kind, str):
        raise ValueError(f"Unknown baseline {kind!r}: use 'blur' or a number.")
    return torch.full_like(inputs, float(kind))


def pixels_per_step(pixels: int, steps: int | None) -> tuple[int, int]:
    """``(p, n)``: pixels changed per step and the number of steps for ``steps`` asked."""
    steps = STEPS if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    per = math.ceil(pixels / steps)
    return per, math.ceil(pixels / per)


def auc(curves: torch.Tensor) -> torch.Tensor:
    """RISE's area under each curve (R×(n+1)): ``(Σ s − s_0/2 − s_n/2) / n``."""
    n = curves.shape[1] - 1
    return (curves.sum(1) - curves[:, 0] / 2 - curves[:, -1] / 2) / n


def ranks_of(maps: torch.Tensor) -> torch.Tensor:
    """Each pixel's rank (0: most salient) in its map (R×h×w → R×h·w), ties by pixel index."""
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks


def causal(
    scorer: Scorer,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    before: torch.Tensor,
    steps: int | None = None,
    modes: tuple[str, ...] = ("deletion", "insertion"),
    deletion_baseline: float | str = 0.0,
    insertion_baseline: float | str = "blur",
) -> dict[str, torch.Tensor]:
    """The ``modes`` AUCs of each row (see the module docstring); ``before``: the class's
    probability on each input (the curve's known end)."""
    rows, pixels = len(inputs), maps.shape[-2] * maps.shape[-1]
    per, n = pixels_per_step(pixels, steps)
    ranks = ranks_of(maps)
    flat = inputs.flatten(2)
    jobs_row = torch.arange(rows).repeat_interleave(n)
    out = {}
    for mode in modes:
        if mode == "deletion":
            start, finish = flat, substrate(inputs, deletion_baseline).flatten(2)
            counts = torch.arange(1, n + 1)  # s_0 is the input itself
        else:
            start, finish = substrate(inputs, insertion_baseline).flatten(2), flat
            counts = torch.arange(0, n)  # s_n is the input itself
        jobs_count = (counts * per).clamp(max=pixels).repeat(rows).to(inputs.device)

        def make(a: int, b: int, start=start, finish=finish, jobs_count=jobs_count):
            chosen = jobs_row[a:b].to(inputs.device)
            changed = ranks[chosen] < jobs_count[a:b, None]
            mixed = torch.where(changed[:, None], finish[chosen], start[chosen])
            return mixed.view(-1, *inputs.shape[1:])

        scores = scorer.scores(rows * n, make, classes[jobs_row]).view(rows, n)
        known = before.view(rows, 1)
        curve = torch.cat([known, scores] if mode == "deletion" else [scores, known], dim=1)
        out[mode] = auc(curve)
    return out
