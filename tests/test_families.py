"""Every torchvision family: logits equal the network's own forward; the CAM's GAP identity;
Grad-CAM against gradients computed here; named weights offline; refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from napari_gapcam import UnsupportedModelError, load_model
from napari_gapcam.engine.maps import upsample_and_normalise
from napari_gapcam.engine.preprocess import to_input_tensor
from napari_gapcam.models import ARCHITECTURES, cached_weights_path, named_weights
from napari_gapcam.models.families import FAMILIES, build, family_of

# At least one real member per family row (input short side: small, for 2 CPU cores).
TESTED = {
    "resnet18": 64,
    "densenet121": 64,
    "efficientnet_b0": 64,
    "efficientnet_v2_s": 64,
    "mobilenet_v2": 64,
    "mnasnet0_5": 64,
    "regnet_x_400mf": 64,
    "regnet_y_400mf": 64,
    "shufflenet_v2_x0_5": 64,
    "googlenet": 64,
    "inception_v3": 128,  # needs at least 75 pixels
    "swin_t": 64,
    "swin_v2_t": 64,
    "convnext_tiny": 96,
    "mobilenet_v3_small": 96,
}
IMAGE = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
CLASSES = (0, 7, 500, 999)
INCEPTION_LIKE = ("googlenet", "inception_v3")


def test_every_family_has_a_tested_member():
    tested = {family_of(arch).name for arch in TESTED}
    assert tested == {family.name for family in FAMILIES}


def original_network(arch: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    if arch in INCEPTION_LIKE:
        kwargs = {"init_weights": True, **kwargs}  # keeps the auxiliary heads (the default)
    return torchvision.models.get_model(arch, weights=None, **kwargs).eval()


def assert_logits_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Close relative to the logits' scale (random-init inception_v3 reaches 1e10)."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def reference_logits(network, model, size: int) -> np.ndarray:
    tensor = to_input_tensor(IMAGE, input_size=size, mean=model.config.mean, std=model.config.std)
    with torch.no_grad():
        return network(tensor)[0].numpy()


@pytest.fixture(scope="module", params=list(TESTED))
def pair(request, tmp_path_factory):
    """(the original network, the model loaded from its state dict file, input size)."""
    arch = request.param
    network = original_network(arch, seed=1)
    path = tmp_path_factory.mktemp(arch) / f"{arch}.pth"
    torch.save(network.state_dict(), path)
    model = load_model(arch, weights=path, device="cpu")
    return network, model, TESTED[arch]


def test_logits_equal_the_original_forward(pair):
    network, model, size = pair
    result = model.run(IMAGE, input_size=size)
    assert_logits_close(result.logits, reference_logits(network, model, size))


def test_gap_identity_or_grad_cam(pair):
    network, model, size = pair
    result = model.run(IMAGE, input_size=size)
    exact = family_of(model.arch).exact
    assert model.method == ("cam" if exact else "gradcam")
    assert result.method == ("CAM" if exact else "Grad-CAM")
    if not exact:
        assert model.fc is None
        return
    scale = max(1.0, float(np.abs(result.logits).max()))
    for c in CLASSES:  # z_c = mean_xy Σ_k w[c, k] A_k + b_c
        bias = model.fc.bias[c].item()
        assert result.raw_cam(c).mean() + bias == pytest.approx(
            result.logits[c], rel=1e-4, abs=1e-5 * scale
        )


def reference_grad_cam(network, model, size: int, c: int) -> np.ndarray:
    """Grad-CAM by hand on the original network: a hook keeps the maps, backward from y_c."""
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["maps"] = output

    handle = network.features.register_forward_hook(keep)
    try:
        tensor = to_input_tensor(
            IMAGE, input_size=size, mean=model.config.mean, std=model.config.std
        )
        network.zero_grad()
        network(tensor)[0, c].backward()
    finally:
        handle.remove()
    maps = kept["maps"][0].detach()
    alpha = kept["maps"].grad[0].mean(dim=(1, 2))
    cam = torch.relu((alpha[:, None, None] * maps).sum(0))
    if cam.max() - cam.min() <= 0:
        return np.zeros(IMAGE.shape[:2], np.float32)
    up = F.interpolate(cam[None, None], size=IMAGE.shape[:2], mode="bilinear")[0, 0]
    return ((up - up.min()) / (up.max() - up.min())).numpy()


@pytest.mark.parametrize("arch", ["convnext_tiny", "mobilenet_v3_small"])
def test_grad_cam_equals_a_hand_computed_one(arch, tmp_path):
    network = original_network(arch, seed=2)
    path = tmp_path / "net.pth"
    torch.save(network.state_dict(), path)
    model = load_model(arch, weights=path, device="cpu")
    assert model.method == "gradcam"
    result = model.run(IMAGE, input_size=TESTED[arch])
    top = result.topk(1)[0][0]
    nonzero = 0
    for c in (top, 3, 600):
        expected = reference_grad_cam(network, model, TESTED[arch], c)
        got = result.cam(c)
        assert np.abs(got - expected).max() < 0.05, c
        nonzero += bool(expected.max() > 0)
    assert nonzero >= 2  # the comparison is not between blank maps


def test_forced_grad_cam_on_a_resnet_is_the_normalised_relu_of_its_cam(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(original_network("resnet18", seed=4).state_dict(), path)
    cam_model = load_model("resnet18", weights=path, device="cpu")
    grad_model = load_model("resnet18", weights=path, device="cpu", method="gradcam")
    assert grad_model.method == "gradcam" and grad_model.method_label == "Grad-CAM"
    cam, grad = cam_model.run(IMAGE), grad_model.run(IMAGE)
    np.testing.assert_allclose(grad.logits, cam.logits, rtol=1e-5, atol=1e-5)
    h, w = cam.features.shape[1:]
    for c in CLASSES:
        relu = np.maximum(cam.raw_cam(c), 0)
        np.testing.assert_allclose(grad.raw_cam(c), relu / (h * w), rtol=1e-4, atol=1e-6)
        expected = upsample_and_normalise(torch.from_numpy(relu), IMAGE.shape[:2]).numpy()
        np.testing.assert_allclose(grad.cam(c), expected, atol=1e-4)


def test_cam_on_a_head_that_is_not_gap_plus_dense_names_the_head():
    with pytest.raises(ValueError, match=r"convnext's head \(AdaptiveAvgPool2d → LayerNorm2d"):
        load_model("convnext_tiny", weights=None, device="cpu", method="cam")
    with pytest.raises(ValueError, match="Unknown method 'lrp'"):
        load_model("resnet18", weights=None, device="cpu", method="lrp")


@pytest.mark.parametrize(
    ("arch", "reason"),
    [("vgg16", "VGG flattens"), ("alexnet", "AlexNet flattens"), ("vit_b_16", "class token")],
)
def test_networks_without_spatial_maps_are_refused(arch, reason):
    with pytest.raises(UnsupportedModelError, match=reason):
        load_model(arch, weights=None, device="cpu")


def test_every_architecture_splits_on_the_meta_device():
    """The whole table (resnet152, regnet_y_128gf …) at no cost: maps fit the head."""
    not_on_meta = []
    for arch in ARCHITECTURES:
        family = family_of(arch)
        try:
            with torch.device("meta"):
                network = build(arch, 10, None, {}).eval()
        except NotImplementedError:  # regnet's builder computes widths with real tensors
            not_on_meta.append(arch)
            continue
        split = family.split(network)
        with torch.device("meta"):
            maps = split.features(torch.zeros(1, 3, 128, 128))
            logits = split.head(maps)
        assert maps.ndim == 4 and logits.shape == (1, 10), arch
        if family.exact:
            assert split.fc.in_features == maps.shape[1], arch
        assert named_weights(arch), arch
    assert {family_of(arch).name for arch in not_on_meta} <= {"regnet"}


# ------------------------------------------------------------------ named weights, offline
@pytest.fixture
def torch_home_for(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NAPARI_GAPCAM_SKIP_HASH_CHECK", "1")  # random stand-ins: see conftest

    def save(arch: str, weights: str, state: dict) -> None:
        path = cached_weights_path(arch, weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)

    return save


@pytest.mark.parametrize("arch", list(TESTED))
def test_named_weights_from_the_hub_cache(arch, torch_home_for):
    """A random state dict under torchvision's file name loads as that family's named weights;
    googlenet / inception_v3 then transform their input as torchvision's own builders do."""
    entry = torchvision.models.get_model_weights(arch).DEFAULT
    kwargs = {"transform_input": True, "aux_logits": True} if arch in INCEPTION_LIKE else {}
    network = original_network(arch, seed=5, **kwargs)
    torch_home_for(arch, entry.name, network.state_dict())
    model = load_model(arch, weights=entry.name, device="cpu")
    assert model.class_names == entry.meta["categories"] and model.weights == entry.name
    assert model.config.input_size == entry.transforms().crop_size[0]
    size = TESTED[arch]
    assert_logits_close(
        model.run(IMAGE, input_size=size).logits, reference_logits(network, model, size)
    )


