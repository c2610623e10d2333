"""``gapcam evaluate --methods a,b --metrics …``: one CSV row per image × method equal to the
engine's :func:`napari_gapcam.faithfulness` of that image, a summary of the means (printed and
written), and usage errors that exit 2 and touch no file of the user's."""

from __future__ import annotations

import csv
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_gapcam.cli import main
from napari_gapcam.synthetic import make_sample

CLASSES = ["disk", "rectangle", "triangle", "ring", "cross", "star"]
METRICS = "avg_drop,increase,road"  # the cheap ones (deletion/insertion: a pass per step)
SIZE = 96
TOLERANCE = {"avg_drop": 3e-3, "increase": 0, "road": 0.05, "max_box_acc_v2": 1e-6}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three synthetic scenes, two sizes, and their true boxes."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(7)
    rows, truth = [], {}
    for n, size in enumerate([(96, 128), (96, 128), (112, 96)]):
        image, label, box = make_sample(rng, size=size)
        iio.imwrite(folder / f"s{n}.png", image)
        rows.append(f"s{n}.png,{box[0]},{box[1]},{box[2]},{box[3]},{CLASSES[label]}")
        truth[f"s{n}.png"] = (image, label, box)
    boxes = folder.parent / f"{folder.name}_boxes.csv"
    boxes.write_text("file,y0,x0,y1,x1,class\n" + "\n".join(rows) + "\n")
    return folder, boxes, truth


def evaluate(*args: object) -> int:
    return main(["evaluate", *map(str, args), "--weights", "demo", "--device", "cpu",
                 "--input-size", str(SIZE)])  # fmt: skip


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_a_row_per_image_and_method_equal_to_the_engine(scenes, tmp_path, capsys):
    from napari_gapcam import faithfulness, load_model
    from napari_gapcam.models import DEMO_WEIGHTS

    folder, boxes, truth = scenes
    out = tmp_path / "scores.csv"
    code = evaluate(folder, "--methods", "cam,gradcam++", "--metrics", METRICS,
                    "--true-boxes", boxes, "--out", out)  # fmt: skip
    assert code == 0
    rows = read(out)
    assert [(Path(r["file"]).name, r["method"]) for r in rows] == [
        ("s0.png", "cam"), ("s1.png", "cam"), ("s2.png", "cam"),
        ("s0.png", "gradcam++"), ("s1.png", "gradcam++"), ("s2.png", "gradcam++"),
    ]  # fmt: skip
    assert list(rows[0])[:8] == ["file", "class", "class_name", "method", "avg_drop",
                                 "increase", "road", "max_box_acc_v2"]  # fmt: skip
    model = load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
    for row in rows:  # each row is that image's own answer, under that method
        image, label, box = truth[Path(row["file"]).name]
        assert row["class_name"] == CLASSES[label]  # the boxes file's class
        expected = faithfulness(
            model, [image], [label], row["method"], METRICS.split(","), boxes=[[box]],
            input_size=SIZE,
        )  # fmt: skip
        # images of one size are scored together (their maps kept in half precision; ROAD's
        # noise drawn for the batch): within that of the image alone
        for metric, close in TOLERANCE.items():
            assert float(row[metric]) == pytest.approx(float(expected[metric][0]), abs=close)
    summary = read(tmp_path / "scores_summary.csv")
    assert [r["method"] for r in summary] == ["cam", "gradcam++"]
    mean = np.mean([float(r["avg_drop"]) for r in rows if r["method"] == "gradcam++"])
    assert float(summary[1]["avg_drop"]) == pytest.approx(mean, abs=1e-6)
    printed = capsys.readouterr().out
    assert "gradcam++" in printed and "avg_drop" in printed
    # a rerun replaces its own tables
    assert evaluate(folder, "--methods", "cam", "--metrics", "avg_drop", "--out", out) == 0
    assert {r["method"] for r in read(out)} == {"cam"} and "max_box_acc_v2" not in read(out)[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "cam,nope"], "--methods 'cam,nope': nope is not known"),
        (["--methods", "cam", "--metrics", "speed"], "--metrics 'speed': speed is not known"),
        (["--methods", "cam", "--steps", "0"], "--steps 0"),
        ([], "give --true-boxes FILE"),
    ],
)
def test_usage_errors_exit_2(scenes, tmp_path, capsys, extra, message):
    folder, _, _ = scenes
    out = tmp_path / "t.csv"
    assert evaluate(folder, *extra, "--out", out) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_never_replaces_a_file_of_the_user_s(scenes, tmp_path, capsys):
    folder, boxes, _ = scenes
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    assert evaluate(folder, "--methods", "cam", "--out", mine) == 2
    assert "not a table of gapcam evaluate" in capsys.readouterr().err
    assert mine.read_text() == "a,b\n1,2\n"
    assert evaluate(folder, "--methods", "cam", "--true-boxes", boxes, "--out", boxes) == 2
    assert "is read by this run" in capsys.readouterr().err


def test_precision_reaches_the_scores(scenes, tmp_path, monkeypatch):
    """``--precision bf16``: every faithfulness call runs its perturbed inputs under it, and
    the CSV's deletion scores are the engine's under it (float32's differ, by < 0.02)."""
    import napari_gapcam
    from napari_gapcam import load_model
    from napari_gapcam.models import DEMO_WEIGHTS

    real, asked = napari_gapcam.faithfulness, []

    def spy(*args, **kwargs):
        asked.append(kwargs.get("precision"))
        return real(*args, **kwargs)

    monkeypatch.setattr(napari_gapcam, "faithfulness", spy)
    folder, _, truth = scenes
    out = tmp_path / "scores.csv"
    code = evaluate(folder, "--methods", "cam", "--metrics", "deletion", "--steps", "6",
                    "--precision", "bf16", "--out", out)  # fmt: skip
    assert code == 0 and asked and set(asked) == {"bf16"}
    model = load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
    row = next(r for r in read(out) if Path(r["file"]).name == "s2.png")  # alone in its size
    image = truth["s2.png"][0]
    scores = {
        p: real(model, [image], None, "cam", "deletion", 6, input_size=SIZE, precision=p)
        for p in ("bf16", "fp32")
    }
    assert float(row["deletion"]) == pytest.approx(scores["bf16"]["deletion"][0], abs=1e-6)
    assert 0 < abs(scores["fp32"]["deletion"][0] - scores["bf16"]["deletion"][0]) < 0.02
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error: rc 2, no file
        evaluate(folder, "--methods", "cam", "--precision", "fp8", "--out", tmp_path / "t.csv")
    assert exit_info.value.code == 2 and not (tmp_path / "t.csv").exists()
