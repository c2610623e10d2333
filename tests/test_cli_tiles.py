"""``gapcam predict --tiles``: OME-Zarr map, tile CSV and GeoJSON equal the engine's tiled run;
lazy pyramid levels; background skipped; blocks on dask equal one process; SIGKILL mid-slide
and a resume that redoes only the blocks left."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from _cli import ome_zarr_levels, record_task_keys, records, wait_until_stopped
from napari_gapcam.cli import main
from napari_gapcam.synthetic import make_sample

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")


def mosaic(side: int = 2, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scenes = [make_sample(rng, size=(256, 256))[0] for _ in range(side * side)]
    rows = [np.concatenate(scenes[r * side : (r + 1) * side], 1) for r in range(side)]
    return np.concatenate(rows, 0)


def write_pyramid(path: Path, image: np.ndarray, levels: int = 3) -> list[np.ndarray]:
    """A pyramidal (sub-IFD) tiled RGB TIFF, as slide scanners write them."""
    pyramid = [image[:: 2**k, :: 2**k] for k in range(levels)]
    with tifffile.TiffWriter(path) as tiff:
        tiff.write(pyramid[0], subifds=levels - 1, tile=(128, 128), photometric="rgb")
        for level in pyramid[1:]:
            tiff.write(level, subfiletype=1, tile=(64, 64), photometric="rgb")
    return pyramid


def tiled(inputs: object, out: Path, *extra: object) -> int:
    return main(["predict", str(inputs), "--tiles", "--weights", "demo", "--device", "cpu",
                 "--out", str(out), *map(str, extra)])  # fmt: skip


def record_of(out: Path) -> dict:
    (line,) = (out / "results.jsonl").read_text().splitlines()
    return json.loads(line)


def test_ome_zarr_csv_and_geojson_equal_the_engine_at_a_level(tmp_path, demo):
    pyramid = write_pyramid(tmp_path / "slide.tif", mosaic(4))  # 1024², levels 512², 256²
    out = tmp_path / "out"
    assert tiled(tmp_path / "slide.tif", out, "--level", "1", "--overlap", "0") == 0
    record = record_of(out)
    expected = demo.run_tiled(pyramid, level=1, overlap=0)
    c = expected.topk(1)[0][0]
    assert record["results"][0]["class"]["index"] == c and record["level"] == 1
    assert record["shape"] == [1024, 1024] and record["level_shape"] == [512, 512]
    # the map: NGFF multiscales over level 0 (a cell is 32 px of level 1 = 64 px of level 0)
    group = out / record["outputs"]["cam"]
    attrs = json.loads((group / ".zattrs").read_text())
    (multiscale,) = attrs["multiscales"]
    assert multiscale["version"] == "0.4" and [a["name"] for a in multiscale["axes"]] == ["y", "x"]
    shapes = []
    for k, dataset in enumerate(multiscale["datasets"]):
        scale, translation = (t[t["type"]] for t in dataset["coordinateTransformations"])
        assert scale == [64.0 * 2**k] * 2 and translation == [32.0 * 2**k - 0.5] * 2
        shapes.append(zarr.open(str(group / dataset["path"]), mode="r").shape)
    assert shapes == [(16, 16), (8, 8), (4, 4)]
    written = ome_zarr_levels(group)[0]
    np.testing.assert_allclose(written, expected.cam(c, (16, 16)), atol=2e-3)
    # the tiles: one row each, level-0 pixels, top-5
    with open(out / record["outputs"]["tiles"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(expected.tile_boxes) == 9
    by_tile = {(int(r["row"]), int(r["column"])): r for r in rows}
    for (y0, x0, _, _), p in zip(expected.tile_boxes, expected.tile_probabilities, strict=True):
        row = by_tile[(y0 // 192, x0 // 192)]
        assert (int(row["y0"]), int(row["x0"]), int(row["size"])) == (2 * y0, 2 * x0, 384)
        best = int(np.argmax(p))
        assert row["class_1"] == demo.class_names[best]
        assert float(row["probability_1"]) == pytest.approx(p[best], abs=2e-3)
    # the regions: polygons whose extent is the engine's region boxes, in level-0 pixels
    regions = json.loads((out / record["outputs"]["regions"]).read_text())
    assert regions["type"] == "FeatureCollection" and regions["features"]
    extents = []
    for feature in regions["features"]:
        assert feature["geometry"]["type"] == "Polygon"
        assert feature["properties"]["objectType"] == "annotation"
        assert feature["properties"]["classification"] == {"name": demo.class_names[c]}
        ring = np.asarray(feature["geometry"]["coordinates"][0])  # [x, y]
        assert (ring[0] == ring[-1]).all()
        extents.append((ring[:, 1].min(), ring[:, 0].min(), ring[:, 1].max(), ring[:, 0].max()))
    shares = [f["properties"]["measurements"]["share"] for f in regions["features"]]
    assert all(0 < v <= 1 for v in shares) and sum(shares) <= 1 + 1e-6  # of the map's mass
    boxes = [tuple(2 * v for v in box) for box in expected.boxes(c, record["threshold"])]
    assert sorted(extents) == sorted(boxes)
    assert record["results"][0]["box"] == [2 * v for v in expected.box(c, record["threshold"])]


def test_a_pyramid_level_is_read_lazily_and_alone(tmp_path, demo, monkeypatch):
    """Only the chosen level is sliced, a block of tiles at a time (never whole)."""
    from napari_gapcam.cli import pyramid as levels_module

    write_pyramid(tmp_path / "slide.tif", mosaic(2))  # 512², 256², 128²
    reads: dict[tuple, list] = {}
    real = levels_module.as_plane

    class Counting:
        def __init__(self, plane):
            self.plane, self.shape, self.dtype, self.ndim = plane, plane.shape, plane.dtype, 3

        def __getitem__(self, key):
            part = self.plane[key]
            reads.setdefault(self.shape[:2], []).append(part.shape[:2])
            return part

        def __array__(self, dtype=None, copy=None):
            raise AssertionError("a whole level was read")

    monkeypatch.setattr(levels_module, "as_plane", lambda *a: Counting(real(*a)))
    out = tmp_path / "out"
    assert tiled(tmp_path / "slide.tif", out, "--level", "1", "--tile-size", "128") == 0
    assert (512, 512) not in reads and (128, 128) not in reads  # only level 1
    tiling = record_of(out)["tiles"]
    assert tiling["grid"] == [4, 4] and tiling["size"] == 128
    assert len(reads[(256, 256)]) == 4  # one read per row of tiles of a block: 4 rows


def test_an_ome_zarr_pyramid_is_an_input(tmp_path, demo):
    """NGFF 0.5 (zarr 3, ``ome.multiscales``) with c, y, x axes: channels first, read lazily."""
    image = mosaic(2)
    levels = [image, image[::2, ::2]]
    group = zarr.open_group(str(tmp_path / "plate.ome.zarr"), mode="w")
    for k, level in enumerate(levels):
        array = group.create_array(str(k), shape=(3, *level.shape[:2]), dtype="u1",
                                   chunks=(3, 128, 128))  # fmt: skip
        array[:] = np.moveaxis(level, -1, 0)
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
            {"name": "x", "type": "space"}]  # fmt: skip
    datasets = [{"path": str(k)} for k in range(2)]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    out = tmp_path / "out"
    assert tiled(tmp_path / "plate.ome.zarr", out, "--level", "1", "--tile-size", "128") == 0
    record = record_of(out)
    expected = demo.run_tiled(levels, level=1, tile_size=128)
    c = expected.topk(1)[0][0]
    assert record["level_shape"] == [256, 256] and record["results"][0]["class"]["index"] == c
    assert record["outputs"]["cam"] == "plate_cam.ome.zarr"  # the stem without .ome
    written = ome_zarr_levels(out / "plate_cam.ome.zarr")[0]
    np.testing.assert_allclose(written, expected.cam(c, (8, 8)), atol=2e-3)


def test_background_tiles_are_skipped_and_nan(tmp_path, capsys):
    slide = np.full((768, 768, 3), 250, np.uint8)  # a bright slide background
    slide[:256, :256] = make_sample(np.random.default_rng(3), size=(256, 256))[0]
    tifffile.imwrite(tmp_path / "slide.tif", slide, photometric="rgb", tile=(128, 128))
    out = tmp_path / "out"
    assert tiled(tmp_path / "slide.tif", out, "--background", "auto", "--overlap", "0") == 0
    record = record_of(out)
    assert record["tiles"]["grid"] == [4, 4] and record["tiles"]["skipped"] >= 10
    assert record["tiles"]["run"] + record["tiles"]["skipped"] == 16
    with open(out / "slide_tiles.csv") as handle:
        assert len(list(csv.DictReader(handle))) == record["tiles"]["run"]
    grid = ome_zarr_levels(out / "slide_cam.ome.zarr")[0]
    assert np.isnan(grid[-6:, -6:]).all() and np.isfinite(grid[:6, :6]).all()
    capsys.readouterr()
    assert tiled(tmp_path / "slide.tif", out, "--background", "auto", "--overlap", "0") == 0
    assert "0 done, 1 already done" in capsys.readouterr().err  # a finished slide is skipped


def test_class_all_writes_every_class_and_all_probabilities(tmp_path, demo):
    image = mosaic(2)
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "mosaic.png", image)
    out = tmp_path / "out"
    code = tiled(tmp_path / "mosaic.png", out, "--class", "all", "--all-probabilities",
                 "--overlap", "0")  # fmt: skip
    assert code == 0
    attrs = json.loads((out / "mosaic_cam.ome.zarr" / ".zattrs").read_text())
    axes = [a["name"] for a in attrs["multiscales"][0]["axes"]]
    assert axes == ["c", "y", "x"]
    assert [ch["label"] for ch in attrs["omero"]["channels"]] == demo.class_names
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 32.0, 32.0]
    maps = ome_zarr_levels(out / "mosaic_cam.ome.zarr")[0]
    expected = demo.run_tiled(image, overlap=0)
    assert maps.shape == (6, 16, 16)
    for c in range(6):
        np.testing.assert_allclose(maps[c], expected.cam(c, (16, 16)), atol=2e-3)
    with open(out / "mosaic_tiles.csv") as handle:
        header = next(csv.reader(handle))
    assert header == ["row", "column", "y0", "x0", "size", *demo.class_names]
    names = {f["properties"]["classification"]["name"] for f in json.loads(
        (out / "mosaic_regions.geojson").read_text())["features"]}  # fmt: skip
    assert len(names) > 1  # regions of several classes


def test_usage_errors_of_tiles_exit_2_creating_nothing(tmp_path, capsys):
    write_pyramid(tmp_path / "slide.tif", mosaic(1), levels=2)
    out = tmp_path / "out"
    assert tiled(tmp_path / "slide.tif", out, "--scale", "shared") == 2
    assert main(["predict", str(tmp_path / "slide.tif"), "--class", "all", "--weights", "demo",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "--class all" in capsys.readouterr().err
    assert tiled(tmp_path / "slide.tif", out, "--class", "zebra") == 2
    assert not out.exists()
    assert tiled(tmp_path / "slide.tif", out, "--level", "5") == 1  # a failed input
    assert "--level 5: the image has 2 level(s)" in capsys.readouterr().err
    assert not out.exists()  # found before the model: nothing to compute, nothing written


def _map_and_tiles(out: Path) -> tuple[np.ndarray, str]:
    return (
        ome_zarr_levels(out / "slide_cam.ome.zarr")[0],
        (out / "slide_tiles.csv").read_text(),
    )


def test_blocks_on_a_local_cluster_equal_one_process(tmp_path, monkeypatch):
    """The same map and tiles; every read of the slide (the plan and the map in this process,
    where the cluster's client is the default, and the blocks on the workers) is done where
    it is asked for, on dask's synchronous scheduler: the cluster sees the run's tasks only."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import LocalCluster

    write_pyramid(tmp_path / "slide.tif", mosaic(3))  # 768², chunks 128²: bands of 2 tile rows
    common = ("--overlap", "64", "--block-tiles", "2", "--batch-size", "2")
    assert tiled(tmp_path / "slide.tif", tmp_path / "one", *common) == 0
    with LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        keys = record_task_keys(monkeypatch)
        code = tiled(tmp_path / "slide.tif", tmp_path / "two", *common,
                     "--scheduler", cluster.scheduler_address)  # fmt: skip
    assert code == 0
    assert keys and all(k.startswith(("check_tiled-", "read_locally-")) for k in keys), keys
    one, two = _map_and_tiles(tmp_path / "one"), _map_and_tiles(tmp_path / "two")
    np.testing.assert_allclose(one[0], two[0], atol=1e-6)
    assert one[1] == two[1]
    assert record_of(tmp_path / "two")["tiles"]["blocks"] == 3  # bands of 2 chunk rows
    assert not list((tmp_path / "two" / "records").glob("*.parts"))  # blocks merged, deleted


STOPPING = """
import os, signal, sys
from napari_gapcam.cli import tile_blocks
from napari_gapcam.cli import main
save, count = tile_blocks._save_block, [0]
def stopping(*args):
    count[0] += 1
    if count[0] == 2:  # stopped before saving its 2nd block: the test kills it here
        os.kill(os.getpid(), signal.SIGSTOP)
    save(*args)
tile_blocks._save_block = stopping
sys.exit(main(sys.argv[1:]))
"""


def test_a_slide_killed_mid_run_resumes_with_only_the_blocks_left(tmp_path, demo):
    pyramid = write_pyramid(tmp_path / "slide.tif", mosaic(3))  # 768²: 6×6 tiles, 3 blocks
    out = tmp_path / "out"  # (blocks: bands of two rows of 128² chunks)
    args = ["predict", str(tmp_path / "slide.tif"), "--tiles", "--weights", "demo", "--device",
            "cpu", "--out", str(out), "--block-tiles", "2", "--batch-size", "1"]  # fmt: skip
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    process = subprocess.Popen([sys.executable, "-c", STOPPING, *args], **pipes)
    wait_until_stopped(process)  # a deterministic point: 1 block saved, the 2nd computed
    process.send_signal(signal.SIGKILL)
    process.communicate()
    parts = out / "records" / "slide.parts"
    saved = sorted(parts.glob("block-*.npz"))
    assert len(saved) == 1
    assert not records(out)  # no record for a partial slide
    assert not (out / "slide_cam.ome.zarr").exists()
    assert (out / "results.jsonl").read_text() == ""  # rebuilt at the start: no input done
    # mark a saved block: if the resume used it as saved, its tiles show the mark
    with np.load(saved[0]) as part:
        marked = {key: part[key] for key in part.files}
    marked["probabilities"] = np.full_like(marked["probabilities"], 0.125)
    np.savez(saved[0], **marked)
    rerun = subprocess.run([sys.executable, "-m", "napari_gapcam.cli", *args],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    message = f"{len(saved)} of 3 blocks of tiles saved by an earlier run; computing the other "
    assert message + f"{3 - len(saved)}" in rerun.stderr
    assert "1 done, 0 already done" in rerun.stderr
    assert not parts.exists() and not list(out.glob(".gapcam-tmp-*"))
    with open(out / "slide_tiles.csv") as handle:
        rows = list(csv.DictReader(handle))
    tiles = {(int(i), int(j)) for i, j in marked["tiles"]}
    assert len(rows) == 36
    for row in rows:
        was_marked = (int(row["row"]), int(row["column"])) in tiles
        assert (row["probability_1"] == "0.125") == was_marked
    expected = demo.run_tiled(pyramid)
    c = record_of(out)["results"][0]["class"]["index"]  # the mark may change the top class
    written = ome_zarr_levels(out / "slide_cam.ome.zarr")[0]
    np.testing.assert_allclose(written, expected.cam(c, written.shape), atol=2e-3)
