"""predict's ``--precision`` (Score-CAM's masked passes): decided once per run — ``auto`` is
bfloat16 where the machine computes it natively — and kept in the records, so a folder written
on two machines, one with AMX, never mixes bfloat16 and float32 maps: the other machine's
rerun redoes them. Float32 is left out of the records, as before the option existed. With a method
that takes no precision it is a usage error (``test_cli_max_channels``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from _cli import make_images, predictor, results
from napari_gapcam import load_model

SIZE = "64"
predict = predictor(SIZE)
SCORECAM = ("--method", "scorecam", "--max-channels", "8")


def _native(monkeypatch, native: bool) -> None:
    """This machine with (True) or without bfloat16 matrix units."""
    monkeypatch.setattr("napari_gapcam.engine.precision.native_bf16", lambda device: native)


def _settings(out: Path) -> list[dict]:
    return [r["settings"]["options"] for r in results(out)]


def test_auto_is_decided_once_recorded_and_redone_on_another_machine(
    tmp_path, weights, capsys, monkeypatch
):
    images = make_images(tmp_path / "in", count=2)
    out = tmp_path / "out"
    _native(monkeypatch, True)
    assert predict(tmp_path / "in", out, weights, *SCORECAM) == 0
    assert _settings(out) == [{"max_channels": 8, "precision": "bf16"}] * 2
    assert "Score-CAM's masked passes run in bf16" in capsys.readouterr().err  # said
    bf16 = load_model("resnet18", weights, "cpu", method="scorecam", max_channels=8,
                      precision="bf16")  # fmt: skip
    fp32 = bf16.with_method("scorecam", max_channels=8, precision="fp32")
    for record in results(out):
        image, c = images[Path(record["file"]).name], record["results"][0]["class"]["index"]
        written = tifffile.imread(out / record["outputs"]["cam"])
        np.testing.assert_allclose(written, bf16.run(image, input_size=int(SIZE)).cam(c),
                                   atol=2e-3)  # fmt: skip
        assert np.abs(written - fp32.run(image, input_size=int(SIZE)).cam(c)).max() > 1e-4
    capsys.readouterr()
    assert predict(tmp_path / "in", out, weights, *SCORECAM) == 0  # same machine: a no-op
    assert "0 done, 2 already done" in capsys.readouterr().err
    _native(monkeypatch, False)  # the same folder from a machine without AMX: redone in fp32
    assert predict(tmp_path / "in", out, weights, *SCORECAM) == 0
    err = capsys.readouterr().err
    assert "2 done, 0 already done" in err and "bf16" not in err
    assert _settings(out) == [{"max_channels": 8}] * 2  # float32: as before the option
    _native(monkeypatch, True)
    assert predict(tmp_path / "in", out, weights, *SCORECAM, "--precision", "fp32") == 0
    assert "0 done, 2 already done" in capsys.readouterr().err  # asked fp32: these are


def test_precision_given_reaches_the_model(tmp_path, weights, capsys, monkeypatch):
    from napari_gapcam.models.spec import ModelSpec

    loaded = []
    load = ModelSpec.load
    monkeypatch.setattr("napari_gapcam.cli.infer._MODELS", {})  # each process's loaded models
    monkeypatch.setattr(ModelSpec, "load", lambda spec: loaded.append(spec) or load(spec))
    _native(monkeypatch, False)
    make_images(tmp_path / "in", count=1)
    assert predict(tmp_path / "in", tmp_path / "out", weights, *SCORECAM, "--precision",
                   "bf16") == 0  # fmt: skip
    assert dict(loaded[-1].options) == {"max_channels": 8, "precision": "bf16"}
    assert _settings(tmp_path / "out") == [{"max_channels": 8, "precision": "bf16"}]


@pytest.mark.parametrize("given", [None, "bf16"])
def test_evaluate_runs_score_cam_at_its_precision(tmp_path, monkeypatch, given):
    """evaluate's --precision (default fp32, the anchors' numbers) is Score-CAM's masked passes'
    too: its scores never mix a machine's bf16 maps with float32 reruns."""
    import imageio.v3 as iio

    import napari_gapcam
    from napari_gapcam.cli import main
    from napari_gapcam.synthetic import make_sample

    _native(monkeypatch, True)  # auto would be bf16 here
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "s.png", make_sample(np.random.default_rng(3), size=(96, 128))[0])
    faithfulness, seen = napari_gapcam.faithfulness, []

    def spy(model, *args, method=None, **kwargs):
        seen.append((method, getattr(model.method_object, "precision", None), kwargs["precision"]))
        return faithfulness(model, *args, method=method, **kwargs)

    monkeypatch.setattr(napari_gapcam, "faithfulness", spy)
    command = ["evaluate", str(folder), "--weights", "demo", "--device", "cpu", "--input-size",
               "96", "--metrics", "avg_drop", "--out", str(tmp_path / "scores.csv"),
               "--methods", "cam,scorecam", "--max-channels", "4"]  # fmt: skip
    assert main(command + (["--precision", given] if given else [])) == 0
    expected = given or "fp32"
    assert seen == [("cam", None, expected), ("scorecam", expected, expected)]
