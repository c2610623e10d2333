"""The result of a run, batch first: N ≥ 1 images' logits and last maps, and their method.

:class:`Result` holds every image's maps (on the host; half precision for stacks: 2048×7×7 ×
2 bytes = 200 KB a ResNet-50 image) and answers for the batch (``topk_mean``, ``top1``,
``cams``); ``result[i]`` is a light :class:`CamResult` view with the single-image API
(``topk``, ``cam``, ``raw_cam``, ``box``, ``mask``, …). Maps come from the method
(:class:`~napari_gapcam.engine.methods.Method`), so a class change costs no forward pass; a costly
method's maps (Grad-CAM: a backward pass) are cached per (image, class) and made in batches.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._torch import F, torch
from .cam import Cam
from .localize import Box, boxes_from_map, largest_region, mask_from_map
from .methods import Method

ClassRef = int | str
GPU_MAPS_MIN = 2**20  # output pixels from which a GPU result's maps are made on the GPU
METHOD_BATCH = 16  # images per backward pass of a costly method
SCALES = ("each", "shared")  # one min-max per map, or one per class over all images
# images per step of a class's range over a stack (a shared-scale class change, on the UI
# thread): their float32 maps stay in the CPU's cache (256 at a time: 3 MB → 100 MB, 10× slower)
RANGE_CHUNK = 8


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


def _method(method: torch.Tensor | Method) -> Method:
    """A method; a tensor is a dense layer's weights (the CAM). Kept where maps are made."""
    return (Cam(method) if isinstance(method, torch.Tensor) else method).on_host()