def test_missing_named_weights_name_the_file(empty_torch_home):
    expected = cached_weights_path("densenet121", "IMAGENET1K_V1").name
    with pytest.raises(Exception, match=expected) as caught:
        load_model("densenet121", weights="IMAGENET1K_V1", device="cpu")
    assert str(empty_torch_home / "hub" / "checkpoints") in str(caught.value)


# ------------------------------------------------------------------ checkpoint settings
def test_checkpoint_preprocessing_and_transform_input(tmp_path):
    network = original_network("googlenet", seed=6, transform_input=True)
    names = [f"kind {i}" for i in range(1000)]
    checkpoint = {
        "state_dict": network.state_dict(),
        "arch": "googlenet",
        "class_names": names,
        "transform_input": True,
        "input_size": 80,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    path = tmp_path / "g.pt"
    torch.save(checkpoint, path)
    model = load_model("googlenet", weights=path, device="cpu")
    assert model.config.input_size == 80 and model.config.mean == (0.5, 0.5, 0.5)
    assert model.class_names == names
    assert_logits_close(model.run(IMAGE).logits, reference_logits(network, model, 80))


def test_checkpoint_of_another_family_is_a_clear_error(tmp_path):
    path = tmp_path / "d.pt"
    torch.save(original_network("mobilenet_v2", seed=0, num_classes=4).state_dict(), path)
    with pytest.raises(Exception, match="no dense layer 'fc.weight'.*resnet"):
        load_model("resnet18", weights=path, device="cpu")
    with pytest.raises(Exception, match="do not fit efficientnet_b0.*looks like a mobilenet_v2"):
        load_model("efficientnet_b0", weights=path, device="cpu")
