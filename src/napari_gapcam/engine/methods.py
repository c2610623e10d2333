"""The base of every method: a class's raw map is a weighted sum of the last maps.

    M_c(x, y) = act(Σ_k α_k(c) · A_k(x, y))

``A`` holds the K last spatial maps of each image (N×K×h×w); a method supplies the channel
weights ``α`` (N×K, one class per image) and says whether a ReLU follows (``act``) and whether
its maps are worth caching (``cached``: a network pass each). The CAM's ``α`` is the dense
layer's row (:mod:`~napari_gapcam.engine.cam`); Grad-CAM's the spatial mean of the gradient
(:mod:`~napari_gapcam.engine.gradcam`). Adding a method is one small subclass in one file.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._torch import torch


class Method:
    """Turns maps and one class per image into raw maps; see the module's formula."""

    name = "method"
    relu = False  # act: ReLU at the maps' resolution, or none
    cached = False  # True when a map costs a network pass: results keep it

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """The channel weights ``α`` (N×K) of ``classes[i]`` for image i's maps."""
        raise NotImplementedError

    def maps(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """Raw maps (N×h×w) of ``classes[i]`` from each image's maps ``features`` (N×K×h×w)."""
        alpha = self.weights(features, classes).to(features.device, features.dtype)
        raw = torch.einsum("nk,nkhw->nhw", alpha, features)
        return torch.relu(raw) if self.relu else raw

    def __call__(self, features: torch.Tensor, c: int) -> torch.Tensor:
        """One image's raw map (h×w) of class ``c`` from its maps (K×h×w)."""
        return self.maps(features[None], [c])[0]

    def on_host(self) -> Method:
        """This method where the host's maps are made (the CAM copies its weights there)."""
        return self

    def on(self, device: torch.device) -> Method:
        """This method where maps on ``device`` are made."""
        return self