class Result(Sequence["CamResult"]):
    """N images of one size: ``result[i]`` is image i's :class:`CamResult`.

    ``features`` N×K×h×w (on the host), ``logits`` N×C; ``method`` a
    :class:`~napari_gapcam.engine.methods.Method` or a dense layer's weights (C×K: the CAM);
    ``device`` is where the model ran (a GPU makes big batches of maps there).
    """

    def __init__(
        self,
        features: torch.Tensor,
        logits: torch.Tensor,
        method: torch.Tensor | Method,
        class_names: Sequence[str],
        image_shape: tuple[int, int],
        input_shape: tuple[int, int] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self._parts = [features]  # by batch, joined only when asked for
        self._starts = [0]
        self.logits: np.ndarray = logits.detach().float().cpu().numpy()  # N×C
        self.probabilities: np.ndarray = torch.softmax(torch.from_numpy(self.logits), 1).numpy()
        self.class_names = list(class_names)
        self.image_shape = tuple(int(s) for s in image_shape)
        # the network input's h×w (the image resized): known when a model made the result
        self.input_shape = tuple(int(s) for s in input_shape) if input_shape else None
        self._method = _method(method)
        self._device = device
        self._cache: dict[tuple[int, int], torch.Tensor] = {}  # (image, class) → raw map
        self._ranges: dict[tuple[int, int], tuple[float, float]] = {}  # (class, images) → range

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
        best = ", ".join(f"{name} {p:.3f}" for _, name, p in self.topk_mean(3))
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
        return self._method.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def extend(self, other: Result) -> None:
        """Append the images of ``other`` (the next batch of the same run), in place."""
        self._starts.append(len(self))
        self._parts.append(other.features)
        self.logits = np.concatenate([self.logits, other.logits])
        self.probabilities = np.concatenate([self.probabilities, other.probabilities])

    @staticmethod
    def concatenate(parts: Sequence[Result]) -> Result:
        """One result from the results of consecutive batches (the first is extended)."""
        for part in parts[1:]:
            parts[0].extend(part)
        return parts[0]

    def mean_probabilities(self) -> np.ndarray:
        """Each class's probability averaged over the images (C,)."""
        return self.probabilities.mean(axis=0)

    def topk_mean(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` classes of highest mean probability as ``(index, name, mean p)``."""
        return top_classes(self.mean_probabilities(), self.class_names, k)

    def top1(self) -> list[int]:
        """Each image's most probable class."""
        return [int(i) for i in self.probabilities.argmax(axis=1)]

    def ready(self, image: int, c: ClassRef) -> bool:
        """True when image ``image``'s map of ``c`` costs no network pass."""
        return not self._method.cached or (image, class_index(self.class_names, c)) in self._cache

    def cams(
        self,
        c: ClassRef | Sequence[ClassRef],
        shape: tuple[int, int] | None = None,
        images: Sequence[int] | None = None,
        scale: str = "each",
    ) -> np.ndarray:
        """Normalised maps of ``images`` (default all) at ``shape`` (default the image's): n×h×w.

        ``c`` is one class for every image, or one class per image (e.g. ``result.top1()``).
        ``scale="each"``: each map min-max normalised on its own, as :meth:`CamResult.cam`
        does; ``"shared"``: one min and max per class over every image's raw map, so images
        compare (an image without the object stays cool).
        """
        if scale not in SCALES:
            raise ValueError(f"Unknown scale {scale!r}: use one of {', '.join(SCALES)}.")
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
        if scale == "shared":
            return self._shared_cams(indices, rows, size)
        on_gpu = self._device is not None and self._device.type == "cuda"
        if on_gpu and not self._method.cached and len(indices) * size[0] * size[1] >= GPU_MAPS_MIN:
            return self._cams_on(self._device, indices, rows, size)
        return normalise_each(self.raw(indices, rows), size).numpy()

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

    def _shared_cams(
        self, indices: Sequence[int], rows: Sequence[int], size: tuple[int, int]
    ) -> np.ndarray:
        """Bilinear upsampling, then one min-max per class over all images (zeros if flat)."""
        raw = self.raw(indices, rows)
        up = F.interpolate(raw[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        ranges = torch.tensor([self.raw_range(row) for row in rows], dtype=torch.float32)
        low, span = ranges[:, 0, None, None], (ranges[:, 1] - ranges[:, 0])[:, None, None]
        flat = ~(span > 1e-6 * ranges.abs().amax(dim=1)[:, None, None])
        return up.sub_(low).div_(torch.where(flat, float("inf"), span)).clamp_(0, 1).numpy()

    def object_scores(self, labels: Any, classes: Sequence[ClassRef] | None = None) -> Any:
        """:meth:`CamResult.object_scores` of every image (``labels``: N×H×W, one label image
        per image) in one DataFrame, with an ``image`` column first."""
        import pandas as pd

        if len(labels) != len(self):
            raise ValueError(f"{len(labels)} label images for {len(self)} images: one each.")
        tables = [self[i].object_scores(labels[i], classes) for i in range(len(self))]
        for i, table in enumerate(tables):
            table.insert(0, "image", i)
        return pd.concat(tables, ignore_index=True)

    def raw(self, images: Sequence[int], classes: Sequence[int]) -> torch.Tensor:
        """Raw maps (n×h×w float32, on the host) of ``classes[i]`` for image ``images[i]``."""
        if not self._method.cached:
            return self._method.maps(self._maps(images), classes)
        keys = list(zip(images, classes, strict=True))
        missing = list(dict.fromkeys(key for key in keys if key not in self._cache))
        for start in range(0, len(missing), METHOD_BATCH):
            chunk = missing[start : start + METHOD_BATCH]
            maps = self._method.maps(self._maps([i for i, _ in chunk]), [c for _, c in chunk])
            self._cache.update(zip(chunk, maps.cpu(), strict=True))
        return torch.stack([self._cache[key] for key in keys])

    def _maps(self, indices: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The maps of ``indices`` (n×K×h×w, a new tensor of ``dtype``), without joining the
        batches: a run of images inside one batch is read as one slice of it (stacking them
        image by image made a class's range over 300 ResNet-50 planes take 80 ms, now 5)."""
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


StackResult = Result  # the name the stack API had


class CamResult:
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
    ) -> None:
        batch = Result(features[None], logits[None], method, class_names, image_shape, input_shape)
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
        return self._batch.logits[self._index]

    @property
    def probabilities(self) -> np.ndarray:
        return self._batch.probabilities[self._index]

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
        return self._batch.ready(self._index, c)

    def _raw(self, c: ClassRef) -> torch.Tensor:
        return self._batch.raw([self._index], [self.class_index(c)])[0]

    def raw_cam(self, c: ClassRef) -> np.ndarray:
        """The map at the feature-map resolution (h×w float32), not normalised.

        CAM: ``Σ_k w[c, k]·A_k`` (no ReLU, no bias); Grad-CAM: ``ReLU(Σ_k α_k·A_k)``.
        """
        return self._raw(c).float().cpu().numpy()

    def cam(self, c: ClassRef, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The map upsampled to the image's H×W and min-max normalised to [0, 1] (float32).

        ``shape=(h, w)`` gives the map at an h×w grid over the image instead (e.g. a bounded
        overlay of a huge image); :func:`napari_gapcam.engine.grid.grid_placement` says where its
        cells sit in image pixels.
        """
        size = self.image_shape if shape is None else tuple(int(s) for s in shape)
        return upsample_and_normalise(self._raw(c).float(), size).cpu().numpy()

    def contributions(self, c: ClassRef, n: int | None = 8) -> list[tuple[int, float, np.ndarray]]:
        """The CAM as the sum it is: ``(k, w[c, k], w[c, k]·A_k)`` for the ``n`` channels of the
        largest contribution ``w[c, k] · mean(A_k)`` (its share of the logit), largest first.

        Maps are at the feature grid (h×w); with ``n=None`` every channel, and the maps sum to
        :meth:`raw_cam`. The exact CAM only: Grad-CAM's ReLU makes its map no such sum.
        """
        method = self._batch._method
        if method.relu:
            raise ValueError(
                f"contributions decompose the exact CAM into channels; {method.name}'s ReLU "
                "makes its map no such sum. Load the model with method='cam' (a GAP + dense head)."
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

    def object_scores(self, labels: Any, classes: Sequence[ClassRef] | None = None) -> Any:
        """A pandas DataFrame, one row per labelled object: its mean map per class,
        ``cam_class`` and ``cam_share`` (see :func:`napari_gapcam.engine.objects.object_scores`)."""
        from .objects import object_scores

        return object_scores(self, labels, classes)

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
