"""GapCamModel: a :class:`~.network.Network` with one-call runs on top of the drivers.

``run`` (one image), ``run_batch`` (a stack) and ``run_tiled`` (a slide at native pixels) are
conveniences over the drivers :func:`~.batch.iter_batches` and :func:`~.tiles.iter_tiled`,
which stream the same work batch by batch (progress, cancelling).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._torch import torch
from .batch import iter_batches, run_each
from .network import Network
from .preprocess import as_image
from .result import CamResult, Result
from .tiled_result import TiledResult
from .tiles import iter_tiled


class GapCamModel(Network):
    """A classifier split into ``features`` (image → last spatial maps) and ``head`` (maps →
    logits), ready to explain images (see :class:`~.network.Network` for what it holds)."""

    def run(
        self,
        image: Any,
        contrast_limits: Sequence[float] | None = None,
        input_size: int | None = None,
        square: bool | None = None,
    ) -> CamResult:
        """One forward pass on a 2D grey or RGB(A) image; returns a :class:`CamResult` (image 0
        of :meth:`run_batch`: one forward path).

        ``image``: numpy, dask, zarr or any array-like that slices; it is read band by band and
        never copied to float at full size. It is resized so its short side is ``input_size``
        (default: the model's, 224 for ImageNet weights), keeping the aspect ratio;
        ``square=True`` squashes it to a square (default: the model's ``config.square``, a
        checkpoint key for models trained on squashed images). An input that would not fit in
        memory raises :class:`~napari_gapcam.engine.memory.InputTooLargeError` before anything runs.
        """
        images = [as_image(image)]
        args = (contrast_limits, input_size, square, "fp32", torch.float32)
        [(_, result)] = list(iter_batches(self, images, 1, *args))
        return result[0]

    def run_batch(
        self,
        images: Any,
        batch_size: int | None = None,
        contrast_limits: Sequence[float] | None = None,
        input_size: int | None = None,
        square: bool | None = None,
        precision: str = "fp32",
        features_dtype: torch.dtype = torch.float16,
    ) -> Result:
        """Every image of a stack, in batches; ``result[i]`` equals ``run(images[i])``.

        ``images``: an N×H×W or N×H×W×3/4 array (numpy, dask, zarr: read a batch at a time) or
        a sequence of images of one size. ``batch_size``: default from free memory (at most 8
        on a CPU, fewer for big inputs; 32 on a GPU). ``precision``: ``"fp32"``, or ``"fp16"``
        / ``"bf16"`` autocast (maps within 0.02). Maps are kept on the host as
        ``features_dtype`` (half precision: 200 KB a ResNet-50 image at 224²); see
        :class:`~napari_gapcam.engine.result.Result`.
        :func:`~napari_gapcam.engine.batch.iter_batches` streams the batches instead
        (progress, cancelling).
        """
        args = (contrast_limits, input_size, square, precision, features_dtype)
        parts = [part for _, part in iter_batches(self, images, batch_size, *args)]
        return Result.concatenate(parts)

    def run_each(
        self, images: Any, input_size: int | None = None, square: bool | None = None
    ) -> list[CamResult]:
        """:meth:`run` of each image (of any sizes), consecutive images of one size in batches
        (:func:`~napari_gapcam.engine.batch.run_each`): ``model.run_each(pages)[i]`` equals
        ``model.run(pages[i])``, in far fewer forward passes."""
        return run_each(self, images, input_size, square)

    def run_tiled(
        self,
        image: Any,
        tile_size: int | None = None,
        overlap: int | None = None,
        level: int | None = None,
        contrast_limits: Sequence[float] | None = None,
        batch_size: int | None = None,
        background: str | None = None,
        precision: str = "fp32",
    ) -> TiledResult:
        """The CAM at native pixels over an image of any size: tiles stitched into one grid.

        ``image``: numpy, dask, zarr, or a list of pyramid levels (``level`` picks one; default
        0, native). Tiles of ``tile_size`` (default the model's input size) overlap by
        ``overlap`` pixels (default two cells: 64 for a ResNet), both in whole map cells
        (:func:`~napari_gapcam.engine.tiling.tile_cells` gives what is used); they are read a
        block at a time and batched. ``background="auto"`` skips tiles without foreground (Otsu
        on the smallest level); skipped tiles stay NaN. ``precision``: ``"fp16"`` / ``"bf16"``
        autocast as :meth:`run_batch`. See :mod:`~napari_gapcam.engine.tiles`;
        :func:`~napari_gapcam.engine.tiles.iter_tiled` streams the batches (progress, cancelling).
        """
        args = (tile_size, overlap, level, contrast_limits, batch_size, background)
        *_, (_, _, result) = iter_tiled(self, image, *args, precision=precision)
        return result
