"""The viewer's camera: ``viewer.scene.camera`` since napari 0.9 (``viewer.camera`` before,
kept there with a deprecation warning on every read)."""

from __future__ import annotations

from typing import Any


def camera(viewer: Any) -> Any:
    """``viewer``'s camera, without napari 0.9's deprecation warning."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
