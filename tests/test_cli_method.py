"""One model spec for the widget, the CLI and its workers: --method reaches the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from _cli import make_images, predictor, results
from napari_gapcam import load_model
from napari_gapcam.models.spec import ModelSpec

SIZE = "64"
predict = predictor(SIZE)


def test_method_gradcam_is_used_recorded_and_part_of_the_settings(tmp_path, weights, capsys):
    images = make_images(tmp_path / "in", count=2)
    out = tmp_path / "out"
    assert predict(tmp_path / "in", out, weights, "--method", "gradcam") == 0
    lines = {Path(r["file"]).name: r for r in results(out)}
    assert all(r["settings"]["method"] == "gradcam" for r in lines.values())
    engine = load_model("resnet18", weights, "cpu", method="gradcam")
    name = "img000.png"
    expected = engine.run(images[name], input_size=int(SIZE))
    c = lines[name]["results"][0]["class"]["index"]
    written = tifffile.imread(out / lines[name]["outputs"]["cam"])
    np.testing.assert_allclose(written, expected.cam(c), atol=2e-3)
    capsys.readouterr()
    assert predict(tmp_path / "in", out, weights) == 0  # auto (the CAM) is another setting
    assert "2 done, 0 already done" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["layercam", "eigencam"])
def test_a_new_method_runs_through_predict(tmp_path, weights, method):
    """Every row of the methods table is a --method choice, and its maps are the engine's."""
    images = make_images(tmp_path / "in", count=1)
    out = tmp_path / "out"
    assert predict(tmp_path / "in", out, weights, "--method", method) == 0
    [record] = results(out)
    assert record["settings"]["method"] == method
    engine = load_model("resnet18", weights, "cpu", method=method)
    expected = engine.run(images["img000.png"], input_size=int(SIZE))
    c = record["results"][0]["class"]["index"]
    written = tifffile.imread(out / record["outputs"]["cam"])
    np.testing.assert_allclose(written, expected.cam(c), atol=2e-3)


def test_the_spec_is_hashable_seeded_and_checks_its_method():
    a = ModelSpec("resnet18", None, "cpu", seed=3)
    assert a == ModelSpec("resnet18", None, "cpu", seed=3) and len({a, a}) == 1
    first, second = a.load(), a.load()
    assert np.array_equal(first.fc.weight.detach().numpy(), second.fc.weight.detach().numpy())
    try:
        ModelSpec(method="lime")
    except ValueError as error:
        assert "Unknown method 'lime'" in str(error)
    else:
        raise AssertionError("an unknown method was accepted")


def test_every_region_is_recorded_with_its_share(tmp_path, weights, tiny_model):
    """As the widget's *all regions*: every region above τ of at least --min-area pixels."""
    from napari_gapcam.engine.localize import regions_with_shares

    images = make_images(tmp_path / "in", count=1)
    out = tmp_path / "out"
    assert predict(tmp_path / "in", out, weights, "--threshold", "0.3", "--min-area", "4") == 0
    [record] = results(out)
    page = record["results"][0]
    cam = tiny_model.run(images["img000.png"], input_size=int(SIZE)).cam(page["class"]["index"])
    expected = regions_with_shares(cam, 0.3, 4)
    assert [r["box"] for r in page["regions"]] == [list(b) for b, _ in expected]
    assert [r["share"] for r in page["regions"]] == pytest.approx([s for _, s in expected])
    assert (
        page["regions"][0]["box"] == page["box"] and sum(r["share"] for r in page["regions"]) <= 1
    )
