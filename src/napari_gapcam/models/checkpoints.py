"""Checkpoint files, read without running code: the tensors and plain data they hold.

Training tools write weights in many layouts: a plain state dict; ``{"state_dict": sd}``
(Lightning ``.ckpt``, timm's ``train.py``, with ``arch`` and an ``argparse.Namespace``);
``{"model": sd}`` (torchvision's reference scripts); ``{"model_state_dict": sd}``; Hugging Face
``model.safetensors``. A PyTorch file is unpickled with ``weights_only=True``: tensors, plain
Python data and a short list of harmless types (:data:`HARMLESS`: ``Namespace``, paths, numpy
numbers and arrays) are rebuilt; anything else is refused *before* it is built, so a file
cannot run code. :class:`Checkpoint` keeps every flat dict of tensors the file holds
(:attr:`Checkpoint.tensors`) and its top-level plain values (class names, ``arch``, settings).
"""

from __future__ import annotations

import argparse
import pathlib
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..engine._torch import torch
from .errors import WeightsError

StateDict = dict[str, torch.Tensor]
SAFETENSORS = (".safetensors",)
# where training tools put the state dict, most likely first (a dict of tensors at the top
# level comes before all of them)
STATE_DICT_KEYS = (
    "state_dict",  # Lightning, timm train.py, many scripts
    "model",  # torchvision's reference training scripts
    "model_state_dict",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "state_dict_ema",  # timm train.py --model-ema
    "model_ema",
)


