"""A GPU batch's forward pass replayed from a CUDA graph (PyTorch's whole-network capture).

A ResNet-50 forward pass launches about 250 kernels. On an H200 in half precision the host takes
longer to launch them (4.3 ms for a batch of 32) than the GPU to run them (2.6 ms), so the GPU
waits for Python. A CUDA graph records the launches once and replays them with one call
(measured there: 8 batches of 32 in fp16 in 20.7 ms replayed, 34.4 ms launched one by one).

A graph reads and writes fixed memory: each batch is copied into its input, and the next replay
overwrites its outputs. Whatever is queued on the same stream before that replay (the copies of
the outputs to the host) still reads this batch's outputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ._torch import torch

WARM_UP = 3  # eager passes before a capture, on a side stream (lazy set-up, cuDNN's choices)

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def autocast(device: torch.device, dtype: torch.dtype | None, cache: bool = True) -> Any:
    """Autocast to ``dtype`` on ``device``; ``None``: full precision (autocast off). A capture
    needs ``cache=False``: cached casts of the weights would be freed after it."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)


class GraphedForward:
    """``forward`` replayed from a CUDA graph for batches of one shape, dtype and precision.

    The graph is captured on the first such batch and again when they change; one graph at a
    time, since its memory stays reserved while it lives. A capture that fails (``forward``
    waits for the GPU, say) warns once and leaves that kind of batch to run eagerly.
    """

    def __init__(self, forward: Forward) -> None:
        self._forward = forward
        self._key: tuple | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._input: torch.Tensor | None = None
        self._outputs: tuple[torch.Tensor, ...] = ()
        self._failed: set[tuple] = set()

    def __call__(self, batch: torch.Tensor, dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
        """``forward(batch)`` under ``dtype`` autocast; valid until the next call."""
        key = (tuple(batch.shape), batch.stride(), batch.dtype, batch.device, dtype)
        if key != self._key and key not in self._failed:
            self._capture(batch, dtype, key)
        if key != self._key:
            with autocast(batch.device, dtype):
                return self._forward(batch)
        self._input.copy_(batch)
        self._graph.replay()
        return self._outputs

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def release(self) -> None:
        """Drop the graph and its memory."""
        self._key, self._graph, self._input, self._outputs = None, None, None, ()

    def _capture(self, batch: torch.Tensor, dtype: torch.dtype | None, key: tuple) -> None:
        self.release()
        device = batch.device
        static = torch.empty_strided(batch.shape, batch.stride(), dtype=batch.dtype, device=device)
        static.copy_(batch)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side), autocast(device, dtype):
                for _ in range(WARM_UP):
                    self._forward(static)
            torch.cuda.current_stream(device).wait_stream(side)
            # thread-local: the UI thread may use the GPU meanwhile (a class change's maps)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                with autocast(device, dtype, cache=False):
                    outputs = self._forward(static)
        except Exception as error:  # any failure: run this kind of batch eagerly
            self._failed.add(key)
            warnings.warn(
                f"A CUDA graph of the forward pass could not be captured ({error}); batches of "
                f"shape {tuple(batch.shape)} run without one (slower on a GPU, same results).",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        self._key, self._graph, self._input, self._outputs = key, graph, static, outputs
