"""``gapcam predict --labels`` (per-object CSV equal to ``object_scores``) and ``--scale shared``
(one range per class over a stack's pages, equal to ``Result.cams(scale="shared")``)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile

from napari_gapcam.cli import main
from napari_gapcam.synthetic import make_sample

SIZE = 96


def predict(inputs: object, out: Path, *extra: object) -> int:
    return main(["predict", str(inputs), "--weights", "demo", "--device", "cpu", "--input-size",
                 str(SIZE), "--out", str(out), *map(str, extra)])  # fmt: skip


def labels_for(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Three objects: the true box, a corner square, a strip (ids 3, 7, 12)."""
    labels = np.zeros(shape, np.uint16)
    labels[box[0] : box[2], box[1] : box[3]] = 3
    labels[:12, :12] = 7
    labels[-8:, 20:60] = 12
    return labels


def stack(seed: int = 5, pages: int = 5) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(seed)
    samples = [make_sample(rng, size=(96, 112)) for _ in range(pages)]
    grey = np.stack([s[0].mean(axis=-1).astype(np.uint8) for s in samples])
    return grey, samples


def test_labels_give_each_object_s_scores(tmp_path, demo):
    rng = np.random.default_rng(2)
    folder, masks = tmp_path / "in", tmp_path / "masks"
    folder.mkdir(), masks.mkdir()
    image, _, box = make_sample(rng, size=(100, 120))
    iio.imwrite(folder / "a.png", image)
    labels = labels_for(box, (100, 120))
    iio.imwrite(masks / "a_masks.png", labels)  # cellpose-style name
    pages, samples = stack()
    tifffile.imwrite(folder / "plate.tif", pages, photometric="minisblack")
    page_labels = np.stack([labels_for(s[2], (96, 112)) for s in samples]).astype(np.int32)
    tifffile.imwrite(masks / "plate.tif", page_labels, photometric="minisblack")
    iio.imwrite(folder / "nolabels.png", image[:64, :64])
    out = tmp_path / "out"
    assert predict(folder, out, "--labels", masks) == 0
    lines = {Path(r["file"]).name: r for r in map(json.loads, open(out / "results.jsonl"))}
    assert sorted(lines) == ["a.png", "nolabels.png", "plate.tif"]
    assert "objects" not in lines["nolabels.png"]["outputs"]
    written = pd.read_csv(out / lines["a.png"]["outputs"]["objects"])
    expected = demo.run(image, input_size=SIZE).object_scores(labels)
    assert list(written.columns) == ["label", "area", *demo.class_names, "cam_class", "cam_share"]
    assert written["label"].tolist() == [3, 7, 12] == expected["label"].tolist()
    assert written["area"].tolist() == expected["area"].tolist()
    numbers = [*demo.class_names, "cam_share"]
    np.testing.assert_allclose(written[numbers], expected[numbers], atol=2e-3)
    assert written["cam_class"].tolist() == expected["cam_class"].tolist()
    assert lines["a.png"]["labels"]["file"] == str(masks / "a_masks.png")
    # a stack: one label image per page, an image column
    written = pd.read_csv(out / "plate_objects.csv")
    expected = demo.run_batch(list(pages), input_size=SIZE).object_scores(page_labels)
    assert written.columns[0] == "image" and written["image"].tolist() == [
        i for i in range(5) for _ in range(3)
    ]
    np.testing.assert_allclose(written[numbers], expected[numbers], atol=2e-3)


def test_label_files_are_never_inputs_and_mismatches_fail(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    image, _, box = make_sample(np.random.default_rng(3), size=(80, 90))
    iio.imwrite(folder / "a.png", image)
    iio.imwrite(folder / "a_labels.png", labels_for(box, (80, 90)).astype(np.uint8))
    iio.imwrite(folder / "b.png", image)
    iio.imwrite(folder / "b_labels.png", np.zeros((10, 10), np.uint8))  # the wrong size
    out = tmp_path / "out"
    assert predict(folder, out, "--labels", str(folder / "*_labels.png")) == 1
    err = capsys.readouterr().err
    assert "b.png: the label image b_labels.png has shape (10, 10), the input (80, 90)" in err
    (line,) = [json.loads(x) for x in open(out / "results.jsonl")]
    assert Path(line["file"]).name == "a.png" and (out / "a_objects.csv").exists()
    assert predict(folder, tmp_path / "none", "--labels", tmp_path / "nowhere") == 2
    assert predict(folder, tmp_path / "none", "--labels", folder / "a.png", "--tiles") == 2
    assert not (tmp_path / "none").exists()


def test_shared_scale_maps_equal_the_engine_s_and_say_so(tmp_path, demo):
    pages, _ = stack(seed=6)
    tifffile.imwrite(tmp_path / "plate.tif", pages, photometric="minisblack")
    shared, each = tmp_path / "shared", tmp_path / "each"
    assert predict(tmp_path / "plate.tif", shared, "--scale", "shared", "--class", "disk") == 0
    assert predict(tmp_path / "plate.tif", each, "--class", "disk") == 0
    result = demo.run_batch(list(pages), input_size=SIZE)
    expected = result.cams("disk", scale="shared")
    maps = tifffile.imread(shared / "plate_cam.tif")
    np.testing.assert_allclose(maps, expected, atol=2e-3)
    assert maps.max(axis=(1, 2)).min() < 0.95  # a cooler page stays cool
    np.testing.assert_allclose(tifffile.imread(each / "plate_cam.tif").max(axis=(1, 2)), 1.0)
    (record,) = [json.loads(x) for x in open(shared / "results.jsonl")]
    assert record["scale"] == "shared" and record["map"]["cam_scale"] == "shared"
    low, high = result.raw_range(0)
    np.testing.assert_allclose(record["ranges"]["disk"], [low, high], rtol=1e-3, atol=1e-3)
    with tifffile.TiffFile(shared / "plate_cam.tif") as tiff:
        assert tiff.shaped_metadata[0]["cam_scale"] == "shared"
    (plain,) = [json.loads(x) for x in open(each / "results.jsonl")]
    assert plain["scale"] == "each" and "cam_scale" not in plain["map"]


def test_a_changed_label_image_is_scored_again(tmp_path, demo, capsys):
    """A rerun skips an input whose label image is as it was, and redoes one whose label image
    changed (its per-object CSV would be stale otherwise), saying which file changed."""
    folder, masks = tmp_path / "in", tmp_path / "masks"
    folder.mkdir(), masks.mkdir()
    image, _, box = make_sample(np.random.default_rng(8), size=(80, 90))
    iio.imwrite(folder / "a.png", image)
    iio.imwrite(masks / "a.png", labels_for(box, (80, 90)).astype(np.uint8))
    out = tmp_path / "out"
    assert predict(folder, out, "--labels", masks) == 0
    assert predict(folder, out, "--labels", masks) == 0
    assert "0 done, 1 already done" in capsys.readouterr().err
    relabelled = np.zeros((80, 90), np.uint8)
    relabelled[:40] = 5  # one object now: the top half
    iio.imwrite(masks / "a.png", relabelled)
    assert predict(folder, out, "--labels", masks) == 0
    err = capsys.readouterr().err
    assert f"its label image {masks / 'a.png'} changed since its outputs were made" in err
    assert "1 done, 0 already done" in err
    written = pd.read_csv(out / "a_objects.csv")
    expected = demo.run(image, input_size=SIZE).object_scores(relabelled)
    assert written["label"].tolist() == [5] == expected["label"].tolist()
    np.testing.assert_allclose(written["cam_share"], expected["cam_share"], atol=2e-3)
