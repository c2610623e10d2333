"""Will a forward pass fit? An estimate from the input size, checked against free memory.

A CNN's activations grow with the input's pixels: the estimate is a per-input-pixel cost
(measured once per model on a small input: the largest activation ×4, for the tensors alive at
once inside a block) times the input's pixels. Measured on ResNet-50: 208–269 bytes per input
pixel at 896²–1792²; the estimate says 268.
"""

from __future__ import annotations

from ._torch import nn, torch

PROBE = 128  # side of the probe input
FALLBACK = 300.0  # bytes per input pixel when no probe runs
SAFETY = 4  # tensors alive at once, in units of the largest activation
FREE_FRACTION = 0.5  # refuse a forward pass that needs more than this share of free memory


class InputTooLargeError(MemoryError):
    """The forward pass at this input size would not fit in memory."""


@torch.inference_mode()
def bytes_per_input_pixel(
    features: nn.Module, device: torch.device, input_size: int = 224
) -> float:
    """Peak activation bytes per input pixel of ``features``, from one small forward pass.

    The probe is 128² (or ``input_size``² for networks that need a given size); a network that
    runs on neither gets ``FALLBACK`` (ResNet-50's measurement, rounded up).
    """
    for side in dict.fromkeys((PROBE, input_size)):
        x = torch.zeros(1, 3, side, side, device=device)
        largest = x.numel() * x.element_size()
        try:
            for layer in features.children() if isinstance(features, nn.Sequential) else [features]:
                x = layer(x)
                largest = max(largest, x.numel() * x.element_size())
        except (RuntimeError, ValueError, AssertionError):
            continue
        return SAFETY * largest / side**2 + 3 * 4  # + the float input itself
    return FALLBACK


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free + cached blocks, else the host's available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    import psutil

    return int(psutil.virtual_memory().available)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def too_large_message(size: tuple[int, int], needed: float, free: float, device: object) -> str:
    return (
        f"An input of {size[0]}×{size[1]} pixels needs about {_gb(needed)} for the forward pass, "
        f"more than half of the {_gb(free)} free on {device}. Way out: a smaller input size "
        "(the short side: 224 is the model's usual, 448 or 896 give finer maps), or a device "
        "with more memory."
    )


def check_fits(size: tuple[int, int], per_pixel: float, device: torch.device) -> None:
    """Raise :class:`InputTooLargeError` when an ``size`` input would not fit."""
    needed = per_pixel * size[0] * size[1]
    free = available_bytes(device)
    if needed > FREE_FRACTION * free:
        raise InputTooLargeError(too_large_message(size, needed, free, device))
