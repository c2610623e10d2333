"""The methods against pytorch-grad-cam (the same layer: our split's maps), batches vs one image
at a time, every class at once, parameters, and the method switch without a forward pass.

pytorch-grad-cam resizes its maps to the input; :func:`pgc_maps` keeps them at the feature grid
(its ``scale_cam_image`` with ``target_size=None``), where both are min-max normalised."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import napari_gapcam
from napari_gapcam.engine.methods import METHODS
from napari_gapcam.engine.methods.ablationcam import AblationCam
from napari_gapcam.engine.methods.base import Method
from napari_gapcam.engine.model import GapCamModel
from napari_gapcam.engine.result import CamResult
from napari_gapcam.engine.words import ParameterError

pgc = pytest.importorskip("pytorch_grad_cam")

REFERENCES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "ablationcam": "AblationCAM",
    "eigencam": "EigenCAM",
}
ALL = list(REFERENCES)
SOME = ["gradcam++", "xgradcam", "hirescam", "ablationcam", "eigencam"]
CASES = [("resnet18", m) for m in ALL] + [
    ("densenet121", "gradcam++"),
    ("densenet121", "ablationcam"),
    ("densenet121", "eigencam"),
    *(("demo", m) for m in SOME),
    *(("timm:resnet18", m) for m in SOME),
    *(("mlp", m) for m in ("gradcam++", "layercam", "ablationcam")),  # no dense head
]
SIZE = 128  # a 4×4 grid for these networks
RNG = np.random.default_rng(0)
STACK = RNG.integers(0, 256, (3, 96, 112, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def networks(demo):
    torch.manual_seed(0)
    loaded = {"demo": demo}

    def get(arch: str) -> GapCamModel:
        if arch == "mlp" and arch not in loaded:
            loaded[arch] = mlp_model()
        if arch not in loaded:
            loaded[arch] = napari_gapcam.load_model(arch, weights=None, device="cpu")
        return loaded[arch]

    return get


@pytest.fixture(scope="module")
def resnet18(networks):
    return networks("resnet18")


def mlp_model() -> GapCamModel:
    """A small network whose head is GAP → dense → ReLU → dense: no CAM; Ablation-CAM's head
    passes instead of its analytic form."""
    from torch import nn

    features = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 3, 4, 1), nn.ReLU()
    )
    mlp = nn.Sequential(nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 5))
    network = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), mlp)
    model = napari_gapcam.from_module(network, features=features, classifier=mlp)
    assert model.fc is None and model.method == "gradcam"
    return model


def unit(maps) -> np.ndarray:
    """Each map min-max normalised (as pytorch-grad-cam's ``scale_cam_image``), flattened."""
    maps = np.asarray(maps, np.float64).reshape(len(maps), -1)
    maps = maps - maps.min(axis=1, keepdims=True)
    return maps / (maps.max(axis=1, keepdims=True) + 1e-7)


def pgc_maps(network, name: str, features: torch.Tensor, classes) -> np.ndarray:
    """pytorch-grad-cam's maps at the feature grid, on the same layer: its model is an identity
    (the target layer: its output is our split's maps ``A``) then our ``head``; its input is
    ``A``, so its hooks see exactly the maps and gradients our methods read."""
    from pytorch_grad_cam import base_cam
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = torch.nn.Identity()
    whole = torch.nn.Sequential(layer, network.head).eval()
    cls = getattr(pgc, REFERENCES[name])
    keep = base_cam.scale_cam_image
    base_cam.scale_cam_image = lambda cam, target_size=None: scale_cam_image(cam, None)
    try:
        with cls(whole, [layer]) as cam:
            maps = features.detach().clone().requires_grad_(True)
            return cam(maps, [ClassifierOutputTarget(int(c)) for c in classes])
    finally:
        base_cam.scale_cam_image = keep


@pytest.mark.parametrize(("arch", "name"), CASES)
def test_each_method_equals_pytorch_grad_cam(networks, arch, name, capsys):
    network = networks(arch)
    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        features = network.features(x)
        classes = network.head(features).argmax(dim=1).tolist()  # pytorch-grad-cam's default
    method = network.with_method(name).method_object
    ours = unit(method.maps(features, classes).numpy())
    theirs = unit(pgc_maps(network, name, features, classes))
    capsys.readouterr()  # pytorch-grad-cam's progress bars
    assert ours.shape == theirs.shape == (2, features.shape[-2] * features.shape[-1])
    assert (ours.max(axis=1) > 0.99).all()  # not blank
    difference = np.abs(ours - theirs).max()
    if name == "eigencam":  # its SVD's sign is LAPACK's choice: ours, or the opposite axis
        flipped = unit(torch.relu(-method.projection(features)).numpy())
        difference = min(difference, np.abs(flipped - theirs).max())
    assert difference <= 0.02, (arch, name, difference)


def test_ablation_cam_on_any_head_equals_its_analytic_form(resnet18):
    """Head passes (batches mixing images and channels) give the GAP + dense head's drops."""
    features = torch.relu(torch.randn(3, 512, 4, 4, generator=torch.Generator().manual_seed(2)))
    analytic = resnet18.with_method("ablationcam").method_object
    passes = AblationCam(resnet18.head, None, batch_size=37)
    assert not analytic.cached and passes.cached
    classes = [0, 7, 999]
    a, b = analytic.weights(features, classes), passes.weights(features, classes)
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        passes.maps(features, classes), analytic.maps(features, classes), rtol=1e-3, atol=1e-4
    )


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "xgradcam", "hirescam", "layercam"])
def test_every_class_at_once_equals_one_class_at_a_time(resnet18, name):
    """Tiles' class maps: one head pass and batched backward passes, no repeated maps."""
    features = torch.relu(torch.randn(2, 512, 4, 4, generator=torch.Generator().manual_seed(3)))
    method = resnet18.with_method(name).method_object
    every = method.class_maps(features, 1000)
    assert every.shape == (2, 1000, 4, 4)
    for c in (0, 63, 64, 999):
        np.testing.assert_allclose(every[:, c], method.maps(features, [c, c]), atol=1e-6)


