"""Devices: what this machine offers, and ``"auto"`` → cuda, then mps, then cpu."""

from __future__ import annotations

from ._torch import torch


def available_devices() -> list[str]:
    """Devices this machine can run on, ``"auto"`` first."""
    devices = ["auto", "cpu"]
    devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an unavailable explicit device is an error."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"Unknown device {device!r}: use one of {available_devices()}.") from error
    if chosen.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (chosen.index or 0) >= count:
            raise ValueError(
                f"Device {device!r} is not available here ({count} CUDA device(s) found). "
                f"Use device='auto' or one of {available_devices()}."
            )
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device 'mps' is not available here. Use one of {available_devices()}.")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {device!r}: use one of {available_devices()}.")
    return chosen
