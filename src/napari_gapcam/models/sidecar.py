"""``<weights>.gapcam.json``: settings saved beside a checkpoint (the widget's calibrated box
threshold, ``{"box_threshold": τ}``), read and checked.

The file must be a JSON object; ``box_threshold`` must be a finite real number in [0, 1] (the
fraction of the map's max a box keeps): ``null``, a string, ``true`` (which ``float`` reads as
1.0), ``NaN`` or ``1e308`` are errors that name the file, never a silent τ.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import WeightsError

SUFFIX = ".gapcam.json"
WAY_OUT = 'It holds {"box_threshold": τ} with 0 ≤ τ ≤ 1: fix it, or delete it.'


def sidecar_path(weights: str | Path) -> Path:
    """``<weights>.gapcam.json`` beside the checkpoint ``weights``."""
    path = Path(weights)
    return path.with_name(path.name + SUFFIX)


def read_sidecar(weights: str | Path) -> dict[str, Any]:
    """The checked settings of the sidecar beside ``weights`` (``{}`` when there is none).

    Raises :class:`WeightsError`, naming the file, when it is unreadable, not a JSON object,
    or its ``box_threshold`` is not a finite number in [0, 1]."""
    path = sidecar_path(weights)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable JSON file ({error}). {WAY_OUT}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} holds {_shown(data)}, not a JSON object. {WAY_OUT}")
    if "box_threshold" not in data:
        return {}
    value = data["box_threshold"]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise WeightsError(f"{path}: box_threshold is {_shown(value)}. {WAY_OUT}")
    return {"box_threshold": float(value)}


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "…"
