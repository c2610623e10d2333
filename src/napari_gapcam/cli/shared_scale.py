"""``--scale shared``: the maps of a multi-page input on one scale per class.

Each page's map is normally min-max scaled on its own, so a page without the object looks as
hot as the page with it. Shared: the pages' results are joined into one
:class:`~napari_gapcam.engine.result.Result` and :meth:`~napari_gapcam.engine.result.Result.cams`
scales each class's maps by one range over every page's raw map (``scale="shared"``), so pages
compare. The pages' features are kept until the input's last page (~400 KB per page for ResNet-50 at
224², 2048×7×7 floats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def shared_cams(
    results: Sequence[Any], classes: Sequence[int], grid: tuple[int, int]
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Page ``i``'s map of ``classes[i]`` at ``grid`` (n×h×w, one range per class over all
    pages) and each class's raw range ``{name: [low, high]}``."""
    import torch

    from ..engine.result import Result

    first = results[0]
    batch = Result(
        torch.stack([r.features for r in results]),
        torch.from_numpy(np.stack([r.logits for r in results])),
        first._batch._method,  # the pages' own CAM weights
        first.class_names,
        first.image_shape,
        first.input_shape,
    )
    maps = batch.cams(list(classes), tuple(grid), scale="shared")
    ranges = {first.class_names[c]: list(batch.raw_range(c)) for c in sorted(set(classes))}
    return maps, ranges
