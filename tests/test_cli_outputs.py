"""The CLI's pieces on libraries: the OME-Zarr map (ome-zarr, NGFF 0.4), the tile CSV (pandas),
the region polygons (shapely), the folder lock (filelock), the class-names reader (one)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import warnings

import imageio.v3 as iio
import numpy as np
import pytest

from _cli import image, ome_zarr_levels, predictor, wait_until_stopped
from napari_gapcam.cli import main
from napari_gapcam.cli.tiled_outputs import region_features, tile_table, write_ome_zarr

predict = predictor(32)


def _feature_of(grid: np.ndarray, cell=(2.0, 3.0)) -> dict:
    (feature,) = region_features(grid, 0.5, cell, "k")
    return feature


@pytest.mark.parametrize(
    "cells", [[(1, 1)], [(1, 1), (2, 1), (3, 1), (3, 2), (3, 3)]], ids=["one cell", "an L"]
)
def test_a_region_s_polygon_is_the_exact_union_of_its_cells(cells):
    shapely = pytest.importorskip("shapely")
    from shapely.geometry import shape

    grid = np.zeros((6, 6), np.float32)
    for cell in cells:
        grid[cell] = 1.0
    feature = _feature_of(grid)
    polygon = shape(feature["geometry"])
    measurements = feature["properties"]["measurements"]
    assert polygon.is_valid and not polygon.interiors
    assert polygon.area == measurements["area_px"] == len(cells) * 6.0
    expected = shapely.union_all(
        [shapely.box(3 * x, 2 * y, 3 * x + 3, 2 * y + 2) for y, x in cells]
    )
    assert polygon.equals(expected)
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == (5 if len(cells) == 1 else 7)  # no extra vertex
    assert shapely.LinearRing(ring).is_ccw  # the exterior counter-clockwise (RFC 7946)


def test_a_region_with_a_hole_has_an_interior_ring():
    pytest.importorskip("shapely")
    from shapely.geometry import shape

    grid = np.zeros((7, 7), np.float32)
    grid[1:6, 1:6] = 1.0
    grid[3, 3] = 0.0  # the hole
    feature = _feature_of(grid, (1.0, 1.0))
    polygon = shape(feature["geometry"])
    assert len(feature["geometry"]["coordinates"]) == 2 and len(polygon.interiors) == 1
    assert polygon.area == feature["properties"]["measurements"]["area_px"] == 24
    assert polygon.interiors[0].bounds == (3.0, 3.0, 4.0, 4.0)


def test_the_map_opens_with_ome_zarr_and_validates_as_ngff_0_4(tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    models = pytest.importorskip("ome_zarr_models.v04.image")
    from skimage.measure import block_reduce

    maps = np.random.default_rng(0).random((3, 37, 21)).astype(np.float32)
    maps[:, :4, :6] = np.nan  # skipped tiles
    final = tmp_path / "m_cam.ome.zarr"
    written = write_ome_zarr(final, maps, (64.0, 48.0), ["disk", "ring", "star"], {"class": "all"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m_cam.ome.zarr"]  # no temporary left
    models.Image.from_zarr(zarr.open_group(str(final), mode="r"))  # raises unless valid NGFF 0.4
    levels = ome_zarr_levels(final)
    assert [level.shape for level in levels] == [(3, 37, 21), (3, 19, 11), (3, 10, 6)]
    np.testing.assert_array_equal(levels[0], maps)  # NaN where tiles were skipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        halved = block_reduce(maps, (1, 2, 2), func=np.nanmean, cval=np.nan)
    np.testing.assert_allclose(levels[1], halved, rtol=1e-6)
    assert np.isnan(levels[1][:, :2, :3]).all()
    attrs = json.loads((final / ".zattrs").read_text())
    (multiscale,) = attrs["multiscales"]
    assert multiscale["version"] == "0.4" and multiscale["name"] == "m_cam.ome.zarr"
    assert [a["name"] for a in multiscale["axes"]] == ["c", "y", "x"]
    for k, (dataset, level) in enumerate(zip(multiscale["datasets"], written, strict=True)):
        scale, translation = (t[t["type"]] for t in dataset["coordinateTransformations"])
        assert scale == [1.0, 64.0 * 2**k, 48.0 * 2**k] == [1.0, *level["scale"]]
        assert translation == [0.0, 32.0 * 2**k - 0.5, 24.0 * 2**k - 0.5]
        assert dataset["path"] == level["path"]
        array = json.loads((final / dataset["path"] / ".zarray").read_text())
        assert array["dimension_separator"] == "/" and array["fill_value"] == "NaN"
    assert (final / written[0]["path"] / "0" / "0" / "0").is_file()  # nested chunk keys
    channels = attrs["omero"]["channels"]
    assert [c["label"] for c in channels] == ["disk", "ring", "star"]
    assert all(len(c["color"]) == 6 and int(c["color"], 16) >= 0 for c in channels)
    assert len({c["color"] for c in channels}) == 3  # turbo's colours, one per class
    assert attrs["gapcam"] == {"class": "all"}


def test_the_tile_table_keeps_its_columns_order_and_numbers():
    tiles, boxes = [(1, 0), (0, 0)], [(384, 0, 384), (0, 0, 384)]
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.125]], np.float32)
    names = ["disk", "ring, thin", "star"]
    assert tile_table(tiles, boxes, p, names, 2) == (
        "row,column,y0,x0,size,class_1,probability_1,class_2,probability_2\n"
        '0,0,0,0,384,disk,0.5,"ring, thin",0.25\n'
        '1,0,384,0,384,"ring, thin",0.7,star,0.2\n'
    )
    assert tile_table(tiles, boxes, p, names, None) == (
        'row,column,y0,x0,size,disk,"ring, thin",star\n'
        "0,0,0,0,384,0.5,0.25,0.125\n"
        "1,0,384,0,384,0.1,0.7,0.2\n"
    )
    third = np.float32(1 / 3)
    assert tile_table([(0, 0)], [(0, 0, 8)], np.array([[third]]), ["a"], 5).endswith(
        f"a,{third:.6g}\n"
    )
    assert tile_table([], [], np.zeros((0, 3)), names, None) == (
        'row,column,y0,x0,size,disk,"ring, thin",star\n'
    )


def test_tiles_without_ome_zarr_is_a_usage_error_before_the_model(tmp_path, monkeypatch, capsys):
    import importlib.util

    from napari_gapcam.cli import infer

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ome_zarr" else real(name, *a)
    )
    monkeypatch.setattr(infer, "get_model", lambda spec: pytest.fail("the model was loaded"))
    iio.imwrite(tmp_path / "a.png", image(1, (64, 64, 3)))
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "a.png"), "--tiles", "--weights", "demo",
                 "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--tiles (its OME-Zarr map) needs the ome-zarr package" in err
    assert "pip install 'napari-gapcam[zarr]'" in err and not out.exists()


KILLED_HOLDER = """
import os, signal, sys
from napari_gapcam.cli.folder_lock import FolderLock
lock = FolderLock(sys.argv[1], "gapcam predict killed")
lock.acquire()
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_a_holder_killed_with_sigkill_is_refused_while_alive_then_taken_over(tmp_path):
    from napari_gapcam.cli.folder_lock import HOLDER_NAME, FolderBusyError, FolderLock

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, str(out)])
    try:
        wait_until_stopped(holder)  # it holds the lock now
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid} on .*gapcam predict killed"):
            FolderLock(out, "second").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / HOLDER_NAME).exists()  # what a SIGKILL leaves: the OS lock went with it
    with FolderLock(out, "third") as lock:
        assert lock.previous is not None and lock.previous["pid"] == holder.pid
        assert json.loads((out / HOLDER_NAME).read_text())["command"] == "third"
    assert not (out / HOLDER_NAME).exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"cat\n\xb6dog\n", r"names\.txt is not UTF-8 text \(byte 0xb6 at offset 4\)"),
        (b"cat\ndog\ncat\n", r"names\.txt names 1 class\(es\) more than once \('cat'\)"),
        (b"\n \n", r"names\.txt holds no names\. Give a UTF-8 \.txt file"),
        (b'{"a": 1}', r"names\.json must hold a JSON list of names"),
        (b"[1, 2", r"names\.json is not valid JSON"),
    ],
)
def test_one_class_names_reader_for_the_api_and_the_cli(
    tmp_path, weights, capsys, content, expected
):
    """models.class_names.read_names is the one reader: the engine raises WeightsError, the
    CLI says the same after --class-names and exits 2."""
    from napari_gapcam import WeightsError, load_model

    path = tmp_path / ("names.json" if content.startswith((b"{", b"[")) else "names.txt")
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=expected):
        load_model("resnet18", weights=weights, class_names=path, device="cpu")
    iio.imwrite(tmp_path / "a.png", image(0))
    assert predict(tmp_path / "a.png", tmp_path / "out", weights, "--class-names", path) == 2
    err = capsys.readouterr().err
    assert f"--class-names {path}" in err
    assert re.search(expected, err) and not (tmp_path / "out").exists()


