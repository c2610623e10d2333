"""Weights: torchvision's named weights (hub cache), checkpoint files, fitting a state dict."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ._torch import nn, torch
from .errors import WeightsError

StateDict = dict[str, torch.Tensor]
# checkpoint keys kept besides the state dict (see config.CHECKPOINT_KEYS)
SETTINGS = ("input_size", "mean", "std", "box_threshold", "square", "transform_input")


def _weights_enum(arch: str) -> Any:
    import torchvision

    return torchvision.models.get_model_weights(arch)


def named_weights(arch: str) -> list[str]:
    """torchvision's weight names for ``arch``, e.g. ``["IMAGENET1K_V1", "IMAGENET1K_V2"]``."""
    from .families import family_of

    family_of(arch)  # an unknown architecture is a clear error
    return [w.name for w in _weights_enum(arch)]


def cached_weights_path(arch: str, weights: str) -> Path:
    """Where torchvision's weights API caches named weights: ``$TORCH_HOME/hub/checkpoints/…``."""
    from .families import family_of

    family_of(arch)
    entry = _weights_enum(arch)[weights]
    filename = os.path.basename(urlparse(entry.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def is_named(arch: str, weights: Any) -> bool:
    """True for a torchvision weights name of ``arch``; an unknown bare name is an error."""
    if not isinstance(weights, str):
        return False
    names = named_weights(arch)
    if weights in names or weights == "DEFAULT":
        return True
    looks_like_file = os.sep in weights or "." in weights or Path(weights).exists()
    if not looks_like_file:
        raise ValueError(
            f"Unknown weights {weights!r} for {arch}: use one of {names}, a path to a "
            "weights file, or None for a random init."
        )
    return False


def load_named(arch: str, weights: str) -> tuple[StateDict, Any]:
    """torchvision's weights API: the hub cache under TORCH_HOME, else a download.

    Returns the state dict and the weights' enum entry (its ``meta`` and ``transforms``).
    """
    entry = _weights_enum(arch)[weights]
    cached = cached_weights_path(arch, entry.name)
    try:
        state_dict = entry.get_state_dict(progress=True)
    except OSError as error:  # URLError, socket and HTTP errors are OSErrors
        if cached.exists():
            raise WeightsError(f"Could not read the cached weights {cached}: {error}") from error
        raise WeightsError(
            f"The {arch} weights {entry.name} are not in the cache and could not be downloaded "
            f"({error}).\n  expected file: {cached.name}\n  cache folder:  {cached.parent}\n"
            f"Way out: copy {cached.name} (from {entry.url}) into that folder (or set TORCH_HOME "
            "to a folder whose hub/checkpoints holds it), or pass weights='path/to/file.pth'."
        ) from error
    except Exception as error:  # a corrupt cached file
        raise WeightsError(
            f"The cached weights file {cached} could not be read ({type(error).__name__}: "
            f"{error}). Delete it to download it again, or pass weights='path/to/file.pth'."
        ) from error
    return state_dict, entry


def load_checkpoint(
    path: Path, arch: str | None = None
) -> tuple[StateDict, list[str] | None, dict[str, Any]]:
    """A state dict, or a dict of ``state_dict`` (+ ``class_names``, ``arch``, settings).

    The settings are the optional ``input_size``, ``mean``, ``std``, ``box_threshold`` and
    ``transform_input`` (googlenet / inception_v3). A recorded ``arch`` must match ``arch``.
    """
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = (
            "it holds no tensors or holds objects other than tensors"
            if isinstance(error, pickle.UnpicklingError)
            else f"{type(error).__name__}: {str(error)[:200]}"
        )
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint ({reason}). Expected a file saved "
            "with torch.save(model.state_dict(), path)."
        ) from error
    if not isinstance(checkpoint, dict):
        raise WeightsError(
            f"{path} holds a {type(checkpoint).__name__}, not a state dict. Save it with "
            "torch.save(model.state_dict(), path) or torch.save({'state_dict': ...}, path)."
        )
    names, settings = None, {}
    if "state_dict" in checkpoint:
        saved_arch = checkpoint.get("arch")
        if saved_arch is not None and arch is not None and saved_arch != arch:
            raise WeightsError(
                f"Architecture mismatch: {path.name} was saved from {saved_arch!r}, but the "
                f"model asked for is {arch!r}. Choose {saved_arch!r}."
            )
        names = checkpoint.get("class_names")
        settings = {key: checkpoint[key] for key in SETTINGS if key in checkpoint}
        checkpoint = checkpoint["state_dict"]
    state_dict = {
        key.removeprefix("module."): value
        for key, value in checkpoint.items()
        if isinstance(value, torch.Tensor)
    }
    if not state_dict:
        raise WeightsError(f"{path} holds no tensors: it is not a state dict.")
    return state_dict, (list(names) if names is not None else None), settings


def num_classes(state_dict: StateDict, key: str, label: str, what: str) -> int:
    """Rows of the dense layer ``key`` (e.g. ``"fc.weight"``) of a state dict."""
    weight = state_dict.get(key)
    if weight is None or weight.ndim not in (2, 4):
        raise WeightsError(
            f"{label} has no dense layer {key!r}: it is not the state dict of {what}."
        )
    return int(weight.shape[0])


def shapes(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


def fit(
    network: nn.Module,
    state_dict: StateDict,
    arch: str,
    label: str,
    guess: Callable[[StateDict], str | None] | None = None,
) -> None:
    """Load the state dict, turning key or shape mismatches into one clear error.

    ``guess`` names the architecture the state dict does fit, for the hint.
    """
    expected, given = shapes(network), {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    wrong = [key for key in expected if key in given and expected[key] != given[key]]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            key = wrong[0]
            problems.append(
                f"{len(wrong)} shape mismatches (e.g. {key}: {arch} expects "
                f"{expected[key]}, the file has {given[key]})"
            )
        found = guess(state_dict) if guess is not None else None
        hint = f" It looks like a {found} state dict: choose {found!r}." if found else ""
        raise WeightsError(f"The weights {label} do not fit {arch}: {'; '.join(problems)}.{hint}")
    converted = OrderedDict(
        (k, v.float() if v.is_floating_point() else v) for k, v in state_dict.items()
    )
    # per-module versions (mnasnet needs them): the file's, else the current ones
    metadata = getattr(state_dict, "_metadata", None) or network.state_dict()._metadata
    converted._metadata = metadata  # type: ignore[attr-defined]
    network.load_state_dict(converted)
