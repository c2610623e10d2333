"""The one forward path: a source of images → batches → maps and logits on the host.

A :class:`Source` says how many images it holds and reads a run of them, each reduced on the
host (:class:`~napari_gapcam.engine.preprocess.Reduced`): whole images shrunk band by band
(:mod:`.batch`), or the tiles of a slide at native pixels, read a block at a time
(:mod:`.tiles`). :func:`run_batches` is the same for both: the batch-size rule, the memory and
precision checks, staging (page-locked memory for a GPU), resizing and normalising on the
device (:func:`~napari_gapcam.engine.preprocess.finish_input`), the forward pass (replayed from
a CUDA graph when that pays), and the maps and logits brought to the host. With a GPU the next
batch is read and staged while this one runs, and a batch is handed over once the next one is
launched, so the GPU never waits for the host. Sources differ only in where the pixels come
from; the drivers above differ only in where the maps go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._torch import torch
from .memory import available_bytes
from .precision import check_precision
from .preprocess import Reduced, Staged, finish_input, stage_input

if TYPE_CHECKING:
    from .network import Network

CPU_BATCH = 16  # images at most on a CPU, and at most CPU_BATCH_PIXELS input pixels (beyond
CPU_BATCH_PIXELS = 8 * 224 * 224  # it the cache stops paying: at 224², 16 is slower than 8)
GPU_BATCH = 32
FEATURES_DTYPE = torch.float16  # the maps kept on the host for stacks
# From this many full batches a GPU run replays its forward passes from a CUDA graph
# (napari_gapcam.engine.graphs: the capture costs about 3 extra passes, once per batch shape)
GRAPH_MIN_BATCHES = 4


class Source(Protocol):
    """Images of one input size, read a run at a time (lazy data is read only here)."""

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> Sequence[Reduced]:
        """Images ``start`` to ``stop`` (exclusive), reduced on the host."""


class Batch(NamedTuple):
    """One batch's outputs on the host: images ``start`` to ``start + len(logits)``."""

    start: int
    features: torch.Tensor  # N×K×h×w, the run's ``features_dtype``
    logits: torch.Tensor  # N×C float32
    input_shape: tuple[int, int]
    inputs: torch.Tensor | None = None  # N×3×H×W normalised, where the method reruns the network


def auto_batch_size(network: Network, size: tuple[int, int]) -> int:
    """As many inputs of ``size`` as fit in a quarter of the free memory; on a CPU at most
    ``CPU_BATCH_PIXELS`` input pixels (8 at 224², 10 tiles of 192², 1 at 896²: progress and
    Cancel stay prompt) and 16 images; 32 on a GPU."""
    pixels = size[0] * size[1]
    fits = int(
        0.25 * available_bytes(network.device) // max(network.bytes_per_input_pixel * pixels, 1.0)
    )
    if network.device.type == "cuda":
        cap = GPU_BATCH
    else:
        cap = min(CPU_BATCH, CPU_BATCH_PIXELS // max(pixels, 1))
    return max(1, min(cap, fits))


def run_batches(
    network: Network,
    source: Source,
    size: tuple[int, int],
    batch_size: int | None = None,
    precision: str = "fp32",
    features_dtype: torch.dtype = FEATURES_DTYPE,
    check: Callable[[], None] | None = None,
) -> Iterator[Batch]:
    """Run every image of ``source`` (inputs of ``size``) through ``network``, batch by batch.

    ``batch_size``: default :func:`auto_batch_size`; ``precision``: ``"fp32"``, or ``"fp16"`` /
    ``"bf16"`` autocast; the maps come back as ``features_dtype``. ``check`` is called before
    each batch is read (a cancel raises there). Stopping the iteration early stops the reading.
    Where the method's row ``needs_input`` (Score-CAM), each batch's normalised input tensor
    comes back too, in ``features_dtype``.
    """
    dtype = check_precision(precision)
    batch_size = batch_size or auto_batch_size(network, size)
    network.check_memory(size, batch_size)
    device, cuda = network.device, network.device.type == "cuda"
    config = network.config
    keep_inputs = network.method_info.needs_input

    def stage(start: int) -> Staged:  # lazy images are read here
        if check is not None:
            check()
        return stage_input(source.read(start, min(start + batch_size, len(source))), device)

    starts = range(0, len(source), batch_size)
    graphed = cuda and len(source) >= GRAPH_MIN_BATCHES * batch_size  # pays back its capture
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
            tensor = finish_input(staged, device, config.mean, config.std)
            with torch.inference_mode():
                full = graphed and len(tensor) == batch_size  # a partial last batch: eager
                maps, logits = network.forward_batch(tensor, dtype, full)
                # to the host: asynchronously (into page-locked memory) from a GPU, queued
                # before the next batch's graph replay overwrites the outputs
                launched = _InFlight(
                    Batch(
                        start,
                        maps.to(features_dtype).to("cpu", non_blocking=cuda),
                        logits.float().to("cpu", non_blocking=cuda),
                        tuple(tensor.shape[-2:]),
                        _host(tensor, features_dtype, cuda) if keep_inputs else None,
                    ),
                    torch.cuda.Event() if cuda else None,
                )
            if launched.done is not None:
                launched.done.record()
            if in_flight is not None:
                yield in_flight.ready()
            in_flight = launched
            if not cuda:  # nothing runs ahead on a CPU: hand the batch over at once
                yield in_flight.ready()
                in_flight = None
        if in_flight is not None:
            yield in_flight.ready()
    finally:  # also when the caller stops early (cancel)
        if reader is not None:
            reader.shutdown(wait=False, cancel_futures=True)


def _host(tensor: torch.Tensor, dtype: torch.dtype, cuda: bool) -> torch.Tensor:
    """``tensor`` as ``dtype`` on the host, a new tensor (the batch's input is reused)."""
    return tensor.to(dtype).to("cpu", non_blocking=cuda, copy=True)


class _InFlight(NamedTuple):
    """A batch whose forward pass was launched; its outputs are ready once ``done`` fires."""

    batch: Batch
    done: Any  # a torch.cuda.Event, or None on a CPU (ready at once)

    def ready(self) -> Batch:
        if self.done is not None:
            self.done.synchronize()
        return self.batch
