"""The class activation map (Zhou et al., CVPR 2016) and the result of one forward pass.

The result is method-agnostic: it asks a *method* (a callable ``(features, c) → h×w map``) for
the raw map of a class: :class:`Cam` here, :class:`~napari_gapcam.gradcam.GradCam` for other heads.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import numpy as np

from ._torch_guard import block_triton_if_llvm_loaded

block_triton_if_llvm_loaded()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from .localize import Box, boxes_from_map, largest_region, mask_from_map  # noqa: E402

ClassRef = int | str
Method = Callable[[torch.Tensor, int], torch.Tensor]  # (features K×h×w, class) → raw map h×w


def class_activation_map(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """CAM of one class from the last conv block's maps.

    ``M_c(x, y) = Σ_k w[c, k] · A_k(x, y)``

    ``features`` holds the maps ``A_k`` (K×h×w), ``weight`` is ``w[c, :]`` (K,), the dense
    layer's row for class ``c``. No ReLU, bias or normalisation: since the network's logit is
    ``z_c = Σ_k w[c, k] · mean_xy A_k + b_c``, the map's mean plus the bias is the logit.
    """
    return torch.einsum("k,khw->hw", weight, features)


class Cam:
    """The CAM method: the dense layer's weights ``w`` (C×K), one weighted sum per class."""

    name = "CAM"

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.detach()
        self._host: tuple[int, Cam] | None = None  # (weights' version, copy on the host)

    def __call__(self, features: torch.Tensor, c: int) -> torch.Tensor:
        return class_activation_map(features, self.weight[c])

    def on_host(self) -> Cam:
        """This method with its weights on the host in float32. Copying them off a GPU waits
        for the GPU (8 MB for ResNet-50: 4 ms on an H200), so the copy is kept and made again
        only after the weights change in place (fine-tuning the head in a notebook)."""
        if self.weight.device.type == "cpu" and self.weight.dtype == torch.float32:
            return self
        version = self.weight._version
        if self._host is None or self._host[0] != version:
            self._host = (version, Cam(self.weight.float().cpu()))
        return self._host[1]


