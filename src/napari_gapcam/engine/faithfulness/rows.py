"""The rows of a faithfulness table: each image's normalised input, and each (image, class)
row's input, map and scores before any change.

:func:`prepare` reads the images a batch at a time as ``run_batch`` does (the same resizing and
normalisation, :mod:`~napari_gapcam.engine.preprocess`), keeps the network's input tensors on
the device, runs them once (batch norms folded) and takes each row's map from the result: the
method's map upsampled to the input (bilinear) and min-max normalised, ``result.cams(c,
shape=input)``. :func:`localization_columns` scores the same maps at the image's pixels against
true boxes and masks (:func:`~napari_gapcam.engine.metrics.localization_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._torch import torch
from ..batch import WholeImages, _as_images
from ..maps import class_index
from ..pipeline import auto_batch_size
from ..preprocess import finish_input, stage_input, target_size
from ..result import Result

if TYPE_CHECKING:
    from ..network import Network


def with_method(model: Network, method: str | None) -> Network:
    """``model`` itself (``method`` None or its own), else ``model.with_method(method)``."""
    if method is None or method == model.method:
        return model
    switch = getattr(model, "with_method", None)
    if switch is None:
        raise NotImplementedError(
            f"This model's method is {model.method!r}; switching to {method!r} needs "
            "model.with_method, which this version does not have yet. Load the model with "
            f"method={method!r} instead."
        )
    return switch(method)


@dataclass
class Rows:
    """Everything the metrics need, one entry per (image, class) row, on the model's device."""

    images: list[int]  # the image of each row
    classes: torch.Tensor  # R, long
    inputs: torch.Tensor  # R×3×h×w, the network's normalised input
    maps: torch.Tensor  # R×h×w in [0, 1], the map at the input's pixels
    logits: torch.Tensor  # R×C, float32
    result: Result  # every image's result (maps at any grid)
    batch_size: int

    def __len__(self) -> int:
        return len(self.images)


def row_classes(result: Result, classes: Any) -> tuple[list[int], list[int]]:
    """``(images, classes)`` of the rows: None → each image's top class; one class → that
    class for every image; a sequence → one entry per image (a class or a list of them)."""
    n = len(result)
    if classes is None:
        return list(range(n)), result.top1()
    if isinstance(classes, (int, np.integer, str)):
        return list(range(n)), [class_index(result.class_names, classes)] * n
    entries = list(classes)
    if len(entries) != n:
        raise ValueError(
            f"{len(entries)} class entries for {n} images: give one class for every image, "
            "or one entry per image (a class or a list of classes)."
        )
    images, chosen = [], []
    for i, entry in enumerate(entries):
        several = isinstance(entry, Sequence) and not isinstance(entry, str)
        for c in entry if several else [entry]:
            images.append(i)
            chosen.append(class_index(result.class_names, c))
    return images, chosen


def row_count(classes: Any, n: int) -> int:
    """How many rows ``classes`` gives for ``n`` images (see :func:`row_classes`)."""
    if classes is None or isinstance(classes, (int, np.integer, str)):
        return n
    return sum(len(c) if isinstance(c, Sequence) and not isinstance(c, str) else 1 for c in classes)


def prepare(
    network: Network,
    images: Any,
    classes: Any,
    batch_size: int | None,
    contrast_limits: Sequence[float] | None,
    input_size: int | None,
    square: bool | None,
    progress: Callable[[int], object] | None = None,
) -> Rows:
    """Run the images once and make the rows (see the module docstring); ``progress(k)`` is
    told each batch of ``k`` images run."""
    images, shape = _as_images(images)
    input_size, square = network.config.geometry(input_size, square)
    size = target_size(shape[0], shape[1], input_size, square)
    batch_size = batch_size or auto_batch_size(network, size)
    network.check_memory(size, batch_size)
    source = WholeImages(images, contrast_limits, input_size, square)
    tensors, features, logits = [], [], []
    method = network.method_object.on_host()
    for start in range(0, len(source), batch_size):
        stop = min(start + batch_size, len(source))
        staged = stage_input(source.read(start, stop), network.device)
        tensor = finish_input(staged, network.device, network.config.mean, network.config.std)
        with torch.inference_mode():
            maps, out = network.forward_batch(tensor)
        tensors.append(tensor)
        features.append(maps.float().cpu())
        logits.append(out.float())
        if progress is not None:
            progress(len(tensor))
    all_logits = torch.cat(logits)
    result = Result(
        torch.cat(features),
        all_logits.cpu(),
        method,
        network.class_names,
        shape[:2],
        size,
        network.device,
        inputs=torch.cat(tensors).cpu() if network.method_info.needs_input else None,
    )  # a method that reruns the network (Score-CAM) on the inputs gets them
    rows, chosen = row_classes(result, classes)
    maps = torch.from_numpy(result.cams(chosen, shape=size, images=rows)).to(network.device)
    index = torch.tensor(rows, device=network.device)
    return Rows(
        rows,
        torch.tensor(chosen, device=network.device),
        torch.cat(tensors)[index],
        maps,
        all_logits[index],
        result,
        batch_size,
    )


def localization_columns(
    rows: Rows, boxes: Sequence[Any] | None, masks: Sequence[Any] | None
) -> dict[str, list[float]]:
    """``max_box_acc_v2`` (with ``boxes``) and ``pxap`` (with ``masks``) of each row's map at
    the image's pixels, against its image's true boxes and mask."""
    from ..metrics import localization_metrics

    n = len(rows.result)
    for name, given in (("boxes", boxes), ("masks", masks)):
        if given is not None and len(given) != n:
            raise ValueError(f"{len(given)} {name} entries for {n} images: give one per image.")
    maps = rows.result.cams(rows.classes.tolist(), images=rows.images)
    columns: dict[str, list[float]] = {}
    for heat, image in zip(maps, rows.images, strict=True):
        truth = boxes[image] if boxes is not None else [(0, 0, *heat.shape)]
        mask = None if masks is None else [np.asarray(masks[image], bool)]
        found = localization_metrics([heat], [truth], mask)
        if boxes is not None:
            columns.setdefault("max_box_acc_v2", []).append(found["max_box_acc_v2"])
        if masks is not None:
            columns.setdefault("pxap", []).append(found["pxap"])
    return columns
