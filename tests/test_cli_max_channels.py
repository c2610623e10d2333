"""``--max-channels N``: Score-CAM's ``max_channels`` from the command line. predict's maps are
the engine's with N channels, N is part of the record's settings (the same N: nothing to do;
another N: every input redone), a method that takes no channels is a usage error before any
model loads, and evaluate's ``--methods`` scores Score-CAM with N channels."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from _cli import make_images, predictor, results
from napari_gapcam import load_model
from napari_gapcam.cli import main

SIZE = "64"
predict = predictor(SIZE)


def test_max_channels_reaches_the_maps_and_the_settings(tmp_path, weights, capsys, monkeypatch):
    monkeypatch.setattr("napari_gapcam.engine.precision.native_bf16", lambda device: False)
    images = make_images(tmp_path / "in", count=2)
    out = tmp_path / "out"
    scorecam = ("--method", "scorecam", "--max-channels")
    assert predict(tmp_path / "in", out, weights, *scorecam, 8) == 0
    records = {Path(r["file"]).name: r for r in results(out)}
    assert all(r["settings"]["options"] == {"max_channels": 8} for r in records.values())
    engine = load_model("resnet18", weights, "cpu", method="scorecam", max_channels=8)
    for name, record in records.items():
        expected = engine.run(images[name], input_size=int(SIZE))
        c = record["results"][0]["class"]["index"]
        written = tifffile.imread(out / record["outputs"]["cam"])
        np.testing.assert_allclose(written, expected.cam(c), atol=2e-3)
    capsys.readouterr()
    assert predict(tmp_path / "in", out, weights, *scorecam, 8) == 0  # the same N: a no-op
    assert "0 done, 2 already done" in capsys.readouterr().err
    assert predict(tmp_path / "in", out, weights, *scorecam, 4) == 0  # another N: redone
    assert "2 done, 0 already done" in capsys.readouterr().err
    assert all(r["settings"]["options"] == {"max_channels": 4} for r in results(out))
    assert predict(tmp_path / "in", out, weights, "--method", "scorecam") == 0  # all: redone
    assert "2 done, 0 already done" in capsys.readouterr().err
    assert all("options" not in r["settings"] for r in results(out))  # as before the option


@pytest.mark.parametrize("flag, value", [("--max-channels", 8), ("--precision", "bf16")])
@pytest.mark.parametrize("method", ["gradcam", "auto"])
def test_a_score_cam_option_with_a_method_that_takes_none_is_a_usage_error(
    tmp_path, weights, capsys, monkeypatch, method, flag, value
):
    """--max-channels, and predict's --precision (:mod:`test_cli_precision`): Score-CAM's."""
    from napari_gapcam.models.spec import ModelSpec

    def no_model(_spec):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(ModelSpec, "load", no_model)
    make_images(tmp_path / "in", count=1)
    out = tmp_path / "out"
    assert predict(tmp_path / "in", out, weights, "--method", method, flag, value) == 2
    err = capsys.readouterr().err
    assert f"{flag} {value} is an option of Score-CAM" in err
    assert f"--method {method} does not take it" in err
    assert f"Use --method scorecam, or leave {flag} out" in err
    assert not out.exists()


def test_evaluate_scores_score_cam_with_max_channels(tmp_path, capsys, monkeypatch):
    import imageio.v3 as iio

    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS
    from napari_gapcam.synthetic import make_sample

    folder = tmp_path / "in"
    folder.mkdir()
    image = make_sample(np.random.default_rng(3), size=(96, 128))[0]
    iio.imwrite(folder / "s.png", image)
    faithfulness, seen = napari_gapcam.faithfulness, []

    def spy(model, *args, method=None, **kwargs):
        seen.append((method, getattr(model.method_object, "max_channels", None)))
        return faithfulness(model, *args, method=method, **kwargs)

    monkeypatch.setattr(napari_gapcam, "faithfulness", spy)
    out = tmp_path / "scores.csv"
    common = ["evaluate", str(folder), "--weights", "demo", "--device", "cpu", "--input-size",
              "96", "--metrics", "avg_drop", "--out", str(out)]  # fmt: skip
    assert main([*common, "--methods", "cam,scorecam", "--max-channels", "8"]) == 0
    assert seen == [("cam", None), ("scorecam", 8)]
    with open(out, newline="") as file:
        rows = {row["method"]: row for row in csv.DictReader(file)}
    model = load_model("resnet18", DEMO_WEIGHTS, "cpu", method="scorecam", max_channels=8)
    c = int(rows["scorecam"]["class"])
    expected = faithfulness(model, [image], [c], metrics=["avg_drop"], input_size=96)
    assert float(rows["scorecam"]["avg_drop"]) == pytest.approx(expected["avg_drop"][0], abs=3e-3)
    capsys.readouterr()
    assert main([*common, "--methods", "cam,gradcam", "--max-channels", "8"]) == 2
    err = capsys.readouterr().err
    assert "neither --method auto nor --methods cam,gradcam takes it" in err
    assert "Add scorecam to --methods" in err
