"""Precision: the autocast dtype a network pass runs under, by name.

``"fp32"`` is full precision; ``"fp16"`` / ``"bf16"`` run the convolutions under that autocast
(maps and logits come back as float32). ``"auto"``, for the passes that only score inputs (a
Score-CAM channel's masked input), is ``"bf16"`` where the device computes bfloat16 natively —
a CUDA GPU that supports it, a CPU with AMX tiles (Intel Sapphire Rapids and later: a
ResNet-50 pass 2.6× faster than float32 there, measured in NOTES.md) — and ``"fp32"`` elsewhere
(on other CPUs bfloat16 is emulated and slower).
"""

from __future__ import annotations

from typing import Any

from ._torch import torch

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
AUTO = "auto"


def check_precision(precision: str, allow_auto: bool = False) -> Any:
    """The autocast dtype of ``precision`` (``None``: full precision); ``"auto"`` (where
    allowed) is checked here and resolved per device by :func:`autocast_dtype`."""
    names = (*PRECISIONS, AUTO) if allow_auto else tuple(PRECISIONS)
    if precision not in names:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(names)}.")
    return None if precision == AUTO else PRECISIONS[precision]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (matrix units), so that it pays."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(probe()) if probe is not None else False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision``'s name on ``device``: ``"auto"`` becomes ``"bf16"`` or ``"fp32"``."""
    check_precision(precision, allow_auto=True)
    if precision != AUTO:
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast_dtype(precision: str, device: torch.device) -> Any:
    """The autocast dtype of ``precision`` on ``device`` (``None``: full precision)."""
    return PRECISIONS[resolve_precision(precision, device)]
