"""Stacks in batches: run_batch equals run, lazy stacks stream, compact features, fast paths."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from skimage import data

from napari_gapcam.engine.batch import iter_batches
from napari_gapcam.engine.fuse import fold_batch_norms
from napari_gapcam.engine.methods.cam import Cam
from napari_gapcam.engine.result import Result

RNG = np.random.default_rng(3)


def photo_stack(n: int, shape=(96, 128), rgb: bool = False) -> np.ndarray:
    """``n`` different crops of the astronaut photo (grey uint16, or RGB uint8)."""
    photo = data.astronaut()
    planes = []
    for i in range(n):
        crop = photo[20 * i : 20 * i + shape[0] * 2 : 2, 15 * i : 15 * i + shape[1] * 2 : 2]
        planes.append(crop if rgb else (crop.mean(-1) * 250).astype(np.uint16))
    return np.stack(planes)


@pytest.mark.parametrize("rgb", [False, True], ids=["grey_u16", "rgb_u8"])
def test_run_batch_equals_run(resnet50, rgb):
    stack = photo_stack(5, rgb=rgb)
    limits = None if rgb else (0, 60000)
    result = resnet50.run_batch(stack, batch_size=2, contrast_limits=limits)
    assert isinstance(result, Result) and len(result) == 5
    for i in range(5):
        single = resnet50.run(stack[i], limits)
        np.testing.assert_allclose(result[i].logits, single.logits, rtol=1e-3, atol=1e-3)
        for c, _, _ in single.topk(3):
            assert np.abs(result[i].cam(c) - single.cam(c)).max() < 1e-3
        assert result[i].image_shape == single.image_shape
        assert result[i].input_shape == single.input_shape


def test_a_sequence_of_images_and_batch_sizes_agree(resnet50):
    stack = photo_stack(5, rgb=True)
    as_list = resnet50.run_batch(list(stack), batch_size=3)
    as_array = resnet50.run_batch(stack)  # batch size from free memory (8 here)
    np.testing.assert_allclose(as_list.image_logits, as_array.image_logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="one size: image 0 is .* image 1 is"):
        resnet50.run_batch([stack[0], stack[1][:50]])
    with pytest.raises(ValueError, match="Unknown precision"):
        resnet50.run_batch(stack, precision="int8")


def test_lazy_stack_streams_batch_by_batch(resnet50, chunk_reads):
    import dask.array as da

    read = chunk_reads
    stack = photo_stack(7)
    lazy = read.counted(da.from_array(stack, chunks=(1, 96, 128)))
    batches = iter_batches(resnet50, lazy, batch_size=3, contrast_limits=(0, 60000))
    start, first = next(batches)
    assert start == 0 and len(first) == 3 and set(read) == {0, 1, 2}  # nothing more yet
    rest = list(batches)
    assert [s for s, _ in rest] == [3, 6] and sorted(set(read)) == list(range(7))
    assert sorted(read) == list(range(7))  # each plane read once
    expected = resnet50.run(stack[4], (0, 60000))
    np.testing.assert_allclose(rest[0][1][1].logits, expected.logits, rtol=1e-3, atol=1e-3)


def test_features_are_compact_and_class_changes_need_no_forward_pass(resnet50):
    stack = photo_stack(4, rgb=True)
    result = resnet50.run_batch(stack)
    assert result.features.dtype == torch.float16 and result.features.device.type == "cpu"
    per_plane = result.features[0].numel() * result.features.element_size()
    assert per_plane * 1000 <= 0.5e9  # a 1000-plane stack at 224² keeps ≤ 0.5 GB
    features = resnet50.features
    resnet50.features = None  # any forward pass would now fail
    try:
        maps = result.cams(7, shape=(40, 50))
        per_image = result.cams(result.top1())
    finally:
        resnet50.features = features
    assert maps.shape == (4, 40, 50) and np.all((maps >= 0) & (maps <= 1))
    for i, c in enumerate(result.top1()):
        np.testing.assert_allclose(per_image[i], result[i].cam(c), atol=1e-5)
        np.testing.assert_allclose(maps[i], result[i].cam(7, shape=(40, 50)), atol=1e-5)


def test_maps_made_chunk_by_chunk_on_a_device_equal_the_host_maps(resnet50):
    """The path a GPU stack takes for big outputs (chunks sent to the device, maps written
    straight into the result), run here on the CPU with tiny chunks."""
    result = resnet50.run_batch(photo_stack(5, rgb=True), batch_size=2)
    top = result.top1()
    chunked = result._cams_on(
        torch.device("cpu"), range(5), top, (64, 80), chunk_bytes=2 * 64 * 80 * 4
    )
    np.testing.assert_allclose(chunked, result.cams(top, shape=(64, 80)), atol=1e-5)


def test_a_run_copies_the_cam_weights_to_the_host_once(resnet50, monkeypatch):
    """From a GPU that copy waits for the GPU: once a batch, it stalled every batch (measured
    0.55× of the bare forward on an H200). Weights in float64 stand in for weights on a GPU."""
    weight = resnet50.method_object.weight
    monkeypatch.setattr(resnet50, "_method", Cam(weight.double()))
    parts = [part for _, part in iter_batches(resnet50, photo_stack(5, rgb=True), batch_size=2)]
    assert len(parts) == 3
    methods = {id(part._method) for part in parts}
    assert len(methods) == 1 and parts[0]._method.weight.dtype == torch.float32
    torch.testing.assert_close(parts[0]._method.weight, weight)
    # and once per model, not per run (measured 4 ms of a 45 ms run on an H200) ...
    again = resnet50.run_batch(photo_stack(2, rgb=True))
    assert again._method is parts[0]._method
    # ... until the weights change in place (a head fine-tuned in a notebook)
    with torch.no_grad():
        resnet50.method_object.weight[0, 0] += 1.0
    changed = resnet50.run_batch(photo_stack(2, rgb=True))
    assert changed._method is not parts[0]._method
    assert changed._method.weight[0, 0] == pytest.approx(float(weight[0, 0]) + 1.0)


def test_mean_probabilities_rank_the_stack(resnet50):
    result = resnet50.run_batch(photo_stack(3, rgb=True))
    mean = result.image_probabilities.mean(axis=0)
    top = result.topk(4)  # a batch's classes: by mean probability
    assert [i for i, _, _ in top] == list(np.argsort(-mean)[:4])
    assert top[0][2] == pytest.approx(mean.max())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_maps_stay_close(resnet50, precision):
    stack = photo_stack(3, rgb=True)
    full = resnet50.run_batch(stack)
    try:
        half = resnet50.run_batch(stack, precision=precision)
    except RuntimeError as error:  # a CPU without that autocast kernel
        pytest.skip(f"{precision} autocast unavailable here: {error}")
    for i, c in enumerate(full.top1()):
        assert np.abs(half[i].cam(c) - full[i].cam(c)).max() <= 0.02


def test_folded_batch_norms_keep_the_logits():
    import torchvision

    torch.manual_seed(0)
    for name in ("resnet18", "densenet121", "mobilenet_v2"):
        network = torchvision.models.get_model(name).eval()
        for module in network.modules():  # non-trivial running statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        original = copy.deepcopy(network)
        folded = fold_batch_norms(network)
        before, after = (
            sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
            for net in (network, folded)
        )
        # every BN after a conv goes; DenseNet's pre-activation BNs (58 norm1 after a concat,
        # 3 in transitions, norm5) stay
        assert after == {"densenet121": 62}.get(name, 0), (name, before, after)
        assert before == sum(isinstance(m, torch.nn.BatchNorm2d) for m in original.modules())
        x = torch.randn(2, 3, 96, 96)
        with torch.inference_mode():
            expected, got = original(x), folded(x)
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_grad_cam_stack_equals_run():
    from napari_gapcam import load_model

    torch.manual_seed(0)
    model = load_model("mobilenet_v3_small", weights=None, device="cpu")
    assert model.method == "gradcam"
    stack = photo_stack(3, rgb=True)
    result = model.run_batch(stack, input_size=96)
    for i in range(3):
        single = model.run(stack[i], input_size=96)
        for c in (0, 500):  # random weights: near-tie maps, so compare them before min-max
            expected, got = single.raw_cam(c), result[i].raw_cam(c)
            np.testing.assert_allclose(got, expected, atol=1e-2 * np.abs(expected).max() + 1e-7)


def test_residual_sums_go_in_place_only_when_safe():
    import torchvision

    class Broadcast(torch.nn.Module):
        """``small(x) + x``: in place, the left operand would have to grow."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(3)
            self.small = torch.nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            x = self.bn(self.conv(x))
            return self.small(x) + x

    resnet = fold_batch_norms(torchvision.models.resnet18().eval())
    assert sum(n.target == "add_" for n in resnet.graph.nodes) == 8  # one per block
    safe = fold_batch_norms(Broadcast().eval())
    assert not any(n.target == "add_" for n in safe.graph.nodes)
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        module = Broadcast().eval()
        np.testing.assert_allclose(fold_batch_norms(module)(x), module(x), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.float32])
def test_each_image_of_a_batch_keeps_its_own_intensity_range(resnet50, dtype):
    """No contrast limits: each plane is scaled by its own min/max, as run() does alone."""
    stack = photo_stack(4).astype(np.float32) / 15000
    stack[1] *= 0.3  # a dim plane
    stack[2] = stack[2] * 0.5 + 0.4  # a bright, low-contrast plane
    stack[3, :, :10] = 4.0  # one saturated stripe: the full 0…255 range for uint8
    high = {np.uint16: 15000, np.uint8: 60, np.float32: 1}[dtype]
    stack = (stack * high).astype(dtype)
    result = resnet50.run_batch(stack, batch_size=4)
    for i in range(4):
        single = resnet50.run(stack[i])
        np.testing.assert_allclose(result[i].logits, single.logits, rtol=1e-3, atol=1e-3)
        c = single.topk(1)[0][0]
        assert np.abs(result[i].cam(c) - single.cam(c)).max() < 1e-3
