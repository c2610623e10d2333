"""The widget's model controls: architecture, weights, method, layer, device, input size, square.

They turn into a :class:`~napari_gapcam.models.spec.ModelSpec` (what the CLI uses too). A model
handed over with ``use_model`` is used as it is: the method box shows its method, the layer box
its layer, the device box its device (greyed: it runs where it is); another method picked runs
the same network under that method, and picking its own method again gives the model back as
it was handed over (its method's options, e.g. Score-CAM's ``max_channels``, with it). The
*channels* box (Score-CAM's ``max_channels``): :mod:`.channels`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox

from ..models.spec import ModelSpec
from .channels import Channels
from .controls import narrow
from .names import DEMO, DEMO_ARCH, DEMO_MODEL, FILE, IN_MEMORY, RANDOM, TIMM
from .searchable import make_searchable, select_text, show_start

if TYPE_CHECKING:
    from ..models import GapCamModel

DEFAULT_SIZE = 0  # input size choice: the model's own (224, or the checkpoint's)
LAST_MAPS = ""  # layer choice: the network's last spatial maps
SIZE_PRESETS = (448, 896, 1344)
AUTO_COST = "the exact method where the head allows it, else the first general one"


def method_choices() -> list[tuple[str, str]]:
    """The *method* box's items: each method's name and its cost (``"gradcam — one backward
    pass through the head"``), in the table's order, ``auto`` first; the value is the name."""
    from ..engine.methods import AUTO, METHODS

    return [(f"{AUTO} — {AUTO_COST}", AUTO)] + [
        (f"{name} — {row.cost}", name) for name, row in METHODS.items()
    ]


class ModelControls:
    """The model widgets and what they mean; ``say`` shows a message in the status line."""

    def __init__(self, say: Callable[[str], None]) -> None:
        from ..models import DEMO_WEIGHTS, available_devices, named_weights

        self._say = say
        self._named_weights = named_weights
        self._demo_weights = DEMO_WEIGHTS
        self.handed: GapCamModel | None = None  # from use_model, as handed over
        self._in_memory: dict[str, GapCamModel] = {}  # the handed model under each method
        self._typed_models: list[str] = []  # timm:<name> typed in the model box
        self._custom_sizes: list[int] = []

        self.arch = ComboBox(label="model", choices=self._arch_choices, value="resnet50")
        self.weights = ComboBox(label="weights", choices=self._weight_choices)
        self.weights_file = FileEdit(
            label="weights file", mode="r", filter="*.pt *.pth *.ckpt *.tar"
        )
        self.names_file = FileEdit(label="class names", mode="r", filter="*.json *.txt")
        self.method = ComboBox(label="method", choices=method_choices(), value="auto")
        self._channels = Channels(say)  # Score-CAM's max_channels
        self.channels = self._channels.box
        self.layer = ComboBox(
            label="layer",
            choices=self._layer_choices,
            tooltip="Where the maps are taken: the last spatial maps (the exact CAM where the "
            "head allows), or an earlier stage (finer, Grad-CAM).",
        )
        self.device = ComboBox(label="device", choices=available_devices(), value="auto")
        self.input_size = ComboBox(label="input size", choices=self._size_choices)
        self.square = CheckBox(
            text="square input",
            value=False,
            tooltip="Squash each image to an input-size square (as many training pipelines "
            "do) instead of keeping its aspect ratio. Unticked: the model's own setting.",
        )
        self.weights.value = "IMAGENET1K_V1"
        make_searchable(self.arch.native, "type to search, or timm:<name>", self.pick_arch)
        show_start(self.arch.native)
        self._make_input_size_typeable()
        self._explain_methods()
        self._on_weights_changed()
        self.arch.changed.connect(self._on_arch_changed)
        self.weights.changed.connect(self._on_weights_changed)
        self.method.changed.connect(self._follow_method)

    @property
    def widgets(self) -> list[Any]:
        """In the order they appear in the dock widget."""
        return [
            self.arch,
            self.weights,
            self.weights_file,
            self.names_file,
            self.method,
            self.channels,
            self.layer,
            self.device,
            self.input_size,
            self.square,
        ]

    # ----------------------------------------------------------------- choices
    def _arch_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        """The bundled demo first, torchvision architectures labelled with their family and
        method, typed timm names, and the model handed over with :meth:`use_model`."""
        from ..engine.methods import resolve
        from ..models.families import architectures, family_of

        choices = []
        if self._demo_weights.is_file():
            choices.append((f"{DEMO_MODEL}  ({DEMO_ARCH}, bundled: works offline)", DEMO_MODEL))
        for arch in architectures():
            family = family_of(arch)
            method = resolve("auto", family.exact).label  # what method 'auto' gives it
            choices.append((f"{arch}  ({family.name}, {method})", arch))
        choices += [(f"{name}  (timm)", name) for name in self._typed_models]
        if self.handed is not None:
            choices.append((f"{IN_MEMORY}: {self.handed.arch}", IN_MEMORY))
        return choices

    def _weight_choices(self, _widget: Any = None) -> list[str]:
        arch = self.arch.value if hasattr(self, "arch") else "resnet50"
        if arch == IN_MEMORY:
            return [IN_MEMORY]
        if arch == DEMO_MODEL:
            return [DEMO]
        if str(arch).startswith(TIMM):
            return [FILE, RANDOM]
        demo = [DEMO] if arch == "resnet18" and self._demo_weights.is_file() else []
        return [*self._named_weights(arch), *demo, FILE, RANDOM]

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        """The last maps, then the chosen architecture's stages (none listed for a timm
        model before timm is imported: importing it takes seconds)."""
        arch = self.arch.value if hasattr(self, "arch") else "resnet50"
        if arch == IN_MEMORY and self.handed is not None:
            layer = self.handed.layer
            return [(f"as handed over ({layer or 'last maps'})", LAST_MAPS)]
        return [("last maps (default)", LAST_MAPS)] + [(s, s) for s in stages_of(arch)]

    def _size_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        sizes = [*SIZE_PRESETS, *self._custom_sizes]
        return [("model default", DEFAULT_SIZE)] + [(f"{size} px", size) for size in sizes]

    def _make_input_size_typeable(self) -> None:
        """The input size box also takes a typed short side (e.g. 640)."""
        combo: QComboBox = self.input_size.native
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.setToolTip(
            "Short side of the network input: larger gives finer maps (stride 32: 448 → 14 cells)"
        )
        combo.lineEdit().editingFinished.connect(
            lambda: self.set_input_size_text(combo.lineEdit().text())
        )

    def _explain_methods(self) -> None:
        """Each item's tooltip says its method and cost in full (the box is narrow); the box's
        own tooltip, the chosen one's."""
        from ..engine.methods import METHODS

        combo: QComboBox = self.method.native
        narrow(combo)  # now: the dock's scroll area takes its width from its content once
        for i in range(combo.count()):
            row = METHODS.get(combo.itemData(i))
            tip = row.describe() if row is not None else f"auto: {AUTO_COST}"
            combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)

        def follow(_value: Any = None) -> None:
            combo.setToolTip(combo.itemData(combo.currentIndex(), Qt.ItemDataRole.ToolTipRole))

        self.method.changed.connect(follow)
        follow()

    def set_input_size_text(self, text: str) -> None:
        """Select the input size typed as ``text`` ("640", "640 px" or a listed choice)."""
        combo: QComboBox = self.input_size.native
        listed = combo.findText(text, Qt.MatchFlag.MatchExactly)
        if listed >= 0:
            combo.setCurrentIndex(listed)
            return
        try:
            size = int(text.lower().removesuffix("px").strip())
        except ValueError:
            self._say(f"Input size {text!r} is not a number of pixels (e.g. 640).")
            combo.lineEdit().setText(combo.itemText(combo.currentIndex()))
            return
        if size < 32:
            self._say(f"Input size {size} is too small: at least 32 pixels.")
            combo.lineEdit().setText(combo.itemText(combo.currentIndex()))
            return
        if size not in (*SIZE_PRESETS, *self._custom_sizes):
            self._custom_sizes.append(size)
            self.input_size.reset_choices()
        self.input_size.value = size

    def pick_arch(self, text: str) -> None:
        """Select the first model whose label contains ``text``; a new ``timm:<name>`` is added."""
        text = text.strip()
        if text.startswith(TIMM) and len(text) > len(TIMM):
            name = text.split()[0]
            if name not in self._typed_models:
                self._typed_models.append(name)
                self.arch.reset_choices()
            self.arch.value = name
        elif not select_text(self.arch.native, text):
            self._say(f"No model matches {text!r} (a timm model: timm:<name>).")

    def _on_arch_changed(self, _value: Any = None) -> None:
        current = self.weights.value
        self.weights.reset_choices()
        if current in self.weights.choices:
            self.weights.value = current
        self._rebuild_layers()
        self.device.enabled = self.arch.value != IN_MEMORY  # a handed model runs where it is
        self._follow_method()
        if self.arch.value == DEMO_MODEL:
            self._say(
                f"{DEMO_MODEL}: a {DEMO_ARCH} trained on synthetic shapes. Open File ▸ Open "
                "Sample ▸ GAP-CAM ▸ Synthetic shapes, then press Run."
            )

    def _rebuild_layers(self) -> None:
        """The layer items of the chosen model, in order (``reset_choices`` alone keeps the
        items it had in their places); the layer chosen stays where the model has it."""
        layer = self.layer.value
        with self.layer.changed.blocked():
            self.layer.native.clear()
            self.layer.reset_choices()
            self.layer.value = layer if layer in self.layer.choices else LAST_MAPS

    def _follow_method(self, _value: Any = None) -> None:
        self._channels.follow(self.method.value, self._handed_own())

    def _handed_own(self) -> GapCamModel | None:
        """The handed-over model, when it is chosen under its own method (else None)."""
        if self.handed is None or self.arch.value != IN_MEMORY:
            return None
        return self.handed if self.method.value == self.handed.method else None

    def options(self, method: str | None = None) -> tuple[tuple[str, Any], ...]:
        """The options the dock sets for ``method`` (default: the method box's), as a
        :class:`~napari_gapcam.models.spec.ModelSpec` holds them (Score-CAM's channels)."""
        return self._channels.options(self.method.value if method is None else method)

    def _on_weights_changed(self, _value: Any = None) -> None:
        from_file = self.weights.value == FILE
        self.weights_file.visible = from_file
        self.names_file.visible = from_file

    # ----------------------------------------------------------------- meaning
    def use_model(self, model: GapCamModel) -> None:
        """Use a model built in Python (``load_model``, ``from_module``) from now on: the
        boxes show its method, layer and device."""
        self.handed, self._in_memory = model, {}
        self.arch.reset_choices()
        self.arch.value = IN_MEMORY
        self._rebuild_layers()
        self.device.enabled = False
        device = device_choice(model.device)
        if device in self.device.choices:
            self.device.value = device
        self.method.value = model.method  # last: a method switch then sees this model
        self._follow_method()  # (the same method as before: no change event)

    @property
    def memory_model(self) -> GapCamModel | None:
        """The handed-over model under the method box's method (None: none handed over)."""
        return None if self.handed is None else self.in_memory(self.method.value)

    def in_memory(self, method: str) -> GapCamModel:
        """The handed-over model under ``method`` (made once): the model itself under its own
        method, with its options; else the same network under ``method`` with the dock's
        options (:meth:`options`). A method its head does not allow raises (a ValueError that
        says why)."""
        from ..engine.methods import resolve

        model = self.handed
        name = resolve(method, model.fc is not None, model.head_description).name
        if name == model.method:
            return model
        key = (name, self.options(name))
        if key not in self._in_memory:
            self._in_memory[key] = model.with_method(name, **dict(key[1]))
        return self._in_memory[key]

    def is_handed(self, model: GapCamModel | None) -> bool:
        """``model`` is the handed-over one, under any method."""
        others = self._in_memory.values()
        return model is not None and (model is self.handed or any(m is model for m in others))

    def own_models(self, model: GapCamModel | None) -> dict[str, GapCamModel]:
        """The models *compare methods* uses for some methods when ``model`` made the shown
        result: ``model`` under each other method the dock sets options for (Score-CAM's
        channels), and if ``model`` is the handed-over one, that model under its own method
        (its options, as handed over)."""
        if model is None:
            return {}
        from ..engine.methods import METHODS

        own = {}
        for name in METHODS:
            options = self.options(name)
            if options and name != model.method:
                own[name] = model.with_method(name, **dict(options))
        if self.is_handed(model):
            own[self.handed.method] = self.handed
        return own

    def spec(self) -> ModelSpec:
        """The model chosen, as the CLI and its workers describe one (an in-memory model: its
        identity and method, under the architecture name ``IN_MEMORY``)."""
        if self.arch.value == IN_MEMORY:
            model = self.memory_model
            return ModelSpec(arch=IN_MEMORY, weights=str(id(model)), method=model.method)
        weights: Any = self.weights.value
        names: Any = None
        name = DEMO_ARCH if self.arch.value == DEMO_MODEL else self.arch.value
        if weights == RANDOM:
            weights = None
        elif weights == DEMO:
            weights = str(self._demo_weights)
        elif weights == FILE:
            path = self.weights_file.value
            if path is None or not str(path) or str(path) == ".":
                raise ValueError("Choose a weights file (or pick named weights).")
            weights = str(path)
            named = self.names_file.value
            names = str(named) if named is not None and str(named) not in ("", ".") else None
        return ModelSpec(
            arch=name,
            weights=weights,
            device=self.device.value,
            class_names=names,
            method=self.method.value,
            layer=self.layer.value or None,
            options=self.options(),
        )


def device_choice(device: Any) -> str:
    """The device box's item of a model's device (``cuda`` → ``cuda:0``)."""
    text = str(device)
    return "cuda:0" if text == "cuda" else text


def stages_of(arch: str) -> tuple[str, ...]:
    """The stages an architecture offers (nothing for a model it cannot build here)."""
    if arch == DEMO_MODEL:
        arch = DEMO_ARCH
    try:
        if arch.startswith(TIMM):
            return _timm_stages(arch.removeprefix(TIMM))
        from ..models.families import arch_stages

        return arch_stages(arch)
    except Exception:  # an unknown name: the model box says so when it is loaded
        return ()


def _timm_stages(name: str) -> tuple[str, ...]:
    import sys

    if "timm" not in sys.modules:
        return ()
    import torch

    from ..models.timm_models import timm_stages

    with torch.device("meta"):
        return timm_stages(sys.modules["timm"].create_model(name, pretrained=False))
