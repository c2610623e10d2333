"""The batch-first result: the CAM's decomposition into channels, one scale across images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_gapcam import load_model

RNG = np.random.default_rng(21)
STACK = RNG.integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)


def test_contributions_sum_to_the_cam_and_are_w_times_a(resnet18):
    result = resnet18.run(STACK[0], input_size=64)
    c = result.topk(1)[0][0]
    every = result.contributions(c, n=None)
    assert len(every) == 512
    total = np.sum([m for _, _, m in every], axis=0)
    np.testing.assert_allclose(total, result.raw_cam(c), rtol=1e-4, atol=1e-4)
    weight, features = resnet18.fc.weight.detach()[c], result.features
    shares = (weight * features.mean(dim=(1, 2))).numpy()
    top = result.contributions(c, n=8)
    assert [k for k, _, _ in top] == list(np.argsort(-shares, kind="stable")[:8])
    for k, w, m in top:  # by hand: w[c, k] · A_k
        assert w == pytest.approx(float(weight[k]))
        np.testing.assert_allclose(m, (weight[k] * features[k]).numpy(), rtol=1e-6)


def test_contributions_refuse_grad_cam():
    torch.manual_seed(0)
    model = load_model("resnet18", weights=None, device="cpu", method="gradcam")
    with pytest.raises(ValueError, match="exact CAM.*method='cam'"):
        model.run(STACK[0], input_size=64).contributions(0)


def test_one_scale_across_images(resnet18):
    result = resnet18.run_batch(STACK, input_size=64)
    c = result.topk(1)[0][0]
    raws = torch.stack([torch.from_numpy(result[i].raw_cam(c)) for i in range(len(result))])
    low, high = float(raws.min()), float(raws.max())
    up = F.interpolate(raws[:, None], size=(64, 96), mode="bilinear", align_corners=False)[:, 0]
    expected = ((up - low) / (high - low)).numpy()
    shared = result.cams(c, scale="shared")
    np.testing.assert_allclose(shared, expected, rtol=1e-5, atol=1e-5)
    each = result.cams(c)
    assert np.allclose(each.max(axis=(1, 2)), 1.0)  # every image hot somewhere
    assert shared.max(axis=(1, 2)).min() < 0.99  # shared: the cooler images stay cooler
    np.testing.assert_allclose(result.cams(c, images=[2], scale="shared")[0], shared[2], atol=1e-6)
    with pytest.raises(ValueError, match="Unknown scale"):
        result.cams(c, scale="global")


def test_relative_scale_keeps_an_absent_class_cool(resnet18):
    result = resnet18.run_batch(STACK, input_size=64)
    p = torch.softmax(torch.from_numpy(result.image_logits).double(), 1).numpy()  # by hand
    top, last = int(p[0].argmax()), int(p[0].argmin())
    for c in (top, last):
        raw = torch.from_numpy(result[0].raw_cam(c))[None, None]
        up = F.interpolate(raw, size=(64, 96), mode="bilinear", align_corners=False)[0, 0]
        expected = ((up - up.min()) / (up.max() - up.min())).numpy() * p[0, c] / p[0].max()
        np.testing.assert_allclose(result[0].cam(c, scale="relative"), expected, atol=1e-5)
        batch = result.cams(c, images=[0], scale="relative")[0]
        np.testing.assert_allclose(batch, expected, atol=1e-5)
    assert result[0].cam(top, scale="relative").max() == pytest.approx(1.0)  # the top: full heat
    cool = result[0].cam(last, scale="relative").max()
    assert cool == pytest.approx(p[0, last] / p[0].max(), rel=1e-4) and cool < 1.0
    per_image = result.cams([int(row.argmax()) for row in p], scale="relative")
    assert np.allclose(per_image.max(axis=(1, 2)), 1.0)  # each image's own top class


def test_images_picked_across_batches_in_any_order_get_their_own_maps(resnet18):
    """Images are read as slices of their batches: out of order, repeated, across batches."""
    stack = RNG.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    result = resnet18.run_batch(stack, batch_size=3, input_size=64)
    assert [len(part) for part in result._parts] == [3, 3, 2]  # the batches it is kept in
    weight = resnet18.fc.weight.detach()
    picked = [7, 0, 1, 2, 3, 5, 5, 4]
    classes = [int(c) for c in RNG.integers(0, 1000, len(picked))]
    by_hand = [  # M_c = Σ_k w[c, k] · A_k, from each image's own features
        torch.einsum("k,khw->hw", weight[c], result[i].features).numpy()
        for i, c in zip(picked, classes, strict=True)
    ]
    raw = result.raw(picked, classes).numpy()
    np.testing.assert_allclose(raw, np.stack(by_hand), rtol=1e-5, atol=1e-5)
    c = classes[0]
    every = np.stack([torch.einsum("k,khw->hw", weight[c], result[i].features).numpy()
                      for i in range(8)])  # fmt: skip
    assert result.raw_range(c) == pytest.approx((every.min(), every.max()), rel=1e-5)


def test_object_scores_are_each_objects_mean_raw_map(resnet18):
    """Against a hand loop over objects with plain numpy means of the raw map."""
    result = resnet18.run(STACK[1], input_size=64)
    labels = np.zeros((64, 96), np.int32)
    labels[5:20, 10:30] = 3
    labels[30:60, 50:90] = 7
    labels[40:44, 2:6] = 12
    table = result.object_scores(labels, classes=[0, 5, 9])
    assert list(table.columns) == [
        "label",
        "area",
        *[result.class_names[c] for c in (0, 5, 9)],
        "cam_class",
        "cam_share",
    ]
    assert table["label"].tolist() == [3, 7, 12] and table["area"].tolist() == [300, 1200, 16]
    for row, label in enumerate((3, 7, 12)):
        inside = labels == label
        raws = [torch.from_numpy(result.raw_cam(c))[None, None] for c in (0, 5, 9)]
        ups = [F.interpolate(r, size=(64, 96), mode="bilinear", align_corners=False) for r in raws]
        means = [up[0, 0].numpy()[inside].mean() for up in ups]  # the raw map: one scale
        np.testing.assert_allclose(table.iloc[row, 2:5].to_numpy(float), means, rtol=1e-5)
        assert table["cam_class"][row] == result.class_names[(0, 5, 9)[int(np.argmax(means))]]
        top = result.cam(result.topk(1)[0][0])
        assert table["cam_share"][row] == pytest.approx(top[inside].sum() / top.sum(), rel=1e-5)
    every = result.object_scores(labels)  # all 1000 classes
    assert every.shape == (3, 2 + 1000 + 2)
    # the GAP identity: one object over the whole image scores each class's logit less its bias
    whole = result.object_scores(np.ones((64, 96), np.int32), classes=[0, 5, 9])
    bias = resnet18.fc.bias.detach().numpy()[[0, 5, 9]]
    expected = result.logits[[0, 5, 9]] - bias
    np.testing.assert_allclose(whole.iloc[0, 2:5].to_numpy(float), expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="the image's size"):
        result.object_scores(labels[:10])


def test_object_scores_of_a_stack_have_an_image_column(resnet18):
    result = resnet18.run_batch(STACK[:2], input_size=64)
    labels = np.zeros((2, 64, 96), np.int32)
    labels[0, :10, :10], labels[1, 20:40, 20:40], labels[1, 50:, 50:] = 1, 1, 2
    table = result.object_scores(labels, classes=[1])
    assert table["image"].tolist() == [0, 1, 1] and table["label"].tolist() == [1, 1, 2]


def test_heat_is_the_cam_the_box_and_regions_read_made_once(resnet18, monkeypatch):
    """The CLI writes ``heat`` and records the box and regions of the same map: one map made,
    not one per question."""
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), np.uint8)
    result = resnet18.run(image, input_size=64)
    expected = np.nan_to_num(result.cam(2, (12, 16)))
    made = []
    real = type(result).cam

    def counting(self, *args, **kwargs):
        made.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(result), "cam", counting)
    heat = result.heat(2, (12, 16))
    box = result.box(2, 0.2, (12, 16))
    regions = result.regions(2, 0.2, 1, (12, 16))
    assert len(made) == 1
    np.testing.assert_array_equal(heat, expected)
    assert box is not None and regions and regions[0][0] == box
