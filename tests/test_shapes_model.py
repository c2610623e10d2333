"""The synthetic shapes generator and the shipped shapes ResNet-18: classification and CAM boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_gapcam
from napari_gapcam.synthetic import (
    CLASS_NAMES,
    SIDE_RANGE,
    iou,
    make_dataset,
    make_sample,
    sample_scene,
)

WEIGHTS = Path(napari_gapcam.__file__).parent / "data" / "shapes_resnet18.pt"
HELD_OUT_SEED = 4242  # training uses seed 0 (batch i: default_rng([0, i])), the benchmark 1000
N_IMAGES = 48
# Floors a little under what benchmarks/localization/benchmark.py measures on 500 images
# (top-1 0.970; CAM CorLoc 0.880 at its best threshold 0.6; mean IoU 0.353 at 0.2). On these
# 48 images the shipped checkpoint gives top-1 0.979, CorLoc@0.6 0.812, mean IoU@0.2 0.299.
MIN_TOP1 = 0.87
BEST_TAU, MIN_CORLOC = 0.6, 0.70
MIN_MEAN_IOU_AT_0_2 = 0.25
# At Zhou et al.'s τ = 0.2 this model's boxes are mostly too large (benchmark CorLoc@0.2 0.122;
# 2 of these 48 images, 0.042): the floor is low, and the mean IoU@0.2 floor guards that τ too.
MIN_CORLOC_AT_0_2 = 0.02


def test_dataset_is_deterministic_and_varied() -> None:
    a, b = make_dataset(12, seed=3), make_dataset(12, seed=3)
    for (image_a, label_a, box_a), (image_b, label_b, box_b) in zip(a, b, strict=True):
        assert np.array_equal(image_a, image_b) and label_a == label_b and box_a == box_b
    other = make_dataset(12, seed=4)
    assert [(x[0].shape, x[1], x[2]) for x in a] != [(y[0].shape, y[1], y[2]) for y in other]
    assert np.array_equal(sample_scene(1), sample_scene(1))

    data = make_dataset(60, seed=5)
    shapes = {image.shape[:2] for image, _, _ in data}
    assert len(shapes) > 30 and any(h != w for h, w in shapes)
    assert {label for _, label, _ in data} == set(range(len(CLASS_NAMES)))
    sizes = np.array([max(b[2] - b[0], b[3] - b[1]) / min(i.shape[:2]) for i, _, b in data])
    assert sizes.max() - sizes.min() > 0.25  # object sizes vary
    centres = np.array(
        [((b[0] + b[2]) / 2 / i.shape[0], (b[1] + b[3]) / 2 / i.shape[1]) for i, _, b in data]
    )
    assert centres.std(0).min() > 0.1  # positions vary: not always near the centre


def test_sample_format() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        image, label, (y0, x0, y1, x1) = make_sample(rng)
        h, w = image.shape[:2]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert SIDE_RANGE[0] <= h <= SIDE_RANGE[1] and SIDE_RANGE[0] <= w <= SIDE_RANGE[1]
        assert 0 <= label < len(CLASS_NAMES)
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
    assert make_sample(rng, size=(200, 260))[0].shape == (200, 260, 3)


def test_box_is_tight_around_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_gapcam import synthetic

    # No clutter, blur or noise: the object is the only thing that differs from the flat grey
    # background, so its pixels must span exactly the returned box.
    monkeypatch.setattr(synthetic, "_distractor", lambda rng, image, short: None)
    monkeypatch.setattr(synthetic, "_background", lambda rng, h, w, c: np.full((h, w, 3), 0.5))
    monkeypatch.setattr(
        synthetic, "_finish", lambda rng, image: (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    )
    rng = np.random.default_rng(7)
    for _ in range(24):
        image, _, box = synthetic.make_sample(rng)
        ys, xs = np.nonzero(np.any(image != 128, axis=2))
        assert box == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (0, 5, 10, 15)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou(None, (0, 0, 1, 1)) == 0.0


@pytest.fixture(scope="module")
def shapes_model():
    pytest.importorskip("torch")
    assert WEIGHTS.is_file(), f"the shipped checkpoint is missing: {WEIGHTS}"
    return napari_gapcam.load_model("resnet18", weights=WEIGHTS, device="cpu")


def test_shipped_checkpoint_loads(shapes_model) -> None:
    assert shapes_model.class_names == list(CLASS_NAMES)
    assert shapes_model.input_size >= 128


def test_held_out_classification_and_cam_boxes(shapes_model) -> None:
    correct, hits, ious_at_0_2 = [], [], []
    for image, label, box in make_dataset(N_IMAGES, seed=HELD_OUT_SEED):
        result = shapes_model.run(image)  # one forward pass at the checkpoint's input_size
        correct.append(result.topk(1)[0][0] == label)
        hits.append(iou(result.box(label, threshold=BEST_TAU), box) >= 0.5)
        ious_at_0_2.append(iou(result.box(label, threshold=0.2), box))
    top1, corloc, mean_iou = np.mean(correct), np.mean(hits), np.mean(ious_at_0_2)
    corloc_0_2 = np.mean(np.array(ious_at_0_2) >= 0.5)
    assert top1 >= MIN_TOP1, f"top-1 accuracy {top1:.3f} < {MIN_TOP1}"
    assert corloc >= MIN_CORLOC, f"CAM CorLoc@{BEST_TAU} {corloc:.3f} < {MIN_CORLOC}"
    assert corloc_0_2 >= MIN_CORLOC_AT_0_2, f"CAM CorLoc@0.2 {corloc_0_2:.3f} < {MIN_CORLOC_AT_0_2}"
    assert mean_iou >= MIN_MEAN_IOU_AT_0_2, f"mean IoU@0.2 {mean_iou:.3f} < {MIN_MEAN_IOU_AT_0_2}"


def test_the_sample_scene_gives_what_the_docs_say(shapes_model) -> None:
    """The docs (Measurements, "What to expect on the sample"): ring 95 %, box IoU 0.47 at the
    stored τ 0.55, 0.17 at 0.2, 0.61 at 0.7."""
    image, label, box = make_sample(np.random.default_rng(0))
    assert np.array_equal(image, sample_scene()) and CLASS_NAMES[label] == "ring"
    result = shapes_model.run(image)
    index, name, p = result.topk(1)[0]
    assert name == "ring" and p == pytest.approx(0.95, abs=0.02)
    assert shapes_model.box_threshold == 0.55
    for tau, expected in ((0.55, 0.47), (0.2, 0.17), (0.7, 0.61)):
        assert iou(result.box(index, threshold=tau), box) == pytest.approx(expected, abs=0.015)


def test_the_true_mask_is_the_object_and_its_box_the_true_box() -> None:
    from napari_gapcam.synthetic import make_sample_with_mask

    for seed in range(4):
        image, label, box, mask = make_sample_with_mask(np.random.default_rng(seed))
        same = make_sample(np.random.default_rng(seed))
        assert np.array_equal(image, same[0]) and (label, box) == same[1:]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1) == box
