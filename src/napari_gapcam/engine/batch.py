"""Whole images and stacks: each image shrunk to the input size, run through the one pipeline.

``iter_batches`` reads the images a batch at a time (lazy stacks are never loaded whole; each
image is reduced band by band, :func:`~napari_gapcam.engine.preprocess.reduce_image_for_input`),
runs them through :func:`~napari_gapcam.engine.pipeline.run_batches` and yields each batch's
:class:`~napari_gapcam.engine.result.Result`; ``model.run_batch`` joins them and ``model.run``
is one image of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._torch import torch
from .pipeline import FEATURES_DTYPE, Batch, check_precision, run_batches
from .preprocess import Reduced, as_image, image_layout, reduce_image_for_input, target_size
from .result import Result

if TYPE_CHECKING:
    from .network import Network


def _as_images(images: Any) -> tuple[Sequence[Any], tuple[int, ...]]:
    """An N×H×W(×C) array or a sequence of images → indexable images and their common shape."""
    if not hasattr(images, "shape") and isinstance(images, Sequence) and images:
        if not hasattr(images[0], "shape"):  # nested lists: one array
            images = as_image(images)
    if hasattr(images, "shape") and hasattr(images, "dtype") and len(images.shape) in (3, 4):
        shape = tuple(int(s) for s in images.shape[1:])
        image_layout(_Shape(shape, images.dtype))
        return images, shape
    images = [as_image(image) for image in images]
    if not images:
        raise ValueError("No images: pass an N×H×W(×C) array or a non-empty sequence of images.")
    shape = tuple(int(s) for s in images[0].shape)
    image_layout(_Shape(shape, images[0].dtype))  # an empty (0×0) or 4D image: a ValueError
    for i, image in enumerate(images):
        if tuple(image.shape) != shape:
            raise ValueError(
                f"Images of one batch must have one size: image 0 is {shape}, image {i} is "
                f"{tuple(image.shape)}. Run them separately (model.run) or resize them first."
            )
    return images, shape


class _Shape:
    """Shape and dtype only, to check an image's layout without slicing it."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = shape, dtype


class WholeImages:
    """A :class:`~napari_gapcam.engine.pipeline.Source` of whole images, each reduced for the
    network input (read band by band: a lazy image is never loaded whole)."""

    def __init__(
        self,
        images: Sequence[Any],
        contrast_limits: Sequence[float] | None,
        input_size: int,
        square: bool,
    ) -> None:
        self.images, self.contrast_limits = images, contrast_limits
        self.input_size, self.square = input_size, square

    def __len__(self) -> int:
        return len(self.images)

    def read(self, start: int, stop: int) -> list[Reduced]:
        return [
            reduce_image_for_input(
                self.images[i], self.contrast_limits, self.input_size, self.square
            )
            for i in range(start, stop)
        ]


def iter_batches(
    model: Network,
    images: Any,
    batch_size: int | None = None,
    contrast_limits: Sequence[float] | None = None,
    input_size: int | None = None,
    square: bool | None = None,
    precision: str = "fp32",
    features_dtype: torch.dtype = FEATURES_DTYPE,
    check: Callable[[], None] | None = None,
) -> Iterator[tuple[int, Result]]:
    """Yield ``(first index, Result)`` batch by batch; see :meth:`GapCamModel.run_batch`.

    ``check`` is called before each batch is read (raise there to cancel)."""
    check_precision(precision)
    images, shape = _as_images(images)
    input_size, square = model.config.geometry(input_size, square)
    size = target_size(shape[0], shape[1], input_size, square)
    source = WholeImages(images, contrast_limits, input_size, square)
    method = model.method_object.on_host()  # copied off a GPU once per model, not per run
    for batch in run_batches(model, source, size, batch_size, precision, features_dtype, check):
        yield batch.start, _result(model, method, batch, shape[:2])


def _result(model: Network, method: Any, batch: Batch, image_shape: tuple[int, ...]) -> Result:
    result = Result(
        batch.features,
        batch.logits,
        method,
        model.class_names,
        image_shape,
        batch.input_shape,
        model.device,
        inputs=batch.inputs,
    )
    result.network = model  # a method switch by name (result.with_method) needs its head
    return result


def run_each(
    model: Network,
    images: Sequence[Any],
    input_size: int | None = None,
    square: bool | None = None,
    features_dtype: torch.dtype = torch.float32,
) -> list[Any]:
    """One one-image result per image, of any sizes: runs of consecutive numpy images of one
    shape and dtype share batches; any other image (lazy, read band by band; another size)
    runs on its own. Maps in ``features_dtype`` (full precision by default: they are kept)."""

    def key(image: Any) -> Any:
        if not isinstance(image, np.ndarray):
            return None  # lazy: alone
        return image.shape, image.dtype

    results: list[Any] = []
    start = 0
    while start < len(images):
        stop = start + 1
        first = key(images[start])
        while stop < len(images) and first is not None and key(images[stop]) == first:
            stop += 1
        args = (None, input_size, square, "fp32", features_dtype)
        for _, part in iter_batches(model, list(images[start:stop]), stop - start, *args):
            results.extend(part)
        start = stop
    return results