def test_eigencam_is_one_map_for_every_class(resnet18):
    features = torch.relu(torch.randn(2, 512, 4, 4, generator=torch.Generator().manual_seed(4)))
    method = resnet18.with_method("eigencam").method_object
    assert METHODS["eigencam"].class_free
    np.testing.assert_array_equal(method.maps(features, [0, 1]), method.maps(features, [9, 5]))
    assert method.class_maps(features, 10).shape == (2, 10, 4, 4)


@pytest.fixture(scope="module")
def runs(resnet18):
    """A stack run once, and each of its images run on its own (the CAM: switched below)."""
    return resnet18.run_batch(STACK, features_dtype=torch.float32), [resnet18.run(i) for i in STACK]


@pytest.mark.parametrize("name", ALL)
def test_a_stack_gives_the_maps_of_one_image_at_a_time(runs, name):
    batch, each = runs
    stack = batch.with_method(name)
    for i in range(len(STACK)):
        one = each[i].with_method(name)
        for c in (3, 500):
            expected = one.raw_cam(c)
            scale = max(np.abs(expected).max(), 1e-12)
            np.testing.assert_allclose(stack[i].raw_cam(c) / scale, expected / scale, atol=1e-4)


def test_parameters_are_checked_and_refused_by_name(resnet18):
    with pytest.raises(
        ParameterError, match="method='gradcam' takes no parameters; got 'batch_size'"
    ):
        resnet18.with_method("gradcam", batch_size=3)
    with pytest.raises(ParameterError, match="'layers'"):
        resnet18.with_method("eigencam", layers=["layer3"])
    with pytest.raises(ParameterError, match="batch_size must be a positive whole number"):
        resnet18.with_method("ablationcam", batch_size=0)
    with pytest.raises(ParameterError, match="'ratio'"):
        resnet18.with_method("ablationcam", ratio=0.5)
    assert resnet18.with_method("ablationcam", batch_size=5).method_object.batch_size == 5


