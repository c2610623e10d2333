"""Score-CAM against pytorch-grad-cam's ScoreCAM (at the feature grid), on a random resnet18."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from _cli import make_images, predictor, results
from napari_gapcam import load_model
from napari_gapcam.engine.methods.scorecam import ScoreCam
from napari_gapcam.engine.result import Result

SIZE = 64  # input short side: maps of 2×2 or 2×3 cells, 512 channels
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (2, 64, 96, 3), np.uint8)


@pytest.fixture(scope="module")
def resnet18(weights):
    """The CLI tests' random 3-class resnet18 in torchvision and as our Score-CAM model."""
    network = torchvision.models.resnet18(num_classes=3).eval()
    network.load_state_dict(torch.load(weights, weights_only=True))
    return network, load_model("resnet18", weights=weights, device="cpu", method="scorecam")


@pytest.fixture(scope="module")
def page(tmp_path_factory, resnet18):
    """A folder of one image (the CLI's input) and its result at every channel (512 passes)."""
    folder = tmp_path_factory.mktemp("scorecam") / "in"
    image = make_images(folder, count=1)["img000.png"]
    return folder, with_options(resnet18[1]).run(image, input_size=SIZE)


@pytest.fixture
def at_grid(monkeypatch):
    """pytorch-grad-cam's maps kept at the feature grid (min-max, not resized to the input)."""
    import pytorch_grad_cam.base_cam as base_cam
    from pytorch_grad_cam.utils.image import scale_cam_image

    monkeypatch.setattr(
        base_cam, "scale_cam_image", lambda cam, target_size=None: scale_cam_image(cam)
    )


def reference(network, inputs, c, channels=None):
    """pytorch-grad-cam's ScoreCAM of class ``c`` at the grid, on ``channels`` of layer4."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    keep = None if channels is None else (lambda a: a[:, channels])
    with ScoreCAM(network, [network.layer4[-1]], reshape_transform=keep) as cam:
        cam.batch_size = 64
        return cam(inputs, targets=[ClassifierOutputTarget(c)])[0]


def unit(raw):
    raw = np.asarray(raw, np.float64)
    return (raw - raw.min()) / (raw.max() - raw.min())


def with_options(model, **options):
    """``model`` with Score-CAM's options set: the same network, no reload."""
    return model.with_method("scorecam", **options)


def counting(model, monkeypatch):
    """The sizes of the batches ``model`` runs from now on (its forward passes)."""
    sizes, forward = [], model.forward_batch

    def counted(tensor, *args, **kwargs):
        sizes.append(len(tensor))
        return forward(tensor, *args, **kwargs)

    monkeypatch.setattr(model, "forward_batch", counted)
    return sizes


def test_every_channel_equals_pytorch_grad_cam(resnet18, page, at_grid):
    network, model = resnet18
    _, result = page
    assert result.method == "Score-CAM" and not result.is_ready(1)
    inputs = result._batch.inputs.take([0])
    assert inputs.shape == (1, 3, SIZE, 72)
    ours = result.raw_cam(1)
    assert result.is_ready(1) and ours.min() >= 0  # kept; a ReLU
    np.testing.assert_allclose(unit(ours), unit(reference(network, inputs, 1)), atol=0.02)
    assert ScoreCam.for_network(model).passes(2) == 2 * 512  # its cost, said before it runs


def test_max_channels_and_a_class_switch_without_passes(resnet18, at_grid, monkeypatch):
    network, model = resnet18
    model = with_options(model, max_channels=12, batch_size=5)
    result = model.run(IMAGES[1], input_size=SIZE)
    features = result.features
    top = features.mean(dim=(1, 2)).topk(12).indices.sort().values
    inputs = result._batch.inputs.take([0])
    sizes = counting(model, monkeypatch)
    first = result.raw_cam(2)
    assert sum(sizes) <= 12 + 1 and max(sizes) <= 5  # flat channels share one zero input
    np.testing.assert_allclose(unit(first), unit(reference(network, inputs, 2, top)), atol=0.02)
    sizes.clear()
    switched = result.cam(0)  # every class's score came from the same passes
    assert sizes == [] and switched.shape == IMAGES[1].shape[:2]
    expected = unit(reference(network, inputs, 0, top))
    np.testing.assert_allclose(unit(result.raw_cam(0)), expected, atol=0.02)
    assert model.method_object.passes(3) == 36


