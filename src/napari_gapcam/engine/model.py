"""GapCamModel: a network split into maps and head, its preprocessing, and its method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._torch import nn, torch
from .batch import iter_batches
from .cam import Cam
from .config import ModelConfig
from .fuse import fold_batch_norms
from .gradcam import GradCam
from .graphs import GraphedForward, autocast
from .memory import (
    InputTooLargeError,
    available_bytes,
    bytes_per_input_pixel,
    check_fits,
    too_large_message,
)
from .preprocess import as_image
from .result import CamResult, Result

if TYPE_CHECKING:
    from .tiles import TiledResult

METHODS = ("auto", "cam", "gradcam")
METHOD_LABELS = {"cam": "CAM", "gradcam": "Grad-CAM"}


def choose_method(method: str, fc: nn.Module | None, head: str) -> str:
    """``"auto"``: the exact CAM where the head is GAP + dense, else Grad-CAM."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: use one of {', '.join(METHODS)}.")
    if method == "cam" and fc is None:
        raise ValueError(
            f"method='cam' needs a head that is a global average pooling and one dense layer; "
            f"{head} is not. Use method='gradcam' (or 'auto', which picks it)."
        )
    if method == "auto":
        return "cam" if fc is not None else "gradcam"
    return method


class GapCamModel:
    """A classifier split into ``features`` (image → last spatial maps) and ``head`` (maps →
    logits); ``fc`` is the dense layer after the GAP when the head is GAP + dense (else None).

    ``method`` is ``"cam"`` (exact, from ``fc``'s weights) or ``"gradcam"`` (a backward pass
    through ``head``); ``config`` holds the input size, mean/std and the suggested box threshold.
    """

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        class_names: Sequence[str],
        *,
        arch: str,
        weights: str,
        device: torch.device,
        fc: nn.Linear | None = None,
        method: str = "auto",
        config: ModelConfig | None = None,
        head_description: str = "the head",
    ) -> None:
        self.features = features.eval()
        self.head = head.eval()
        self.fc = fc.eval() if fc is not None else None
        self.method = choose_method(method, fc, head_description)
        self.head_description = head_description
        self.class_names = list(class_names)
        self.arch = arch
        self.weights = weights
        self.device = device
        self.config = config or ModelConfig()
        self._method = Cam(fc.weight) if self.method == "cam" else GradCam(self.head)
        self._bytes_per_pixel: float | None = None
        self._fast: tuple[nn.Module, nn.Module] | None = None  # (features, folded copy)
        self._graphed: tuple[tuple, GraphedForward] | None = None  # ((folded, head), graph)

    def __repr__(self) -> str:
        return (
            f"GapCamModel(arch={self.arch!r}, weights={self.weights!r}, method={self.method!r}, "
            f"classes={len(self.class_names)}, device={str(self.device)!r})"
        )

    @property
    def method_label(self) -> str:
        """``"CAM"`` or ``"Grad-CAM"``."""
        return METHOD_LABELS[self.method]

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def box_threshold(self) -> float:
        """The threshold to suggest for boxes/masks: the checkpoint's, else Zhou et al.'s 20 %."""
        return self.config.box_threshold

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

    def _folded(self) -> nn.Module:
        """``features`` with the batch norms folded into the convolutions (made once)."""
        if self._fast is None or self._fast[0] is not self.features:
            self._fast = (self.features, fold_batch_norms(self.features))
        return self._fast[1]

    def forward_features(self, tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The maps of a batch of normalised inputs (N×3×h×w), with batch norms folded.

        Running out of memory becomes :class:`InputTooLargeError`.
        """
        try:
            return self._folded()(tensor.contiguous(memory_format=torch.channels_last))
        except torch.OutOfMemoryError as error:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            needed = self.bytes_per_input_pixel * size[0] * size[1] * len(tensor)
            message = too_large_message(size, needed, available_bytes(self.device), self.device)
            raise InputTooLargeError(message) from error

    def forward_batch(
        self,
        tensor: torch.Tensor,
        dtype: torch.dtype | None = None,
        graph: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps and logits of a batch of normalised inputs (N×3×h×w), under ``dtype``
        autocast (``None``: full precision). ``graph=True`` (a CUDA device) replays the pass
        from a CUDA graph (:mod:`~napari_gapcam.engine.graphs`): the outputs are then overwritten by
        the next graphed batch, so copy them first (on the same stream)."""

        def forward(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # the batch's own size: a graph keeps this function for later batch shapes
            maps = self.forward_features(batch, tuple(batch.shape[-2:]))
            return maps, self.head(maps.float())

        if not graph:
            with autocast(tensor.device, dtype):
                return forward(tensor)
        modules = (self._folded(), self.head)  # a graph replays these very modules
        if self._graphed is None or self._graphed[0] != modules:
            self._graphed = (modules, GraphedForward(forward))
        return self._graphed[1](tensor, dtype)

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
        a sequence of images of one size. ``batch_size``: default from free memory (at most 8 on
        a CPU, 32 on a GPU). ``precision``: ``"fp32"``, or ``"fp16"`` / ``"bf16"`` autocast
        (maps within 0.02). Maps are kept on the host as ``features_dtype`` (half precision:
        200 KB a ResNet-50 image at 224²); see
        :class:`~napari_gapcam.engine.result.Result`.
        :func:`~napari_gapcam.engine.batch.iter_batches` streams the batches instead (progress,
        cancelling).
        """
        parts = [
            part
            for _, part in iter_batches(
                self,
                images,
                batch_size,
                contrast_limits,
                input_size,
                square,
                precision,
                features_dtype,
            )
        ]
        return Result.concatenate(parts)

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
        ``overlap`` pixels (default two cells: 64 for a ResNet); they are read a block at a
        time and batched. ``background="auto"`` skips tiles without foreground (Otsu on the
        smallest level); skipped tiles stay NaN. ``precision``: ``"fp16"`` / ``"bf16"``
        autocast as :meth:`run_batch`. See :mod:`~napari_gapcam.engine.tiles`;
        :func:`~napari_gapcam.engine.tiles.iter_tiled` streams the batches (progress, cancelling).
        """
        from .tiles import iter_tiled

        args = (tile_size, overlap, level, contrast_limits, batch_size, background)
        *_, (_, _, result) = iter_tiled(self, image, *args, precision=precision)
        return result

    @property
    def method_object(self) -> Any:
        """The method that turns maps into a class's raw map (:class:`Cam` or ``GradCam``)."""
        return self._method

    @property
    def bytes_per_input_pixel(self) -> float:
        """Activation memory per input pixel (an estimate, measured once)."""
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = bytes_per_input_pixel(
                self.features, self.device, self.input_size
            )
        return self._bytes_per_pixel

    def check_memory(self, size: tuple[int, int], batch: int = 1) -> None:
        """Raise :class:`InputTooLargeError` if ``batch`` h×w inputs would need too much memory."""
        check_fits(size, self.bytes_per_input_pixel * batch, self.device)
