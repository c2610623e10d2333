"""ROAD (Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
2022), combined as pytorch-grad-cam's ``ROADCombined`` with ``ClassifierOutputTarget``.

At each percentile ``q`` of ``percentiles`` (10, 20, …, 90), the pixels of the map (upsampled
to the input, in [0, 1]) at or above its ``q``-th percentile are removed (most relevant first,
MoRF), or those whose ``1 − map`` is (least relevant first, LeRF), and filled in by the noisy
linear imputation (:mod:`.imputation`); the score is the class's logit after minus before:

    road = (mean_q Δ_LeRF(q) − mean_q Δ_MoRF(q)) / 2        (higher is better)

Removing what the map calls irrelevant should keep the logit, removing what it calls relevant
should drop it. All percentiles of all images are imputed and scored in batches on the device.
"""

from __future__ import annotations

from .._torch import torch
from .imputation import impute
from .scoring import Scorer

PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
NOISE = 0.01


def kept_pixels(maps: torch.Tensor, percentiles: tuple[float, ...], most: bool) -> torch.Tensor:
    """The pixels kept at each percentile (R×Q×h×w bool) as pytorch-grad-cam keeps them:
    ``map < percentile(map, q)`` (most relevant removed), or the same on ``1 − map``."""
    values = (maps if most else 1.0 - maps).double()
    ordered = values.flatten(1).sort(dim=1).values  # numpy's "linear" percentile, any size
    position = torch.tensor(percentiles, dtype=torch.float64) / 100 * (ordered.shape[1] - 1)
    low = position.floor().long()
    high = torch.clamp(low + 1, max=ordered.shape[1] - 1)
    share = (position - low).to(ordered.device)
    lows, highs = ordered[:, low.to(ordered.device)], ordered[:, high.to(ordered.device)]
    thresholds = lows + share * (highs - lows)  # R×Q
    return values[:, None] < thresholds[:, :, None, None]


def road(
    scorer: Scorer,
    inputs: torch.Tensor,
    maps: torch.Tensor,
    classes: torch.Tensor,
    before: torch.Tensor,
    percentiles: tuple[float, ...] = PERCENTILES,
    noise: float = NOISE,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``road`` of each row (see the module docstring): ``before`` is the class's logit on
    each input. Also ``road_morf`` and ``road_lerf``, the two mean differences."""
    rows, count = len(inputs), len(percentiles)
    out = {}
    for name, most in (("road_morf", True), ("road_lerf", False)):
        keep = kept_pixels(maps, tuple(percentiles), most).flatten(0, 1)  # R·Q×h×w
        jobs_row = torch.arange(rows).repeat_interleave(count)

        def make(a: int, b: int, keep=keep, jobs_row=jobs_row) -> torch.Tensor:
            chosen = jobs_row[a:b].to(inputs.device)
            return impute(inputs[chosen], keep[a:b], noise, generator)

        after = scorer.scores(rows * count, make, classes[jobs_row], probability=False)
        out[name] = (after.view(rows, count) - before.view(rows, 1)).mean(1)
    out["road"] = (out["road_lerf"] - out["road_morf"]) / 2
    return out
