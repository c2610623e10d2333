"""``gapcam predict`` never mixes runs: collisions, shared folders, changed inputs, usage errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import image, predictor, records, results
from napari_gapcam.cli import main

SIZE = "32"


predict = predictor(SIZE)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_stem_from_another_folder_never_overwrites(tmp_path, weights, capsys):
    """Item 1: plate2/A01.png after plate1/A01.png gets its own outputs, kept across runs."""
    for plate, seed in (("plate1", 1), ("plate2", 2)):
        (tmp_path / plate).mkdir()
        iio.imwrite(tmp_path / plate / "A01.png", image(seed))
    out = tmp_path / "cams"
    assert predict(tmp_path / "plate1", out, weights) == 0
    first = {p.name: digest(p) for p in out.glob("A01_*")}
    assert predict(tmp_path / "plate2", out, weights) == 0
    assert {p.name: digest(p) for p in out.glob("A01_*")} == first  # plate1's untouched
    lines = {Path(r["file"]).parent.name: r for r in results(out)}
    assert sorted(lines) == ["plate1", "plate2"]
    assert lines["plate1"]["outputs"]["cam"] == "A01_cam.tif"
    assert lines["plate2"]["outputs"]["cam"].startswith("A01-")
    capsys.readouterr()
    assert predict([tmp_path / "plate1", tmp_path / "plate2"], out, weights) == 0
    assert "0 done, 2 already done" in capsys.readouterr().err
    assert len(results(out)) == 2  # each file once
    assert {p.name: digest(p) for p in out.glob("A01_*")} == first


def test_a_second_run_on_a_busy_folder_exits_2_and_deletes_nothing(
    tmp_path, weights, monkeypatch, capsys
):
    """Item 2: run B starts while run A is writing a temporary file (a deterministic overlap):
    B names A and exits 2; A's temporary survives and A finishes with complete records."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"img{i}.png", image(i))
    out = tmp_path / "out"
    real = tifffile.imwrite
    seen: dict[str, object] = {}

    def imwrite_then_second_run(path, *args, **kwargs):
        real(path, *args, **kwargs)
        if "code" not in seen:  # A holds the lock and has a temporary on disk right now
            seen["temp"], seen["code"] = Path(path), None  # once (B may write too, on old code)
            seen["code"] = predict(folder, out, weights)
            seen["temp_left"] = Path(path).exists()

    monkeypatch.setattr(tifffile, "imwrite", imwrite_then_second_run)
    assert predict(folder, out, weights) == 0
    err = capsys.readouterr().err
    assert seen["code"] == 2
    assert seen["temp"].name.startswith(".gapcam-tmp-") and seen["temp_left"]
    assert f"pid {os.getpid()}" in err and "in use by another gapcam run" in err
    assert f"(gapcam predict {folder} --model resnet18" in err  # the holder's command
    assert len(results(out)) == 3 and len(records(out)) == 3
    assert not list(out.glob(".gapcam-tmp-*"))


def test_a_held_lock_refuses_another_process_and_a_dead_ones_is_taken_over(tmp_path, weights):
    """Item 2: across processes; a lock file left by a dead run (no OS lock) is stale."""
    from napari_gapcam.cli.folder_lock import HOLDER_NAME, FolderLock

    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "a.png", image(0))
    out = tmp_path / "out"
    out.mkdir()
    other = out / ".gapcam-tmp-0123456789ab-x_cam.tif"  # a live run's file in progress
    other.write_bytes(b"partial")
    command = [sys.executable, "-m", "napari_gapcam.cli", "predict", str(folder), "--model",
               "resnet18", "--weights", str(weights), "--input-size", SIZE,
               "--out", str(out)]  # fmt: skip
    with FolderLock(out, "test holder"):
        busy = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert busy.returncode == 2, busy.stderr
    assert f"pid {os.getpid()}" in busy.stderr and "test holder" in busy.stderr
    assert other.exists() and not (out / ".gapcam").exists()
    dead = {"pid": 999999, "host": "gone", "started": 0, "command": "gapcam predict old"}
    (out / HOLDER_NAME).write_text(json.dumps(dead))  # the OS lock itself is free
    free = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert free.returncode == 0, free.stderr
    assert "took over the lock of a run that ended: pid 999999 on gone" in free.stderr
    assert not other.exists()  # a dead run's temporary is cleaned up
    assert not (out / HOLDER_NAME).exists()  # released


def test_a_record_for_incomplete_outputs_is_not_done(tmp_path, weights, capsys):
    """Item 2: a zarr map without its metadata (as a deleted temporary left it) is redone."""
    zarr = pytest.importorskip("zarr")
    source = zarr.open(str(tmp_path / "plate.zarr"), mode="w", shape=(2, 40, 48), dtype="u1")
    source[:] = image(3, (2, 40, 48))
    out = tmp_path / "out"
    assert predict(tmp_path / "plate.zarr", out, weights) == 0
    (out / "plate_cam.zarr" / "zarr.json").unlink()
    capsys.readouterr()
    assert predict(tmp_path / "plate.zarr", out, weights) == 0
    assert "1 done, 0 already done" in capsys.readouterr().err
    assert zarr.open(str(out / "plate_cam.zarr"), mode="r").shape == (2, 40, 48)


