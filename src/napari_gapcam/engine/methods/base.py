"""The base of every method: a class's raw map is a weighted sum of the last maps.

    M_c(x, y) = act(Σ_k α_k(c) · A_k(x, y))

``A`` holds the K last spatial maps of each image (N×K×h×w); a method supplies the channel
weights ``α`` (N×K, one class per image) and says whether a ReLU follows (``act``) and whether
its maps are worth caching (``cached``: a network pass each). The CAM's ``α`` is the dense
layer's row (:mod:`.cam`); Grad-CAM's the spatial mean of the gradient (:mod:`.gradcam`).
What a method allows (exact, tiles, …) is its row in the table of :mod:`..methods`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._torch import torch
from . import METHODS, MethodInfo, check_options

CLASS_CHUNK = 64  # classes per call of ``maps`` when every class's map is asked for


class Method:
    """Turns maps and one class per image into raw maps; see the module's formula."""

    name = "method"  # the row of the table (``METHODS[name]``)
    relu = False  # act: ReLU at the maps' resolution, or none
    cached = False  # True when a map costs a network pass: results keep it

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> Method:
        """This method on ``network`` (its dense layer's weights, its head, …); ``options``
        are the method's parameters (e.g. Ablation-CAM's ``batch_size``)."""
        raise NotImplementedError

    @classmethod
    def refuse_unknown(cls, options: dict[str, Any]) -> None:
        """Refuse parameters this method does not take (its row's ``options``), naming them
        (:func:`~napari_gapcam.engine.methods.check_options`)."""
        check_options(cls.name, options)

    @property
    def info(self) -> MethodInfo:
        return METHODS[self.name]

    @property
    def label(self) -> str:
        return self.info.label

    def weights(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """The channel weights ``α`` (N×K) of ``classes[i]`` for image i's maps."""
        raise NotImplementedError

    def maps(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """Raw maps (N×h×w) of ``classes[i]`` from each image's maps ``features`` (N×K×h×w)."""
        alpha = self.weights(features, classes).to(features.device, features.dtype)
        raw = torch.einsum("nk,nkhw->nhw", alpha, features)
        return torch.relu(raw) if self.relu else raw

    def class_maps(self, features: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Every class's raw map of each image: N×C×h×w (for tiles, stitched all at once)."""
        n = len(features)
        out = []
        for start in range(0, num_classes, CLASS_CHUNK):
            classes = range(start, min(start + CLASS_CHUNK, num_classes))
            repeated = features.repeat_interleave(len(classes), dim=0)
            maps = self.maps(repeated, [c for _ in range(n) for c in classes])
            out.append(maps.view(n, len(classes), *maps.shape[-2:]))
        return torch.cat(out, dim=1)

    def __call__(self, features: torch.Tensor, c: int) -> torch.Tensor:
        """One image's raw map (h×w) of class ``c`` from its maps (K×h×w)."""
        return self.maps(features[None], [c])[0]

    def on_host(self) -> Method:
        """This method where the host's maps are made (the CAM copies its weights there)."""
        return self

    def on(self, device: torch.device) -> Method:
        """This method where maps on ``device`` are made."""
        return self
