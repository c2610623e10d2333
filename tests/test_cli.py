"""The ``gapcam`` command: outputs equal the engine's, nothing lost, resumable, atomic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import (
    assert_readable,
    cli_process,
    gapcam,
    make_images,
    output_stem,
    predictor,
    records,
    results,
    wait_until_stopped,
)

SIZE = "64"  # --input-size: tiny inputs keep the CLI fast


predict = predictor(SIZE)


def test_maps_overlays_and_json_equal_the_engine(tmp_path, weights, tiny_model):
    images = make_images(tmp_path / "in")
    assert predict(tmp_path / "in", tmp_path / "out", weights) == 0
    out = tmp_path / "out"
    lines = {Path(r["file"]).name: r for r in results(out)}
    assert sorted(lines) == sorted(images)
    # rgb.png and rgb.tiff share a stem: each gets its own outputs
    assert lines["rgb.png"]["outputs"]["cam"] != lines["rgb.tiff"]["outputs"]["cam"]
    for name, image in images.items():
        record = lines[name]
        cams = tifffile.imread(out / record["outputs"]["cam"])
        planes = image if name == "stack.tif" else image[None]
        assert cams.dtype == np.float32
        assert cams.shape == (planes.shape[:3] if name == "stack.tif" else planes.shape[1:3])
        overlay = iio.imread(out / record["outputs"]["overlay"])
        assert overlay.shape == (*planes.shape[1:3], 3) and overlay.dtype == np.uint8
        assert record["pages"] == len(planes) and record["shape"] == list(planes.shape[1:3])
        for page, (plane, written) in enumerate(
            zip(planes, cams.reshape(-1, *planes.shape[1:3]), strict=True)
        ):
            expected = tiny_model.run(plane, input_size=int(SIZE))
            best = expected.topk(1)[0][0]  # each page its own top-1
            np.testing.assert_allclose(
                written, expected.cam(best), atol=2e-3
            )  # batched vs single forward: 1e-4 apart
            entry = record["results"][page]
            assert entry["class"]["index"] == best
            assert [t["index"] for t in entry["topk"]] == [i for i, _, _ in expected.topk(5)]
            np.testing.assert_allclose(
                [t["probability"] for t in entry["topk"]],
                [p for *_, p in expected.topk(5)],
                atol=2e-3,  # batched vs single forward
            )
            box = expected.box(best, 0.2)
            assert entry["box"] == (None if box is None else list(box))
    assert not list(out.glob(".gapcam-tmp-*"))


def test_class_by_name_with_a_class_names_file(tmp_path, weights, tiny_model):
    images = make_images(tmp_path / "in")
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\n")
    out = tmp_path / "out"
    code = predict(
        tmp_path / "in" / "stack.tif",
        out,
        weights,
        "--class-names",
        names,
        "--class",
        "dog",
        "--topk",
        "2",
        "--threshold",
        "0.5",
    )
    assert code == 0
    (record,) = results(out)
    assert [r["class"]["name"] for r in record["results"]] == ["dog"] * 3
    assert all(len(r["topk"]) == 2 for r in record["results"])
    cams = tifffile.imread(out / "stack_cam.tif")
    for plane, written in zip(images["stack.tif"], cams, strict=True):
        expected = tiny_model.run(plane, input_size=int(SIZE))
        np.testing.assert_allclose(
            written, expected.cam(1), atol=2e-3
        )  # batched vs single forward: 1e-4 apart
    assert record["results"][0]["box"] == list(
        tiny_model.run(images["stack.tif"][0], input_size=64).box(1, 0.5)
    )


def test_corrupt_and_unsupported_files_are_reported_and_skipped(tmp_path, weights, capsys):
    make_images(tmp_path / "in", count=2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    code = gapcam(
        "predict",
        tmp_path / "in",
        tmp_path / "notes.txt",
        "--model",
        "resnet18",
        "--weights",
        weights,
        "--input-size",
        SIZE,
        "--out",
        out,
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png: not a readable image" in err
    assert "notes.txt: unsupported format '.txt'" in err
    assert sorted(Path(r["file"]).name for r in results(out)) == ["img000.png", "img001.png"]
    assert (out / "img001_cam.tif").exists() and not (out / "broken_cam.tif").exists()


def test_rerun_skips_done_inputs_and_overwrite_redoes_them(tmp_path, weights, capsys):
    make_images(tmp_path / "in", count=3)
    out = tmp_path / "out"
    assert predict(tmp_path / "in", out, weights) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_cam.tif")}
    capsys.readouterr()
    assert predict(tmp_path / "in", out, weights) == 0
    assert "0 done, 3 already done, 0 failed" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_cam.tif")} == stamps
    assert len(results(out)) == 3
    # other settings are not "done": a different class redoes the inputs
    assert predict(tmp_path / "in", out, weights, "--class", "2") == 0
    assert "3 done, 0 already done" in capsys.readouterr().err
    assert [r["results"][0]["class"]["index"] for r in results(out)] == [2, 2, 2]
    for path in out.glob("*_cam.tif"):  # an old mtime, so a rewrite shows (no sleep)
        os.utime(path, ns=(1, 1))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_cam.tif")}
    assert predict(tmp_path / "in", out, weights, "--class", "2", "--overwrite") == 0
    assert "3 done, 0 already done" in capsys.readouterr().err
    new = {p.name: p.stat().st_mtime_ns for p in out.glob("*_cam.tif")}
    assert all(new[name] > stamps[name] for name in stamps)
    assert len(results(out)) == 3


def test_zarr_input_gives_a_zarr_with_the_same_chunking(tmp_path, weights, tiny_model):
    zarr = pytest.importorskip("zarr")
    data = np.random.default_rng(2).integers(0, 4096, (5, 64, 70)).astype(np.uint16)
    source = zarr.open(
        str(tmp_path / "plate.zarr"), mode="w", shape=data.shape, chunks=(2, 64, 70), dtype="u2"
    )
    source[:] = data
    out = tmp_path / "out"
    assert predict(tmp_path / "plate.zarr", out, weights) == 0
    cams = zarr.open(str(out / "plate_cam.zarr"), mode="r")
    assert cams.shape == data.shape and cams.chunks == (2, 64, 70) and cams.dtype == np.float32
    for plane, written in zip(data, cams[:], strict=True):
        expected = tiny_model.run(plane, input_size=int(SIZE))
        np.testing.assert_allclose(
            written, expected.cam(expected.topk(1)[0][0]), atol=2e-3
        )  # batched vs single forward: 1e-4 apart
    (record,) = results(out)
    assert record["pages"] == 5 and len(record["results"]) == 5
    assert iio.imread(out / "plate_overlay.png").shape == (64, 70, 3)


def test_usage_and_setup_errors_exit_2(tmp_path, weights, capsys):
    make_images(tmp_path / "in", count=1)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        gapcam("predict", tmp_path / "in", "--threshold", "2")
    assert exit_info.value.code == 2
    assert predict(tmp_path / "in", out, weights, "--class", "zebra") == 2
    assert "Unknown class name 'zebra'" in capsys.readouterr().err
    assert predict(tmp_path / "in", out, weights, "--class", "7") == 2
    assert predict(tmp_path / "in", out, tmp_path / "absent.pt") == 2
    assert "absent.pt" in capsys.readouterr().err
    assert (
        gapcam(
            "predict",
            tmp_path / "in",
            "--model",
            "resnet18",
            "--out",
            out,
            "--weights",
            "IMAGENET1K_V1",
        )
        == 2
    )
    assert "--weights" in capsys.readouterr().err  # the offline way out, in CLI words


def test_models_lists_weights_and_where_they_go(torch_home, capsys):
    assert gapcam("models") == 0
    lines = capsys.readouterr().out.splitlines()
    v1 = next(line for line in lines if line.startswith("resnet50 ") and "IMAGENET1K_V1" in line)
    assert " yes " in v1 and str(torch_home / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in v1
    v2 = next(line for line in lines if line.startswith("resnet50 ") and "IMAGENET1K_V2" in line)
    assert " no " in v2 and "resnet50-11ad3fa6.pth" in v2


STOPPING = """
import os, signal, sys
from napari_gapcam.cli import store
from napari_gapcam.cli import main
land, count = store.Store.land, [0]
def stopping(self, *args):
    count[0] += 1
    if count[0] == {n}:  # stopped before this input lands: the test kills it here
        os.kill(os.getpid(), signal.SIGSTOP)
    return land(self, *args)
