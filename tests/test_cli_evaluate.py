"""``gapcam evaluate``: true boxes from CSV, JSON and COCO files; the metrics equal
``localization_metrics`` of the engine's maps; usage errors exit 2 and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_gapcam.cli import main
from napari_gapcam.cli.true_boxes import BoxFileError, Truth, match, read_true_boxes
from napari_gapcam.synthetic import make_sample

CLASSES = ["disk", "rectangle", "triangle", "ring", "cross", "star"]


def test_csv_json_and_coco_give_the_same_boxes(tmp_path):
    (tmp_path / "b.csv").write_text(
        "file,y0,x0,y1,x1,class\na.png,1,2,11,22,disk\na.png,5,5,9,9,disk\nsub/b.png,0,0,4,8,\n"
    )
    (tmp_path / "b.json").write_text(json.dumps(
        {"a.png": {"boxes": [[1, 2, 11, 22], [5, 5, 9, 9]], "class": "disk"},
         "sub/b.png": [0, 0, 4, 8]}))  # fmt: skip
    (tmp_path / "list.json").write_text(json.dumps(
        [{"file": "a.png", "box": [1, 2, 11, 22], "class": "disk"},
         {"file": "a.png", "box": [5, 5, 9, 9], "class": "disk"},
         {"file": "sub/b.png", "box": [0, 0, 4, 8]}]))  # fmt: skip
    coco = {
        "images": [{"id": 7, "file_name": "a.png"}, {"id": 9, "file_name": "sub/b.png"},
                   {"id": 10, "file_name": "empty.png"}],
        "annotations": [
            {"image_id": 7, "bbox": [2, 1, 20, 10], "category_id": 3},  # x, y, w, h
            {"image_id": 7, "bbox": [5.2, 4.8, 3.9, 4.1], "category_id": 3},
            {"image_id": 9, "bbox": [0, 0, 8, 4], "category_id": None},
        ],
        "categories": [{"id": 3, "name": "disk"}],
    }  # fmt: skip
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    expected = {
        "a.png": Truth([(1, 2, 11, 22), (5, 5, 9, 9)], "disk"),
        "sub/b.png": Truth([(0, 0, 4, 8)], None),
    }
    for name in ("b.csv", "b.json", "list.json"):
        assert read_true_boxes(tmp_path / name) == expected, name
    assert read_true_boxes(tmp_path / "coco.json") == {**expected, "empty.png": Truth()}
    found, unused = match([Path("/x/a.png"), Path("/y/b.tif"), Path("/z/c.png")], expected)
    assert found == {Path("/x/a.png"): expected["a.png"], Path("/y/b.tif"): expected["sub/b.png"]}
    assert unused == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,y0\na.png,1\n", "needs the header file,y0,x0,y1,x1"),
        ("file,y0,x0,y1,x1\na.png,1,2,1,5\n", "line 2: an empty box"),
        ("file,y0,x0,y1,x1\na.png,1,2,3,5\n\nb.png,1,2,1,5\n", "line 4: an empty box"),
        ("file,y0,x0,y1,x1,class\na.png,0,0,4,4,disk\na.png,0,0,4,4,star\n", "one class per"),
    ],
)
def test_bad_box_files_say_where(tmp_path, text, message):
    (tmp_path / "b.csv").write_text(text)
    with pytest.raises(BoxFileError, match=message):
        read_true_boxes(tmp_path / "b.csv")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Five synthetic scenes (known class and box) as PNGs, with boxes files and masks."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(4)
    rows, coco = [], {"images": [], "annotations": [], "categories": []}
    coco["categories"] = [{"id": i, "name": n} for i, n in enumerate(CLASSES)]
    (folder / "masks").mkdir()
    truth = []
    for n in range(5):
        image, label, box = make_sample(rng, size=(160, 192))
        iio.imwrite(folder / f"s{n}.png", image)
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[box[0] : box[2], box[1] : box[3]] = 1
        iio.imwrite(folder / "masks" / f"s{n}_masks.png", mask)
        rows.append(f"s{n}.png,{box[0]},{box[1]},{box[2]},{box[3]},{CLASSES[label]}")
        coco["images"].append({"id": n, "file_name": f"s{n}.png"})
        y0, x0, y1, x1 = box
        coco["annotations"].append(
            {"image_id": n, "bbox": [x0, y0, x1 - x0, y1 - y0], "category_id": int(label)}
        )
        truth.append((image, label, box, mask))
    (folder / "boxes.csv").write_text("file,y0,x0,y1,x1,class\n" + "\n".join(rows) + "\n")
    (folder / "coco.json").write_text(json.dumps(coco))
    return folder, truth


def evaluate(folder: Path, boxes: str, out: Path, *extra: object) -> int:
    return main(["evaluate", str(folder), "--true-boxes", str(folder / boxes), "--weights",
                 "demo", "--device", "cpu", "--out", str(out), *map(str, extra)])  # fmt: skip


def test_metrics_equal_the_engine_s_for_csv_and_coco(scenes, tmp_path, capsys):
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    folder, truth = scenes
    model = napari_gapcam.load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
    maps = [model.run(image).cam(label) for image, label, _, _ in truth]
    expected = napari_gapcam.localization_metrics(
        maps, [box for *_, box, _ in truth], [mask.astype(bool) for *_, mask in truth]
    )
    assert evaluate(folder, "boxes.csv", tmp_path / "csv.json", "--true-masks",
                    folder / "masks") == 0  # fmt: skip
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "csv.json").read_text())
    assert report["images"] == 5
    assert report["max_box_acc_v2"] == pytest.approx(expected["max_box_acc_v2"], abs=1e-9)
    for delta in (0.3, 0.5, 0.7):
        assert report["max_box_acc"][str(delta)] == pytest.approx(expected["max_box_acc"][delta])
        tau = expected["best_threshold"][delta]
        assert report["best_threshold"][str(delta)] == pytest.approx(tau)
        assert f"MaxBoxAcc @ IoU {delta:g}  {expected['max_box_acc'][delta]:.4f}  " \
            f"(best threshold {tau:.2f})" in printed  # fmt: skip
    assert report["pxap"] == pytest.approx(expected["pxap"])
    assert f"MaxBoxAccV2  {expected['max_box_acc_v2']:.4f}" in printed and "PxAP" in printed
    assert [f["class"] for f in report["files"]] == [CLASSES[t[1]] for t in truth]
    assert np.asarray(report["box_acc"]).shape == (101, 3)
    assert evaluate(folder, "coco.json", tmp_path / "coco.json") == 0
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert coco["max_box_acc"] == report["max_box_acc"] and coco["pxap"] is None
    assert coco["best_threshold"] == report["best_threshold"]


def test_usage_errors_exit_2_and_write_nothing(scenes, tmp_path, capsys):
    folder, _ = scenes
    (tmp_path / "other.csv").write_text("file,y0,x0,y1,x1\nnone.png,0,0,4,4\n")
    out = tmp_path / "r.json"
    assert main(["evaluate", str(folder), "--true-boxes", str(tmp_path / "other.csv"),
                 "--weights", "demo", "--out", str(out)]) == 2  # fmt: skip
    assert "no input is named in" in capsys.readouterr().err
    assert evaluate(folder, "boxes.csv", out, "--class", "zebra") == 2
    assert "Unknown class name 'zebra'" in capsys.readouterr().err
    assert evaluate(folder, "missing.csv", out) == 2
    assert evaluate(folder, "boxes.csv", out, "--true-masks", tmp_path / "nowhere") == 2
    assert not out.exists()


def test_help_names_the_new_options_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io; from napari_gapcam.cli import main\n"
        "for command in ('predict', 'evaluate'):\n"
        "    text = io.StringIO()\n"
        "    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):\n"
        "        main([command, '--help'])\n"
        "    print(text.getvalue())\n"
        "assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for option in ("--tiles", "--level", "--tile-size", "--overlap", "--background",
                   "--all-probabilities", "--block-tiles", "--labels", "--scale",
                   "_cam.ome.zarr", "_tiles.csv", "_regions.geojson", "_objects.csv",
                   "--true-boxes", "--true-masks", "MaxBoxAccV2"):  # fmt: skip
        assert option in done.stdout, option