def test_a_stack_gives_the_maps_of_one_image_at_a_time(resnet18):
    model = with_options(resnet18[1], max_channels=24, batch_size=16)
    one = [model.run(image, input_size=SIZE) for image in IMAGES]
    stack = model.run_batch(IMAGES, batch_size=1, input_size=SIZE, features_dtype=torch.float32)
    assert len(stack._parts) == 2 and len(stack.inputs) == 2  # two batches, extended
    for c in (0, 2):
        expected = np.stack([r.raw_cam(c) for r in one])
        np.testing.assert_allclose(stack.raw_cam(c), expected, rtol=1e-4, atol=1e-5)
        joined = Result.join(one)  # one-image results joined keep their inputs
        np.testing.assert_allclose(joined.raw_cam(c), expected, rtol=1e-4, atol=1e-5)
    half = model.run_batch(IMAGES, input_size=SIZE)  # the default: maps and inputs in fp16
    expected = np.stack([r.cam(2) for r in one])
    np.testing.assert_allclose(half.cams(2), expected, atol=0.02)


def dtypes_of(model, monkeypatch):
    """The autocast dtype of each forward pass ``model`` runs from now on."""
    seen, forward = [], model.forward_batch

    def spied(tensor, dtype=None, *args, **kwargs):
        seen.append(dtype)
        return forward(tensor, dtype, *args, **kwargs)

    monkeypatch.setattr(model, "forward_batch", spied)
    return seen


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_where_the_device_computes_it(
    resnet18, at_grid, monkeypatch, native
):
    import napari_gapcam.engine.precision as precision

    network, model = resnet18
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    model = with_options(model, max_channels=16)  # precision "auto", the default
    result = model.run(IMAGES[0], input_size=SIZE)
    seen = dtypes_of(model, monkeypatch)
    ours = unit(result.raw_cam(1))
    assert set(seen) == {torch.bfloat16 if native else None}
    top = result.features.mean(dim=(1, 2)).topk(16).indices.sort().values
    expected = unit(reference(network, result._batch.inputs.take([0]), 1, top))
    np.testing.assert_allclose(ours, expected, atol=1e-4 if not native else 0.02)


def test_fp32_is_pytorch_grad_cam_to_1e4_and_bf16_within_the_tolerance(resnet18, at_grid):
    network, model = resnet18
    maps = {}
    for precision in ("fp32", "bf16"):
        chosen = with_options(model, max_channels=32, precision=precision)
        result = chosen.run(IMAGES[1], input_size=SIZE)
        maps[precision] = unit(result.raw_cam(0))
    top = result.features.mean(dim=(1, 2)).topk(32).indices.sort().values
    expected = unit(reference(network, result._batch.inputs.take([0]), 0, top))
    np.testing.assert_allclose(maps["fp32"], expected, atol=1e-4)
    np.testing.assert_allclose(maps["bf16"], expected, atol=0.02)
    assert np.abs(maps["bf16"] - maps["fp32"]).max() > 1e-6  # bfloat16 did run
    with pytest.raises(ValueError, match="Unknown precision 'fp8': use one of fp32, fp16, bf16"):
        with_options(model, precision="fp8")


def test_options_are_checked_by_name(resnet18):
    model = resnet18[1]
    with pytest.raises(ValueError, match="no option 'max_chanels'.*max_channels, batch_size"):
        ScoreCam.for_network(model, max_chanels=8)
    with pytest.raises(ValueError, match="max_channels is a whole number"):
        ScoreCam.for_network(model, max_channels=0)
    method = ScoreCam.for_network(model, batch_size=4)
    with pytest.raises(ValueError, match="input tensor"):
        method.maps(torch.zeros(1, 512, 2, 2), [0])  # no input: said, not guessed


def test_tiles_are_refused_with_the_reason(resnet18):
    with pytest.raises(ValueError, match="Score-CAM reruns the network once per channel"):
        resnet18[1].run_tiled(np.zeros((200, 200, 3), np.uint8), tile_size=64)


def test_gapcam_predict_method_scorecam(tmp_path: Path, weights, page):
    import tifffile

    folder, expected = page
    out = tmp_path / "out"
    assert predictor(SIZE)(folder, out, weights, "--method", "scorecam") == 0
    [record] = results(out)
    assert record["settings"]["method"] == "scorecam"
    c = record["results"][0]["class"]["index"]
    written = tifffile.imread(out / record["outputs"]["cam"])
    np.testing.assert_allclose(written, expected.cam(c), atol=2e-3)
