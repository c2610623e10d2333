"""The dock's words: short status lines, the top-5 text, the class list's labels.

A status line stays short (the full text of an error goes to napari's notification, which
also logs it). No Qt here: the session writes these, the dock shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .names import DEMO_MODEL, EACH_TOP, EACH_TOP_NAME, FILE, RANDOM

if TYPE_CHECKING:
    from ..models.spec import ModelSpec
    from .shown import Shown

SHORT = 160  # characters of an error shown in the status line
WAYS_ON = (
    f"Go on with weights '{RANDOM}', model '{DEMO_MODEL}' (on File ▸ Open Sample ▸ GAP-CAM ▸ "
    f"Synthetic shapes) or weights '{FILE}'."
)
RANDOM_NOTE = "Random weights: these class names carry no meaning."
TOP = 5  # classes in the predictions text and first in the class list


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


def class_items(shown: Shown | None) -> list[tuple[str, int]]:
    """The class list: a stack's *each plane's top class*, the top classes with their
    probability (the mean over a stack or the tiles), then every class by index."""
    if shown is None:
        return []
    top = shown.top(TOP)
    head = [(f"{name}  ({shown.mean_label}{100 * p:.1f} %)", index) for index, name, p in top]
    if shown.is_stack:
        head.insert(0, (EACH_TOP_NAME, EACH_TOP))
    first = {index for index, _, _ in top}
    names = shown.result.class_names
    return head + [(f"{i}: {name}", i) for i, name in enumerate(names) if i not in first]
