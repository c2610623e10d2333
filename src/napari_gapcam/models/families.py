"""torchvision families: one row each says where the last maps are and what the head is.

A row's ``maps`` takes the network to the module giving its last spatial maps (N×K×h×w);
``classifier`` is the dense layer giving the classes. With no ``head``, the network ends in
GAP + ``classifier`` and the CAM is exact; a ``head`` (maps → logits) means Grad-CAM.
Adding a family is one row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..engine._torch import nn, torch
from ..engine.config import ModelConfig
from .errors import UnsupportedModelError
from .heads import Call, GapLinear, Split, describe


def _children(*names: str) -> Callable[[nn.Module], nn.Module]:
    """The named children in order (functions such as ``_transform_input`` wrapped)."""

    def maps(network: nn.Module) -> nn.Module:
        parts = [getattr(network, name) for name in names]
        return nn.Sequential(*(p if isinstance(p, nn.Module) else Call(p) for p in parts))

    return maps


def _inception_kwargs(state_dict: dict | None, settings: dict[str, Any]) -> dict[str, Any]:
    """googlenet / inception_v3: auxiliary heads as in the state dict, ``transform_input``."""
    aux = state_dict is not None and any(k.startswith(("aux", "AuxLogits")) for k in state_dict)
    return {
        "aux_logits": aux,
        "transform_input": bool(settings.get("transform_input", False)),
        "init_weights": state_dict is None,  # no slow init for weights about to be replaced
    }


_GOOGLENET = ("_transform_input", "conv1", "maxpool1", "conv2", "conv3", "maxpool2")
_GOOGLENET += ("inception3a", "inception3b", "maxpool3", "inception4a", "inception4b")
_GOOGLENET += ("inception4c", "inception4d", "inception4e", "maxpool4")
_GOOGLENET += ("inception5a", "inception5b")
_INCEPTION = ("_transform_input", "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1")
_INCEPTION += ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d")
_INCEPTION += ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
_INCEPTION += ("Mixed_7a", "Mixed_7b", "Mixed_7c")
_RESNET = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class Family:
    name: str
    prefixes: tuple[str, ...]  # torchvision builders whose names start with these
    network_class: str  # torchvision's class, to recognise an in-memory network
    maps: Callable[[nn.Module], nn.Module]  # network → image-to-maps module
    classifier: str  # the dense layer giving the classes (state-dict prefix)
    head: Callable[[nn.Module], nn.Module] | None = None  # maps → logits when not GAP + dense
    build_kwargs: Callable[[dict | None, dict[str, Any]], dict[str, Any]] | None = None
    renames: tuple[str, str] | None = None  # (key pattern, replacement): old key names
    stages: tuple[str, ...] = ()  # the main stages offered as layers (``features.*``: each child)
    nhwc: bool = False  # its stages give N×h×w×K (permuted for the maps)

    def renamed(self, state_dict: dict) -> dict:
        """The state dict with old key names (as torchvision's own loader renames them)."""
        if self.renames is None:
            return state_dict
        from .fitting import with_metadata

        pattern, replacement = re.compile(self.renames[0]), self.renames[1]
        renamed = {pattern.sub(replacement, key): value for key, value in state_dict.items()}
        return with_metadata(renamed, state_dict)

    @property
    def exact(self) -> bool:
        """True when the CAM is exact: GAP, then the dense layer ``classifier``."""
        return self.head is None

    def stages_of(self, network: nn.Module) -> tuple[str, ...]:
        """The module names of ``network`` this row offers as layers, in order."""
        from .layers import expand_stages

        return expand_stages(network, self.stages)

    def split(self, network: nn.Module) -> Split:
        features, fc = self.maps(network), network.get_submodule(self.classifier)
        if self.head is None:
            return Split(features, GapLinear(fc), fc, f"{self.name}: GAP → {describe(fc)}")
        head = self.head(network)
        return Split(features, head, None, f"{self.name}'s head ({describe(head)})")


def _densenet(n: nn.Module) -> nn.Module:
    return nn.Sequential(n.features, nn.ReLU())  # torchvision applies this ReLU before the GAP


def _pool_then(*names: str) -> Callable[[nn.Module], nn.Module]:
    """A Grad-CAM head: the network's pooling and classifier (flattened as it does)."""
    return lambda n: nn.Sequential(*(getattr(n, x) if x else nn.Flatten(1) for x in names))


# torchvision's densenet files name a layer's parts 'norm.1' (dots are no longer allowed there)
_DENSENET_KEYS = (
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$",
    r"\1\2",
)
_SHUFFLENET = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
_INCEPTION_ARGS = {"build_kwargs": _inception_kwargs}
_EACH = ("features.*",)  # every block of ``features``
_ODD = ("features.[1357]",)  # Swin, ConvNeXt: the stages between the downsamplings

# fmt: off
FAMILIES = (
    # name, torchvision builders, torchvision class, network → maps, dense layer[, head]
    Family("resnet", ("resnet", "resnext", "wide_resnet"), "ResNet", _children(*_RESNET), "fc", stages=_RESNET[4:]),
    Family("densenet", ("densenet",), "DenseNet", _densenet, "classifier", renames=_DENSENET_KEYS, stages=("features.denseblock*",)),
    Family("efficientnet", ("efficientnet_",), "EfficientNet", _children("features"), "classifier.1", stages=_EACH),
    Family("mobilenet_v2", ("mobilenet_v2",), "MobileNetV2", _children("features"), "classifier.1", stages=_EACH),
    Family("mnasnet", ("mnasnet",), "MNASNet", _children("layers"), "classifier.1", stages=("layers.[89]", "layers.1[0-36]")),
    Family("regnet", ("regnet_",), "RegNet", _children("stem", "trunk_output"), "fc", stages=("trunk_output.block*",)),
    Family("shufflenet_v2", ("shufflenet_v2",), "ShuffleNetV2", _children(*_SHUFFLENET), "fc", stages=_SHUFFLENET[2:]),
    Family("googlenet", ("googlenet",), "GoogLeNet", _children(*_GOOGLENET), "fc", **_INCEPTION_ARGS, stages=("inception*",)),
    Family("inception_v3", ("inception_v3",), "Inception3", _children(*_INCEPTION), "fc", **_INCEPTION_ARGS, stages=("Mixed_*",)),
    Family("swin", ("swin_",), "SwinTransformer", _children("features", "norm", "permute"), "head", stages=_ODD, nhwc=True),
    # Grad-CAM: a norm or an MLP after the pooling
    Family("convnext", ("convnext_",), "ConvNeXt", _children("features"), "classifier.2", _pool_then("avgpool", "classifier"), stages=_ODD),
    Family("mobilenet_v3", ("mobilenet_v3",), "MobileNetV3", _children("features"), "classifier.3", _pool_then("avgpool", "", "classifier"), stages=_EACH),
)
# fmt: on
# torchvision networks with no spatial maps before their head
REFUSED = {
    "vgg": "VGG flattens its 7×7 maps into a 3-layer MLP (no global pooling)",
    "alexnet": "AlexNet flattens its 6×6 maps into a 3-layer MLP (no global pooling)",
    "vit_": "a vision transformer classifies its class token, not pooled spatial maps",
}
REFUSED_CLASSES = {"VGG": "vgg", "AlexNet": "alexnet", "VisionTransformer": "vit_"}


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@cache
def _table() -> dict[str, Family]:
    import torchvision

    names = sorted(torchvision.models.list_models(module=torchvision.models), key=_natural)
    return {
        name: family for family in FAMILIES for name in names if name.startswith(family.prefixes)
    }


def architectures() -> tuple[str, ...]:
    """Every torchvision architecture of the table, family by family."""
    return tuple(_table())


def family_of(arch: str) -> Family:
    """The family of a torchvision architecture; an unknown or refused name is an error."""
    table = _table()
    if arch in table:
        return table[arch]
    for prefix, reason in REFUSED.items():
        if arch.startswith(prefix):
            raise UnsupportedModelError(
                f"{arch} cannot be explained by a CAM or Grad-CAM here: {reason}. Use a network "
                "whose last spatial maps feed a global pooling (e.g. resnet50, convnext_tiny)."
            )
    import difflib

    close = difflib.get_close_matches(arch, list(table), n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    families = ", ".join(f.name for f in FAMILIES)
    raise ValueError(
        f"Unknown architecture {arch!r}.{hint} Choose a torchvision network of the families "
        f"{families} (napari_gapcam.ARCHITECTURES lists them), or 'timm:<name>'."
    )


def family_of_network(network: nn.Module) -> Family | None:
    """The family of an in-memory torchvision network (an instance of its class or a
    subclass), if any; a class of the same name from elsewhere is not torchvision's."""
    import torchvision

    def instance_of(class_name: str) -> bool:
        return isinstance(network, getattr(torchvision.models, class_name))

    for class_name, refused in REFUSED_CLASSES.items():
        if instance_of(class_name):
            family_of(refused)  # raises the refusal
    return next((f for f in FAMILIES if instance_of(f.network_class)), None)


def build(arch: str, num_classes: int, state_dict: dict | None, settings: dict[str, Any]):
    """torchvision's network, random init (the weights are loaded by the caller)."""
    import torchvision

    family = family_of(arch)
    kwargs = family.build_kwargs(state_dict, settings) if family.build_kwargs else {}
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)


def _skeleton(arch: str) -> nn.Module:
    """``arch``'s network built on the meta device where possible (no memory, no init)."""
    try:
        with torch.device("meta"):
            return build(arch, 1000, None, {})
    except NotImplementedError:  # regnet computes its widths from real tensors
        return build(arch, 1000, None, {})


@cache
def expected_keys(arch: str) -> tuple[str, ...]:
    """The state-dict keys of ``arch`` in order."""
    return tuple(_skeleton(arch).state_dict())


@cache
def arch_stages(arch: str) -> tuple[str, ...]:
    """The stages a torchvision architecture offers as layers (``Family.stages``)."""
    return family_of(arch).stages_of(_skeleton(arch))


def guess_arch(state_dict: dict, num_classes: int) -> str | None:
    """The architecture whose parameter names and shapes match the state dict, if any."""
    from .fitting import shapes

    wanted = {key: tuple(value.shape) for key, value in state_dict.items()}
    for arch, family in _table().items():
        if f"{family.classifier}.weight" not in state_dict:
            continue
        try:
            with torch.device("meta"):
                network = build(arch, num_classes, state_dict, {})
        except Exception:  # a builder that needs real tensors (regnet): not a likely guess
            continue
        if shapes(network) == wanted:
            return arch
    return None


def default_config(entry: Any) -> ModelConfig:
    """Input size (the crop), mean and std of torchvision weights' own transforms."""
    transforms = entry.transforms()
    return ModelConfig(
        input_size=int(transforms.crop_size[0]),
        mean=tuple(float(v) for v in transforms.mean),
        std=tuple(float(v) for v in transforms.std),
    )


# every torchvision architecture of the table (``napari_gapcam.ARCHITECTURES``)
ARCHITECTURES = architectures()
