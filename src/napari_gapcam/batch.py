"""Many images of one size at once: batched forward passes, streamed, features kept compact.

``iter_batches`` reads the images a batch at a time (lazy stacks are never loaded whole), runs
one forward pass per batch and yields the batch's :class:`StackResult`; ``run_batch`` joins
them. A :class:`StackResult` keeps every image's maps on the host in half precision (2048×7×7 ×
2 bytes = 200 KB an image: a 1000-plane stack in 0.2 GB) and gives each image's
:class:`~napari_gapcam.cam.CamResult`, so a class change over a whole stack costs no forward pass.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._torch import torch
from .cam import Cam, CamResult, ClassRef, Method, class_index, normalise_each, top_classes
from .memory import available_bytes
from .preprocess import (
    Staged,
    as_image,
    finish_input,
    image_layout,
    reduce_image_for_input,
    stage_input,
    target_size,
)

if TYPE_CHECKING:
    from .model import GapCamModel

CPU_BATCH = 8  # on a CPU larger batches stop paying (measured: 16 is slower than 8 on 2 cores)
GPU_BATCH = 32
FEATURES_DTYPE = torch.float16  # the maps kept on the host
GPU_MAPS_MIN = 2**20  # output pixels from which a GPU stack's maps are made on the GPU
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# From this many full batches a GPU run replays its forward passes from a CUDA graph
# (napari_gapcam.graphs: the capture costs about 3 extra passes, once per batch shape)
GRAPH_MIN_BATCHES = 4


class StackResult(Sequence[CamResult]):
    """Results of N images of one size: ``result[i]`` is image i's :class:`CamResult`."""

    def __init__(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        method: Method,
        class_names: Sequence[str],
        image_shape: tuple[int, int],
        input_shape: tuple[int, int],
        device: torch.device | None = None,
    ) -> None:
        self._parts = [features]  # N×K×h×w on the host (half precision by default), by batch
        self._starts = [0]
        self.logits: np.ndarray = logits.float().cpu().numpy()  # N×C
        self.probabilities: np.ndarray = torch.softmax(logits.float().cpu(), 1).numpy()
        self.class_names = list(class_names)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.input_shape = tuple(int(s) for s in input_shape)
        self._method = host_method(method)
        self._device = device
        self._device_weight: dict[torch.device, torch.Tensor] = {}  # CAM weights on a GPU

    def __len__(self) -> int:
        return self._starts[-1] + len(self._parts[-1])

    @property
    def features(self) -> torch.Tensor:
        """Every image's maps, N×K×h×w (joined once when asked for)."""
        if len(self._parts) > 1:
            self._parts, self._starts = [torch.cat(self._parts)], [0]
        return self._parts[0]

    def _maps(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The maps of ``indices`` (n×K×h×w, as ``dtype``), without joining the batches."""
        maps = []
        for i in indices:
            part = bisect.bisect_right(self._starts, i) - 1
            maps.append(self._parts[part][i - self._starts[part]])
        return torch.stack(maps).to(dtype)

    def extend(self, other: StackResult) -> None:
        """Append the images of ``other`` (the next batch of the same run), in place."""
        self._starts.append(len(self))
        self._parts.append(other.features)
        self.logits = np.concatenate([self.logits, other.logits])
        self.probabilities = np.concatenate([self.probabilities, other.probabilities])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"Image {index} is out of range: the stack has {len(self)} images.")
        features = self._maps([index % len(self)])[0]
        if not isinstance(self._method, Cam) and self._device is not None:
            features = features.to(self._device)
        return CamResult(
            features,
            torch.from_numpy(self.logits[index]),
            self._method,
            self.class_names,
            self.image_shape,
            self.input_shape,
        )

    def __repr__(self) -> str:
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk_mean(3))
        return f"StackResult({len(self)} images of {self.image_shape}, mean top-3: {best})"

    @property
    def method(self) -> str:
        return getattr(self._method, "name", type(self._method).__name__)

    def mean_probabilities(self) -> np.ndarray:
        """Each class's probability averaged over the images (C,)."""
        return self.probabilities.mean(axis=0)

    def topk_mean(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` classes of highest mean probability as ``(index, name, mean p)``."""
        return top_classes(self.mean_probabilities(), self.class_names, k)

    def top1(self) -> list[int]:
        """Each image's most probable class."""
        return [int(i) for i in self.probabilities.argmax(axis=1)]

    def cams(
        self,
        c: ClassRef | Sequence[ClassRef],
        shape: tuple[int, int] | None = None,
        images: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Normalised maps of ``images`` (default all) at ``shape`` (default the image's): n×h×w.

        ``c`` is one class for every image, or one class per image (e.g. ``result.top1()``).
        Each map is min-max normalised on its own, as :meth:`CamResult.cam` does; the CAM of
        all the images is one batched product.
        """
        indices = list(range(len(self))) if images is None else [int(i) for i in images]
        classes = (
            list(c) if isinstance(c, Sequence) and not isinstance(c, str) else [c] * len(indices)
        )
        if len(classes) != len(indices):
            raise ValueError(f"{len(classes)} classes for {len(indices)} images: give one each.")
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        if not indices:
            return np.zeros((0, *size), np.float32)
        if not isinstance(self._method, Cam):
            return np.stack(
                [self[i].cam(k, shape=size) for i, k in zip(indices, classes, strict=True)]
            )
        rows = [class_index(self.class_names, k) for k in classes]
        on_gpu = self._device is not None and self._device.type == "cuda"
        if on_gpu and len(indices) * size[0] * size[1] >= GPU_MAPS_MIN:
            return self._cams_on(self._device, indices, rows, size)
        weights = self._method.weight[rows]  # n×K
        raw = torch.einsum("nk,nkhw->nhw", weights, self._maps(indices))
        return normalise_each(raw, size).numpy()

    def _cams_on(
        self,
        device: torch.device,
        indices: Sequence[int],
        rows: Sequence[int],
        size: tuple[int, int],
        chunk_bytes: int = 2**28,
    ) -> np.ndarray:
        """:meth:`cams` computed on ``device`` chunk by chunk (≤ ``chunk_bytes`` of maps each):
        the features go there, the finished maps come back straight into the result."""
        out = np.empty((len(indices), *size), np.float32)
        if device not in self._device_weight:  # sent once per device
            self._device_weight[device] = self._method.weight.to(device)
        weight = self._device_weight[device]
        step = max(1, chunk_bytes // (4 * size[0] * size[1]))
        for i in range(0, len(indices), step):
            chosen = list(indices[i : i + step])
            features = self._maps(chosen, self._parts[0].dtype).to(device).float()
            rows_t = torch.as_tensor(list(rows[i : i + step]), device=device)
            raw = torch.einsum("nk,nkhw->nhw", weight[rows_t], features)
            torch.from_numpy(out[i : i + len(chosen)]).copy_(normalise_each(raw, size))
        return out

    @staticmethod
    def concatenate(parts: Sequence[StackResult]) -> StackResult:
        """One result from the results of consecutive batches (the first is extended)."""
        for part in parts[1:]:
            parts[0].extend(part)
        return parts[0]


def host_method(method: Method) -> Method:
    """The method with its CAM weights on the host in float32 (maps are made where the features
    are; see :meth:`Cam.on_host`); Grad-CAM is kept as is (it needs the head, on its device)."""
    return method.on_host() if isinstance(method, Cam) else method


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
) -> Iterator[tuple[int, StackResult]]:
    """Yield ``(first index, StackResult)`` batch by batch; see :meth:`GapCamModel.run_batch`."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
    images, shape = _as_images(images)
    input_size, square = model.config.geometry(input_size, square)
    size = target_size(shape[0], shape[1], input_size, square)
    batch_size = batch_size or auto_batch_size(model, size)
    model.check_memory(size, batch_size)
    device, cuda = model.device, model.device.type == "cuda"
    method = host_method(model.method_object)  # copied off a GPU once per model, not per run

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
    reader = ThreadPoolExecutor(1, thread_name_prefix="gapcam-read") if cuda else None
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

    def result(
        self, model: GapCamModel, method: Method, image_shape: tuple[int, int]
    ) -> StackResult:
        if self.done is not None:
            self.done.synchronize()
        return StackResult(
            self.features,
            self.logits,
            method,
            model.class_names,
            image_shape,
            self.input_shape,
            model.device,
        )
