"""Engine: the CAM math, the result object and preprocessing, on a random-init ResNet-50."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from _references import to_unit_range
from napari_gapcam.engine.maps import upsample_and_normalise
from napari_gapcam.engine.result import CamResult

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def result(resnet50):
    return resnet50.run(RGB)


@pytest.mark.parametrize("c", [0, 281, 500, 999])
def test_gap_identity(resnet50, result, c):
    """The mean of the raw CAM plus the bias is the logit: z_c = Σ_k w_ck mean(A_k) + b_c."""
    bias = resnet50.fc.bias[c].item()
    assert result.raw_cam(c).mean() + bias == pytest.approx(result.logits[c], rel=1e-4, abs=1e-4)


def test_logits_match_torchvision_forward(resnet50, result):
    """The split model (features → GAP → fc) computes what the whole network computes."""
    network = torchvision.models.resnet50(num_classes=1000).eval()
    state = {f"{k}": v for k, v in resnet50.features.state_dict().items()}
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    renamed = {}
    for key, value in state.items():
        index, rest = key.split(".", 1)
        renamed[f"{names[int(index)]}.{rest}"] = value
    renamed.update({f"fc.{k}": v for k, v in resnet50.fc.state_dict().items()})
    network.load_state_dict(renamed)
    from napari_gapcam.engine.preprocess import to_input_tensor

    with torch.no_grad():
        logits = network(to_input_tensor(RGB))[0].numpy()
    np.testing.assert_allclose(result.logits, logits, rtol=1e-3, atol=1e-3)


def test_raw_cam_is_the_weighted_sum(resnet50, result):
    features = result.features.cpu()
    weight = resnet50.fc.weight.detach().cpu()
    expected = (weight[7][:, None, None] * features).sum(0).numpy()
    raw = result.raw_cam(7)
    assert raw.dtype == np.float32 and raw.shape == tuple(features.shape[1:])
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-4)
    assert min(result.raw_cam(c).min() for c in range(50)) < 0  # no ReLU


def test_cam_is_upsampled_and_min_max_normalised(result):
    cam = result.cam(3)
    assert cam.shape == RGB.shape[:2] and cam.dtype == np.float32
    assert cam.min() == pytest.approx(0.0) and cam.max() == pytest.approx(1.0)
    raw = torch.from_numpy(result.raw_cam(3))[None, None]
    up = F.interpolate(raw, size=RGB.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    expected = ((up - up.min()) / (up.max() - up.min())).numpy()
    np.testing.assert_allclose(cam, expected, atol=1e-5)


def test_constant_map_gives_zeros_not_nan():
    out = upsample_and_normalise(torch.full((7, 7), 3.0), (50, 60))
    assert out.shape == (50, 60) and torch.all(out == 0)


def test_topk_order_and_names(result):
    top = result.topk(5)
    assert len(top) == 5
    probabilities = [p for _, _, p in top]
    assert probabilities == sorted(probabilities, reverse=True)
    assert top[0][0] == int(np.argmax(result.probabilities))
    for index, name, p in top:
        assert name == result.class_names[index]
        assert p == pytest.approx(result.probabilities[index])
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-4)


def test_class_names_are_torchvision_categories(result):
    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert result.class_names == categories
    assert result.class_names[281] == "tabby"


def test_class_by_name_and_by_index(result):
    np.testing.assert_array_equal(result.cam("tabby"), result.cam(281))
    np.testing.assert_array_equal(result.cam("Tabby"), result.cam(281))
    with pytest.raises(KeyError, match="Did you mean 'tabby'"):
        result.cam("tabbby")
    with pytest.raises(IndexError, match="1000 classes"):
        result.cam(1000)
    with pytest.raises(TypeError):
        result.cam(2.5)


def test_class_switch_needs_no_forward_pass(resnet50):
    """Maps come from the cached features: a broken network cannot be called again."""
    result = resnet50.run(RGB)
    features = resnet50.features
    resnet50.features = None  # any forward pass would now fail
    try:
        maps = [result.cam(c) for c in (1, 2, 3)]
    finally:
        resnet50.features = features
    assert not np.array_equal(maps[0], maps[1])


@pytest.mark.parametrize(
    "image",
    [
        RNG.random((90, 130), dtype=np.float32),
        RNG.integers(0, 65535, (90, 130), dtype=np.uint16),
        RNG.integers(0, 255, (90, 130), dtype=np.uint8),
        RNG.random((90, 130)) > 0.5,
        RNG.integers(0, 255, (90, 130, 3), dtype=np.uint8),
        RNG.integers(0, 255, (90, 130, 4), dtype=np.uint8),
        RNG.integers(0, 65535, (90, 130, 3), dtype=np.uint16),
        RNG.random((90, 130, 3), dtype=np.float32),
        np.full((90, 130), 7, dtype=np.uint16),  # a constant image
    ],
    ids=["f32", "u16", "u8", "bool", "rgb_u8", "rgba_u8", "rgb_u16", "rgb_f32", "constant"],
)
def test_inputs_of_every_kind(resnet50, image):
    result = resnet50.run(image)
    assert np.all(np.isfinite(result.logits))
    cam = result.cam(0)
    assert cam.shape == (90, 130) and np.all(np.isfinite(cam))
    assert 0.0 <= cam.min() and cam.max() <= 1.0


def test_rgba_alpha_is_dropped(resnet50):
    rgba = np.dstack([RGB, np.zeros(RGB.shape[:2], np.uint8)])
    np.testing.assert_array_equal(resnet50.run(rgba).logits, resnet50.run(RGB).logits)


def test_unit_range_scaling():
    rgb8 = np.array([[[0, 51, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(to_unit_range(rgb8)[0, 0], [0, 0.2, 1.0])
    rgb16 = np.array([[[0, 65535, 13107]]], dtype=np.uint16)
    np.testing.assert_allclose(to_unit_range(rgb16)[0, 0], [0, 1.0, 0.2], atol=1e-6)
    grey = np.array([[10.0, 20.0], [30.0, 50.0]])
    out = to_unit_range(grey)
    assert out.shape == (2, 2, 3) and np.all(out[..., 0] == out[..., 2])
    np.testing.assert_allclose(out[..., 0], [[0, 0.25], [0.5, 1.0]])
    clipped = to_unit_range(grey, contrast_limits=(20, 30))[..., 0]
    np.testing.assert_allclose(clipped, [[0, 0], [1, 1]])
    assert np.all(to_unit_range(np.full((3, 3), 5.0)) == 0)
    np.testing.assert_allclose(to_unit_range(np.array([[True, False]]))[..., 0], [[1, 0]])
    nan = to_unit_range(np.array([[np.nan, 1.0], [2.0, 3.0]]))
    assert np.all(np.isfinite(nan))


def test_bad_images_are_clear_errors(resnet50):
    with pytest.raises(ValueError, match="stack, pass one plane"):
        resnet50.run(np.zeros((4, 32, 32)))
    with pytest.raises(ValueError, match="real-valued"):
        resnet50.run(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="Complex"):
        resnet50.run(np.zeros((32, 32), dtype=complex))


def test_default_sizing_keeps_aspect_ratio(resnet50):
    image = np.zeros((300, 600), np.uint8)
    result = resnet50.run(image)  # short side 224 → 224×448 input → 7×14 maps
    assert tuple(result.features.shape) == (2048, 7, 14)
    assert result.cam(0).shape == (300, 600)
    tall = resnet50.run(np.zeros((448, 224), np.uint8), input_size=448)
    assert tuple(tall.features.shape[1:]) == (28, 14)


def test_square_sizing(resnet50):
    result = resnet50.run(np.zeros((300, 600), np.uint8), square=True)
    assert tuple(result.features.shape) == (2048, 7, 7)
    assert result.cam(0).shape == (300, 600)


def test_dask_input(resnet50):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(RGB, chunks=(60, 80, 3))
    from_dask, from_numpy = resnet50.run(lazy), resnet50.run(RGB)
    # numpy uint8 RGB is resized as uint8 (rounded to integers), dask as float: nearly equal
    np.testing.assert_allclose(from_dask.logits, from_numpy.logits, atol=0.05)
    assert np.abs(from_dask.cam(0) - from_numpy.cam(0)).max() < 0.02


def test_result_from_hand_made_features():
    """A one-map 'network' whose CAM is the map itself: cam() is that map upsampled."""
    features = torch.zeros(1, 4, 4)
    features[0, 1, 2] = 1.0
    result = CamResult(features, torch.tensor([0.0]), torch.ones(1, 1), ["blob"], (40, 40))
    assert result.topk(1) == [(0, "blob", 1.0)]
    y, x = np.unravel_index(np.argmax(result.cam("blob")), (40, 40))
    assert 10 <= y < 20 and 20 <= x < 30


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gap_identity_on_gpu():
    from napari_gapcam import load_model

    model = load_model("resnet50", weights=None, device="cuda")
    result = model.run(RGB)
    # made on the GPU, kept on the host (only the maps and logits come back, README)
    assert next(model.features.parameters()).is_cuda and not result.features.is_cuda
    for c in (0, 281, 999):
        expected = result.logits[c] - model.fc.bias[c].item()
        assert result.raw_cam(c).mean() == pytest.approx(expected, rel=1e-3, abs=1e-3)
