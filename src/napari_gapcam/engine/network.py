"""The network: a classifier split into its maps and its head, with its method and config.

A :class:`Network` holds what a run needs of a model: ``features`` (image → last spatial maps),
``head`` (maps → logits), ``fc`` (the dense layer after the GAP when the head is GAP + dense),
the method that turns maps into a class's map (a row of :mod:`.methods`), the preprocessing
(:class:`~.config.ModelConfig`), the forward pass (batch norms folded, CUDA graphs) and its
memory cost. The drivers (:mod:`.batch`, :mod:`.tiles`) run it; :class:`~.model.GapCamModel`
adds their one-call conveniences on top.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from ._torch import nn, torch
from .config import ModelConfig
from .fuse import fold_batch_norms
from .graphs import GraphedForward, autocast
from .memory import (
    InputTooLargeError,
    available_bytes,
    bytes_per_input_pixel,
    check_fits,
    too_large_message,
)
from .methods import MethodInfo, resolve
from .methods.base import Method
from .methods.layercam_fusion import Taps
from .words import ParameterError, Term


class Network:
    """A classifier split into ``features`` (image → last spatial maps) and ``head`` (maps →
    logits); ``fc`` is the dense layer after the GAP when the head is GAP + dense (else None).

    ``method`` names a row of the methods table (``"auto"``: the exact CAM where the head is
    GAP + dense, else Grad-CAM), ``method_options`` its parameters; ``config`` holds the input
    size, mean/std and the suggested box threshold. ``tap`` (from the models side, where the
    network was split at a named layer): names of later layers → a head that also gives their
    outputs (:class:`~.methods.layercam_fusion.Taps`, for LayerCAM's ``layers=[…]``).
    """

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        class_names: Sequence[str],
        *,
        arch: str,
        weights: str,
        device: torch.device,
        fc: nn.Linear | None = None,
        method: str = "auto",
        config: ModelConfig | None = None,
        head_description: str = "the head",
        layer: str | None = None,
        stages: Sequence[str] = (),
        method_options: dict[str, Any] | None = None,
        tap: Callable[[Sequence[str]], Taps] | None = None,
    ) -> None:
        self.features = features.eval()
        self.head = head.eval()
        self.fc = fc.eval() if fc is not None else None
        self.head_description = head_description
        self.layer = layer  # the module whose output the maps are; None: the last maps
        self.stages = tuple(stages)  # the layers offered (the network's main stages)
        self.class_names = list(class_names)
        self.arch = arch
        self.weights = weights
        self.device = device
        self.config = config or ModelConfig()
        self._tap = tap
        self._use(method, dict(method_options or {}))
        self._bytes_per_pixel: float | None = None
        self._cells: dict[tuple[int, int], tuple[int, int]] = {}  # input h×w → map h×w
        self._fast: tuple[nn.Module, nn.Module] | None = None  # (features, folded copy)
        self._graphed: tuple[tuple, GraphedForward] | None = None  # ((folded, head), graph)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(arch={self.arch!r}, weights={self.weights!r}, "
            f"method={self.method!r}, classes={len(self.class_names)}, "
            f"device={str(self.device)!r})"
        )

    def _use(self, method: str, options: dict[str, Any]) -> None:
        info = resolve(method, self.fc is not None, self.head_description)
        self.method = info.name
        self._method: Method = info.load().for_network(self, **options)

    def with_method(self, method: str, **options: Any) -> Network:
        """This network with another method (a name of :mod:`.methods`' table; ``options``
        its parameters, e.g. Ablation-CAM's ``batch_size``): the same modules, weights, config
        and class names, nothing reloaded or copied. A finished result switches too, with no
        forward pass: ``result.with_method(name)``."""
        other = copy.copy(self)
        other._use(method, options)
        return other

    def taps(self, layers: Sequence[str] | str) -> Taps:
        """The head that also gives the outputs of ``layers`` (modules at or after the split;
        a list, or one comma-separated string), for LayerCAM's fusion."""
        if self._tap is None:
            where = f"at {self.layer}" if self.layer else "at its last maps (no named layer)"
            raise ParameterError(
                Term("layers", layers),
                f" needs a network split at a named layer, at or before the earliest of them; "
                f"this one ({self.arch}) is split {where} by its family's table. Load it with ",
                Term("layers", layers),
                " (it is then split at the earliest).",
            )
        return self._tap(layers)

    @property
    def method_info(self) -> MethodInfo:
        """The method's row: what it allows (exact, tiles, decomposition, …) and its cost."""
        return self._method.info

    @property
    def method_label(self) -> str:
        """``"CAM"`` or ``"Grad-CAM"``."""
        return self._method.label

    @property
    def method_object(self) -> Method:
        """The method that turns maps into a class's raw map."""
        return self._method

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def box_threshold(self) -> float:
        """The threshold to suggest for boxes/masks: the checkpoint's, else Zhou et al.'s 20 %."""
        return self.config.box_threshold

    # ------------------------------------------------------------------ the forward pass
    def _folded(self) -> nn.Module:
        """``features`` with the batch norms folded into the convolutions (made once)."""
        if self._fast is None or self._fast[0] is not self.features:
            self._fast = (self.features, fold_batch_norms(self.features))
        return self._fast[1]

    def forward_features(self, tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The maps of a batch of normalised inputs (N×3×h×w), with batch norms folded.

        Running out of memory becomes :class:`InputTooLargeError`.
        """
        try:
            return self._folded()(tensor.contiguous(memory_format=torch.channels_last))
        except torch.OutOfMemoryError as error:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            needed = self.bytes_per_input_pixel * size[0] * size[1] * len(tensor)
            message = too_large_message(size, needed, available_bytes(self.device), self.device)
            raise InputTooLargeError(message) from error

    def forward_batch(
        self,
        tensor: torch.Tensor,
        dtype: torch.dtype | None = None,
        graph: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps and logits of a batch of normalised inputs (N×3×h×w), under ``dtype``
        autocast (``None``: full precision). ``graph=True`` (a CUDA device) replays the pass
        from a CUDA graph (:mod:`~napari_gapcam.engine.graphs`): the outputs are then
        overwritten by the next graphed batch, so copy them first (on the same stream)."""

        def forward(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # the batch's own size: a graph keeps this function for later batch shapes
            maps = self.forward_features(batch, tuple(batch.shape[-2:]))
            return maps, self.head(maps.float())

        if not graph:
            with autocast(tensor.device, dtype):
                return forward(tensor)
        modules = (self._folded(), self.head)  # a graph replays these very modules
        if self._graphed is None or self._graphed[0] != modules:
            self._graphed = (modules, GraphedForward(forward))
        return self._graphed[1](tensor, dtype)

    def map_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The maps' h×w for an input of ``size`` (measured once per size on a blank input:
        padding and pooling make it no simple division for every network)."""
        size = (int(size[0]), int(size[1]))
        if size not in self._cells:
            with torch.inference_mode():
                probe = torch.zeros(1, 3, *size, device=self.device)
                cells = self.forward_features(probe, size).shape[-2:]
            self._cells[size] = (int(cells[0]), int(cells[1]))
        return self._cells[size]

    # ------------------------------------------------------------------ memory
    @property
    def bytes_per_input_pixel(self) -> float:
        """Activation memory per input pixel (an estimate, measured once)."""
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = bytes_per_input_pixel(
                self.features, self.device, self.input_size
            )
        return self._bytes_per_pixel

    def check_memory(self, size: tuple[int, int], batch: int = 1) -> None:
        """Raise :class:`InputTooLargeError` if ``batch`` h×w inputs would need too much memory."""
        check_fits(size, self.bytes_per_input_pixel * batch, self.device)
