"""Every class's maps of the gradient methods on a GAP + dense head, in closed form (no backward
pass), against the batched backward passes they replace; tiled runs stitch the same maps as one
tile at a time; a head that is not GAP + dense keeps the backward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import napari_gapcam
from napari_gapcam.engine.methods.base import Method

GRADIENT = ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"]
TILED = ["gradcam", "xgradcam", "hirescam", "layercam"]  # the rows that allow tiles
IMAGE = np.random.default_rng(5).integers(0, 256, (352, 416, 3), dtype=np.uint8)


def close(got, expected, rtol: float = 1e-5, scale: float | None = None) -> None:
    """Equal within ``rtol`` of each value, or of the largest (``scale``: of all the classes'
    maps, not only these) where sums of ± terms cancel."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max() if scale is None else scale
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def backward_passes(method):
    """The same method without the dense layer: every class by batched backward passes."""
    return type(method)(method.head)


def no_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args, **kwargs):
        raise AssertionError("a backward pass on a GAP + dense head")

    monkeypatch.setattr(torch.autograd, "grad", refused)


@pytest.fixture(scope="module")
def features(resnet18) -> torch.Tensor:
    """Real maps of two random 128² images (4×4 cells, ReLU'd: zeros included)."""
    inputs = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        return resnet18.forward_batch(inputs)[0].float().clone()


@pytest.mark.parametrize("name", GRADIENT)
def test_every_class_in_closed_form_equals_the_backward_passes(
    resnet18, features, name, monkeypatch
):
    method = resnet18.with_method(name).method_object
    assert method.fc is resnet18.fc  # for_network hands the dense layer over
    expected = backward_passes(method).class_maps(features, 1000)
    with monkeypatch.context() as patch:
        no_backward(patch)
        got = method.class_maps(features, 1000)
    assert got.shape == (2, 1000, 4, 4) and got.dtype == features.dtype
    close(got, expected)
    for c in (0, 999):  # the one-class path: one backward pass, as before
        one = method.maps(features, [c, c])
        np.testing.assert_array_equal(one, backward_passes(method).maps(features, [c, c]))
        close(got[:, c], one, scale=float(got.abs().max()))
    half = method.class_maps(features.half(), 10)  # maps kept in half precision
    assert half.dtype == torch.float16
    close(half.float(), got[:, :10], rtol=2e-3)


@pytest.mark.parametrize("name", GRADIENT)
def test_zero_gradients_and_empty_channels(name):
    """Where ``W[c, k] = 0`` (Grad-CAM++'s 0 where g = 0) and channels that are all zero
    (XGrad-CAM's ``S / (S + eps)``), on a small GAP + dense head."""
    generator = torch.Generator().manual_seed(11)
    fc = nn.Linear(6, 5)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(5, 6, generator=generator))
        fc.weight[:, 2] = 0
        fc.weight[3] = 0
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()
    maps = torch.relu(torch.randn(3, 6, 3, 5, generator=generator))
    maps[:, 4] = 0
    maps[1, 0] = 0
    cls = napari_gapcam.METHODS[name].load()
    got = cls(head, fc).class_maps(maps, 5)
    close(got, cls(head).class_maps(maps, 5))
    assert (got[:, 3] == 0).all()


def tile_maps(model, monkeypatch: pytest.MonkeyPatch) -> list:
    """Spy on the tiled run's ``class_maps``: the maps of each batch of tiles, in order."""
    method = model.method_object
    seen, own = [], method.class_maps

    def spied(features, num_classes):
        seen.append(features.clone())
        return own(features, num_classes)

    monkeypatch.setattr(method, "class_maps", spied)
    return seen


def check_stitched(model, result, seen: list, classes) -> None:
    """Each tile's kept cells of the grid equal its one-class ``maps`` (half-precision grids)."""
    tiling, method = result.tiling, model.method_object
    tiles = torch.cat(seen)
    assert len(tiles) == len(result.tiles) > 1
    for c in classes:
        each = method.maps(tiles, [c] * len(tiles)).numpy()
        scale = np.abs(each).max()
        for n, (i, j) in enumerate(result.tiles):
            (a, b), (p, q) = tiling.kept(0, i), tiling.kept(1, j)
            y, x = tiling.starts[0][i], tiling.starts[1][j]
            np.testing.assert_allclose(
                result.grids[c, a:b, p:q].astype(np.float32),
                each[n, a - y : b - y, p - x : q - x],
                rtol=1e-3,
                atol=1e-3 * scale,
                err_msg=f"class {c}, tile {(i, j)}",
            )


@pytest.mark.parametrize("name", TILED)
def test_a_tiled_run_stitches_each_tiles_maps(resnet18, name, monkeypatch):
    model = resnet18.with_method(name)
    seen = tile_maps(model, monkeypatch)
    with monkeypatch.context() as patch:
        no_backward(patch)
        result = model.run_tiled(IMAGE)
    assert result.grids.shape[0] == 1000 and np.isfinite(result.grids).all()
    check_stitched(model, result, seen, (0, 1, 500, 999))
    slow = resnet18.with_method(name)
    slow.method_object.fc = None  # the backward passes, as before
    before = slow.run_tiled(IMAGE).grids.astype(np.float32)
    scale = np.abs(before).max()
    np.testing.assert_allclose(
        result.grids.astype(np.float32), before, rtol=1e-3, atol=1e-4 * scale
    )


def test_grad_cam_plus_plus_tiles_are_still_refused(resnet18):
    with pytest.raises(ValueError, match="Tiles need a method whose maps stitch"):
        resnet18.with_method("gradcam++").run_tiled(IMAGE)


def mlp_model():
    """GAP → dense → ReLU → dense: no dense layer to read gradients from."""
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 3, 4, 1), nn.ReLU()
    )
    mlp = nn.Sequential(nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 5))
    network = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), mlp)
    return napari_gapcam.from_module(network, features=features, classifier=mlp)


@pytest.mark.parametrize("name", TILED)
def test_a_head_that_is_not_gap_dense_keeps_the_backward_passes(name, monkeypatch):
    model = mlp_model().with_method(name)
    method = model.method_object
    assert model.fc is None and method.fc is None
    maps = torch.relu(torch.randn(2, 64, 5, 6, generator=torch.Generator().manual_seed(2)))
    close(method.class_maps(maps, 5), Method.class_maps(method, maps, 5))
    seen = tile_maps(model, monkeypatch)
    result = model.run_tiled(IMAGE)
    check_stitched(model, result, seen, range(5))
