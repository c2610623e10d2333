"""Sample images: real photos shipped with scikit-image."""

from __future__ import annotations

from typing import Any

from skimage import data

LayerData = list[tuple[Any, dict[str, Any], str]]


def chelsea() -> LayerData:
    """Chelsea the cat (RGB, 300×451), an ImageNet-like photo."""
    return [(data.chelsea(), {"name": "chelsea (cat)", "rgb": True}, "image")]


def coffee() -> LayerData:
    """A cup of coffee (RGB, 400×600)."""
    return [(data.coffee(), {"name": "coffee", "rgb": True}, "image")]
