"""GAP-CNN models: architectures, weights (named / file / none), class names, device.

A model is split into ``features`` (everything up to the global average pooling; for a
ResNet-50, the 2048 maps of ``layer4``) and ``fc``, the single dense layer after the GAP.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ._torch_guard import block_triton_if_llvm_loaded

block_triton_if_llvm_loaded()

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from .cam import CamResult  # noqa: E402
from .memory import (  # noqa: E402
    InputTooLargeError,
    available_bytes,
    bytes_per_input_pixel,
    check_fits,
    too_large_message,
)
from .preprocess import image_layout, target_size, to_input_tensor  # noqa: E402

# torchvision ResNet-family builders: GAP followed by one dense layer ``fc``.
ARCHITECTURES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
# A resnet18 trained here on synthetic shapes (benchmarks/localization): an offline demo.
DEMO_WEIGHTS = Path(__file__).parent / "data" / "shapes_resnet18.pt"
_FEATURE_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_IMAGENET_CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]


class WeightsError(RuntimeError):
    """Weights that cannot be found, read or fitted to the architecture."""


class GapCamModel:
    """A GAP-CNN split into ``features`` (up to the GAP) and the dense layer ``fc``."""

    def __init__(
        self,
        features: nn.Module,
        fc: nn.Linear,
        class_names: Sequence[str],
        *,
        arch: str,
        weights: str,
        device: torch.device,
        input_size: int = 224,
        box_threshold: float = 0.2,
    ) -> None:
        self.features = features.eval()
        self.fc = fc.eval()
        self.class_names = list(class_names)
        self.arch = arch
        self.weights = weights
        self.device = device
        self.input_size = input_size
        # the threshold to suggest for boxes/masks: the checkpoint's, else Zhou et al.'s 20 %
        self.box_threshold = box_threshold
        self._bytes_per_pixel: float | None = None

    def __repr__(self) -> str:
        return (
            f"GapCamModel(arch={self.arch!r}, weights={self.weights!r}, "
            f"classes={len(self.class_names)}, device={str(self.device)!r})"
        )

    @torch.inference_mode()
    def run(
        self,
        image: Any,
        contrast_limits: Sequence[float] | None = None,
        input_size: int | None = None,
        square: bool = False,
    ) -> CamResult:
        """One forward pass on a 2D grey or RGB(A) image; returns a :class:`CamResult`.

        ``image``: numpy, dask, zarr or any array-like that slices; it is read band by band and
        never copied to float at full size. It is resized so its short side is ``input_size``
        (default: the model's, 224 for ImageNet weights), keeping the aspect ratio;
        ``square=True`` squashes it to a square. An input that would not fit in memory raises
        :class:`~napari_gapcam.memory.InputTooLargeError` before anything runs.
        """
        image_layout(image)
        image_shape = tuple(int(s) for s in image.shape[:2])
        input_size = input_size or self.input_size
        size = target_size(*image_shape, input_size, square)
        self.check_memory(size)
        tensor = to_input_tensor(image, contrast_limits, input_size, square, self.device)
        try:
            maps = self.features(tensor.contiguous(memory_format=torch.channels_last))[0]
        except torch.OutOfMemoryError as error:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            needed = self.bytes_per_input_pixel * size[0] * size[1]
            message = too_large_message(size, needed, available_bytes(self.device), self.device)
            raise InputTooLargeError(message) from error
        maps = maps.contiguous()  # K×h×w
        logits = self.fc(maps.mean(dim=(1, 2)))
        return CamResult(
            maps, logits, self.fc.weight, self.class_names, image_shape, tensor.shape[-2:]
        )

    @property
    def bytes_per_input_pixel(self) -> float:
        """Activation memory per input pixel (an estimate, measured once)."""
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = bytes_per_input_pixel(self.features, self.device)
        return self._bytes_per_pixel

    def check_memory(self, size: tuple[int, int]) -> None:
        """Raise :class:`InputTooLargeError` if an h×w input would need too much memory."""
        check_fits(size, self.bytes_per_input_pixel, self.device)


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


def named_weights(arch: str) -> list[str]:
    """torchvision's weight names for ``arch``, e.g. ``["IMAGENET1K_V1", "IMAGENET1K_V2"]``."""
    return [w.name for w in torchvision.models.get_model_weights(_check_arch(arch))]


def cached_weights_path(arch: str, weights: str) -> Path:
    """Where torchvision's weights API caches named weights: ``$TORCH_HOME/hub/checkpoints/…``."""
    entry = torchvision.models.get_model_weights(_check_arch(arch))[weights]
    filename = os.path.basename(urlparse(entry.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_model(
    name: str = "resnet50",
    weights: str | os.PathLike | None = "IMAGENET1K_V1",
    device: str | torch.device = "auto",
    class_names: Sequence[str] | str | os.PathLike | None = None,
) -> GapCamModel:
    """Build a GAP-CNN and load its weights.

    Args:
        name: a torchvision ResNet-family architecture (see ``ARCHITECTURES``).
        weights: a torchvision weight name (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, …; read
            from the torch hub cache under ``TORCH_HOME``, downloaded once otherwise), a path
            to a checkpoint (a state dict, or a dict holding ``state_dict`` and optionally
            ``class_names``, ``arch``, ``input_size``, ``box_threshold``), or ``None`` for a
            random init.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``.
        class_names: a list, or a ``.json`` (list) / ``.txt`` (one per line) file. Default: the
            weights' own (torchvision's categories, the checkpoint's, or a ``.json``/``.txt``
            file beside the checkpoint), else ImageNet's for 1000 classes, else ``class i``.
    """
    arch = _check_arch(name)
    torch_device = resolve_device(device)
    settings: dict[str, Any] = {}
    checkpoint_names: Sequence[str] | None = None
    if weights is None:
        state_dict, label = None, "none (random init)"
    elif _is_named(arch, weights):
        state_dict, checkpoint_names = _load_named(arch, str(weights))
        label = str(weights)
    else:
        path = Path(weights).expanduser()
        state_dict, checkpoint_names, settings = _load_checkpoint(arch, path)
        checkpoint_names = checkpoint_names or _sidecar_names(path)
        label = str(path)

    num_classes = 1000 if state_dict is None else _num_classes(state_dict, label)
    network = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if state_dict is not None:
        _fit(network, state_dict, arch, label)

    names = _resolve_class_names(class_names, checkpoint_names, num_classes, label)
    features = nn.Sequential(*(getattr(network, layer) for layer in _FEATURE_LAYERS))
    features = features.to(torch_device, memory_format=torch.channels_last)
    return GapCamModel(
        features,
        network.fc.to(torch_device),
        names,
        arch=arch,
        weights=label,
        device=torch_device,
        **settings,
    )


def _check_arch(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {name!r}: choose one of {', '.join(ARCHITECTURES)} "
            "(torchvision ResNet-family networks with a GAP and one dense layer)."
        )
    return name


def _is_named(arch: str, weights: str | os.PathLike) -> bool:
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


def _load_named(arch: str, weights: str) -> tuple[dict, list[str]]:
    """torchvision's weights API: the hub cache under TORCH_HOME, else a download."""
    entry = torchvision.models.get_model_weights(arch)[weights]
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
    return state_dict, list(entry.meta["categories"])


def _load_checkpoint(arch: str, path: Path) -> tuple[dict, list[str] | None, dict[str, Any]]:
    """A state dict, or a dict of ``state_dict`` (+ ``class_names``, ``arch``, settings).

    The settings are the optional ``input_size`` and ``box_threshold``.
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
        if saved_arch is not None and saved_arch != arch:
            raise WeightsError(
                f"Architecture mismatch: {path.name} was saved from {saved_arch!r}, but the "
                f"model asked for is {arch!r}. Choose {saved_arch!r}."
            )
        names = checkpoint.get("class_names")
        if "input_size" in checkpoint:
            settings["input_size"] = int(checkpoint["input_size"])
        if "box_threshold" in checkpoint:
            settings["box_threshold"] = float(checkpoint["box_threshold"])
        checkpoint = checkpoint["state_dict"]
    state_dict = {
        key.removeprefix("module."): value
        for key, value in checkpoint.items()
        if isinstance(value, torch.Tensor)
    }
    if not state_dict:
        raise WeightsError(f"{path} holds no tensors: it is not a state dict.")
    return state_dict, (list(names) if names is not None else None), settings


def _num_classes(state_dict: dict, label: str) -> int:
    weight = state_dict.get("fc.weight")
    if weight is None or weight.ndim != 2:
        raise WeightsError(
            f"{label} has no dense layer 'fc.weight': it is not the state dict of a torchvision "
            "ResNet-family network (a GAP followed by one dense layer named fc)."
        )
    return int(weight.shape[0])


def _shapes(network: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in network.state_dict().items()}


def _guess_arch(state_dict: dict, num_classes: int) -> str | None:
    """The architecture whose parameter names and shapes match the state dict, if any."""
    wanted = {key: tuple(value.shape) for key, value in state_dict.items()}
    for arch in ARCHITECTURES:
        with torch.device("meta"):
            network = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        if _shapes(network) == wanted:
            return arch
    return None


def _fit(network: nn.Module, state_dict: dict, arch: str, label: str) -> None:
    """Load the state dict, turning key or shape mismatches into one clear error."""
    expected, given = _shapes(network), {k: tuple(v.shape) for k, v in state_dict.items()}
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
        guess = _guess_arch(state_dict, _num_classes(state_dict, label))
        hint = f" It looks like a {guess} state dict: choose {guess!r}." if guess else ""
        raise WeightsError(f"The weights {label} do not fit {arch}: {'; '.join(problems)}.{hint}")
    network.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    )


def _sidecar_names(path: Path) -> list[str] | None:
    for suffix in (".json", ".txt"):
        sidecar = path.with_suffix(suffix)
        if sidecar.is_file():
            return _read_names(sidecar)
    return None


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise WeightsError(f"Class-names file not found: {path}")
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise WeightsError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(names, list):
            raise WeightsError(f"{path} must hold a JSON list of class names.")
        return [str(name) for name in names]
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _resolve_class_names(
    given: Sequence[str] | str | os.PathLike | None,
    from_weights: Sequence[str] | None,
    num_classes: int,
    label: str,
) -> list[str]:
    if isinstance(given, (str, os.PathLike)):
        names, source = _read_names(Path(given).expanduser()), str(given)
    elif given is not None:
        names, source = [str(name) for name in given], "class_names"
    elif from_weights is not None:
        names, source = list(from_weights), label
    elif num_classes == len(_IMAGENET_CATEGORIES):
        return list(_IMAGENET_CATEGORIES)
    else:
        return [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise WeightsError(
            f"Class-name count mismatch: {source} gives {len(names)} names, but the model's "
            f"dense layer has {num_classes} classes."
        )
    return names
