"""Sample images: real photos shipped with scikit-image, and a synthetic shapes scene."""

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


def shapes() -> LayerData:
    """A synthetic scene for the bundled demo model (resnet18, weights "shapes demo")."""
    from ..synthetic import sample_scene

    return [(sample_scene(), {"name": "synthetic shapes", "rgb": True}, "image")]
