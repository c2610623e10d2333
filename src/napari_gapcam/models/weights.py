"""Where weights come from: torchvision's named weights (hub cache) and checkpoint files.

Both are read with :func:`~napari_gapcam.models.checkpoints.read_checkpoint` (no code runs).
torchvision's own ``get_state_dict`` is not used: it unpickles the hub-cache file with
``weights_only=False``. A cached file whose name carries torchvision's published SHA-256 prefix
(``resnet50-0676ba61.pth``) must match it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..engine._torch import torch
from ..engine.words import ParameterError, Term
from .checkpoints import StateDict, read_checkpoint
from .class_names import unique_names
from .errors import WeightsError
from .fitting import Found, find_state_dict

# checkpoint keys kept besides the state dict (see config.CHECKPOINT_KEYS)
SETTINGS = ("input_size", "mean", "std", "box_threshold", "square", "transform_input")
SKIP_HASH_ENV = "NAPARI_GAPCAM_SKIP_HASH_CHECK"  # "1": a cached file need not match its hash
WAYS_ON = (
    "Or go on without them: weights None ('none (random init)': maps with no meaning), the "
    "bundled demo model (resnet18 with the 'shapes demo' weights, on the synthetic shapes "
    "sample), or a weights file of your own."
)


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
        raise ParameterError(
            f"Unknown weights {weights!r} for {arch}: use one of {names}, a path to a "
            "weights file, or ",
            Term("weights", None, note="None"),
            " for a random init.",
        )
    return False


def hash_prefix(path: Path) -> str | None:
    """The SHA-256 prefix torchvision puts in its file names (``resnet50-0676ba61.pth``)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    return match.group(1) if match and match.group(1) else None


@cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:  # size and mtime: the cache key
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_hash(path: Path) -> None:
    """Refuse a file whose name's hash prefix its SHA-256 does not start with."""
    prefix = hash_prefix(path)
    if prefix is None or os.environ.get(SKIP_HASH_ENV) == "1":
        return
    stat = path.stat()
    digest = _sha256(path, stat.st_size, stat.st_mtime_ns)
    if not digest.startswith(prefix):
        raise WeightsError(
            f"The cached weights file {path} was refused: its SHA-256 begins "
            f"{digest[: len(prefix)]}, but torchvision publishes {prefix} for {path.name}, so it "
            "is not the file torchvision ships (replaced, corrupt or another model's). Way "
            "out: delete it to download the real one; a file you made yourself goes in as a "
            "weights file (",
            Term("weights", str(path)),
            f"), or set {SKIP_HASH_ENV}=1 to skip this check.",
        )


def load_named(arch: str, weights: str) -> tuple[StateDict, Any]:
    """torchvision's named weights: the hub cache under TORCH_HOME, else a download.

    Returns the state dict and the weights' enum entry (its ``meta`` and ``transforms``).
    """
    entry = _weights_enum(arch)[weights]
    cached = cached_weights_path(arch, entry.name)
    if not cached.exists():
        _download(arch, entry, cached)
    check_hash(cached)
    try:
        checkpoint = read_checkpoint(cached)
    except WeightsError as error:
        raise WeightsError(
            f"The cached weights file {cached} could not be read: {error} Delete it to "
            "download it again, or pass ",
            Term("weights", "path/to/file.pth"),
            ".",
        ) from error
    return checkpoint.candidates()[0][1], entry


def _download(arch: str, entry: Any, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:  # written to a temporary file, checked against the hash, then moved into place
        torch.hub.download_url_to_file(entry.url, str(cached), hash_prefix(cached), True)
    except OSError as error:  # URLError, socket and HTTP errors are OSErrors
        raise WeightsError(
            f"The {arch} weights {entry.name} are not in the cache and could not be downloaded "
            f"({error}).\n  expected file: {cached.name}\n  cache folder:  {cached.parent}\n"
            f"Way out: copy {cached.name} (from {entry.url}) into that folder (or set TORCH_HOME "
            "to a folder whose hub/checkpoints holds it), or pass ",
            Term("weights", "path/to/file.pth"),
            f".\n{WAYS_ON}",
        ) from error
    except RuntimeError as error:  # the hash check of the download
        message = f"The download of {entry.url} was corrupt ({error}): try again."
        raise WeightsError(message) from error


@dataclass
class FileWeights:
    """A checkpoint file's state dict (fitted to a network's keys), names and settings."""

    state_dict: StateDict
    found: Found
    class_names: list[str] | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(path: Path, arch: str | None, expected: Collection[str]) -> FileWeights:
    """The state dict in a checkpoint file that fits the ``expected`` keys, and its extras.

    The extras are ``class_names`` and the settings ``input_size``, ``mean``, ``std``,
    ``box_threshold``, ``square`` and ``transform_input`` (googlenet / inception_v3). A
    recorded architecture (``arch``, or ``args.model`` of timm's and torchvision's training
    scripts) must be ``arch``, with or without ``timm:``.
    """
    checkpoint = read_checkpoint(path)
    found = find_state_dict(checkpoint, expected)
    values = checkpoint.values
    if arch is not None:
        _check_arch(_recorded_arch(values), arch, path)
    names = values.get("class_names")
    settings = {key: values[key] for key in SETTINGS if key in values}
    names = unique_names([str(n) for n in names], path) if names is not None else None
    return FileWeights(found.state_dict, found, names, settings)


def _recorded_arch(values: dict[str, Any]) -> str | None:
    arch = values.get("arch")
    if arch is None:
        arch = getattr(values.get("args"), "model", None)
    return arch if isinstance(arch, str) else None


def _check_arch(saved: str | None, arch: str, path: Path) -> None:
    """timm's ``train.py`` records ``resnet18`` for ``timm:resnet18``: both name one network."""
    if saved is None or saved.removeprefix("timm:") == arch.removeprefix("timm:"):
        return
    from .families import architectures

    bare = saved.removeprefix("timm:")
    timm = arch.startswith("timm:") or bare not in architectures()
    choice = f"timm:{bare}" if timm else bare
    raise WeightsError(
        f"Architecture mismatch: {path.name} was saved from {saved!r}, but the model asked for "
        f"is {arch!r}. Choose {choice!r}."
    )
