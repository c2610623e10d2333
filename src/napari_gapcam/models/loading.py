"""``load_model`` (torchvision families, ``timm:<name>``) and ``from_module`` (in-memory)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..engine._torch import nn, torch
from ..engine.config import ModelConfig
from ..engine.device import resolve_device
from ..engine.methods import check_options
from ..engine.model import GapCamModel
from ..engine.words import ParameterError, Term
from .class_names import NamesArg, resolve_class_names, sidecar_names
from .errors import UnsupportedModelError
from .families import (
    build,
    default_config,
    expected_keys,
    family_of,
    family_of_network,
    guess_arch,
)
from .fitting import fit, num_classes
from .heads import Call, GapLinear, Split, as_linear, describe, num_outputs
from .sidecar import read_sidecar
from .taps import earliest, split_with_taps
from .weights import cached_weights_path, is_named, load_checkpoint, load_named

RANDOM = "none (random init)"
TIMM = "timm:"
CALIBRATED = ".gapcam.json"  # ``<weights>.gapcam.json``: the widget's calibrated box threshold


def sidecar_settings(path: Path) -> dict[str, Any]:
    """``{"box_threshold": τ}`` from ``<weights>.gapcam.json`` beside a checkpoint, if any
    (checked: :func:`~napari_gapcam.models.sidecar.read_sidecar`)."""
    return read_sidecar(path)


def load_model(
    name: str = "resnet50",
    weights: str | os.PathLike | None = "IMAGENET1K_V1",
    device: str | torch.device = "auto",
    class_names: NamesArg = None,
    method: str = "auto",
    layer: str | None = None,
    layers: Sequence[str] | str | None = None,
    **options: Any,
) -> GapCamModel:
    """Build a classifier, load its weights, split it at its last spatial maps (or ``layer``).

    Args:
        name: a torchvision architecture (``ARCHITECTURES``: the ResNet, DenseNet,
            EfficientNet (v1, v2), MobileNet v2/v3, MNASNet, RegNet, ShuffleNet v2, GoogLeNet,
            Inception v3, Swin and ConvNeXt families) or ``"timm:<name>"`` (needs timm).
        weights: a torchvision weight name (``"IMAGENET1K_V1"``, …; read from the torch hub
            cache under ``TORCH_HOME``, downloaded once otherwise, checked against
            torchvision's hash), a path to a checkpoint, or ``None`` for a random init. timm: a
            file or ``None``. A checkpoint is a PyTorch or ``.safetensors`` file holding a
            state dict, at the top or under ``state_dict`` / ``model`` / ``model_state_dict``
            / … (Lightning, timm's and torchvision's training scripts), its keys with or
            without a wrapper's prefix (``module.``, ``model.``, ``_orig_mod.``, …); optional
            keys ``class_names``, ``arch``, ``input_size``, ``mean``, ``std``,
            ``box_threshold``, ``square``, ``transform_input``. No file runs code: only
            tensors and plain data are read (:mod:`~napari_gapcam.models.checkpoints`).
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``.
        class_names: a list, or a ``.json`` (list) / ``.txt`` (one per line) file. Default: the
            weights' own (torchvision's categories, the checkpoint's, or a ``.json``/``.txt``
            file beside the checkpoint), else ImageNet's for 1000 classes, else ``class i``.
        method: ``"auto"`` (the exact CAM where the head is GAP + one dense layer, else
            Grad-CAM), ``"cam"`` (an error for other heads) or any other row of the methods
            table (``gradcam``, ``gradcam++``, ``xgradcam``, ``hirescam``, ``layercam``,
            ``scorecam``, ``ablationcam``, ``eigencam``).
        layer: a module name of the network (``model.stages`` lists the main ones, e.g.
            ``"layer3"``, ``"features.denseblock3"``): the maps are that module's output and the
            head all that follows (:mod:`~napari_gapcam.models.layers`); the CAM is refused
            there unless the rest is GAP + dense. Default: the last spatial maps.
        layers: with ``method="layercam"``, module names whose LayerCAM maps are fused into
            one (:mod:`~napari_gapcam.engine.methods.layercam_fusion`; a list or
            ``"layer3,layer4"``): the network is split at the earliest (or at ``layer``, at or
            before it), the later ones are read inside the head.
        **options: the method's options, as ``model.with_method(method, **options)`` takes
            them (its row's ``options`` in :data:`~napari_gapcam.engine.methods.METHODS`):
            Score-CAM's ``max_channels``, ``batch_size`` and ``precision``, Ablation-CAM's
            ``batch_size``.
            One the method does not take is a ``ValueError`` naming it and the method's
            options, raised before any weights are read.
    """
    options = {**options, **({} if layers is None else {"layers": layers})}
    check_options(method, options, "load_model", PARAMETERS)
    if name.startswith(TIMM):
        args = (weights, device, class_names, method, layer, layers, options)
        return _load_timm(name.removeprefix(TIMM), *args)
    family = family_of(name)
    torch_device = resolve_device(device)
    settings: dict[str, Any] = {}
    weight_names: Sequence[str] | None = None
    entry = None
    if weights is None:
        state_dict, label = None, RANDOM
    elif is_named(name, weights):
        state_dict, entry = load_named(name, str(weights))
        weight_names, label = entry.meta["categories"], str(weights)
        described = f"{label} ({cached_weights_path(name, entry.name)})"
        if family.build_kwargs is not None:  # torchvision's own builders do this for weights
            settings["transform_input"] = True
    else:
        path = Path(weights).expanduser()
        loaded = load_checkpoint(path, name, expected_keys(name))
        state_dict, weight_names, settings = loaded.state_dict, loaded.class_names, loaded.settings
        settings = {**settings, **sidecar_settings(path)}
        weight_names, label = weight_names or sidecar_names(path), str(path)
        described = label + loaded.found.describe()

    what = f"a torchvision {family.name} network (its dense layer is {family.classifier})"
    classifier_key = f"{family.classifier}.weight"
    if state_dict is not None:
        state_dict = family.renamed(state_dict)
        classes = num_classes(state_dict, classifier_key, described, what, expected_keys(name))
    else:
        classes = 1000
    network = build(name, classes, state_dict, settings)
    if state_dict is not None:
        fit(network, state_dict, name, described, lambda sd: guess_arch(sd, classes))
    config = default_config(entry or _default_weights(name)).updated(settings)
    names = resolve_class_names(class_names, weight_names, classes, label)
    stages = family.stages_of(network)
    if layers is not None:
        layer = layer or earliest(network, layers, name, stages)
    if layer is None:
        split = family.split(network.eval())
    else:
        classifier = network.get_submodule(family.classifier)
        probe = _probe(config)
        split = split_with_taps(network, layer, name, classifier, stages, probe, nhwc=family.nhwc)
    args = (torch_device, method, config, layer, stages, options)
    return _assemble(split, names, name, label, *args)


PARAMETERS = tuple(inspect.signature(load_model).parameters)[:-1]  # not the method's options


def default_input_size(name: str, weights: Any = None) -> int:
    """The input size a model will have before it is loaded (no network built): the
    checkpoint's ``input_size`` is only known once the file is read, so a file gives the
    architecture's default (torchvision's weights' crop, 299 for inception_v3; timm's config
    once timm is imported, else 224)."""
    if name.startswith(TIMM):
        import sys

        if "timm" not in sys.modules:  # importing timm takes seconds: not on a UI thread
            return ModelConfig().input_size
        cfg = sys.modules["timm"].models.get_pretrained_cfg(name.removeprefix(TIMM))
        return int(min(cfg.input_size[1:])) if cfg is not None else ModelConfig().input_size
    import torchvision

    named = isinstance(weights, str) and is_named(name, weights)
    enum = torchvision.models.get_model_weights(name)
    return default_config(enum[weights] if named else enum.DEFAULT).input_size


def _default_weights(arch: str) -> Any:
    """torchvision's default weights entry: its transforms are the architecture's defaults."""
    import torchvision

    return torchvision.models.get_model_weights(arch).DEFAULT


def _load_timm(
    name: str,
    weights: str | os.PathLike | None,
    device: str | torch.device,
    class_names: NamesArg,
    method: str,
    layer: str | None = None,
    layers: Sequence[str] | str | None = None,
    options: dict[str, Any] | None = None,
) -> GapCamModel:
    from .timm_models import build_timm, timm_config

    torch_device = resolve_device(device)
    path = None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.suffix and not path.exists():
            raise ParameterError(
                "timm weights are a checkpoint file or ",
                Term("weights", None, note="None"),
                f", got {weights!r} (named timm weights come from the Hugging Face hub: "
                "download the file, pass its path).",
            )
    network, loaded = build_timm(name, path)
    weight_names, settings, label = None, {}, RANDOM
    if loaded is not None and path is not None:
        weight_names, settings = loaded.class_names or sidecar_names(path), loaded.settings
        settings, label = {**settings, **sidecar_settings(path)}, str(path)
    network = network.to(torch_device)
    config = timm_config(network).updated(settings)
    arch = f"{TIMM}{name}"
    if layers is not None:
        from .timm_models import timm_stages

        layer = layer or earliest(network, layers, arch, timm_stages(network))
    split, stages = _split_timm(network, name, config, layer)
    names = resolve_class_names(class_names, weight_names, network.num_classes, label)
    args = (torch_device, method, config, layer, stages, options)
    return _assemble(split, names, arch, label, *args)


def _split_timm(
    network: nn.Module, name: str, config: ModelConfig, layer: str | None
) -> tuple[Split, tuple[str, ...]]:
    from .timm_models import split_timm, timm_split_at, timm_stages

    stages = timm_stages(network)
    if layer is None:
        return split_timm(network, name, min(config.input_size, 224)), stages
    return timm_split_at(network, name, layer, stages, _probe(config)), stages


def _probe(config: ModelConfig) -> int:
    """The side of the blank input that shows a split's maps (small: it runs on load)."""
    return config.input_size if config.fixed_size else min(config.input_size, 128)


