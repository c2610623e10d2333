"""Array → normalised input tensor: dtype and contrast, grey/RGB(A), sizing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._torch_guard import block_triton_if_llvm_loaded

block_triton_if_llvm_loaded()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_range(image: np.ndarray, contrast_limits: Sequence[float] | None = None) -> np.ndarray:
    """Return a float32 H×W×3 array in [0, 1] from a 2D grey or H×W×3/4 RGB(A) array.

    Grey: scaled by ``contrast_limits`` (default: the image's min/max) and repeated to 3 channels.
    RGB(A): alpha dropped; uint8 divided by 255, other integers by their dtype's maximum, floats
    kept when already in [0, 1] and min-max scaled otherwise; explicit ``contrast_limits`` win.
    A constant image gives zeros, never NaN.
    """
    unit = _unit_channels(image, contrast_limits)
    return np.repeat(unit, 3, axis=-1) if unit.shape[-1] == 1 else unit


def _unit_channels(image: np.ndarray, contrast_limits: Sequence[float] | None) -> np.ndarray:
    """:func:`to_unit_range` without the grey repeat: H×W×1 (grey) or H×W×3, one float copy."""
    array = np.asarray(image)  # computes dask / zarr / array-likes
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
        rgb = True
    elif array.ndim == 2:
        rgb = False
    else:
        raise ValueError(
            f"Expected a 2D image (H×W) or an RGB(A) image (H×W×3 or H×W×4), got shape "
            f"{array.shape}. For a stack, pass one plane, e.g. image[t]."
        )
    if min(array.shape[:2]) < 1:
        raise ValueError(f"The image is empty (shape {array.shape}).")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"Expected a real-valued image, got dtype {array.dtype}.")
    if np.iscomplexobj(array):
        raise ValueError("Complex images are not supported: pass np.abs(image) or image.real.")

    if contrast_limits is not None:
        low, high = (float(v) for v in contrast_limits)
    elif array.dtype == bool:
        low, high = 0.0, 1.0
    elif rgb and array.dtype == np.uint8:
        low, high = 0.0, 255.0
    elif rgb and np.issubdtype(array.dtype, np.integer):
        low, high = 0.0, float(np.iinfo(array.dtype).max)
    else:
        finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
        if finite.size == 0:
            low = high = 0.0
        else:
            low, high = float(finite.min()), float(finite.max())
        if rgb and 0.0 <= low and high <= 1.0:
            low, high = 0.0, 1.0

    scaled = array.astype(np.float32)  # the one full-resolution copy; the rest is in place
    if high > low:
        scaled -= low
        scaled /= high - low
    else:
        scaled.fill(0.0)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return scaled if rgb else scaled[..., None]


def target_size(
    height: int, width: int, input_size: int = 224, square: bool = False
) -> tuple[int, int]:
    """The network input size: short side = ``input_size`` keeping the aspect ratio, or a square."""
    if input_size < 32:
        raise ValueError(f"input_size must be at least 32 pixels, got {input_size}.")
    if square:
        return input_size, input_size
    scale = input_size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_input_tensor(
    image: np.ndarray,
    contrast_limits: Sequence[float] | None = None,
    input_size: int = 224,
    square: bool = False,
    device: torch.device | str = "cpu",
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Image → 1×3×h×w float tensor on ``device``, normalised by the model's ``mean``/``std``.

    See :func:`to_unit_range`. Resizing is bilinear with antialiasing; no crop, so the CAM
    covers the whole image. ``mean`` and ``std`` default to ImageNet's.
    """
    unit = _unit_channels(image, contrast_limits)  # grey stays one channel until after resizing
    tensor = torch.from_numpy(unit).permute(2, 0, 1)[None].to(device)
    size = target_size(unit.shape[0], unit.shape[1], input_size, square)
    if size != tuple(tensor.shape[-2:]):
        tensor = F.interpolate(
            tensor, size=size, mode="bilinear", align_corners=False, antialias=True
        )
    tensor = tensor.expand(-1, 3, -1, -1)
    mean_ = torch.tensor(mean, dtype=tensor.dtype, device=tensor.device).view(1, 3, 1, 1)
    std_ = torch.tensor(std, dtype=tensor.dtype, device=tensor.device).view(1, 3, 1, 1)
    return (tensor - mean_) / std_
