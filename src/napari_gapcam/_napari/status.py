"""The widget's words: short status lines, the top-5 text, and the labels that never widen it.

A status line stays short (the full text of an error goes to napari's notification, which
also logs it); labels wrap and are laid out at the dock's width, whatever they hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QSizePolicy

from .model_controls import DEMO_MODEL, FILE, RANDOM

if TYPE_CHECKING:
    from ..models.spec import ModelSpec

SHORT = 160  # characters of an error shown in the status line
WAYS_ON = (
    f"Go on with weights '{RANDOM}', model '{DEMO_MODEL}' (on File ▸ Open Sample ▸ "
    f"Synthetic shapes) or weights '{FILE}'."
)
RANDOM_NOTE = "Random weights: these class names carry no meaning."


def fit_label(label: QLabel) -> None:
    """Wrap ``label``'s text at the dock's width: a long word (a path) never widens the dock."""
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    policy = label.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
    label.setSizePolicy(policy)
    label.setMinimumWidth(1)


def is_missing_named_weights(error: BaseException, spec: ModelSpec) -> bool:
    """True when named weights are not in the torch hub cache (and could not be fetched)."""
    from ..models import WeightsError, cached_weights_path, named_weights

    name, weights = spec.arch, spec.weights
    if not isinstance(error, WeightsError) or not isinstance(weights, str):
        return False
    try:
        return weights in named_weights(name) and not cached_weights_path(name, weights).exists()
    except Exception:  # not a torchvision architecture
        return False


def error_line(error: BaseException, spec: ModelSpec | None = None) -> str:
    """The status line of an error: a few words (the notification holds the full text)."""
    if spec is not None and is_missing_named_weights(error, spec):
        return (
            f"No {spec.weights} weights for {spec.arch} here (offline?). {WAYS_ON} "
            "Full message: the notification."
        )
    text = " ".join(str(error).split())
    if len(text) <= SHORT:
        return f"Error: {text}"
    cut = text[:SHORT].rsplit(" ", 1)[0]
    return f"Error: {cut}… (the notification has the full message)"


def predictions_text(top: list[tuple[int, str, float]], is_stack: bool, random: bool) -> str:
    lines = [f"{100 * p:5.1f} %  {name}" for _, name, p in top]
    if is_stack:
        lines.append("(mean over the planes)")
    if random:
        lines.append(RANDOM_NOTE)
    return "\n".join(lines)


def no_finite_line(empty: int, planes: int) -> str:
    if planes == 1:
        return "The image holds no finite value (all NaN or inf): its predictions mean nothing."
    return f"{empty} of {planes} planes hold no finite value (NaN or inf): their maps mean nothing."
