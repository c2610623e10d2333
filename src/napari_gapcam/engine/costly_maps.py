"""A costly method's raw maps, kept: made for many images per call, each image and class once.

A method whose map costs a network pass (``cached``: Grad-CAM's backward pass through the head,
Score-CAM's forward passes) makes the maps a result is asked for ``METHOD_BATCH`` images at a
time and keeps each, so a map shown again costs nothing. A method that reruns the network on
the inputs (its row's ``needs_input``) gets them, and keeps its scores, in
:class:`~.kept_inputs.KeptInputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._torch import torch
from .kept_inputs import KeptInputs

METHOD_BATCH = 16  # images per call of a costly method (one backward pass, Score-CAM's batches)


class CostlyMaps:
    """The raw maps (h×w, on the host) of a costly ``method`` made so far, by (image, class)."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self._maps: dict[tuple[int, int], torch.Tensor] = {}

    def has(self, image: int, c: int) -> bool:
        """True when image ``image``'s map of class ``c`` is made."""
        return (image, c) in self._maps

    def raw(
        self,
        images: Sequence[int],
        classes: Sequence[int],
        features_of: Callable[[Sequence[int]], torch.Tensor],
        inputs: KeptInputs | None = None,
    ) -> torch.Tensor:
        """Raw maps (n×h×w float32) of ``classes[i]`` for image ``images[i]``, the missing ones
        made ``METHOD_BATCH`` images per call (``features_of(indices)``: those images' maps)."""
        keys = list(zip(images, classes, strict=True))
        missing = list(dict.fromkeys(key for key in keys if key not in self._maps))
        for start in range(0, len(missing), METHOD_BATCH):
            chunk = missing[start : start + METHOD_BATCH]
            indices, rows = [i for i, _ in chunk], [c for _, c in chunk]
            if inputs is not None and self.method.info.needs_input:
                maps = inputs.maps(self.method, features_of, indices, rows)
            else:
                maps = self.method.maps(features_of(indices), rows)
            self._maps.update(zip(chunk, maps.float().cpu(), strict=True))
        return torch.stack([self._maps[key] for key in keys])
