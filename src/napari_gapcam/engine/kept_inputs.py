"""The network inputs a result keeps for a method that reruns the network on them (Score-CAM).

A method whose row says ``needs_input`` masks the normalised input tensor and runs the network
again; its result keeps each image's input (N×3×H×W on the host, by batch as the run made them,
in the maps' dtype) beside the maps. Such a method splits its work into ``scores(features,
inputs)``, the network passes, which give every class at once, and ``maps_from(features,
scores, classes)``, which is cheap: each image's scores are kept too (while they fit in
``SCORES_BYTES``), so another class's map costs no network pass.
"""

from __future__ import annotations

import bisect
import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from ._torch import torch

SCORES_BYTES = 2**28  # kept scores at most (ResNet-50, every channel: 8 MB an image)


class KeptInputs:
    """Every image's normalised input tensor, by batch (joined never: read by image index)."""

    def __init__(self, inputs: torch.Tensor) -> None:
        self._parts = [inputs.detach().cpu()]
        self._starts = [0]
        self._scores: OrderedDict[int, Any] = OrderedDict()  # image → its scores, oldest first
        self._bytes = 0

    def __len__(self) -> int:
        return self._starts[-1] + len(self._parts[-1])

    @classmethod
    def join(cls, kept: Sequence[tuple[KeptInputs | None, int]]) -> KeptInputs | None:
        """One image of each ``(inputs, index)``, in order (None where any has none)."""
        if any(inputs is None for inputs, _ in kept):
            return None
        return cls(torch.cat([inputs.take([i], None) for inputs, i in kept]))  # type: ignore[union-attr]

    def extend(self, other: KeptInputs | None) -> KeptInputs | None:
        """These inputs, then those of ``other`` (the next batch of the same run): ``self``
        grown in place, or None when ``other`` has none (the result keeps none then)."""
        if other is None:
            return None
        for part in other._parts:
            self._starts.append(len(self))
            self._parts.append(part)
        return self

    def shared(self) -> KeptInputs:
        """The same inputs (nothing copied) without the scores: for another method's results."""
        other = copy.copy(self)
        other._parts, other._starts = list(self._parts), list(self._starts)  # grow apart
        other._scores, other._bytes = OrderedDict(), 0
        return other

    def take(
        self, indices: Sequence[int], dtype: torch.dtype | None = torch.float32
    ) -> torch.Tensor:
        """The inputs of ``indices`` (n×3×H×W), a new tensor (``dtype=None``: as kept)."""
        rows = []
        for i in indices:
            part = bisect.bisect_right(self._starts, i) - 1
            rows.append(self._parts[part][i - self._starts[part]])
        stacked = torch.stack(rows)
        return stacked if dtype is None else stacked.to(dtype)

    def maps(
        self,
        method: Any,
        features_of: Callable[[Sequence[int]], torch.Tensor],
        images: Sequence[int],
        classes: Sequence[int],
    ) -> torch.Tensor:
        """Raw maps of ``classes[i]`` for image ``images[i]`` (n×h×w): the images' scores made
        in one call for those not kept yet (``features_of(indices)`` gives their maps)."""
        scores = {i: self._scores[i] for i in dict.fromkeys(images) if i in self._scores}
        missing = [i for i in dict.fromkeys(images) if i not in scores]
        if missing:
            made = method.scores(features_of(missing).float(), self.take(missing))
            scores.update(zip(missing, made, strict=True))
            for i, score in zip(missing, made, strict=True):
                self._keep(i, score)
        for i in scores:
            if i in self._scores:
                self._scores.move_to_end(i)
        features = features_of(list(images)).float()
        return method.maps_from(features, [scores[i] for i in images], classes)

    def _keep(self, image: int, score: Any) -> None:
        size = sum(t.numel() * t.element_size() for t in score)
        self._scores[image] = score
        self._bytes += size
        while self._bytes > SCORES_BYTES and len(self._scores) > 1:
            _, old = self._scores.popitem(last=False)
            self._bytes -= sum(t.numel() * t.element_size() for t in old)
