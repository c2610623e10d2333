"""A run off the UI thread: the job bodies (whole images or planes, tiles) and their cancel.

napari's generator workers stop only at a ``yield``, and a forward pass at a big input size
takes seconds. So Cancel also sets a :class:`CancelToken` that the job's own thread checks
before every module of the model's forward pass (pre-hooks on the model's own modules, for the
run's thread only: other models and threads are untouched) and before every batch the engine
reads (its ``check``): a cancelled run stops within one layer, not one batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .input_planes import Planes

if TYPE_CHECKING:
    from ..models import GapCamModel
    from ..models.spec import ModelSpec

BAND_ELEMENTS = 1 << 22  # a finiteness check reads a float plane in bands this small


class Cancelled(Exception):
    """Raised in the worker's thread once its run was cancelled."""


class CancelToken:
    """Set on the UI thread by Cancel; checked in the worker's thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled

    @contextmanager
    def watching(self, model: GapCamModel) -> Iterator[None]:
        """Check the token before every forward pass of ``model``'s modules in this thread
        (the batch-norm-folded copy the engine runs, and the head)."""
        thread = threading.get_ident()

        def hook(_module: Any, _args: Any) -> None:
            if self._event.is_set() and threading.get_ident() == thread:
                raise Cancelled

        modules = {*model._folded().modules(), *model.head.modules()}
        handles = [module.register_forward_pre_hook(hook) for module in modules]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def has_finite(plane: Any) -> bool:
    """True if the plane holds at least one finite value (always, for integer data)."""
    if np.dtype(plane.dtype).kind not in "fc":
        return True
    rows = max(1, BAND_ELEMENTS // max(1, int(np.prod(plane.shape[1:]))))
    return any(
        np.isfinite(np.asarray(plane[start : start + rows])).any()
        for start in range(0, int(plane.shape[0]), rows)
    )


def compute(
    model: GapCamModel | None,
    spec: ModelSpec,
    planes: Planes,
    contrast_limits: Any,
    input_size: int | None,
    square: bool | None,
    token: CancelToken,
) -> Iterator[tuple[str, Any]]:
    """Job body (off the UI thread): load the model if needed, then the forward passes.

    Yields ``("model", model)``, ``("no finite", planes without a finite value)`` when there
    are any, then ``("result", (CamResult, seconds))`` for one plane or ``("batch",
    (Result of the batch, seconds))`` per batch of planes (the engine's batch size: small
    batches at big inputs on a CPU, so progress and Cancel stay prompt); an error is yielded
    as ``("error", exception)`` (a generator job would swallow a RuntimeError). Planes are
    lazy: the engine reads each one (band by band) only when its batch runs.
    """
    from ..engine.batch import iter_batches

    start = time.perf_counter()
    try:
        if model is None:
            model = spec.load()
        yield "model", model
        size = input_size or None
        if len(planes) == 1:
            with token.watching(model):
                finite = has_finite(planes.images[0])
                result = model.run(planes.images[0], contrast_limits, size, square)
                result.raw_cam(result.topk(1)[0][0])  # Grad-CAM: the top class's backward too
            if not finite:
                yield "no finite", 1
            yield "result", (result, time.perf_counter() - start)
            return
        if planes.in_memory:  # a check costs no read
            empty = sum(not has_finite(image) for image in planes.images)
            if empty:
                yield "no finite", empty
        batches = iter_batches(
            model, planes.images, None, contrast_limits, size, square, check=token.check
        )
        while True:
            with token.watching(model):  # not while yielding: the pool's thread runs other work
                part = next(batches, None)
            if part is None:
                return
            yield "batch", (part[1], time.perf_counter() - start)
    except Cancelled:
        return
    except Exception as error:
        yield "error", error


def compute_tiled(
    model: GapCamModel | None,
    spec: ModelSpec,
    image: Any,
    contrast_limits: Any,
    tile_size: int | None,
    first: tuple[float, float],
    token: CancelToken,
) -> Iterator[tuple[str, Any]]:
    """Job body of a tiled run: ``("model", model)``, then ``("tiles", (done, total,
    TiledResult, seconds))`` per batch (the same result, filled in place); errors as
    ``("error", e)``."""
    from ..engine.tiles import check_tiles, iter_tiled

    start = time.perf_counter()
    try:
        if model is None:
            model = spec.load()
        yield "model", model
        check_tiles(model)
        batches = iter_tiled(
            model,
            image,
            tile_size=tile_size,
            contrast_limits=contrast_limits,
            first=first,
            check=token.check,
        )
        while True:
            with token.watching(model):
                part = next(batches, None)
            if part is None:
                return
            yield "tiles", (*part, time.perf_counter() - start)
    except Cancelled:
        return
    except Exception as error:
        yield "error", error
