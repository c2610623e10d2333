"""Perturbed inputs through the network in batches: the class's score of each, with progress.

Every faithfulness metric is a list of inputs made from the normalised input tensors (masked,
deleted, imputed) and the score of one class on each. :class:`Scorer` makes them a batch at a
time on the model's device (``make(start, stop)``), runs them with the batch norms folded
(:meth:`~napari_gapcam.engine.network.Network.forward_batch`, in float32 or under the
autocast of the run's ``precision``) and keeps the class's softmax
probability or logit; ``progress(done, total)`` is called after each batch, and a ``False``
answer stops the run with :class:`FaithfulnessCancelled`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._torch import torch

if TYPE_CHECKING:
    from ..network import Network

Progress = Callable[[int, int], object]


class FaithfulnessCancelled(Exception):
    """``progress`` answered False: the faithfulness run stopped (nothing is returned)."""


class Scorer:
    """Scores batches of inputs of ``network``; counts them against ``total`` for progress."""

    def __init__(
        self,
        network: Network,
        batch_size: int,
        total: int,
        progress: Progress | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.network, self.batch_size = network, max(1, int(batch_size))
        self.total, self.done, self.progress = total, 0, progress
        self.dtype = dtype  # the passes' autocast (None: full precision)

    def advance(self, count: int) -> None:
        """Count ``count`` more inputs done and report; a False answer cancels."""
        self.done += count
        if self.progress is not None and self.progress(self.done, self.total) is False:
            raise FaithfulnessCancelled(
                f"Faithfulness cancelled after {self.done} of {self.total} network inputs."
            )

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The logits of a batch of inputs (N×3×h×w), batch norms folded, under the scorer's
        autocast; full batches on a GPU replay one CUDA graph (the logits are copied before the
        next replay)."""
        graph = inputs.device.type == "cuda" and len(inputs) == self.batch_size
        with torch.inference_mode():
            return self.network.forward_batch(inputs, self.dtype, graph)[1].float().clone()

    def scores(
        self,
        count: int,
        make: Callable[[int, int], torch.Tensor],
        classes: torch.Tensor,
        probability: bool = True,
    ) -> torch.Tensor:
        """The score of ``classes[i]`` on input i of ``count`` made by ``make(start, stop)``
        (a batch at a time): its softmax probability, or its logit. float64 on the host."""
        out = torch.empty(count, dtype=torch.float64)
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            with torch.inference_mode():
                logits = self.logits(make(start, stop))
                if probability:
                    logits = torch.softmax(logits, dim=1)
                chosen = logits.gather(1, classes[start:stop, None].to(logits.device))[:, 0]
            out[start:stop] = chosen.double().cpu()
            self.advance(stop - start)
        return out