def from_module(
    module: nn.Module,
    class_names: NamesArg = None,
    *,
    features: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None = None,
    classifier: nn.Module | None = None,
    method: str = "auto",
    config: ModelConfig | None = None,
    layer: str | None = None,
    layers: Sequence[str] | str | None = None,
    **options: Any,
) -> GapCamModel:
    """Use a network built in Python (its own parameters, on its own device; set to eval).

    torchvision networks of the known families and timm models are split by themselves. Any
    other network needs ``features`` (image N×3×H×W → last maps N×K×h×w: a module or any
    callable, e.g. ``net.extract_features``) and ``classifier``
    (what follows the global average pooling, on the pooled N×K vector: a dense layer gives the
    exact CAM, an MLP Grad-CAM). ``config`` (input size, mean, std; default ImageNet's at
    224, or timm's) says how to preprocess images.

    ``layer`` (a module name of ``module``) splits any network ``torch.fx`` can trace there
    instead: maps before, head after (:mod:`~napari_gapcam.models.layers`; Grad-CAM unless the
    rest is GAP + dense); not with ``features=``. ``layers`` and ``**options``: the method's,
    as :func:`load_model` takes them (checked before the network is split).
    """
    options = {**options, **({} if layers is None else {"layers": layers})}
    check_options(method, options, "from_module", FROM_MODULE_PARAMETERS)
    if layers is not None:
        if features is not None or classifier is not None:
            raise ValueError(
                "layers= splits a network by itself: not with features= and classifier=."
            )
        layer = layer or earliest(module, layers, type(module).__name__, _stages(module))
    module.eval()
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    arch = type(module).__name__
    stages: tuple[str, ...] = ()
    if layer is not None and (features is not None or classifier is not None):
        raise ValueError("Pass layer= or features= and classifier=, not both.")
    if layer is not None:
        split, stages, arch, config = _module_at(module, layer, arch, config)
    elif features is not None or classifier is not None:
        if features is None or classifier is None:
            raise ValueError("Pass both features= (image → maps) and classifier= (after the GAP).")
        if not callable(features) or not callable(classifier):
            raise TypeError("features= and classifier= must be modules or callables.")
        if not isinstance(features, nn.Module):
            features = Call(features)
        fc = as_linear(classifier)
        head = GapLinear(classifier)
        split = Split(features.eval(), head.eval(), fc, f"GAP → {describe(classifier)}")
    elif _is_timm(module):
        from .timm_models import split_timm, timm_config, timm_stages

        config = config or timm_config(module)
        split = split_timm(module, arch, min(config.input_size, 224))
        arch, stages = _timm_arch(module, arch), timm_stages(module)
    elif (family := family_of_network(module)) is not None:
        split, stages = family.split(module), family.stages_of(module)
    else:
        where = type(module).__module__
        raise UnsupportedModelError(
            f"from_module does not know how to split a {where}.{arch} (only torchvision's "
            "networks of the families table and timm's split by themselves): pass features= "
            "(the module or method giving the last spatial maps, N×K×h×w, e.g. "
            "net.extract_features) and classifier= (the dense layer after the global average "
            "pooling, e.g. net._fc)."
        )
    classes = num_outputs(split.head)
    if classes is None:
        raise UnsupportedModelError(f"No dense layer found in {split.description}.")
    names = resolve_class_names(class_names, None, classes, "the module")
    config = config or ModelConfig()
    args = (device, method, config, layer, stages, options)
    return _assemble(split, names, arch, "in memory", *args)