def _numpy_globals() -> list[Any]:
    """numpy scalars, arrays and dtypes, under numpy 2's and numpy 1's module names."""
    multiarray = getattr(np, "_core", None) or np.core
    found: list[Any] = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        function = getattr(multiarray.multiarray, name)
        found += [function, (function, f"numpy.core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


# Types that training scripts store next to the weights and that build nothing but data
HARMLESS: list[Any] = [
    argparse.Namespace,  # timm train.py, torchvision's references: the command-line args
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.WindowsPath,
    pathlib.PureWindowsPath,
    *_numpy_globals(),  # metrics saved as numpy numbers, arrays
]


@dataclass
class Checkpoint:
    """What a weights file holds: flat dicts of tensors by where they were, and plain values.

    ``tensors`` maps a location (``""`` for the top level, ``"state_dict"``,
    ``"model/ema"``…) to a dict of tensors; ``values`` holds the top-level entries that are
    not tensors (``class_names``, ``arch``, ``input_size``…).
    """

    path: Path
    tensors: dict[str, StateDict]
    values: dict[str, Any] = field(default_factory=dict)

    def candidates(self) -> list[tuple[str, StateDict]]:
        """The dicts of tensors, most likely state dict first."""

        def rank(where: str) -> tuple[int, int]:
            head = where.split("/")[0]
            known = STATE_DICT_KEYS.index(head) + 1 if head in STATE_DICT_KEYS else 99
            return (0 if where == "" else known, where.count("/"))

        return sorted(self.tensors.items(), key=lambda item: rank(item[0]))


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a PyTorch (``.pth``, ``.pt``, ``.ckpt``, ``.tar``, ``.bin``) or safetensors file.

    Raises :class:`WeightsError` naming the file, why it was refused and the way out.
    """
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {path}")
    raw = _read_safetensors(path) if path.suffix.lower() in SAFETENSORS else _read_torch(path)
    if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return Checkpoint(path, {"": _str_keys(raw)})
    if not isinstance(raw, dict):
        raise WeightsError(
            f"{path} holds a {type(raw).__name__}, not a state dict. Save the weights with "
            "torch.save(model.state_dict(), path)."
        )
    tensors = dict(_tensor_dicts(raw, ""))
    if not tensors:
        raise WeightsError(
            f"{path} holds no dict of tensors (its top-level keys: {_some(raw)}): it is not a "
            "state dict. Save the weights with torch.save(model.state_dict(), path)."
        )
    values = {k: v for k, v in raw.items() if isinstance(k, str) and not _holds_tensors(v)}
    return Checkpoint(path, tensors, values)


def _read_torch(path: Path) -> Any:
    safe = getattr(torch.serialization, "safe_globals", None)  # torch ≥ 2.5
    try:
        if safe is None:
            return torch.load(path, map_location="cpu", weights_only=True)
        with safe(HARMLESS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not _unsafe_globals(path, error):  # not a pickle at all: text, an image, truncated
            raise WeightsError(_unreadable(path, error)) from error
        raise WeightsError(_refusal(path, error)) from error
    except Exception as error:
        raise WeightsError(_unreadable(path, error)) from error


def _unreadable(path: Path, error: Exception) -> str:
    if isinstance(error, pickle.UnpicklingError):  # torch's text says to unpickle unsafely
        detail = [
            line for line in str(error).splitlines() if line.startswith(("Unsupported", "invalid"))
        ]
        reason = "its bytes are no PyTorch pickle" + (f": {detail[0]}" if detail else "")
    else:
        reason = f"{type(error).__name__}: {str(error)[:200]}"
    return (
        f"{path} is not a readable PyTorch checkpoint or safetensors file ({reason}). "
        "Expected a file saved with torch.save(model.state_dict(), path) or a .safetensors file."
    )


def _unsafe_globals(path: Path, error: Exception) -> list[str]:
    """The globals a pickle would build: read from a zip file's opcodes (nothing runs), or
    from torch's refusal of a legacy file. Empty: the file is no pickle."""
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        names = []
    return names or re.findall(r"GLOBAL ([\w.]+)", str(error))


def _refusal(path: Path, error: Exception) -> str:
    """Why a file was refused (the objects it would build), and the way out."""
    names = _unsafe_globals(path, error)
    names = [n for n in names if n not in {_qualname(t) for t in HARMLESS}]
    names.sort(key=lambda n: not n.startswith(("torchvision.models", "timm.models")))
    whole = any(n.startswith(("torch.nn.modules", "torchvision.models", "timm.")) for n in names)
    what = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    what = what or str(error).splitlines()[-1][:200]
    kind = "a whole pickled model" if whole else "Python objects that could run code when loaded"
    return (
        f"{path} was refused: it holds {kind} ({what}). napari-gapcam reads only tensors and "
        "plain data from a file, never code. Way out: if you trust the file, save its weights "
        "alone, e.g. torch.save(model.state_dict(), 'weights.pth') (for a training checkpoint: "
        "torch.save(torch.load(path, weights_only=False)['state_dict'], 'weights.pth')), or "
        "save them as .safetensors."
    )


def _qualname(thing: Any) -> str:
    if isinstance(thing, tuple):
        return thing[1]
    return f"{thing.__module__}.{thing.__qualname__}"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as error:  # pragma: no cover - a dependency
        raise WeightsError(
            f"{path} is a safetensors file: pip install safetensors to read it."
        ) from error
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: "
            f"{str(error)[:200]})."
        ) from error


def _str_keys(tensors: dict) -> StateDict:
    return (
        tensors
        if all(isinstance(k, str) for k in tensors)
        else {str(k): v for k, v in tensors.items()}
    )


def _holds_tensors(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, dict):
        return any(_holds_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensors(v) for v in value)
    return False


def _tensor_dicts(value: Any, where: str, depth: int = 0) -> Iterator[tuple[str, StateDict]]:
    """Every dict (up to 3 levels down) whose values are all tensors, with its location."""
    if not isinstance(value, dict) or depth > 3:
        return
    if value and all(isinstance(v, torch.Tensor) for v in value.values()):
        if all(isinstance(k, str) for k in value):
            yield where, value  # itself: its _metadata (module versions) stays
        return
    for key, child in value.items():
        if isinstance(key, str):
            yield from _tensor_dicts(child, f"{where}/{key}" if where else key, depth + 1)


def _some(mapping: dict, n: int = 6) -> str:
    keys = [repr(k) for k in list(mapping)[:n]]
    return ", ".join(keys) + (", …" if len(mapping) > n else "")