def normalise_each(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) upsampling of n maps (n×h×w) to ``size``, then min-max
    each to [0, 1].

    A constant map (up to float rounding), or a 1-pixel target, gives zeros, never NaN.
    """
    up = F.interpolate(raw[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    span = up.amax(dim=(1, 2), keepdim=True) - low
    flat = ~(span > 1e-6 * raw.abs().amax(dim=(1, 2), keepdim=True).float())
    span = torch.where(flat, float("inf"), span)  # (x − low) / inf = 0; no mask indexing,
    # which would wait for a GPU
    return up.sub_(low).div_(span)


def upsample_and_normalise(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """:func:`normalise_each` of one h×w map."""
    return normalise_each(raw[None], size)[0]


def class_index(class_names: Sequence[str], c: ClassRef) -> int:
    """Index of a class given by index (int) or by name (exact, else case-insensitive)."""
    count = len(class_names)
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        index = int(c)
        if not 0 <= index < count:
            raise IndexError(
                f"Class index {index} is out of range: the model has {count} classes "
                f"(0…{count - 1})."
            )
        return index
    if isinstance(c, str):
        if c in class_names:
            return list(class_names).index(c)
        lowered = [name.lower() for name in class_names]
        if c.lower() in lowered:
            return lowered.index(c.lower())
        close = difflib.get_close_matches(c, class_names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise KeyError(f"Unknown class name {c!r}.{hint} See result.class_names for all.")
    raise TypeError(f"A class is an index (int) or a name (str), got {type(c).__name__}.")


def top_classes(
    probabilities: np.ndarray, class_names: Sequence[str], k: int
) -> list[tuple[int, str, float]]:
    """The ``k`` most probable classes as ``(index, name, probability)``, best first."""
    order = np.argsort(-probabilities, kind="stable")[: max(0, k)]
    return [(int(i), class_names[i], float(probabilities[i])) for i in order]


class CamResult:
    """One forward pass: logits and the last conv block's maps, kept on the model's device.

    Every map is computed from the cached maps, so switching class costs no forward pass (a
    Grad-CAM class costs one backward pass through the head, then is cached).
    ``method`` is the dense layer's weights (C×K, for the CAM) or a method object.
    """

    def __init__(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        method: torch.Tensor | Method,
        class_names: Sequence[str],
        image_shape: tuple[int, int],
        input_shape: tuple[int, int] | None = None,
    ) -> None:
        self.features = features  # K×h×w, on the model's device
        self._method: Method = Cam(method) if isinstance(method, torch.Tensor) else method
        self._cache: dict[int, torch.Tensor] = {}  # raw maps of costly methods (Grad-CAM)
        self.logits: np.ndarray = logits.detach().float().cpu().numpy()
        self.probabilities: np.ndarray = torch.softmax(logits.float(), 0).cpu().numpy()
        self.class_names: list[str] = list(class_names)
        self.image_shape = tuple(int(s) for s in image_shape)
        # the network input's h×w (the image resized): known when the model made the result
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape else None

    def __repr__(self) -> str:
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk(3))
        return f"CamResult({self.method}, image_shape={self.image_shape}, top-3: {best})"

    @property
    def method(self) -> str:
        """``"CAM"`` or ``"Grad-CAM"``."""
        return getattr(self._method, "name", type(self._method).__name__)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, c: ClassRef) -> int:
        """Index of a class given by index (int) or by name (exact, else case-insensitive)."""
        return class_index(self.class_names, c)

    def topk(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes as ``(index, name, probability)``, best first."""
        return top_classes(self.probabilities, self.class_names, k)

    def is_ready(self, c: ClassRef) -> bool:
        """True when class ``c``'s map costs no more network pass (CAM, or Grad-CAM done)."""
        return isinstance(self._method, Cam) or self.class_index(c) in self._cache

    def _raw(self, c: ClassRef) -> torch.Tensor:
        index = self.class_index(c)
        if isinstance(self._method, Cam):  # one GEMV: not worth caching
            return self._method(self.features, index)
        if index not in self._cache:
            self._cache[index] = self._method(self.features, index)
        return self._cache[index]

    def raw_cam(self, c: ClassRef) -> np.ndarray:
        """The map at the feature-map resolution (h×w float32), not normalised.

        CAM: ``Σ_k w[c, k]·A_k`` (no ReLU, no bias); Grad-CAM: ``ReLU(Σ_k α_k·A_k)``.
        """
        return self._raw(c).float().cpu().numpy()

    def cam(self, c: ClassRef, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The map upsampled to the image's H×W and min-max normalised to [0, 1] (float32).

        ``shape=(h, w)`` gives the map at an h×w grid over the image instead (e.g. a bounded
        overlay of a huge image); :func:`napari_gapcam.grid.grid_placement` says where its
        cells sit in image pixels.
        """
        raw = self._raw(c).float()
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        return upsample_and_normalise(raw, size).cpu().numpy()

    def mask(self, c: ClassRef, threshold: float = 0.2) -> np.ndarray:
        """Largest connected region where ``cam(c) ≥ threshold · max`` (bool H×W)."""
        return mask_from_map(self.cam(c), threshold)

    def box(self, c: ClassRef, threshold: float = 0.2) -> Box | None:
        """Bounding box ``(y0, x0, y1, x1)`` (half-open, pixels) of :meth:`mask`.

        ``None`` when the map is constant (no region stands out).
        """
        return largest_region(self.cam(c), threshold)[1]

    def boxes(self, c: ClassRef, threshold: float = 0.2, min_area: int = 1) -> list[Box]:
        """Boxes of every region of at least ``min_area`` pixels, largest first."""
        return boxes_from_map(self.cam(c), threshold, min_area=min_area)
