"""Score-CAM (Wang et al., CVPR Workshops 2020): channels weighted by the score of what they mask.

    H_k = norm(up(A_k)),   s_k = y_c(X ∘ H_k),   α_k = exp(s_k) / Σ_j exp(s_j),
    M_c(x, y) = ReLU(Σ_k α_k · A_k(x, y))

``A_k`` is channel k of the image's last maps, ``up`` bilinear upsampling to the network
input's H×W with ``align_corners=True`` (torch's ``UpsamplingBilinear2d``), ``norm`` min-max
over the upsampled map, ``(u − min) / (max − min + 1e-8)``, ``X`` the normalised input tensor
and ``y_c`` the class's logit of the masked input: one forward pass per channel, batched. This
is pytorch-grad-cam's ``ScoreCAM`` (with ``ClassifierOutputTarget``), which the tests compare
with. The paper differs: its score is the class's softmax probability over the classes less a
baseline input's, ``α_k = f_c(X ∘ H_k) − f_c(X_b)``, with no softmax over the channels (its
reference code also sums the *upsampled* maps ``H_k``, at the input's resolution).

One pass gives every class's logit, so each image's scores (K×C) are kept by the result
(:mod:`..kept_inputs`): another class's map reruns nothing. Channels whose map is flat mask the
input to zeros; they share one pass. ``max_channels=N`` keeps each image's N channels of the
highest mean activation (the sum and the softmax run over those only); ``batch_size`` masked
inputs go through the network at a time (default: 16 at 224² on a CPU; on a GPU as many as
fit, up to 32). ``precision`` is the masked passes' autocast (:mod:`..precision`): ``"auto"``
(default) runs them in bfloat16 where the device computes it natively (a CPU with AMX, a CUDA
GPU), 3× faster on such a CPU, the normalised map within 0.01 of float32's (tests: within
0.02 of pytorch-grad-cam's); ``"fp32"`` matches pytorch-grad-cam to 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .._torch import F, torch
from ..precision import AUTO, autocast_dtype, check_precision
from .base import Method

EPS = 1e-8  # as pytorch-grad-cam's min-max of the masks


class ChannelScores(NamedTuple):
    """One image's kept channels (K' indices into its maps) and their masked inputs' logits."""

    channels: torch.Tensor  # K' int64
    logits: torch.Tensor  # K'×C float32, on the host


