"""A model's preprocessing and suggestions: input size, mean, std, box threshold."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .words import ParameterError, Term

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# checkpoint keys that override a model's defaults
CHECKPOINT_KEYS = ("input_size", "mean", "std", "box_threshold", "square")


@dataclass(frozen=True)
class ModelConfig:
    """What the model expects and suggests.

    ``input_size`` is the short side the image is resized to; ``mean``/``std`` normalise the
    [0, 1] RGB input per channel; ``box_threshold`` is the suggested box/mask threshold (the
    checkpoint's, else Zhou et al.'s 20 %); ``square`` squashes images to an
    ``input_size``² square instead of keeping their aspect ratio (as many training pipelines
    resize). ``fixed_size``: the network takes only ``input_size``² inputs (timm's swin,
    maxvit).
    """

    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    box_threshold: float = 0.2
    square: bool = False
    fixed_size: bool = False

    def geometry(self, input_size: int | None, square: bool | None) -> tuple[int, bool]:
        """The input size and squashing a run uses: the given ones, else the model's."""
        size = int(input_size or self.input_size)
        square = self.square if square is None else bool(square)
        if self.fixed_size and (size != self.input_size or not square):
            raise ParameterError(
                f"This network takes only {self.input_size}×{self.input_size} inputs: use ",
                Term("input_size", self.input_size),
                " with ",
                Term("square", True),
                " (its defaults: leave both unset).",
            )
        return size, square

    def updated(self, settings: dict[str, Any]) -> ModelConfig:
        """A copy with the given settings (checkpoint keys) replacing the defaults."""
        known = {key: settings[key] for key in CHECKPOINT_KEYS if key in settings}
        for key in ("mean", "std"):
            if key in known:
                values = tuple(float(v) for v in known[key])
                if len(values) != 3:
                    raise ValueError(f"{key} must hold 3 values (R, G, B), got {values}.")
                known[key] = values
        if "input_size" in known:
            known["input_size"] = int(known["input_size"])
        if "box_threshold" in known:
            known["box_threshold"] = float(known["box_threshold"])
        if "square" in known:
            known["square"] = bool(known["square"])
        return dataclasses.replace(self, **known)