store.Store.land = stopping
sys.exit(main(sys.argv[1:]))
"""


def _cli_stopping_before_record(n: int, *args: object) -> subprocess.Popen:
    """The CLI in a process that stops itself (SIGSTOP) before writing its n-th record."""
    code = STOPPING.format(n=n)
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_help_explains_every_option_without_importing_torch():
    done = cli_process("predict", "--help")
    text, _ = done.communicate(timeout=60)
    assert done.returncode == 0
    for option in (
        "--model",
        "--weights",
        "--class-names",
        "--class",
        "--topk",
        "--threshold",
        "--input-size",
        "--device",
        "--out",
        "--overwrite",
        "--workers",
        "--scheduler",
        "examples:",
        "results.jsonl",
    ):
        assert option in text
    code = "import sys, napari_gapcam.cli as c; c.build_parser(); assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_killed_run_leaves_complete_files_and_a_rerun_finishes(tmp_path, weights, tiny_model):
    images = make_images(tmp_path / "in", count=24)
    out = tmp_path / "out"
    args = (
        "predict",
        tmp_path / "in",
        "--model",
        "resnet18",
        "--weights",
        weights,
        "--input-size",
        SIZE,
        "--out",
        out,
        "--chunk-size",
        "1",
        "--batch-size",
        "1",
        "--device",
        "cpu",
    )
    process = _cli_stopping_before_record(4, *args)  # a deterministic point: 3 inputs done
    wait_until_stopped(process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done_before = len(records(out))
    assert done_before == 3
    assert_readable(out)
    # an earlier crash may also leave a duplicate or a torn line: the re-run mends them
    with open(out / "results.jsonl", "a") as jsonl:
        jsonl.write((out / "results.jsonl").read_text().splitlines()[0] + "\n" + '{"file": "/x')
    rerun = cli_process(*args)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert f"{24 - done_before} done, {done_before} already done" in err
    lines = results(out)
    assert sorted(Path(r["file"]).name for r in lines) == sorted(images)
    assert not list(out.glob(".gapcam-tmp-*"))
    assert_readable(out)
    for name in ("img000.png", "img023.png"):
        expected = tiny_model.run(images[name], input_size=int(SIZE))
        written = tifffile.imread(out / f"{output_stem(name)}_cam.tif")
        np.testing.assert_allclose(
            written, expected.cam(expected.topk(1)[0][0]), atol=2e-3
        )  # batched vs single forward: 1e-4 apart
