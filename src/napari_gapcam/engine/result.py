"""The result of a run, batch first: N ≥ 1 images' logits and last maps, and their method.

:class:`Result` holds every image's maps (on the host; half precision for stacks: 200 KB a
ResNet-50 image at 224²); ``result[i]`` is a light :class:`CamResult` view of image i; both
answer the result protocol (:mod:`.protocol`). A class change costs no forward pass (a costly
method's maps are made in batches and kept: :mod:`.costly_maps`)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._torch import torch
from .costly_maps import CostlyMaps
from .kept_inputs import KeptInputs
from .maps import (
    ClassRef,
    check_scale,
    class_index,
    normalise_by,
    normalise_each,
    relative,
    upsample,
    upsample_and_normalise,
)
from .methods.base import Method
from .methods.cam import Cam
from .protocol import ManyImages, OneImage
from .switch import SwitchMethods, SwitchOne
from .words import ParameterError, Term

GPU_MAPS_MIN = 2**20  # output pixels from which a GPU result's maps are made on the GPU
# images per step of a class's range over a stack (on the UI thread): maps in the CPU's cache
RANGE_CHUNK = 8  # (256 at a time: 3 MB → 100 MB, 10× slower)


class Result(SwitchMethods, ManyImages, Sequence["CamResult"]):
    """N images of one size: ``result[i]`` is image i's :class:`CamResult`. ``features`` N×K×h×w
    (on the host), logits N×C; ``method`` a :class:`~.methods.base.Method` or a dense layer's
    weights (C×K: the CAM); ``device`` where the model ran (a GPU makes big batches of maps
    there). ``probabilities`` and ``topk`` are the mean over the images (each image's:
    ``image_probabilities``, N×C, and ``result[i]``); map answers are batch first; ``inputs``
    the normalised inputs, kept for a method that reruns the network on them (Score-CAM)."""

    def __init__(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        method: torch.Tensor | Method,
        class_names: Sequence[str],
        image_shape: tuple[int, int],
        input_shape: tuple[int, int] | None = None,
        device: torch.device | None = None,
        inputs: torch.Tensor | KeptInputs | None = None,
    ) -> None:
        self.inputs = KeptInputs(inputs) if isinstance(inputs, torch.Tensor) else inputs
        self._parts, self._starts = [features], [0]  # by batch, joined only when asked for
        self.image_logits: np.ndarray = logits.detach().float().cpu().numpy()  # N×C
        self.image_probabilities: np.ndarray = torch.softmax(
            torch.from_numpy(self.image_logits), 1
        ).numpy()
        self.class_names = list(class_names)
        self.image_shape = tuple(int(s) for s in image_shape)
        # the network input's h×w (the image resized): known when a model made the result
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape else None
        # a tensor is a dense layer's weights (the CAM); the method is kept where maps are made
        self._method = (Cam(method) if isinstance(method, torch.Tensor) else method).on_host()
        self._device = device
        self._costly = CostlyMaps(self._method)  # a costly method's maps made so far
        self._ranges: dict[tuple[int, int], tuple[float, float]] = {}  # (class, images) → range

    @classmethod
    def join(cls, images: Sequence[CamResult]) -> Result:
        """One batch of one-image results of one size (pages met one by one), so their maps
        can share a scale (``cams(..., scale="shared")``). Made with their method."""
        first = images[0]
        return cls(
            torch.stack([image.features for image in images]),
            torch.from_numpy(np.stack([image.logits for image in images])),
            first._batch._method,
            first.class_names,
            first.image_shape,
            first.input_shape,
            inputs=KeptInputs.join([(image._batch.inputs, image._index) for image in images]),
        )

    # ------------------------------------------------------------------ the batch
    def __len__(self) -> int:
        return self._starts[-1] + len(self._parts[-1])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"Image {index} is out of range: the stack has {len(self)} images.")
        return CamResult.view(self, index % len(self))

    def __repr__(self) -> str:
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk(3))
        return f"Result({len(self)} images of {self.image_shape}, mean top-3: {best})"

    @property
    def features(self) -> torch.Tensor:
        """Every image's maps, N×K×h×w (joined once when asked for)."""
        if len(self._parts) > 1:
            self._parts, self._starts = [torch.cat(self._parts)], [0]
        return self._parts[0]

    @property
    def map_shape(self) -> tuple[int, int]:
        """The maps' h×w (feature cells), without joining the batches (``features`` does)."""
        return tuple(int(s) for s in self._parts[0].shape[-2:])  # type: ignore[return-value]

    @property
    def method(self) -> str:
        """``"CAM"`` or ``"Grad-CAM"``."""
        return self._method.label

    method_info = property(lambda self: self._method.info)
    decomposable = property(lambda self: self._method.info.decomposition)

    @property
    def probabilities(self) -> np.ndarray:
        """Each class's probability averaged over the images (C,)."""
        return self.image_probabilities.mean(axis=0)

    def extend(self, other: Result) -> None:
        """Append the images of ``other`` (the next batch of the same run), in place."""
        self._starts.append(len(self))
        self._parts.append(other.features)
        if self.inputs is not None:  # the inputs a method reruns the network on
            self.inputs = self.inputs.extend(other.inputs)
        self.image_logits = np.concatenate([self.image_logits, other.image_logits])
        probabilities = (self.image_probabilities, other.image_probabilities)
        self.image_probabilities = np.concatenate(probabilities)

    @staticmethod
    def concatenate(parts: Sequence[Result]) -> Result:
        """One result from the results of consecutive batches (the first is extended)."""
        for part in parts[1:]:
            parts[0].extend(part)
        return parts[0]

    def top1(self) -> list[int]:
        """Each image's most probable class."""
        return [int(i) for i in self.image_probabilities.argmax(axis=1)]

    def is_ready(self, c: ClassRef) -> bool:
        """True when every image's map of ``c`` costs no network pass."""
        index = self.class_index(c)
        return not self._method.cached or all(self._costly.has(i, index) for i in range(len(self)))

    def _ready(self, image: int, c: int) -> bool:
        return not self._method.cached or self._costly.has(image, c)

    # ------------------------------------------------------------------ maps, batch first
    def raw_cam(self, c: ClassRef) -> np.ndarray:
        """Every image's raw map of ``c``, N×h×w float32 (see :meth:`CamResult.raw_cam`)."""
        index = self.class_index(c)
        return self.raw(range(len(self)), [index] * len(self)).numpy()

    def cams(
        self,
        c: ClassRef | Sequence[ClassRef],
        shape: tuple[int, int] | None = None,
        images: Sequence[int] | None = None,
        scale: str = "each",
    ) -> np.ndarray:
        """Normalised maps of ``images`` (default all) at ``shape`` (default the image's): n×h×w.

        ``c``: one class for every image, or one per image (e.g. ``result.top1()``). ``scale``
        (see :mod:`.maps`): ``"each"`` as :meth:`CamResult.cam`; ``"shared"`` one min and max
        per class over every image; ``"relative"`` each map times ``p_c / p_top`` on its image;
        ``"raw"`` the raw maps upsampled."""
        check_scale(scale)
        indices = list(range(len(self))) if images is None else [int(i) for i in images]
        classes = (
            list(c) if isinstance(c, Sequence) and not isinstance(c, str) else [c] * len(indices)
        )
        if len(classes) != len(indices):
            raise ValueError(f"{len(classes)} classes for {len(indices)} images: give one each.")
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        if not indices:
            return np.zeros((0, *size), np.float32)
        rows = [class_index(self.class_names, k) for k in classes]
        if scale == "raw":
            return upsample(self.raw(indices, rows), size).numpy()
        if scale == "shared":
            ranges = torch.tensor([self.raw_range(row) for row in rows], dtype=torch.float32)
            return normalise_by(self.raw(indices, rows), size, ranges).numpy()
        on_gpu = self._device is not None and self._device.type == "cuda"
        if on_gpu and not self._method.cached and len(indices) * size[0] * size[1] >= GPU_MAPS_MIN:
            maps = self._cams_on(self._device, indices, rows, size)
        else:
            maps = normalise_each(self.raw(indices, rows), size).numpy()
        if scale == "relative":
            maps *= relative(self.image_probabilities[indices], rows)[:, None, None]
        return maps

    def metadata(self) -> dict[str, Any]:
        shapes = {"input_shape": list(self.input_shape or ()), "map_shape": list(self.map_shape)}
        return {"images": len(self), "method": self.method, **shapes}

    def raw_range(self, c: ClassRef) -> tuple[float, float]:
        """The lowest and highest value of class ``c``'s raw map over every image."""
        index = class_index(self.class_names, c)
        key = (index, len(self))  # a result that grew has a new range
        if key not in self._ranges:
            low, high = np.inf, -np.inf
            for start in range(0, len(self), RANGE_CHUNK):
                images = range(start, min(start + RANGE_CHUNK, len(self)))
                raw = self.raw(images, [index] * len(images))
                low, high = min(low, float(raw.min())), max(high, float(raw.max()))
            self._ranges[key] = (low, high)
        return self._ranges[key]

    # ------------------------------------------------------------------ raw maps
    def raw(self, images: Sequence[int], classes: Sequence[int]) -> torch.Tensor:
        """Raw maps (n×h×w float32, on the host) of ``classes[i]`` for image ``images[i]``."""
        if not self._method.cached:
            return self._method.maps(self._maps(images), classes)
        return self._costly.raw(images, classes, self._maps, self.inputs)

    def _maps(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The maps of ``indices`` (n×K×h×w, a new ``dtype`` tensor), consecutive images of a
        batch read as one slice (a class's range over 300 ResNet-50 planes: 80 ms → 5)."""
        runs: list[list[int]] = []  # [batch, first, end] of each run of consecutive images
        for i in indices:
            part = bisect.bisect_right(self._starts, i) - 1
            j = i - self._starts[part]
            if runs and runs[-1][0] == part and runs[-1][2] == j:
                runs[-1][2] = j + 1
            else:
                runs.append([part, j, j + 1])
        maps = [self._parts[part][a:b].to(dtype, copy=True) for part, a, b in runs]
        return maps[0] if len(maps) == 1 else torch.cat(maps)

    def _cams_on(
        self,
        device: torch.device,
        indices: Sequence[int],
        rows: Sequence[int],
        size: tuple[int, int],
        chunk_bytes: int = 2**28,
    ) -> np.ndarray:
        """:meth:`cams` computed on ``device`` chunk by chunk (≤ ``chunk_bytes`` of maps each):
        the features go there, the finished maps come back straight into the result."""
        out = np.empty((len(indices), *size), np.float32)
        method = self._method.on(device)  # the CAM's weights are sent once per device
        step = max(1, chunk_bytes // (4 * size[0] * size[1]))
        for i in range(0, len(indices), step):
            chosen = list(indices[i : i + step])
            features = self._maps(chosen, self._parts[0].dtype).to(device).float()
            raw = method.maps(features, list(rows[i : i + step]))
            torch.from_numpy(out[i : i + len(chosen)]).copy_(normalise_each(raw, size))
        return out


class CamResult(SwitchOne, OneImage):
    """One image of a :class:`Result`: its logits, maps and every map of a class.

    ``CamResult(features K×h×w, logits C, method, class_names, image_shape)`` makes a
    one-image result; ``result[i]`` makes a view of image i without copying anything.
    """

    def __init__(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        method: torch.Tensor | Method,
        class_names: Sequence[str],
        image_shape: tuple[int, int],
        input_shape: tuple[int, int] | None = None,
        inputs: torch.Tensor | None = None,  # 3×H×W, for a method that needs it
    ) -> None:
        batch = Result(features[None], logits[None], method, class_names, image_shape,
                       input_shape, inputs=None if inputs is None else inputs[None])  # fmt: skip
        self._batch, self._index = batch, 0

    @classmethod
    def view(cls, batch: Result, index: int) -> CamResult:
        """Image ``index`` of ``batch``."""
        view = cls.__new__(cls)
        view._batch, view._index = batch, index
        return view

    def __repr__(self) -> str:
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk(3))
        return f"CamResult({self.method}, image_shape={self.image_shape}, top-3: {best})"

    @property
    def features(self) -> torch.Tensor:
        """The image's last maps, K×h×w."""
        return self._batch._maps([self._index])[0]

    @property
    def map_shape(self) -> tuple[int, int]:
        """The map's h×w (feature cells), with no copy of the maps."""
        return self._batch.map_shape

    @property
    def logits(self) -> np.ndarray:
        return self._batch.image_logits[self._index]

    @property
    def probabilities(self) -> np.ndarray:
        return self._batch.image_probabilities[self._index]

    @property
    def class_names(self) -> list[str]:
        return self._batch.class_names

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self._batch.image_shape

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        return self._batch.input_shape

    @property
    def method(self) -> str:
        """``"CAM"`` or ``"Grad-CAM"``."""
        return self._batch.method

    @property
    def method_info(self) -> Any:
        return self._batch.method_info

    @property
    def decomposable(self) -> bool:
        return self._batch.decomposable

    def metadata(self) -> dict[str, Any]:
        return {**self._batch.metadata(), "images": 1}

    def is_ready(self, c: ClassRef) -> bool:
        """True when class ``c``'s map costs no more network pass (CAM, or Grad-CAM done)."""
        return self._batch._ready(self._index, self.class_index(c))

    def _version(self) -> int:
        return len(self._batch)  # a growing stack changes a shared scale

    def _raw(self, c: ClassRef) -> torch.Tensor:
        return self._batch.raw([self._index], [self.class_index(c)])[0]

    def raw_cam(self, c: ClassRef) -> np.ndarray:
        """The map at the feature-map resolution (h×w float32), not normalised.

        CAM: ``Σ_k w[c, k]·A_k`` (no ReLU, no bias); Grad-CAM: ``ReLU(Σ_k α_k·A_k)``.
        """
        return self._raw(c).float().cpu().numpy()

    def cam(self, c: ClassRef, shape: tuple[int, int] | None = None, scale: str = "each"):
        """The map upsampled to the image's H×W and min-max normalised to [0, 1] (float32).

        ``shape=(h, w)`` gives the map at an h×w grid over the image instead (e.g. a bounded
        overlay of a huge image); :meth:`placement` says where its cells sit in image pixels.
        ``scale="shared"``: scaled by the class's range over every image of the batch;
        ``"relative"``: times ``p_c / p_top`` (a class the network does not see stays cool);
        ``"raw"``: not scaled (classes compare: see :mod:`.maps`).
        """
        check_scale(scale)
        if scale in ("shared", "raw"):
            return self._batch.cams(c, shape, [self._index], scale)[0]
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        heat = upsample_and_normalise(self._raw(c).float(), size).cpu().numpy()
        if scale == "relative":
            heat *= relative(self.probabilities[None], [self.class_index(c)])[0]
        return heat

    def contributions(self, c: ClassRef, n: int | None = 8) -> list[tuple[int, float, np.ndarray]]:
        """The CAM as the sum it is: ``(k, w[c, k], w[c, k]·A_k)`` for the ``n`` channels of the
        largest contribution ``w[c, k] · mean(A_k)`` (its share of the logit), largest first.

        Maps are at the feature grid (h×w); with ``n=None`` every channel, and the maps sum to
        :meth:`raw_cam`. Methods whose map is a weighted sum of channels only (the CAM):
        Grad-CAM's ReLU makes its map no such sum.
        """
        method = self._batch._method
        if not self.decomposable:
            raise ParameterError(
                f"contributions decompose the exact CAM into channels; {method.label}'s ReLU "
                "makes its map no such sum. Load the model with ",
                Term("method", "cam"),
                " (a GAP + dense head).",
            )
        features = self.features
        index = self.class_index(c)
        weight = method.weights(features[None], [index])[0].float()  # K
        share = weight * features.mean(dim=(1, 2))
        order = torch.argsort(share, descending=True, stable=True)
        chosen = order if n is None else order[: max(0, int(n))]
        return [
            (int(k), float(weight[k]), (weight[k] * features[k]).numpy()) for k in chosen.tolist()
        ]