@pytest.mark.parametrize("row", list(METHODS.values()), ids=list(METHODS))
def test_every_row_loads_and_makes_maps(resnet18, row):
    cls = row.load()
    assert issubclass(cls, Method) and cls.name == row.name and "=" in cls.__doc__
    assert row.describe().startswith(f"{row.label}: ") and row.head_only != row.needs_input
    switched = resnet18.with_method(row.name)
    assert switched.method == row.name and switched.method_info is row
    if row.needs_input:  # Score-CAM's maps need the inputs too: tests/test_scorecam.py
        return
    maps = switched.method_object.maps(torch.rand(2, 512, 3, 3), [0, 1])
    assert maps.shape == (2, 3, 3) and torch.isfinite(maps).all()


def test_a_switched_model_shares_the_network(resnet18):
    switched = resnet18.with_method("layercam")
    assert isinstance(switched, GapCamModel) and resnet18.method == "cam"
    for part in ("features", "head", "fc", "config", "class_names", "device"):
        assert getattr(switched, part) is getattr(resnet18, part), part
    assert switched.method_label == "LayerCAM" and switched.method_object.head is resnet18.head


@pytest.fixture
def forward_passes(monkeypatch):
    calls = []
    forward = GapCamModel.forward_features

    def counted(self, tensor, size):
        calls.append(len(tensor))
        return forward(self, tensor, size)

    monkeypatch.setattr(GapCamModel, "forward_features", counted)
    return calls


@pytest.mark.parametrize("name", ["gradcam++", "ablationcam", "eigencam"])
def test_a_finished_result_switches_with_no_forward_pass(demo, forward_passes, name):
    from napari_gapcam.models import DEMO_WEIGHTS

    result = demo.run_batch(STACK, features_dtype=torch.float32)
    loaded = napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu", method=name)
    expected = loaded.run_batch(STACK, features_dtype=torch.float32)
    forward_passes.clear()
    switched = result.with_method(name)
    view = result[1].with_method(name)
    top = result.top1()
    maps = switched.cams(top, shape=(24, 28))
    assert not forward_passes  # nothing ran the network
    assert switched.method == loaded.method_label and result.method == "CAM"
    assert switched.image_logits is result.image_logits and switched.features is result.features
    np.testing.assert_allclose(maps, expected.cams(top, shape=(24, 28)), atol=1e-4)
    np.testing.assert_allclose(view.raw_cam(top[1]), expected[1].raw_cam(top[1]), rtol=1e-4)
    again = switched.with_method(demo)  # a model: its own method
    np.testing.assert_allclose(again.raw_cam(2), result.raw_cam(2))


def test_a_switch_is_refused_where_the_method_needs_more_than_the_result(
    demo, resnet18, monkeypatch
):
    result = demo.run(STACK[0])
    row = dataclasses.replace(METHODS["eigencam"], head_only=False)
    monkeypatch.setitem(METHODS, "eigencam", row)
    with pytest.raises(ParameterError, match="EigenCAM needs more than a finished result keeps"):
        result.with_method("eigencam")
    with pytest.raises(ValueError, match="This result has 6 classes; that model has 1000"):
        result.with_method(resnet18.with_method("gradcam"))
    by_hand = CamResult(result.features, torch.from_numpy(result.logits), demo.fc.weight,
                        result.class_names, result.image_shape)  # fmt: skip
    with pytest.raises(ValueError, match="made without a model"):
        by_hand.with_method("gradcam")
    assert by_hand.with_method(demo.with_method("gradcam")).method == "Grad-CAM"


def test_tiles_of_gradient_methods_stitch_as_the_cam(demo):
    """On a GAP + dense head ∂y_c/∂A_k = w[c, k]/(h·w): Grad-CAM, XGrad-CAM and HiResCAM are
    ReLU(CAM)/(h·w) cell by cell, tiles included; EigenCAM is refused there."""
    image = np.tile(STACK[0], (4, 4, 1))[:384, :384]
    cam = demo.run_tiled(image)
    cells = cam.tiling.tile_cells**2
    expected = np.maximum(cam.grids.astype(np.float32), 0) / cells
    for name in ("gradcam", "xgradcam", "hirescam"):
        tiled = demo.with_method(name).run_tiled(image)
        assert tiled.method == METHODS[name].label
        grids = tiled.grids.astype(np.float32)
        np.testing.assert_allclose(grids, expected, atol=2e-3 * expected.max(), err_msg=name)
    with pytest.raises(ValueError, match="Tiles need a method whose maps stitch"):
        demo.with_method("eigencam").run_tiled(image)
