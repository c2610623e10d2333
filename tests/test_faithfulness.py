"""Faithfulness scores against their anchors: TorchCAM's ClassificationMetric (average drop,
increase), RISE's deletion / insertion loop written out here, pytorch-grad-cam's ROADCombined
and NoisyLinearImputer; progress, cancelling, localization columns, errors."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import napari_gapcam
from napari_gapcam.engine.faithfulness import METRICS, FaithfulnessCancelled, faithfulness
from napari_gapcam.engine.faithfulness.imputation import impute, linear_fill
from napari_gapcam.engine.faithfulness.rows import prepare
from napari_gapcam.models import DEMO_WEIGHTS
from napari_gapcam.synthetic import make_sample_with_mask

PERCENTILES = (20, 50, 80)  # ROAD's percentiles here (the default 10…90 costs 3× more)
SIZE = 96  # the network's input: 3×3 maps of the demo ResNet-18
STEPS = 12  # deletion / insertion steps (768 pixels each)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: on a CPU shared with other jobs, thread barriers cost more than they give
    to these small inputs (the imputation's many small steps most of all)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    torch.manual_seed(0)
    return napari_gapcam.load_model("resnet18", DEMO_WEIGHTS, "cpu")


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(7)
    samples = [make_sample_with_mask(rng, (SIZE, SIZE)) for _ in range(2)]
    images = np.stack([s[0] for s in samples])
    return images, [s[2] for s in samples], [s[3] for s in samples]


@pytest.fixture(scope="module")
def rows(demo, scenes):
    return prepare(demo, scenes[0], None, None, None, SIZE, None)


@pytest.fixture(scope="module")
def table(demo, scenes):
    images, boxes, masks = scenes
    return faithfulness(
        demo,
        images,
        steps=STEPS,
        input_size=SIZE,
        boxes=boxes,
        masks=masks,
        percentiles=PERCENTILES,
    )


def plain(demo) -> torch.nn.Module:
    """The network as one module, batch norms not folded (as the anchors run it)."""
    return torch.nn.Sequential(demo.features, demo.head).eval()


class GivenMaps:
    """A TorchCAM extractor that hands back the given maps (TorchCAM's metric, our maps)."""

    def __init__(self, model: torch.nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def test_avg_drop_and_increase_equal_torchcam(demo, rows, table):
    from torchcam.metrics import ClassificationMetric

    net = plain(demo)
    for i in range(len(rows)):
        maps = rows.maps[i : i + 1].cpu()
        metric = ClassificationMetric(GivenMaps(net, maps), lambda x: torch.softmax(x, -1))
        metric.update(rows.inputs[i : i + 1].cpu(), class_idx=[int(rows.classes[i])])
        assert table["avg_drop"][i] == pytest.approx(metric.drop, abs=1e-4)
        assert table["increase"][i] == metric.increase
    assert table["avg_drop"].max() > 0.01  # a model with real probabilities: the test can fail


def rise_auc(net, x, saliency, c, step, mode):
    """RISE's CausalMetric.single_run, one step at a time (softmax of class c)."""
    hw = x.shape[-2] * x.shape[-1]
    n = (hw + step - 1) // step
    if mode == "deletion":
        start, finish = x.clone(), torch.zeros_like(x)
    else:
        from scipy.ndimage import gaussian_filter

        impulse = np.zeros((11, 11))
        impulse[5, 5] = 1
        kern = np.zeros((3, 3, 11, 11), np.float32)
        for k in range(3):
            kern[k, k] = gaussian_filter(impulse, 5)
        start = torch.nn.functional.conv2d(x, torch.from_numpy(kern), padding=5)
        finish = x.clone()
    order = np.argsort(-saliency.reshape(-1), kind="stable")
    scores = np.empty(n + 1)
    with torch.no_grad():
        for i in range(n + 1):
            scores[i] = float(torch.softmax(net(start), 1)[0, c])
            if i < n:
                coords = order[step * i : step * (i + 1)]
                start.view(1, 3, hw)[0, :, coords] = finish.view(1, 3, hw)[0, :, coords]
    return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / n


def test_deletion_and_insertion_equal_rise(demo, rows, table):
    net = plain(demo)
    step = SIZE * SIZE // STEPS
    for i in range(len(rows)):
        x, saliency, c = rows.inputs[i : i + 1].cpu(), rows.maps[i].cpu().numpy(), rows.classes[i]
        for mode in ("deletion", "insertion"):
            expected = rise_auc(net, x, saliency, int(c), step, mode)
            assert table[mode][i] == pytest.approx(expected, abs=1e-3), (i, mode)
    assert (table["insertion"] - table["deletion"]).abs().max() > 0.01


def test_bfloat16_scores_near_float32_and_said(demo, scenes, table, monkeypatch):
    """``precision="bf16"``: the perturbed inputs' passes under bfloat16 autocast (a spy sees
    it; the images' own pass stays float32), the AUCs within 0.02 of float32's and not the
    same numbers; the table says which."""
    import napari_gapcam.engine.precision as precision

    seen, forward = [], demo.forward_batch

    def spied(tensor, dtype=None, *args, **kwargs):
        seen.append(dtype)
        return forward(tensor, dtype, *args, **kwargs)

    monkeypatch.setattr(demo, "forward_batch", spied)
    modes = ("deletion", "insertion")
    args = dict(metrics=modes, steps=STEPS, input_size=SIZE)
    fast = faithfulness(demo, scenes[0], precision="bf16", **args)
    assert seen[0] is None  # the images' own pass: their maps and scores stay float32
    assert set(seen[1:]) == {torch.bfloat16} and len(seen) >= 3
    assert fast.attrs["precision"] == "bf16" and table.attrs["precision"] == "fp32"
    difference = (fast[list(modes)] - table[list(modes)]).abs().to_numpy()
    assert difference.max() < 0.02 and difference.max() > 0
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    seen.clear()
    assert faithfulness(demo, scenes[0], precision="auto", **args).attrs["precision"] == "fp32"
    assert set(seen) == {None}
    with pytest.raises(ValueError, match="Unknown precision 'half': use one of fp32, fp16"):
        faithfulness(demo, scenes[0], precision="half", **args)


def test_road_within_pytorch_grad_cam(demo, rows, table):
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    targets = [ClassifierOutputTarget(int(c)) for c in rows.classes]
    expected = ROADCombined(list(PERCENTILES))(
        rows.inputs.cpu(), rows.maps.cpu().numpy(), targets, plain(demo)
    )
    np.testing.assert_allclose(table["road"], expected, atol=0.05)
    assert np.abs(expected).max() > 0.1  # the scores are not all near zero


@pytest.mark.parametrize("size", [(64, 64), (50, 37)])  # odd sides: padded coarse grids
@pytest.mark.parametrize("percentile", [10, 50, 90])
def test_imputation_solves_roads_system(percentile, size):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    torch.manual_seed(1)
    x = torch.nn.functional.avg_pool2d(torch.randn(2, 3, *size), 5, 1, 2) * 3
    maps = torch.nn.functional.interpolate(torch.rand(2, 1, 4, 5), size, mode="bilinear")
    keep = torch.stack([m < float(np.percentile(m.numpy(), percentile)) for m in maps[:, 0]])
    ours = linear_fill(x, keep)
    reference = NoisyLinearImputer(noise=0)
    for i in range(2):
        expected = reference(x[i], keep[i].float())
        assert (ours[i] - expected).abs().max() < 1e-3
    noisy = impute(x, keep, noise=0.01, generator=torch.Generator().manual_seed(0))
    moved = (noisy - ours).abs()
    assert moved[keep[:, None].expand_as(x)].max() == 0  # kept pixels stay
    assert 0.005 < float(moved[~keep[:, None].expand_as(x)].std()) < 0.015


def test_localization_columns_beside(demo, scenes, table):
    from napari_gapcam.engine.metrics import localization_metrics

    images, boxes, masks = scenes
    result = demo.run_batch(images, input_size=SIZE)
    for i, c in enumerate(table["class"]):
        heat = result[i].cam(int(c))
        found = localization_metrics([heat], [boxes[i]], [masks[i]])
        # run_batch keeps its maps in half precision: a few pixels may tip a threshold
        assert table["max_box_acc_v2"][i] == pytest.approx(found["max_box_acc_v2"], abs=0.01)
        assert table["pxap"][i] == pytest.approx(found["pxap"], abs=1e-3)
    assert list(table.columns[:4]) == ["image", "class", "class_name", "method"]
    assert table.attrs["better"]["deletion"] == "lower"
    assert table.attrs["better"]["insertion"] == "higher"
    assert list(table["class"]) == result.top1()


def test_progress_reaches_the_total_and_cancels(demo, scenes):
    images = scenes[0][:2]
    seen: list[tuple[int, int]] = []
    args = dict(metrics=("deletion", "road"), steps=4, input_size=64, batch_size=4)
    faithfulness(demo, images, progress=lambda d, t: seen.append((d, t)), **args)
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1][0] == seen[-1][1] == 2 + 2 * (4 + 18)
    calls = []
    with pytest.raises(FaithfulnessCancelled, match="cancelled"):
        faithfulness(demo, images, progress=lambda d, t: calls.append(d) or len(calls) < 3, **args)
    assert len(calls) == 3


def test_rows_per_class_and_errors(demo, scenes):
    images = scenes[0][:2]
    table = faithfulness(demo, images, [[0, "rectangle"], 2], metrics="avg_drop", input_size=64)
    assert list(table["image"]) == [0, 0, 1] and list(table["class"]) == [0, 1, 2]
    assert list(table.columns[4:]) == ["avg_drop"]
    with pytest.raises(ValueError, match=", ".join(METRICS)):
        faithfulness(demo, images, metrics=("avg_drop", "delition"))
    if not hasattr(demo, "with_method"):
        with pytest.raises(NotImplementedError, match="with_method"):
            faithfulness(demo, images, method="gradcam", metrics="avg_drop")
    assert napari_gapcam.faithfulness is faithfulness


def test_every_method_by_name_scores_its_own_maps(demo, scenes):
    """``method=NAME`` scores that method's maps (Score-CAM's too: it reruns the network on the
    inputs): avg_drop equals TorchCAM's formula on the map of a model loaded with that method."""
    from torchcam.metrics import ClassificationMetric

    from napari_gapcam.engine.methods import METHODS

    net = plain(demo)
    for name in METHODS:
        table = faithfulness(demo, scenes[0][:1], method=name, metrics=("avg_drop",),
                             input_size=SIZE)  # fmt: skip
        assert list(table["method"]) == [name]
        own = demo.with_method(name)
        rows = prepare(own, scenes[0][:1], None, None, None, SIZE, None)
        result = own.run(scenes[0][0], input_size=SIZE)  # that method's own map, its top class
        c = int(rows.classes[0])
        maps = torch.from_numpy(result.cam(c, shape=tuple(rows.inputs.shape[-2:])))[None]
        metric = ClassificationMetric(GivenMaps(net, maps), lambda x: torch.softmax(x, -1))
        metric.update(rows.inputs[:1].cpu(), class_idx=[c])
        assert table["avg_drop"][0] == pytest.approx(metric.drop, abs=1e-3), name
