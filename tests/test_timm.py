"""timm models (an optional extra): the model's own forward, the GAP identity, Grad-CAM by hand,
refusals and the message when timm is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from napari_gapcam import UnsupportedModelError, load_model
from napari_gapcam.engine.preprocess import to_input_tensor

timm = pytest.importorskip("timm")

IMAGE = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
SIZE = 64
# timm's tiny test networks, and real small ones: (name, exact CAM?)
MODELS = [
    ("test_resnet", True),
    ("test_efficientnet", True),  # conv_head inside forward_features: GAP + dense after
    ("resnet18", True),
    ("test_convnext", False),  # norm after the pooling
    ("mobilenetv3_small_050", False),  # a 1×1 conv + activation after the pooling
]


def timm_network(name: str, num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=num_classes).eval()


@pytest.fixture(scope="module", params=MODELS, ids=[name for name, _ in MODELS])
def case(request, tmp_path_factory):
    name, exact = request.param
    network = timm_network(name)
    path = tmp_path_factory.mktemp(name) / f"{name}.pth"
    torch.save(network.state_dict(), path)
    model = load_model(f"timm:{name}", weights=path, device="cpu")
    return network, model, exact


def inputs(model) -> torch.Tensor:
    return to_input_tensor(IMAGE, input_size=SIZE, mean=model.config.mean, std=model.config.std)


def test_logits_equal_timms_own_forward(case):
    network, model, exact = case
    assert len(model.class_names) == 5  # the number of classes comes from the checkpoint
    assert model.method == ("cam" if exact else "gradcam")
    config = timm.data.resolve_model_data_config(network)
    assert model.config.mean == tuple(config["mean"]) and model.config.std == tuple(config["std"])
    result = model.run(IMAGE, input_size=SIZE)
    with torch.no_grad():
        expected = network(inputs(model))[0].numpy()
    np.testing.assert_allclose(result.logits, expected, rtol=1e-4, atol=1e-4)


def test_gap_identity_or_hand_computed_grad_cam(case):
    network, model, exact = case
    result = model.run(IMAGE, input_size=SIZE)
    if exact:
        for c in range(5):
            bias = model.fc.bias[c].item()
            assert result.raw_cam(c).mean() + bias == pytest.approx(
                result.logits[c], rel=1e-4, abs=1e-4
            )
        return
    maps = network.forward_features(inputs(model)).detach().requires_grad_(True)
    for c in range(5):
        (grad,) = torch.autograd.grad(network.forward_head(maps)[0, c], maps)
        expected = torch.relu((grad[0].mean(dim=(1, 2))[:, None, None] * maps[0]).sum(0))
        np.testing.assert_allclose(
            result.raw_cam(c), expected.detach().numpy(), rtol=1e-3, atol=1e-5
        )


def test_forced_cam_on_a_norm_head_names_it():
    with pytest.raises(ValueError, match=r"test_convnext's head \(AdaptiveAvgPool2d → LayerNorm2d"):
        load_model("timm:test_convnext", weights=None, device="cpu", method="cam")


def test_random_init_and_imagenet_names():
    model = load_model("timm:test_resnet", weights=None, device="cpu")
    assert len(model.class_names) == 1000 and model.class_names[281] == "tabby"
    assert model.arch == "timm:test_resnet"


def test_vision_transformer_is_refused():
    with pytest.raises(UnsupportedModelError, match="tokens.*not spatial maps"):
        load_model("timm:test_vit", weights=None, device="cpu")


def test_unknown_timm_name_and_named_weights():
    with pytest.raises(ValueError, match="Unknown timm model 'resnet19'.*timm:resnet18"):
        load_model("timm:resnet19", weights=None, device="cpu")
    with pytest.raises(ValueError, match="checkpoint file or None"):
        load_model("timm:resnet18", weights="IMAGENET1K_V1", device="cpu")


def test_without_timm_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm → ImportError
    with pytest.raises(ImportError, match=r"pip install 'napari-gapcam\[timm\]'"):
        load_model("timm:resnet18", weights=None, device="cpu")
