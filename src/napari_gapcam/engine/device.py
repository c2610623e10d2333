"""Devices: what this machine offers, ``"auto"`` → cuda, then mps, then cpu, and sending data."""

from __future__ import annotations

from ._torch import torch
from .words import ParameterError, Term


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
            raise ParameterError(
                f"Device {device!r} is not available here ({count} CUDA device(s) found). Use ",
                Term("device", "auto"),
                f" or one of {available_devices()}.",
            )
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Device 'mps' is not available here. Use one of {available_devices()}.")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {device!r}: use one of {available_devices()}.")
    return chosen


_COPY_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def send(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` (page-locked, for a GPU) on ``device``, without waiting.

    To a GPU the copy runs on a side stream, so it overlaps the work already queued (the
    previous batch's forward pass), and the current stream waits for it before using the
    result: the pattern of NVIDIA apex's data prefetcher.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return tensor.to(device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    copier = _COPY_STREAMS.get(device)
    if copier is None:
        copier = _COPY_STREAMS[device] = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)
    with torch.cuda.stream(copier):
        sent = tensor.to(device, non_blocking=True)
    compute.wait_stream(copier)  # what runs next on the compute stream waits for the copy
    sent.record_stream(compute)  # and its memory is not reused while that stream may read it
    return sent
