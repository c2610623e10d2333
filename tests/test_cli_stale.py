"""``gapcam predict`` re-runs catch what changed (issue 26, item 4): a same-size replacement of
an input with its time put back, outputs truncated, emptied or overwritten, a label image added."""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from _cli import image, predictor, results

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
