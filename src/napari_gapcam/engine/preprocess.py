"""Array → normalised input tensor: dtype and contrast, grey/RGB(A), sizing.

Images can be far larger than the network input (an 8192² mosaic for a 224² input), and lazy
(dask, zarr). The image is therefore reduced **before** anything becomes float at full size:

- uint8 RGB in memory: torch's antialiased bilinear resize runs on the uint8 pixels themselves
  (a view, no copy);
- anything else (uint16, float, bool, lazy arrays): read in bands of rows, each band turned into
  float32, clipped to the contrast limits and block-averaged by an integer factor; only the
  reduced image (about twice the input size) is resized with antialiasing.

Contrast scaling is affine, so scaling the reduced image equals scaling every pixel first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._torch import F, torch
from .config import IMAGENET_MEAN, IMAGENET_STD
from .device import send

MIN_INPUT = 32  # the smallest input side accepted (a stride-32 network gives one cell)
MAX_ASPECT = 8  # the long input side is at most this many times the short one
GPU_RESIZE = 16  # a GPU resizes uint8 images of up to 16× the input's pixels itself
BAND_VALUES = 2**21  # float32 values per band of rows: 8 MiB


def as_image(image: Any) -> Any:
    """``image`` itself when it has a shape and a dtype (numpy, dask, zarr: not read), else
    ``np.asarray(image)`` (nested lists, PIL images, anything numpy understands)."""
    if hasattr(image, "shape") and hasattr(image, "dtype"):
        return image
    try:
        array = np.asarray(image)
    except (TypeError, ValueError) as error:
        array, reason = None, f": {error}"
    else:
        reason = "" if array.dtype != object else " (numpy sees no numbers in it)"
    if array is None or array.dtype == object:
        raise ValueError(
            "Expected an image array (numpy, dask, zarr, or anything numpy.asarray turns into "
            f"numbers), got a {type(image).__name__}{reason}."
        )
    return array


def image_layout(image: Any) -> bool:
    """Check a 2D grey or H×W×3/4 RGB(A) array-like without reading it; True when RGB(A)."""
    shape, dtype = tuple(image.shape), np.dtype(image.dtype)
    if len(shape) == 3 and shape[-1] in (3, 4):
        rgb = True
    elif len(shape) == 2:
        rgb = False
    else:
        raise ValueError(
            f"Expected a 2D image (H×W) or an RGB(A) image (H×W×3 or H×W×4), got shape "
            f"{shape}. For a stack, pass one plane, e.g. image[t]."
        )
    if min(shape[:2]) < 1:
        raise ValueError(f"The image is empty (shape {shape}).")
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError("Complex images are not supported: pass np.abs(image) or image.real.")
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise ValueError(f"Expected a real-valued image, got dtype {dtype}.")
    return rgb


def _bands(image: Any, rows: int) -> Iterator[np.ndarray]:
    """The image in bands of ``rows`` rows, RGB(A) cut to RGB; lazy arrays read band by band."""
    rgb = image_layout(image)
    for start in range(0, image.shape[0], rows):
        band = image[start : start + rows]
        yield np.asarray(band[..., :3] if rgb else band)


def _band_rows(image: Any, multiple: int = 1) -> int:
    """Rows per band: about ``BAND_VALUES`` values, a multiple of ``multiple``."""
    values_per_row = int(np.prod(image.shape[1:])) * multiple
    return multiple * max(1, BAND_VALUES // max(1, values_per_row))


def _finite_min_max(array: np.ndarray) -> tuple[float, float] | None:
    if np.issubdtype(array.dtype, np.floating):
        low, high = np.nanmin(array), np.nanmax(array)  # no copy
        if not (np.isfinite(low) and np.isfinite(high)):
            finite = array[np.isfinite(array)]
            if finite.size == 0:
                return None
            low, high = finite.min(), finite.max()
        return float(low), float(high)
    return float(array.min()), float(array.max())


def intensity_range(
    image: Any, contrast_limits: Sequence[float] | None = None
) -> tuple[float, float]:
    """The values that map to 0 and 1.

    ``contrast_limits`` when given; bool: (0, 1); RGB: uint8 (0, 255), other integers (0, dtype
    max), floats (0, 1) when already in [0, 1]; otherwise the finite min and max, found band by
    band (a lazy image is read once more for it: pass ``contrast_limits`` to avoid that).
    """
    rgb = image_layout(image)
    dtype = np.dtype(image.dtype)
    if contrast_limits is not None:
        low, high = (float(v) for v in contrast_limits)
        return low, high
    if dtype.kind == "b":
        return 0.0, 1.0
    if rgb and np.issubdtype(dtype, np.integer):
        return 0.0, float(np.iinfo(dtype).max)
    ranges = [r for band in _bands(image, _band_rows(image)) if (r := _finite_min_max(band))]
    if not ranges:
        return 0.0, 0.0
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if rgb and 0.0 <= low and high <= 1.0:
        return 0.0, 1.0
    return low, high


def _needs_clip(dtype: np.dtype, low: float, high: float) -> bool:
    """Whether values can fall outside [low, high] (integers whose whole range fits cannot)."""
    if dtype.kind == "b":
        return not (low <= 0 and high >= 1)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return not (low <= info.min and high >= info.max)
    return True


def reduce_image(image: Any, factor: int, low: float, high: float) -> torch.Tensor:
    """Block-average by ``factor`` (partial blocks at the edges average what they hold).

    Each band of rows becomes float32, its NaN/±inf and values outside ``[low, high]`` are
    clipped as napari displays them, then it is averaged; the result is a 1×C×h×w float32 tensor
    still in the image's units. Peak extra memory: one band (``BAND_VALUES`` floats).
    """
    dtype = np.dtype(image.dtype)
    clip = _needs_clip(dtype, low, high) and high > low
    pooled = []
    for band in _bands(image, _band_rows(image, factor)):
        values = band.astype(np.float32)
        if np.issubdtype(dtype, np.floating):
            np.nan_to_num(values, copy=False, nan=low, posinf=high, neginf=low)
        if clip:
            np.clip(values, low, high, out=values)
        tensor = torch.from_numpy(values)
        tensor = (tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor[None])[None]
        if factor > 1:
            tensor = F.avg_pool2d(tensor, factor, ceil_mode=True)
        pooled.append(tensor.contiguous())
    return torch.cat(pooled, dim=2)


def _to_unit(
    tensor: torch.Tensor, low: float | torch.Tensor, high: float | torch.Tensor
) -> torch.Tensor:
    """``(x − low) / (high − low)`` clipped to [0, 1]; zeros where ``high ≤ low`` (a constant
    image). ``low``/``high`` may be per-image tensors (N×1×1×1)."""
    span = torch.as_tensor(high, dtype=torch.float32) - low
    unit = ((tensor.float() - low) / torch.clamp(span, min=1e-30)).clamp_(0.0, 1.0)
    return unit * (span > 0)


def target_size(
    height: int, width: int, input_size: int = 224, square: bool = False
) -> tuple[int, int]:
    """The network input size: short side = ``input_size`` keeping the aspect ratio, or a square.

    Extreme aspect ratios (a 1×N line) are squashed so the long side stays within
    ``MAX_ASPECT × input_size`` and the short side at least ``MIN_INPUT``.
    """
    if input_size < MIN_INPUT:
        raise ValueError(f"input_size must be at least {MIN_INPUT} pixels, got {input_size}.")
    if square:
        return input_size, input_size
    scale = min(input_size / min(height, width), MAX_ASPECT * input_size / max(height, width))
    return max(MIN_INPUT, round(height * scale)), max(MIN_INPUT, round(width * scale))


class Reduced(NamedTuple):
    """An image reduced on the host, ready to be finished (resized, normalised) on a device."""

    pixels: torch.Tensor  # 1×C×h×w: uint8 (the image itself, a view) or float32, image units
    size: tuple[int, int]  # the network input's h×w
    factor: int  # block size of the reduction (1: none)
    image_shape: tuple[int, int]
    low: float  # the values that map to 0 and 1
    high: float


def reduce_image_for_input(
    image: Any,
    contrast_limits: Sequence[float] | None = None,
    input_size: int = 224,
    square: bool = False,
) -> Reduced:
    """The host half of :func:`to_input_tensor`: read the image (band by band) and reduce it."""
    rgb = image_layout(image)
    height, width = (int(s) for s in image.shape[:2])
    size = target_size(height, width, input_size, square)
    low, high = intensity_range(image, contrast_limits)
    factor = max(1, min(height // size[0], width // size[1]) // 4)
    needs_no_clip = contrast_limits is None or (low <= 0 and high >= 255)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and needs_no_clip:
        # uint8 in memory, nothing to clip: resize the bytes themselves (a view, no copy). The
        # choice depends on the dtype and the limits asked for only, so a batch reduces alike.
        pixels = torch.from_numpy(image[..., :3] if rgb else image[..., None])
        return Reduced(pixels.permute(2, 0, 1)[None], size, 1, (height, width), low, high)
    return Reduced(reduce_image(image, factor, low, high), size, factor, (height, width), low, high)


class Staged(NamedTuple):
    """A batch on the host, ready to be sent: the pixels (page-locked for a GPU) and the images."""

    pixels: torch.Tensor  # N×C×h×w
    batch: list[Reduced]


def stage_input(reduced: Reduced | Sequence[Reduced], device: torch.device | str = "cpu") -> Staged:
    """The host side of :func:`finish_input`: one batch of pixels, in page-locked memory for a
    GPU (written in the pixels' own layout, H×W×C for an image in memory: a plain copy)."""
    batch = [reduced] if isinstance(reduced, Reduced) else list(reduced)
    first = batch[0]
    cuda = torch.device(device).type == "cuda"
    parts = [r.pixels for r in batch]
    height, width = parts[0].shape[-2:]
    big = height * width > GPU_RESIZE * first.size[0] * first.size[1]
    if parts[0].dtype == torch.uint8 and (height, width) != first.size and (big or not cuda):
        # uint8 resize on the host (torch's fast uint8 path); with a GPU only for images far
        # larger than the input, which would cost more to send than to shrink here
        joined = torch.cat(parts) if len(parts) > 1 else parts[0]  # one image: its view, no copy
        parts = [F.interpolate(joined, size=first.size, mode="bilinear", antialias=True)]
    if not cuda:
        return Staged(torch.cat(parts) if len(parts) > 1 else parts[0], batch)
    n, c, h, w = (sum(len(p) for p in parts), *parts[0].shape[1:])
    if parts[0].is_contiguous(memory_format=torch.channels_last):
        pinned = torch.empty((n, h, w, c), dtype=parts[0].dtype, pin_memory=True)
        pinned = pinned.permute(0, 3, 1, 2)
    else:
        pinned = torch.empty((n, c, h, w), dtype=parts[0].dtype, pin_memory=True)
    return Staged(torch.cat(parts, out=pinned), batch)


def finish_input(
    reduced: Reduced | Sequence[Reduced] | Staged,
    device: torch.device | str = "cpu",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """The device half: antialiased resize to the input size, [0, 1], ``(x − mean) / std``.

    ``reduced``: one image, or a batch of images of one size reduced alike (each keeps its own
    intensity range), or such a batch already staged (:func:`stage_input`); the result is
    N×3×h×w. On a CPU uint8 pixels are resized as uint8 (torch's fast path), the rest as float.
    To a GPU the batch goes through page-locked memory with an asynchronous copy and is
    resized, scaled and normalised there (uint8 images of more than ``GPU_RESIZE`` × the
    input's pixels are shrunk on the host first).
    """
    staged = reduced if isinstance(reduced, Staged) else stage_input(reduced, device)
    batch, first = staged.batch, staged.batch[0]
    small = send(staged.pixels, device)  # to a GPU: overlapping the work queued before
    if small.dtype == torch.uint8 and tuple(small.shape[-2:]) != first.size:
        small = small.float()  # resized in float on the GPU below
    height, width = first.image_shape
    if first.factor > 1:  # cells of ``factor`` pixels (the last may be partial): scale, not shape
        scale = (first.size[0] * first.factor / height, first.size[1] * first.factor / width)
        small = F.interpolate(
            small,
            scale_factor=scale,
            mode="bilinear",
            antialias=True,
            recompute_scale_factor=False,
        )[..., : first.size[0], : first.size[1]]
    elif first.size != tuple(small.shape[-2:]):
        small = F.interpolate(small, size=first.size, mode="bilinear", antialias=True)
    # the few numbers this needs go along asynchronously too (a plain copy would wait for the GPU)
    n = len(batch)
    values = [r.low for r in batch] + [r.high for r in batch] + [*mean, *std]
    numbers = torch.tensor(values, dtype=torch.float32)
    if small.device.type == "cuda":  # a copy is asynchronous only from page-locked memory
        numbers = numbers.pin_memory()
    numbers = numbers.to(small.device, non_blocking=True)
    low, high = numbers[:n].view(-1, 1, 1, 1), numbers[n : 2 * n].view(-1, 1, 1, 1)
    mean_t, std_t = numbers[2 * n : 2 * n + 3], numbers[2 * n + 3 :]
    unit = _to_unit(small, low, high).expand(-1, 3, -1, -1)
    return (unit - mean_t.view(1, 3, 1, 1)) / std_t.view(1, 3, 1, 1)


def to_input_tensor(
    image: Any,
    contrast_limits: Sequence[float] | None = None,
    input_size: int = 224,
    square: bool = False,
    device: torch.device | str = "cpu",
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Image → 1×3×h×w normalised float tensor on ``device``.

    ``image``: H×W grey or H×W×3/4 RGB(A); numpy, dask, zarr or any array-like that slices.
    Values map to [0, 1] by :func:`intensity_range`, then ``(x - mean) / std`` (the model's;
    ImageNet's by default). Resizing is bilinear with antialiasing (see the module docstring);
    no crop, so the CAM covers the whole image.
    """
    reduced = reduce_image_for_input(image, contrast_limits, input_size, square)
    return finish_input(reduced, device, mean, std)