def test_a_stem_stays_its_files_while_its_outputs_are_redone(tmp_path, weights):
    """Item 1: plate1's A01 lost its map (deleted): plate2's A01 still never takes its name."""
    for plate, seed in (("plate1", 1), ("plate2", 2)):
        (tmp_path / plate).mkdir()
        iio.imwrite(tmp_path / plate / "A01.png", image(seed))
    out = tmp_path / "cams"
    assert predict(tmp_path / "plate1", out, weights) == 0
    (out / "A01_cam.tif").unlink()
    assert predict(tmp_path / "plate2", out, weights) == 0
    assert not (out / "A01_cam.tif").exists()  # plate2's outputs went elsewhere
    assert records(out)["A01"]["file"].endswith(str(Path("plate1") / "A01.png"))
    assert predict([tmp_path / "plate1", tmp_path / "plate2"], out, weights) == 0
    lines = {Path(r["file"]).parent.name: r["outputs"]["cam"] for r in results(out)}
    assert lines["plate1"] == "A01_cam.tif" and lines["plate2"].startswith("A01-")


def test_a_changed_input_is_computed_again(tmp_path, weights, capsys):
    """Item 3: another image under the same name is recomputed; a touched copy is not."""
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "img.png", image(0, (40, 48, 3)))
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    iio.imwrite(folder / "img.png", image(1, (56, 40)))  # another image, another shape
    capsys.readouterr()
    assert predict(folder, out, weights) == 0
    err = capsys.readouterr().err
    assert "img.png changed since its outputs were made" in err and "1 done, 0 already" in err
    (record,) = results(out)
    assert record["shape"] == [56, 40]
    assert record["input"]["size"] == (folder / "img.png").stat().st_size
    assert tifffile.imread(out / "img_cam.tif").shape == (56, 40)
    os.utime(folder / "img.png", ns=(1, 1))  # same bytes, another time: the hash says unchanged
    assert predict(folder, out, weights) == 0
    assert "0 done, 1 already done" in capsys.readouterr().err


def test_out_inside_the_input_folder_never_reads_its_outputs(tmp_path, weights, capsys):
    """Item 4: --out is the input folder; three runs see the same 3 inputs."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"shape{i:02d}.png", image(i))
    for _ in range(3):
        assert predict(folder, folder, weights) == 0
        assert len(results(folder)) == 3
    err = capsys.readouterr().err
    assert "left out 6 file(s) written by gapcam" in err
    assert not list(folder.glob("*_cam_*"))


def test_random_init_is_seeded_and_the_seed_recorded(tmp_path):
    """Item 6: --weights none makes the same model in every run (and worker)."""
    iio.imwrite(tmp_path / "a.png", image(5))
    maps = {}
    for name, extra in (("one", []), ("two", []), ("seed1", ["--seed", "1"])):
        out = tmp_path / name
        assert predict(tmp_path / "a.png", out, "none", *extra) == 0
        maps[name] = tifffile.imread(out / "a_cam.tif")
        (record,) = results(out)
        assert record["settings"]["seed"] == (1 if extra else 0)
        assert record["settings"]["weights"] is None
    np.testing.assert_array_equal(maps["one"], maps["two"])
    assert not np.array_equal(maps["one"], maps["seed1"])


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "class", "weights", "names", "device", "model", "input-size", "out"],
)
def test_a_usage_error_exits_2_and_creates_nothing(tmp_path, weights, case, capsys):
    """Item 7: every set-up error is found before anything is written."""
    folder = tmp_path / "in"
    folder.mkdir()
    iio.imwrite(folder / "a.png", image(0))
    (tmp_path / "empty").mkdir()
    (tmp_path / "names.txt").write_bytes(b"\xb6\x00\xff garbage")
    (tmp_path / "file").write_text("x")
    out = tmp_path / "out"
    arguments = {
        "missing": [tmp_path / "nope.png"],
        "empty": [tmp_path / "empty"],
        "class": ["--class", "zebra"],
        "weights": ["--weights", tmp_path / "absent.pt"],
        "names": ["--class-names", tmp_path / "names.txt"],
        "device": ["--device", "gpu0"],
        "model": ["--model", "resnet9000"],
        "input-size": ["--input-size", "100000"],
        "out": ["--out", tmp_path / "file"],
    }[case]
    inputs = arguments if case in ("missing", "empty") else [folder]
    extra = [] if case in ("missing", "empty") else arguments
    args = ["predict", *inputs, "--model", "resnet18", "--weights", weights,
            "--input-size", SIZE, "--device", "cpu", "--out", out]  # fmt: skip
    args = [*args, *extra]  # later options win
    if case == "input-size":
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        code = exit_info.value.code
    else:
        code = main([str(a) for a in args])
    assert code == 2
    assert not out.exists()
    assert "error" in capsys.readouterr().err


def test_an_input_size_that_cannot_fit_is_refused_before_any_input(
    tmp_path, weights, monkeypatch, capsys
):
    """Item 7: the forward pass at --input-size is checked against free memory up front."""
    from napari_gapcam.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**9)  # 1 GB free
    iio.imwrite(tmp_path / "a.png", image(0))
    assert predict(tmp_path / "a.png", tmp_path / "out", weights, "--input-size", "4096") == 2
    err = capsys.readouterr().err
    assert "An input of 4096×4096 pixels needs about" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_input_exits_2_at_once_without_torch(tmp_path):
    """Item 7: checked before the model: torch is never imported."""
    code = (
        "import sys; from napari_gapcam.cli import main; "
        f"rc = main(['predict', {str(tmp_path / 'nope')!r}, '--out', {str(tmp_path / 'o')!r}]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "nope: no such file or folder" in done.stderr
    assert not (tmp_path / "o").exists()
