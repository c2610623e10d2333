"""LayerCAM of several layers fused into one map, as pytorch-grad-cam fuses ``target_layers``.

    L_c = mean_l up( norm( ReLU(Σ_k ReLU(∂y_c/∂A^l_k) · A^l_k) ) )

for each named layer ``l`` (its maps ``A^l``): LayerCAM at that layer (:mod:`.layercam`),
``norm`` the min-max of each image's map, ``(M − min M) / (max(M − min M) + 1e-7)``, ``up``
bilinear upsampling (half-pixel centres, as ``cv2.resize``) to the kept maps' grid: the
split's, at or before the earliest layer, so the finest. The result then min-maxes the mean as
it does every raw map: pytorch-grad-cam's ``compute_cam_per_layer`` (ReLU, scale) and
``aggregate_multi_layers`` (ReLU, mean, scale), with each layer resized to the kept grid
instead of the input.

The later layers' maps come from the head itself: the models side hands the network a
:class:`Taps` head, ``maps → (logits, A^l for each later layer)``, sharing the network's
modules. One forward pass of that head and one backward pass per batch (the gradient with
respect to the kept maps and the later layers' outputs at once); no forward pass of the network.

The paper (Jiang et al., IEEE TIP 2021, Eq. 9) fuses differently: each layer's map is scaled by
``tanh(γ · M / max M)`` (γ = 2, lifting the small values of shallow layers) and the layers are
fused by an element-wise maximum (TorchCAM's ``fuse_cams``). Here the anchor is
pytorch-grad-cam's mean. Each image's maps are normalised per layer, so maps of tiles do not
stitch: the fused method refuses tiles (its row's ``tiles`` is off).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

from .._torch import F, nn, torch
from . import METHODS, MethodInfo
from .base import Method
from .gradient import GradientMethod

EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


class Taps(NamedTuple):
    """What the models side gives for ``layers=[…]`` (engine/ imports no models)."""

    head: nn.Module  # maps → (logits, output of each later layer, in ``layers`` order)
    layers: tuple[str, ...]  # the fused layers, in the network's order
    own: bool  # the split's layer is one of them: its maps are the kept features
    nhwc: bool = False  # the later layers give N×h×w×K (Swin): permuted here


def normalise(cam: torch.Tensor) -> torch.Tensor:
    """Each image's map (N×h×w) min-maxed to [0, 1] as pytorch-grad-cam does (1e-7 added)."""
    cam = cam - cam.flatten(1).amin(1)[:, None, None]
    return cam / (EPS + cam.flatten(1).amax(1)[:, None, None])


def fuse(cams: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """The mean over layers of each layer's map (N×h_l×w_l) normalised, then upsampled to
    ``size`` (bilinear, half-pixel centres)."""
    total = None
    for cam in cams:
        cam = normalise(torch.relu(cam.float()))
        if tuple(cam.shape[-2:]) != tuple(size):
            up = F.interpolate(cam[:, None], tuple(size), mode="bilinear", align_corners=False)
            cam = up[:, 0]
        total = cam if total is None else total + cam
    assert total is not None, "no layer to fuse"
    return total / len(cams)


class FusedLayers(GradientMethod):
    """``single``'s maps (LayerCAM's, :class:`~.layercam.LayerCam`) at several layers, fused
    (see the module's formula); ``taps`` from the network (``network.taps(layers)``)."""

    def __init__(self, single: GradientMethod, taps: Taps) -> None:
        super().__init__(taps.head)
        self.single, self.taps = single, taps
        self.name = single.name  # its row

    @property
    def layers(self) -> tuple[str, ...]:
        return self.taps.layers

    @property
    def info(self) -> MethodInfo:
        """LayerCAM's row, named with its layers, but no tiles (each image's maps are
        normalised per layer)."""
        row = METHODS[self.name]
        label = f"{row.label} ({' + '.join(self.layers)})"
        cost = f"one backward pass through the head, down to {self.layers[0]}"
        return replace(row, label=label, tiles=False, cost=cost)

    def _layer_maps(self, features: torch.Tensor, classes: Sequence[int]) -> list:
        """Each fused layer's LayerCAM (N×h_l×w_l, float32, the head's device)."""
        device = self._device(features)
        with torch.inference_mode(False), torch.enable_grad():
            maps = features.detach().to(device).float().clone().requires_grad_(True)
            logits, *later = self.taps.head(maps)
            rows = torch.arange(len(classes), device=device)
            score = logits[rows, torch.as_tensor(list(classes), device=device)].sum()
            inputs = [maps, *later] if self.taps.own else later
            grads = torch.autograd.grad(score, inputs, allow_unused=True)
        out = []
        for i, (a, g) in enumerate(zip(inputs, grads, strict=True)):
            a = a.detach()
            g = torch.zeros_like(a) if g is None else g
            if self.taps.nhwc and (i > 0 or not self.taps.own):
                a, g = a.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2)
            out.append(self.single.from_gradient(a, g))
        return out

    def maps(self, features: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        fused = fuse(self._layer_maps(features, classes), features.shape[-2:])
        return fused.to(features.device, features.dtype)

    def class_maps(self, features: torch.Tensor, num_classes: int) -> torch.Tensor:
        return Method.class_maps(self, features, num_classes)  # a block of classes at a time