FROM_MODULE_PARAMETERS = tuple(inspect.signature(from_module).parameters)[:-1]


def _stages(module: nn.Module) -> tuple[str, ...]:
    """The main stages of a network given to :func:`from_module` (where ``layers`` may be)."""
    if _is_timm(module):
        from .timm_models import timm_stages

        return tuple(timm_stages(module))
    family = family_of_network(module)
    if family is not None:
        return tuple(family.stages_of(module))
    return tuple(name for name, _ in module.named_children())


def _timm_arch(module: nn.Module, arch: str) -> str:
    return f"{TIMM}{getattr(module, 'default_cfg', {}).get('architecture', arch)}"


def _module_at(
    module: nn.Module, layer: str, arch: str, config: ModelConfig | None
) -> tuple[Split, tuple[str, ...], str, ModelConfig | None]:
    """``from_module(module, layer=...)``: (split, stages, arch, config)."""
    if _is_timm(module):
        from .timm_models import timm_config

        config = config or timm_config(module)
        split, stages = _split_timm(module, arch, config, layer)
        return split, stages, _timm_arch(module, arch), config
    family = family_of_network(module)
    probe = _probe(config or ModelConfig())
    stages = _stages(module)
    if family is not None:
        nhwc, classifier = family.nhwc, module.get_submodule(family.classifier)
    else:
        nhwc, classifier = False, _last_dense(module)
    split = split_with_taps(module, layer, arch, classifier, stages, probe, nhwc=nhwc)
    return split, stages, arch, config


def _last_dense(module: nn.Module) -> nn.Module | None:
    """The last dense layer of a network of no known family: its classifier, if any."""
    dense = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return dense[-1] if dense else None


def _is_timm(module: nn.Module) -> bool:
    from .timm_models import is_timm_module

    return is_timm_module(module)


def _assemble(
    split: Split,
    names: list[str],
    arch: str,
    label: str,
    device: torch.device,
    method: str,
    config: ModelConfig,
    layer: str | None = None,
    stages: Sequence[str] = (),
    options: dict[str, Any] | None = None,
) -> GapCamModel:
    """The model of a split network; ``options``: its method's (``layers`` included)."""
    try:
        features = split.features.to(device, memory_format=torch.channels_last)
    except RuntimeError:  # a 5-D tensor a traced graph keeps (timm's Swin): no layout change
        features = split.features.to(device)
    return GapCamModel(
        features,
        split.head.to(device),
        names,
        arch=arch,
        weights=label,
        device=device,
        fc=split.fc.to(device) if split.fc is not None else None,
        method=method,
        config=config,
        head_description=split.description,
        layer=layer,
        stages=stages,
        method_options=options,
        tap=split.tap,
    )
