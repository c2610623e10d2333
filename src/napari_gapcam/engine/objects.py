"""Per-object CAM scores: each labelled object's mean map per class ("CAM pooling").

For a label image of the image's size (0 = background; cellpose, stardist, a napari Labels
layer), object ``o``'s score for class ``c`` is the mean of the **raw** map ``cam(c, scale="raw")``
(upsampled to the image, not normalised) over the object's pixels; ``cam_class`` is the class of
the highest score (the single-cell recipe of the Human Protein Atlas challenge winners), and
``cam_share`` the share of the image's top class's (shown) map mass inside the object.

Why raw: classes must compare on one scale. By the GAP identity a CAM's mean over the image is
the class's logit (less its bias), so its mean over an object is the object's share of that
logit per pixel, comparable across classes. Min-max maps are not: each class's map is stretched
to [0, 1] on its own, so the background of a class the network does not see reaches 1 too.
The means are one sparse product per chunk of classes: no per-object loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas

    from .maps import ClassRef

CHUNK_VALUES = 2**24  # map values upsampled at once (64 MiB of float32)


def _averaging(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """The object ids, their areas and a sparse (objects × pixels) matrix of 1 / area."""
    from scipy import sparse

    flat = labels.ravel()
    ids, inverse, areas = np.unique(flat, return_inverse=True, return_counts=True)
    keep = ids != 0
    rows = np.cumsum(keep) - 1  # id index → row among the objects
    pixels = np.flatnonzero(keep[inverse])
    row_of = rows[inverse[pixels]]
    matrix = sparse.csr_matrix(
        (1.0 / areas[keep][row_of], (row_of, pixels)), shape=(int(keep.sum()), flat.size)
    )
    return ids[keep], areas[keep], matrix


def object_scores(
    result: Any, labels: Any, classes: Sequence[ClassRef] | None = None
) -> pandas.DataFrame:
    """One row per object of ``labels``: ``label``, ``area``, one column per class (named by
    the class) with the object's mean raw map, ``cam_class`` and ``cam_share``.

    ``result`` is one image's result (:class:`~napari_gapcam.engine.protocol.CamMaps`: a
    ``CamResult``, a tiled slide's stitched map, where NaN cells count as 0); ``labels`` an
    integer array (numpy, dask, zarr) of the image's shape. ``classes``: all by default (a
    1000-class model costs 1000 upsampled maps: give the ones you need).
    """
    import pandas as pd

    labels = np.asarray(labels)
    if labels.shape != tuple(result.image_shape):
        raise ValueError(
            f"The labels have shape {labels.shape}, the image {tuple(result.image_shape)}: "
            "a label image must have the image's size (one label per pixel)."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Labels must be integers (0 = background), got {labels.dtype}.")
    ids, areas, average = _averaging(labels)
    indices = (
        list(range(result.num_classes))
        if classes is None
        else [result.class_index(c) for c in classes]
    )
    scores = np.zeros((len(ids), len(indices)), np.float64)
    step = max(1, CHUNK_VALUES // labels.size)
    for start in range(0, len(indices), step):
        chunk = indices[start : start + step]
        maps = [np.nan_to_num(result.cam(c, scale="raw")).ravel() for c in chunk]
        maps = np.stack(maps, axis=1)
        scores[:, start : start + len(chunk)] = average @ maps
    table = pd.DataFrame({"label": ids, "area": areas})
    names = [result.class_names[c] for c in indices]
    table = pd.concat([table, pd.DataFrame(scores, columns=names)], axis=1)
    best = scores.argmax(axis=1) if len(indices) else np.zeros(len(ids), int)
    table["cam_class"] = [names[i] for i in best] if len(indices) else None
    top = np.nan_to_num(result.cam(result.topk(1)[0][0])).ravel().astype(np.float64)
    mass = top.sum()
    inside = (average @ top) * areas  # the sum of the map over each object
    table["cam_share"] = inside / mass if mass > 0 else 0.0
    return table
