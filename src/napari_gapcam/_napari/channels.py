"""The dock's *channels* box: the ``max_channels`` of a method that takes it (Score-CAM).

Score-CAM runs the network once per channel (ResNet-50: 2048), so the box bounds its cost: N
keeps each image's N most active channels; "all" (the value 0) keeps every one. The box lists a
few numbers and takes a typed one. It shows only while the method box's method takes
``max_channels`` (the method's row's ``options``, never its name). Under a handed-over model's
own method it shows that model's ``max_channels``, greyed: that model runs as it was handed over,
with its other options too (``batch_size``, ``precision``, which the dock has no box for); the
user's own number comes back with any other method or model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox
from qtpy.QtWidgets import QComboBox

if TYPE_CHECKING:
    from ..models import GapCamModel

ALL_CHANNELS = 0  # every channel (shown as "all")
PRESETS = (32, 128, 512)
MAX_CHANNELS = "max_channels"  # the option the box sets
TIP = (
    "Score-CAM runs one forward pass per channel (ResNet-50: 2048, about 30 s an image on a "
    "CPU): keep each image's N most active channels (type a number), or all."
)
HANDED_TIP = f"{TIP} Greyed: the model handed over runs with its own (set in Python)."


class Channels:
    """The box (``box``) and the number the user chose (``chosen``); ``say`` shows a message."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._typed: list[int] = []
        self.chosen = ALL_CHANNELS
        self.box = ComboBox(
            label="channels", choices=self._choices, value=ALL_CHANNELS, tooltip=TIP
        )
        self.box.visible = False  # 'auto' takes none (hidden before the box has a parent)
        combo: QComboBox = self.box.native
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.lineEdit().editingFinished.connect(lambda: self.set_text(combo.lineEdit().text()))
        self.box.changed.connect(self._on_changed)

    def _choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        numbers = sorted({*PRESETS, *self._typed})
        return [("all", ALL_CHANNELS)] + [(str(n), n) for n in numbers]

    def _on_changed(self, value: int) -> None:
        if self.box.enabled:  # not a handed-over model's number
            self.chosen = value

    def _show(self, value: int) -> None:
        """Select ``value``, listed first if it is new (the items rebuilt: in order)."""
        if value not in self.box.choices:
            self._typed.append(value)
            with self.box.changed.blocked():
                self.box.native.clear()
                self.box.reset_choices()
        self.box.value = value

    def set_text(self, text: str) -> None:
        """Select the number typed as ``text`` ("64", or "all")."""
        text = text.strip().lower()
        try:
            value = ALL_CHANNELS if text == "all" else int(text)
        except ValueError:
            value = -1
        if value < 0 or (value == 0 and text != "all"):
            self._say(f"Channels {text!r}: type a number of channels (e.g. 64), or all.")
            combo = self.box.native
            combo.lineEdit().setText(combo.itemText(combo.currentIndex()))
            return
        self._show(value)

    def follow(self, method: str, own: GapCamModel | None) -> None:
        """Show the box for ``method`` if it takes ``max_channels``; ``own``: the handed-over
        model when it is chosen under its own method (its number shown, greyed), else None."""
        from ..engine.methods import METHODS

        row = METHODS.get(method)
        takes = row is not None and MAX_CHANNELS in row.options
        if self.box.native.isHidden() == takes:  # (``visible`` is False before the dock shows)
            self.box.visible = takes
        with self.box.changed.blocked():
            if own is not None:
                self._show(getattr(own.method_object, MAX_CHANNELS, None) or ALL_CHANNELS)
            else:
                self._show(self.chosen)
        self.box.tooltip = TIP if own is None else HANDED_TIP
        self.box.enabled = own is None

    def options(self, method: str) -> tuple[tuple[str, Any], ...]:
        """The options the box sets for ``method``, as a model spec holds them:
        ``(("max_channels", N),)`` where it takes them and N channels are chosen, else ``()``."""
        from ..engine.methods import taken_options

        given = () if self.chosen == ALL_CHANNELS else ((MAX_CHANNELS, self.chosen),)
        return taken_options(method, given)