def test_the_engine_reads_a_sidecar_with_the_same_reader(tmp_path, weights):
    """A class-names file beside the checkpoint goes through the same checks."""
    from napari_gapcam import WeightsError, load_model

    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(weights.read_bytes())
    (tmp_path / "tiny.txt").write_text("cat\ndog\nbird\n")
    assert load_model("resnet18", weights=checkpoint, device="cpu").class_names == [
        "cat",
        "dog",
        "bird",
    ]
    (tmp_path / "tiny.txt").write_text("cat\ncat\nbird\n")
    with pytest.raises(WeightsError, match="more than once"):
        load_model("resnet18", weights=checkpoint, device="cpu")


def test_the_map_opens_in_napari_with_its_ome_zarr_reader(tmp_path):
    """napari-ome-zarr (napari's reader of OME-Zarr) opens the map as a multiscale image over
    the slide: one layer, the 3 levels, each cell ``cell_pixels`` level-0 pixels. (Its 0.10
    reads the scale, not the translation: the map sits half a cell up and left of the slide.)"""
    reader = pytest.importorskip("napari_ome_zarr._reader")
    maps = np.random.default_rng(0).random((37, 21)).astype(np.float32)
    final = tmp_path / "m_cam.ome.zarr"
    write_ome_zarr(final, maps, (64.0, 48.0), None, {"class": "disk"})
    read = reader.napari_get_reader(str(final))
    assert read is not None  # napari's File ▸ Open takes it
    [(levels, kwargs, kind)] = read(str(final))
    assert kind == "image" and len(levels) == 3
    assert [tuple(level.shape) for level in levels] == [(37, 21), (19, 11), (10, 6)]
    assert list(kwargs["scale"]) == [64.0, 48.0]
    np.testing.assert_array_equal(np.asarray(levels[0]), maps)
