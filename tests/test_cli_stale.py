"""``gapcam predict`` re-runs catch what changed (issue 26, item 4): a same-size replacement of
an input with its time put back, outputs truncated, emptied or overwritten, a label image added."""

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

from _cli import image, predictor, records, results

predict = predictor("32")


def test_a_same_size_replacement_with_its_time_put_back_is_recomputed(tmp_path, weights, capsys):
    """The README promises that only files over 1 MiB can be missed: ``unchanged`` returned on
    size and time before it compared the hash."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image(0, (40, 48)))  # uncompressed: same size, any pixels
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    first = tifffile.imread(out / "a_cam.tif")
    times = os.stat(folder / "a.tif")
    size = times.st_size
    tifffile.imwrite(folder / "a.tif", image(1, (40, 48)))
    os.utime(folder / "a.tif", ns=(times.st_atime_ns, times.st_mtime_ns))
    assert os.stat(folder / "a.tif").st_size == size
    assert os.stat(folder / "a.tif").st_mtime_ns == times.st_mtime_ns
    capsys.readouterr()
    assert predict(folder, out, weights) == 0
    err = capsys.readouterr().err
    assert f"{folder / 'a.tif'} changed since its outputs were made" in err, err
    assert "1 done, 0 already done" in err
    assert not np.array_equal(tifffile.imread(out / "a_cam.tif"), first)
    (record,) = results(out)
    assert record["input"]["sha256"]  # the hash of the new bytes


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "cut":
        path.write_bytes(data[: len(data) // 2])
    else:  # same size, one byte changed
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))


def test_damaged_outputs_are_redone_saying_why(tmp_path, weights, capsys):
    """A 0-byte map, a cut overlay, an overwritten map: each input redone, with the reason."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        iio.imwrite(folder / f"{name}.png", image(ord(name)))
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    sizes = {p.name: p.stat().st_size for p in out.glob("*_*.*")}
    _damage(out / "a_cam.tif", "empty")
    _damage(out / "b_overlay.png", "cut")
    _damage(out / "c_cam.tif", "flip")
    capsys.readouterr()
    assert predict(folder, out, weights) == 0
    err = capsys.readouterr().err
    assert f"a_cam.tif has 0 bytes, {sizes['a_cam.tif']:,} were written: computing" in err, err
    half = sizes["b_overlay.png"] // 2
    assert f"b_overlay.png has {half:,} bytes, {sizes['b_overlay.png']:,} were written" in err
    assert "c_cam.tif is not the file written (its content differs)" in err
    assert "3 done, 1 already done" in err
    assert {p.name: p.stat().st_size for p in out.glob("*_*.*")} == sizes
    assert len(results(out)) == 4
    for record in results(out):
        for name, written in record["output_files"].items():
            assert written["size"] == (out / name).stat().st_size


def test_a_label_image_added_after_the_first_run_is_noticed(tmp_path, weights, capsys):
    folder, masks = tmp_path / "in", tmp_path / "masks"
    folder.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        iio.imwrite(folder / f"{name}.png", image(ord(name)))
    labels = np.zeros((40, 48), np.uint16)
    labels[5:20, 5:30], labels[22:38, 10:40] = 1, 2
    tifffile.imwrite(masks / "b.tif", labels)
    out = tmp_path / "out"
    assert predict(folder, out, weights, "--labels", masks) == 0
    assert not (out / "a_objects.csv").exists() and (out / "b_objects.csv").exists()
    tifffile.imwrite(masks / "a_masks.tif", labels)
    capsys.readouterr()
    assert predict(folder, out, weights, "--labels", masks) == 0
    err = capsys.readouterr().err
    assert f"the label image {masks / 'a_masks.tif'} was added: computing" in err, err
    assert "1 done, 1 already done" in err
    assert (out / "a_objects.csv").read_text().count("\n") == 3  # header and two objects


KILL_AT_SECOND_LINE = """
import os, signal, sys
from napari_gapcam.cli import main, outputs
real, count = outputs.OutputFolder.append_result, [0]
def append(self, record):  # a deterministic point: right after the second input's line
    real(self, record)
    count[0] += 1
    if count[0] == 2:
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
outputs.OutputFolder.append_result = append
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGKILL"])
def test_a_killed_run_of_inputs_redone_leaves_one_line_per_input(tmp_path, weights, name):
    """Item 1: SIGTERM is handled as SIGINT (exit 143, results.jsonl rebuilt, the lock freed);
    after SIGKILL too, results.jsonl never holds two lines for one input."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        iio.imwrite(folder / f"img{i}.png", image(i))
    out = tmp_path / "out"
    assert predict(folder, out, weights) == 0
    args = ["predict", folder, "--model", "resnet18", "--weights", weights, "--input-size", "32",
            "--device", "cpu", "--out", out, "--overwrite", "--batch-size", "1"]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_LINE, name, *map(str, args)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    lines = results(out)
    files = [line["file"] for line in lines]
    assert len(files) == len(set(files)), files  # one line per input
    stored = {record["file"]: record for record in records(out).values()}
    assert all(line == stored[line["file"]] for line in lines)  # never an old line
    if name == "SIGTERM":
        assert done.returncode == 143, done.stderr
        assert "terminated (SIGTERM); run the same command again" in done.stderr
        assert len(lines) == 4 and not (out / ".gapcam-lock.json").exists()
    else:
        assert done.returncode == -signal.SIGKILL
        assert len(lines) == 2  # the inputs redone so far; the others' lines come back next run
    assert predict(folder, out, weights) == 0
    assert sorted(line["file"] for line in results(out)) == sorted(stored)


def test_recursive_walks_a_plate_and_mirrors_it(tmp_path, weights, capsys):
    """Item 6: --recursive finds the inputs of a folder tree; each one's outputs go to the same
    subfolder of --out (two wells' s1.png keep their names); links to folders are not followed
    (a loop cannot trap the walk); --out inside the tree is not read; re-runs skip them."""
    plate = tmp_path / "plate"
    for i, name in enumerate(("A01/s1.png", "A01/s2.png", "B02/s1.png", "top.png", ".x/h.png")):
        (plate / name).parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(plate / name, image(i))
    os.symlink(plate, plate / "B02" / "loop")
    out = plate / "cams"
    assert predict(plate, out, weights, "--recursive") == 0
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_cam.tif"))
    assert made == ["A01/s1_cam.tif", "A01/s2_cam.tif", "B02/s1_cam.tif", "top_cam.tif"]
    assert (out / "B02" / "s1_overlay.png").is_file() and "B02/s1" in records(out)
    lines = {Path(r["file"]).relative_to(plate).as_posix(): r for r in results(out)}
    assert sorted(lines) == ["A01/s1.png", "A01/s2.png", "B02/s1.png", "top.png"]
    assert lines["B02/s1.png"]["outputs"]["cam"] == "B02/s1_cam.tif"
    capsys.readouterr()
    assert predict(plate, out, weights, "--recursive") == 0
    assert "0 done, 4 already done" in capsys.readouterr().err
    (out / "B02" / "s1_cam.tif").write_bytes(b"")
    assert predict(plate, out, weights, "--recursive") == 0
    err = capsys.readouterr().err
    assert "B02/s1_cam.tif has 0 bytes" in err and "1 done, 3 already done" in err
