"""``gapcam predict`` says what is wrong in command-line words (issue 19, item 8)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import image, predictor, records, results
from napari_gapcam.cli import build_parser, main

SIZE = "32"
predict = predictor(SIZE)


def run(tmp_path: Path, weights: Path, *extra: object) -> int:
    folder = tmp_path / "in"
    if not folder.exists():
        folder.mkdir()
        iio.imwrite(folder / "a.png", image(0))
    return predict(folder, tmp_path / "out", weights, *extra)


def test_a_zarr_without_pages_is_reported(tmp_path, weights, capsys):
    zarr = pytest.importorskip("zarr")
    zarr.open(str(tmp_path / "none.zarr"), mode="w", shape=(0, 32, 32), dtype="u1")
    assert predict(tmp_path / "none.zarr", tmp_path / "out", weights) == 1
    err = capsys.readouterr().err
    assert "none.zarr: a zarr array of shape (0, 32, 32) holds no pages" in err


def test_a_zarr_whose_maps_do_not_fit_is_refused_up_front(tmp_path, weights, capsys):
    zarr = pytest.importorskip("zarr")
    zarr.open(str(tmp_path / "huge.zarr"), mode="w", shape=(10**12, 64, 64), chunks=(1000, 64, 64),
              dtype="u1")  # fmt: skip
    assert predict(tmp_path / "huge.zarr", tmp_path / "out", weights) == 2
    err = capsys.readouterr().err
    assert "need 16.4 PB" in err and "free" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"cat\n\xb6dog\n", r"names\.txt is not UTF-8 text \(byte 0xb6 at offset 4\)"),
        (b"cat\ndog\ncat\n", r"names\.txt names 1 class\(es\) more than once \('cat'\)"),
        (b"\n \n", r"names\.txt holds no names"),
    ],
)
def test_a_bad_class_names_file_names_the_file_and_the_option(
    tmp_path, weights, capsys, content, expected
):
    (tmp_path / "names.txt").write_bytes(content)
    assert run(tmp_path, weights, "--class-names", tmp_path / "names.txt") == 2
    err = capsys.readouterr().err
    assert "--class-names" in err and re.search(expected, err), err
    assert not (tmp_path / "out").exists()


def test_engine_advice_reads_as_options(tmp_path, weights, capsys):
    assert run(tmp_path, weights, "--class", "zebra") == 2
    err = capsys.readouterr().err
    assert "result.class_names" not in err and "--class takes a class name or index" in err
    import torch

    if torch.cuda.device_count() < 8:
        assert run(tmp_path, weights, "--device", "cuda:7") == 2
        err = capsys.readouterr().err
        assert "device='auto'" not in err and "--device auto" in err


def test_a_symlink_loop_is_named(tmp_path, weights, capsys):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    assert predict(tmp_path / "loop", tmp_path / "out", weights) == 2
    assert "loop: a symbolic link loop" in capsys.readouterr().err
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    assert predict(tmp_path / "link.png", tmp_path / "out", weights) == 2
    assert "a broken symbolic link" in capsys.readouterr().err


def test_model_help_names_the_families_and_timm():
    predict_parser = build_parser()._subparsers._group_actions[0].choices["predict"]
    text = predict_parser.format_help()
    for word in ("densenet121", "efficientnet_b0", "convnext_tiny", "timm:NAME", "gapcam models"):
        assert word in " ".join(text.split()), word


def test_models_columns_align_and_the_demo_is_named(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "IMAGENET1K" in line]
    long = next(line for line in rows if line.startswith("efficientnet_v2_s "))
    short = next(line for line in rows if line.startswith("resnet18 "))
    assert long.index("IMAGENET1K") == short.index("IMAGENET1K")
    assert long.index(" no ") == short.index(" no ") or " yes " in long + short
    assert "--weights demo" in out and "shapes_resnet18.pt" in out and "sample_scene" in out


def test_the_demo_model_runs_from_its_short_name(tmp_path, capsys):
    from napari_gapcam.synthetic import CLASS_NAMES, sample_scene

    iio.imwrite(tmp_path / "scene.png", sample_scene())
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "scene.png"), "--weights", "demo", "--out", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    (record,) = results(out)
    assert record["settings"]["arch"] == "resnet18"
    assert record["results"][0]["class"]["name"] in CLASS_NAMES


def test_square_is_passed_to_the_engine_and_recorded(tmp_path, weights, tiny_model, capsys):
    """Issue 15 (b): --square squashes to N×N; the skip check tells the two apart."""
    folder = tmp_path / "in"
    folder.mkdir()
    picture = image(4, (40, 96, 3))
    iio.imwrite(folder / "wide.png", picture)
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    assert predict(folder, out, weights, "--square") == 0
    assert "1 done, 0 already done" in capsys.readouterr().err
    (record,) = results(out)
    assert record["settings"]["square"] is True
    expected = tiny_model.run(picture, input_size=int(SIZE), square=True)
    np.testing.assert_allclose(
        tifffile.imread(out / "wide_cam.tif"), expected.cam(expected.topk(1)[0][0]), atol=2e-3
    )
    assert records(out)["wide"]["settings"]["square"] is True


def test_engine_errors_name_their_parameters_as_the_cli_options_that_set_them():
    """An engine error keeps its terms apart from its text: Python reads ``square=True``, the
    command line ``--square``; nothing is rewritten with patterns."""
    from napari_gapcam.cli.messages import option
    from napari_gapcam.engine.config import ModelConfig
    from napari_gapcam.engine.words import said

    with pytest.raises(ValueError) as caught:
        ModelConfig(input_size=256, fixed_size=True).geometry(224, None)
    assert "use input_size=256 with square=True" in str(caught.value)
    assert "use --input-size 256 with --square" in said(caught.value, option)
    assert caught.value.terms == ["input_size", "square"]