class ScoreCam(Method):
    """Score-CAM on ``network``: ``α_k = softmax_k(y_c(X ∘ norm(up(A_k))))``, then
    ``M_c = ReLU(Σ_k α_k · A_k)`` (the module's formula); maps cached by results.

    ``progress``, when set, is called as ``progress(done, total)`` after each batch of masked
    inputs (raise there to cancel)."""

    name = "scorecam"
    relu = True
    cached = True

    def __init__(
        self,
        network: Any,
        max_channels: int | None = None,
        batch_size: int | None = None,
        precision: str = AUTO,
    ) -> None:
        self.network = network
        self.max_channels = _positive("max_channels", max_channels)
        self.batch_size = _positive("batch_size", batch_size)
        check_precision(precision, allow_auto=True)
        self.precision = precision
        self.progress: Callable[[int, int], None] | None = None
        self._channels: int | None = None

    @classmethod
    def for_network(cls, network: Any, **options: Any) -> ScoreCam:
        cls.refuse_unknown(options)
        return cls(network, **options)

    # ------------------------------------------------------------------ its cost
    @property
    def channels(self) -> int:
        """The network's channels K at the maps (the dense layer's inputs, else measured)."""
        if self._channels is None:
            fc = self.network.fc
            if fc is not None:
                self._channels = int(fc.in_features)
            else:
                size = (self.network.input_size,) * 2
                with torch.inference_mode():
                    probe = torch.zeros(1, 3, *size, device=self.network.device)
                    self._channels = int(self.network.forward_features(probe, size).shape[1])
        return self._channels

    def passes(self, n_images: int) -> int:
        """Forward passes to explain ``n_images`` images (every class of each from them):
        ``n · min(K, max_channels)`` at most (flat channels share one pass)."""
        kept = min(self.channels, self.max_channels or self.channels)
        return int(n_images) * kept

    # ------------------------------------------------------------------ the method
    def scores(self, features: torch.Tensor, inputs: torch.Tensor) -> list[ChannelScores]:
        """Each image's kept channels and the logits of the input masked by each (the cost).

        ``features`` N×K×h×w (any device, any float dtype), ``inputs`` N×3×H×W, the normalised
        input tensors the maps came from. Masks of every image share batches."""
        network = self.network
        device, size = network.device, tuple(int(s) for s in inputs.shape[-2:])
        maps = features.float()
        kept = self._kept(maps)
        chosen = torch.stack([maps[i, k] for i, k in enumerate(kept)]) if len(kept) else maps
        span = chosen.amax(dim=(2, 3)) - chosen.amin(dim=(2, 3))  # N×K'
        images, slots = torch.nonzero(span > 0, as_tuple=True)  # flat masks: zeros, one pass
        flat = bool((span <= 0).any())
        total = len(images) + int(flat)
        step = self.batch_size or _batch_rule(network, size)
        dtype = autocast_dtype(self.precision, device)
        logits: list[torch.Tensor] = []
        with torch.inference_mode():
            x = inputs.to(device, torch.float32)
            for start in range(0, len(images), step):
                i, k = images[start : start + step], slots[start : start + step]
                masks = _masks(chosen[i, k].to(device), size)
                masked = x[i.to(device)] * masks
                logits.append(network.forward_batch(masked, dtype)[1].float().cpu())
                if self.progress is not None:
                    self.progress(start + len(i), total)
            zeros = torch.zeros(1, 3, *size, device=device)
            blank = network.forward_batch(zeros, dtype)[1].float().cpu()[0] if flat else None
        out = torch.empty(*span.shape, len(network.class_names))
        if blank is not None:
            out[:] = blank
        if len(images):
            out[images, slots] = torch.cat(logits)
        return [ChannelScores(kept[i].cpu(), out[i].clone()) for i in range(len(kept))]

    def weights_from(
        self, features: torch.Tensor, scores: Sequence[ChannelScores], classes: Sequence[int]
    ) -> torch.Tensor:
        """``α`` (N×K): the softmax over each image's kept channels of their scores of its
        class; zero for the channels not kept."""
        alpha = torch.zeros(features.shape[:2], dtype=torch.float32)
        for row, (score, c) in enumerate(zip(scores, classes, strict=True)):
            alpha[row, score.channels] = torch.softmax(score.logits[:, int(c)], dim=0)
        return alpha.to(features.device)

    def maps_from(
        self, features: torch.Tensor, scores: Sequence[ChannelScores], classes: Sequence[int]
    ) -> torch.Tensor:
        """Raw maps (N×h×w) of ``classes[i]`` from scores already made: no network pass."""
        alpha = self.weights_from(features, scores, classes).to(features.dtype)
        return torch.relu(torch.einsum("nk,nkhw->nhw", alpha, features))

    def maps(
        self,
        features: torch.Tensor,
        classes: Sequence[int],
        inputs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw maps of ``classes[i]`` (N×h×w), from each image's maps and its input tensor."""
        if inputs is None:
            raise ValueError(
                "Score-CAM reruns the network on each image's input tensor, and none was given: "
                "run the image through a model loaded with method='scorecam' (its result keeps "
                "the inputs)."
            )
        features = features.float()
        return self.maps_from(features, self.scores(features, inputs), classes)

    def weights(
        self,
        features: torch.Tensor,
        classes: Sequence[int],
        inputs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs is None:
            return self.maps(features, classes)  # raises: says what is missing
        features = features.float()
        return self.weights_from(features, self.scores(features, inputs), classes)

    def _kept(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """Each image's channels: all, or the ``max_channels`` of highest mean (in order)."""
        n, count = maps.shape[:2]
        if self.max_channels is None or self.max_channels >= count:
            return [torch.arange(count) for _ in range(n)]
        top = maps.mean(dim=(2, 3)).topk(self.max_channels, dim=1).indices
        return list(top.sort(dim=1).values.cpu())


def _masks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Masks (b×1×H×W) of b maps (b×h×w): upsampled as pytorch-grad-cam does, min-max each."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=True)
    low = up.amin(dim=(2, 3), keepdim=True)
    return (up - low).div_(up.amax(dim=(2, 3), keepdim=True) - low + EPS)


def _batch_rule(network: Any, size: tuple[int, int]) -> int:
    """The pipeline's batch rule (free memory; 32 on a GPU), with twice its pixel budget on a
    CPU: 16 masked inputs at 224² (a ResNet-50 pass per image took 487 ms at 16 against 685 at
    8 on two busy cores, calls alternated; pytorch-grad-cam's batch is 16 too)."""
    from ..pipeline import CPU_BATCH, CPU_BATCH_PIXELS, auto_batch_size

    batch = auto_batch_size(network, size)
    if network.device.type == "cuda":
        return batch
    return max(batch, min(CPU_BATCH, 2 * CPU_BATCH_PIXELS // max(size[0] * size[1], 1)))


def _positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Score-CAM's {name} is a whole number ≥ 1 (or None), not {value!r}.")
    return int(value)
