"""timm models (optional): ``forward_features`` gives the maps, ``forward_head`` the logits."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from ..engine._torch import nn, torch
from ..engine.config import ModelConfig
from .errors import UnsupportedModelError
from .fitting import fit, num_classes
from .heads import Split, as_linear, describe_calls, is_gap_linear
from .weights import FileWeights, load_checkpoint


def import_timm() -> Any:
    """timm, or an error saying how to install it."""
    try:
        import timm
    except ImportError as error:
        raise ImportError(
            "timm models need the timm package, which is not installed. Install it with "
            "pip install 'napari-gapcam[timm]' (or pip install timm)."
        ) from error
    return timm


def is_timm_module(network: nn.Module) -> bool:
    return type(network).__module__.startswith("timm.") and hasattr(network, "forward_features")


def classifier_name(network: nn.Module) -> str:
    """The state-dict prefix of the classifier ``get_classifier()`` returns."""
    layer = network.get_classifier()
    return next(name for name, module in network.named_modules() if module is layer)


def build_timm(name: str, path: Path | None) -> tuple[nn.Module, FileWeights | None]:
    """timm's network with the checkpoint's number of classes, its weights loaded."""
    timm = import_timm()
    known = timm.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean {', '.join(f'timm:{c}' for c in close)}?" if close else ""
        raise ValueError(f"Unknown timm model {name!r}.{hint} timm.list_models() lists them.")
    network = timm.create_model(name, pretrained=False)
    if path is None:
        return network.eval(), None
    loaded = load_checkpoint(path, f"timm:{name}", network.state_dict().keys())
    label = f"{path}{loaded.found.describe()}"
    key = f"{classifier_name(network)}.weight"
    classes = num_classes(loaded.state_dict, key, label, f"timm {name}")
    if classes != network.num_classes:
        network.reset_classifier(classes)
    fit(network, loaded.state_dict, f"timm:{name}", label)
    return network.eval(), loaded


def timm_config(network: nn.Module) -> ModelConfig:
    """Input size (short side), mean and std of timm's pretrained config."""
    timm = import_timm()
    data = timm.data.resolve_model_data_config(network)
    fixed = bool(getattr(network, "pretrained_cfg", {}).get("fixed_input_size", False))
    return ModelConfig(
        input_size=int(min(data["input_size"][1:])),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        square=fixed,  # swin, maxvit: one input size, square
        fixed_size=fixed,
    )


class _Features(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.nhwc = getattr(network, "output_fmt", "NCHW") == "NHWC"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.network.forward_features(x)
        return maps.permute(0, 3, 1, 2) if self.nhwc and maps.ndim == 4 else maps


class _Head(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.nhwc = getattr(network, "output_fmt", "NCHW") == "NHWC"

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(maps.permute(0, 2, 3, 1) if self.nhwc else maps)


def split_timm(network: nn.Module, name: str, input_size: int) -> Split:
    """Maps from ``forward_features``, logits from ``forward_head``; exact when GAP + dense."""
    features, head = _Features(network), _Head(network)
    device = next(network.parameters()).device
    with torch.no_grad():
        probe = features(torch.zeros(1, 3, input_size, input_size, device=device))
    if probe.ndim != 4:
        raise UnsupportedModelError(
            f"timm {name} gives tokens ({'×'.join(map(str, probe.shape))}) before its head, "
            "not spatial maps: a CAM or Grad-CAM needs maps that a global pooling averages "
            "(a CNN such as timm:resnet50 or timm:convnext_tiny)."
        )
    description = f"timm {name}'s head ({describe_calls(head, probe)})"
    layer = network.get_classifier()
    exact = as_linear(layer) is not None and is_gap_linear(head, layer, probe.shape[1])
    return Split(features, head, as_linear(layer) if exact else None, description)


def timm_stages(network: nn.Module) -> tuple[str, ...]:
    """The modules timm's ``feature_info`` names (its stages), else its direct children."""
    info = getattr(network, "feature_info", None)
    try:
        names = [entry["module"] for entry in info] if info is not None else []
    except (KeyError, TypeError):
        names = []
    modules = dict(network.named_modules())
    found = tuple(name for name in names if name in modules and name)
    return found or tuple(name for name, _ in network.named_children())


def timm_split_at(
    network: nn.Module, name: str, layer: str, stages: tuple[str, ...], probe: int
) -> Split:
    """``network`` split at ``layer`` (timm's modules and functions that fx cannot trace are
    kept whole, as timm's own feature extraction does)."""
    from .taps import split_with_taps

    try:  # a private module of timm (1.0): without it, everything is traced
        from timm.models import _features_fx

        leaves = tuple(_features_fx.get_notrace_modules())
        functions = tuple(_features_fx.get_notrace_functions())
    except (ImportError, AttributeError):
        leaves, functions = (), ()
    nhwc = getattr(network, "output_fmt", "NCHW") == "NHWC"
    classifier = network.get_classifier()
    return split_with_taps(
        network, layer, f"timm:{name}", classifier, stages, probe,
        leaves=leaves, functions=functions, nhwc=nhwc,
    )  # fmt: skip
