"""The one forward path: images of one size in batches, streamed, features kept compact.

``iter_batches`` reads the images a batch at a time (lazy stacks are never loaded whole), runs
one forward pass per batch and yields the batch's :class:`~napari_gapcam.engine.result.Result`;
``model.run_batch`` joins them and ``model.run`` is one image of it. With a GPU the next batch is
read and staged while this one runs, and batches are handed over without waiting for the GPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from ._torch import torch
from .memory import available_bytes
from .methods import Method
from .preprocess import (
    Staged,
    as_image,
    finish_input,
    image_layout,
    reduce_image_for_input,
    stage_input,
    target_size,
)
from .result import Result

if TYPE_CHECKING:
    from .model import GapCamModel

CPU_BATCH = 8  # on a CPU larger batches stop paying (measured: 16 is slower than 8 on 2 cores)
GPU_BATCH = 32
FEATURES_DTYPE = torch.float16  # the maps kept on the host
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# From this many full batches a GPU run replays its forward passes from a CUDA graph
# (napari_gapcam.engine.graphs: the capture costs about 3 extra passes, once per batch shape)
GRAPH_MIN_BATCHES = 4


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


def auto_batch_size(model: GapCamModel, size: tuple[int, int]) -> int:
    """As many images as fit in a quarter of the free memory, at most 8 (CPU) or 32 (GPU)."""
    per_image = model.bytes_per_input_pixel * size[0] * size[1]
    fits = int(0.25 * available_bytes(model.device) // max(per_image, 1.0))
    return max(1, min(GPU_BATCH if model.device.type == "cuda" else CPU_BATCH, fits))


def iter_batches(
    model: GapCamModel,
    images: Any,
    batch_size: int | None = None,
    contrast_limits: Sequence[float] | None = None,
    input_size: int | None = None,
    square: bool | None = None,
    precision: str = "fp32",
    features_dtype: torch.dtype = FEATURES_DTYPE,
) -> Iterator[tuple[int, Result]]:
    """Yield ``(first index, Result)`` batch by batch; see :meth:`GapCamModel.run_batch`."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
    images, shape = _as_images(images)
    input_size, square = model.config.geometry(input_size, square)
    size = target_size(shape[0], shape[1], input_size, square)
    batch_size = batch_size or auto_batch_size(model, size)
    model.check_memory(size, batch_size)
    device, cuda = model.device, model.device.type == "cuda"
    method = model.method_object.on_host()  # copied off a GPU once per model, not per run

    def stage(start: int) -> Staged:  # lazy images are read here, one at a time, band by band
        stop = min(start + batch_size, len(images))
        reduced = [
            reduce_image_for_input(images[i], contrast_limits, input_size, square)
            for i in range(start, stop)
        ]
        return stage_input(reduced, device)

    starts = range(0, len(images), batch_size)
    graphed = cuda and len(images) >= GRAPH_MIN_BATCHES * batch_size  # pays back its capture
    # With a GPU, a thread reads and stages the next batch while this one is launched, and a
    # batch is handed over once the next one is launched: the GPU never waits for the host.
    ahead_too = cuda and len(starts) > 1  # one batch (model.run): nothing to read ahead
    reader = ThreadPoolExecutor(1, thread_name_prefix="gapcam-read") if ahead_too else None
    in_flight: _InFlight | None = None
    try:
        ahead = reader.submit(stage, starts[0]) if reader else None
        for k, start in enumerate(starts):
            if ahead is not None:
                staged = ahead.result()
                ahead = reader.submit(stage, starts[k + 1]) if k + 1 < len(starts) else None
            else:
                staged = stage(start)
            tensor = finish_input(staged, device, model.config.mean, model.config.std)
            with torch.inference_mode():
                full = graphed and len(tensor) == batch_size  # a partial last batch: eager
                maps, logits = model.forward_batch(tensor, PRECISIONS[precision], full)
                # to the host: asynchronously (into page-locked memory) from a GPU, queued
                # before the next batch's graph replay overwrites the outputs
                launched = _InFlight(
                    start,
                    maps.to(features_dtype).to("cpu", non_blocking=cuda),
                    logits.float().to("cpu", non_blocking=cuda),
                    tuple(tensor.shape[-2:]),
                    torch.cuda.Event() if cuda else None,
                )
            if launched.done is not None:
                launched.done.record()
            if in_flight is not None:
                yield in_flight.start, in_flight.result(model, method, shape[:2])
            in_flight = launched
            if not cuda:  # nothing runs ahead on a CPU: hand the batch over at once
                yield in_flight.start, in_flight.result(model, method, shape[:2])
                in_flight = None
        if in_flight is not None:
            yield in_flight.start, in_flight.result(model, method, shape[:2])
    finally:  # also when the caller stops early (cancel)
        if reader is not None:
            reader.shutdown(wait=False, cancel_futures=True)


class _InFlight(NamedTuple):
    """A batch whose forward pass was launched; its outputs are ready once ``done`` fires."""

    start: int
    features: torch.Tensor  # on the host
    logits: torch.Tensor  # on the host
    input_shape: tuple[int, ...]
    done: Any  # a torch.cuda.Event, or None on a CPU (ready at once)

    def result(self, model: GapCamModel, method: Method, image_shape: tuple[int, int]) -> Result:
        if self.done is not None:
            self.done.synchronize()
        return Result(
            self.features,
            self.logits,
            method,
            model.class_names,
            image_shape,
            self.input_shape,
            model.device,
        )
