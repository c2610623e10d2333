"""In-memory networks: torchvision and timm split by themselves, others by features=/classifier=."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from napari_gapcam import UnsupportedModelError, WeightsError, from_module
from napari_gapcam.engine.preprocess import to_input_tensor

IMAGE = np.random.default_rng(7).integers(0, 256, (60, 76, 3), dtype=np.uint8)


def forward(network: nn.Module, size: int = 224) -> np.ndarray:
    with torch.no_grad():
        return network(to_input_tensor(IMAGE, input_size=size))[0].numpy()


def test_torchvision_network_in_memory():
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=4)
    model = from_module(network, class_names=["a", "b", "c", "d"])
    assert model.method == "cam" and model.arch == "ResNet" and model.weights == "in memory"
    assert model.fc is network.fc  # the module's own parameters, no copy
    result = model.run(IMAGE, input_size=64)
    np.testing.assert_allclose(result.logits, forward(network, 64), rtol=1e-4, atol=1e-4)
    assert result.topk(1)[0][1] in "abcd"


def test_grad_cam_family_in_memory():
    torch.manual_seed(0)
    network = torchvision.models.mobilenet_v3_small(num_classes=3)
    model = from_module(network)
    assert model.method == "gradcam" and model.class_names == ["class 0", "class 1", "class 2"]
    np.testing.assert_allclose(
        model.run(IMAGE, input_size=64).logits, forward(network, 64), rtol=1e-4, atol=1e-4
    )


def test_timm_network_in_memory():
    timm = pytest.importorskip("timm")
    network = timm.create_model("test_resnet", pretrained=False, num_classes=2)
    model = from_module(network)
    assert model.method == "cam" and model.arch == "timm:test_resnet"
    assert model.config.mean == (0.5, 0.5, 0.5)  # timm's pretrained config


class Tiny(nn.Module):
    """A network no table knows: three convs, GAP, then a head."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def test_explicit_split_with_a_dense_head_is_the_exact_cam():
    torch.manual_seed(1)
    network = Tiny(nn.Linear(16, 3))
    model = from_module(network, features=network.body, classifier=network.head)
    assert model.method == "cam"
    result = model.run(IMAGE, input_size=32)
    np.testing.assert_allclose(result.logits, forward(network, 32), rtol=1e-5, atol=1e-5)
    for c in range(3):
        bias = network.head.bias[c].item()
        assert result.raw_cam(c).mean() + bias == pytest.approx(result.logits[c], abs=1e-5)


def test_explicit_split_with_an_mlp_head_is_grad_cam():
    torch.manual_seed(2)
    network = Tiny(nn.Sequential(nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)))
    model = from_module(network, features=network.body, classifier=network.head)
    assert model.method == "gradcam"
    result = model.run(IMAGE, input_size=32)
    maps = network.body(to_input_tensor(IMAGE, input_size=32)).detach().requires_grad_(True)
    for c in range(3):
        (grad,) = torch.autograd.grad(network.head(maps.mean(dim=(2, 3)))[0, c], maps)
        expected = torch.relu((grad[0].mean(dim=(1, 2))[:, None, None] * maps[0]).sum(0))
        np.testing.assert_allclose(result.raw_cam(c), expected.detach().numpy(), atol=1e-6)
    with pytest.raises(ValueError, match=r"method='cam'.*GAP → Linear → Tanh → Linear"):
        from_module(network, features=network.body, classifier=network.head, method="cam")


def test_unknown_networks_and_refusals():
    with pytest.raises(UnsupportedModelError, match="pass features=.*classifier="):
        from_module(Tiny(nn.Linear(16, 3)))
    with pytest.raises(ValueError, match="Pass both"):
        from_module(Tiny(nn.Linear(16, 3)), features=nn.Identity())
    with torch.device("meta"):
        vgg = torchvision.models.vgg11()
    with pytest.raises(UnsupportedModelError, match="VGG flattens"):
        from_module(vgg)
    with pytest.raises(WeightsError, match="gives 2 names.*has 4 classes"):
        from_module(torchvision.models.resnet18(num_classes=4), class_names=["a", "b"])
