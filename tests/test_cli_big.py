"""Big inputs and quick re-runs (issue 19, item 9): lazy TIFF pages, bounded maps, no napari."""

from __future__ import annotations

import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import image, predictor, results
from napari_gapcam.cli import pages as inputs
from napari_gapcam.engine.grid import bounded_grid, grid_placement

SIZE = "32"
predict = predictor(SIZE)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_big_tiff_page_is_read_lazily_with_the_same_map(
    tmp_path, weights, tiny_model, monkeypatch, chunk_reads, compression
):
    """Above LAZY_BYTES a page is a dask array (over the memory map, or tifffile's zarr store
    when compressed) read band by band, never whole: no compute reads every chunk of a page,
    and each chunk is read a bounded number of times. Its map equals the one of the page in
    memory."""
    import dask.array as da
    from dask.callbacks import Callback

    from napari_gapcam.engine import preprocess

    if compression:
        pytest.importorskip("zarr")
    monkeypatch.setattr(inputs, "LAZY_BYTES", 1000)  # memory map: chunks of 3 rows
    monkeypatch.setattr(preprocess, "BAND_VALUES", 16 * 70)  # bands of 16 rows
    picture = image(7, (3, 60, 70))
    tifffile.imwrite(tmp_path / "big.tif", picture, photometric="minisblack",
                     compression=compression, rowsperstrip=8)  # fmt: skip
    pages = inputs.open_pages(tmp_path / "big.tif")
    assert pages.count == 3 and isinstance(pages.read(1), da.Array)
    np.testing.assert_array_equal(pages.read(1)[10:20], picture[1, 10:20])
    real = inputs.lazy_view
    monkeypatch.setattr(inputs, "lazy_view", lambda *a: chunk_reads.counted(real(*a), axis=None))
    out = tmp_path / "out"
    with Callback(start=lambda graph: chunk_reads.append("compute")):
        assert predict(tmp_path / "big.tif", out, weights) == 0
    chunks = len(pages.array.chunks[1])  # row chunks of a page: 20 (memory map) or 8 (strips)
    assert chunks >= 8
    computes, reads = [set()], {}
    for entry in chunk_reads:
        if entry == "compute":
            computes.append(set())
        else:
            computes[-1].add(entry[:2])
            reads[entry[:2]] = reads.get(entry[:2], 0) + 1
    assert set(reads) == {(p, c) for p in range(3) for c in range(chunks)}  # all of every page
    for page in range(3):  # ... in bands: no single read took a whole page
        assert all(len({c for p, c in seen if p == page}) < chunks for seen in computes)
    assert max(reads.values()) <= 8  # 2 passes of the engine, 2 of the overlay; band edges
    written = tifffile.imread(out / "big_cam.tif")
    for plane, cam in zip(picture, written, strict=True):
        expected = tiny_model.run(plane, input_size=int(SIZE))
        np.testing.assert_allclose(cam, expected.cam(expected.topk(1)[0][0]), atol=2e-3)


def test_a_big_map_is_written_at_a_bounded_grid_with_its_placement(tmp_path, weights, tiny_model):
    picture = image(8, (64, 80, 3))
    iio.imwrite(tmp_path / "wide.png", picture)
    out = tmp_path / "out"
    assert predict(tmp_path / "wide.png", out, weights, "--max-map-pixels", "1000") == 0
    grid = bounded_grid((64, 80), 1000)
    cam = tifffile.imread(out / "wide_cam.tif")
    assert cam.shape == grid and grid[0] * grid[1] <= 1000
    (record,) = results(out)
    scale, translate = grid_placement((64, 80), grid)
    placement = {"shape": list(grid), "scale": list(scale), "translate": list(translate)}
    assert record["map"] == placement
    with tifffile.TiffFile(out / "wide_cam.tif") as tiff:
        assert tiff.shaped_metadata[0]["scale"] == list(scale)
    expected = tiny_model.run(picture, input_size=int(SIZE))
    best = expected.topk(1)[0][0]
    np.testing.assert_allclose(cam, expected.cam(best, grid), atol=2e-3)
    y0, x0, y1, x1 = record["results"][0]["box"]
    assert 0 <= y0 < y1 <= 64 and 0 <= x0 < x1 <= 80  # in image pixels
    assert iio.imread(out / "wide_overlay.png").shape == (*grid, 3)


def test_a_png_beyond_pillows_bomb_limit_is_read(tmp_path, weights, monkeypatch):
    """The size limit does not depend on the format: Pillow's guard is not the limit."""
    from PIL import Image

    iio.imwrite(tmp_path / "a.png", image(9, (64, 72, 3)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64×72 is "a bomb" to Pillow now
    assert predict(tmp_path / "a.png", tmp_path / "out", weights) == 0
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_a_finished_folder_reruns_without_torch_and_no_run_imports_napari(tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        iio.imwrite(folder / f"i{i}.png", image(i))
    out = tmp_path / "out"
    args = ["predict", str(folder), "--model", "resnet18", "--weights", str(weights),
            "--input-size", SIZE, "--device", "cpu", "--out", str(out)]  # fmt: skip
    check = (
        "import sys; from napari_gapcam.cli import main; rc = main({args!r}); "
        "bad = [m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6') if m in sys.modules]; "
        "assert not bad, bad; {extra}; sys.exit(rc)"
    )
    first = subprocess.run(
        [sys.executable, "-c", check.format(args=args, extra="pass")],
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        [sys.executable, "-c",
         check.format(args=args, extra="assert 'torch' not in sys.modules, 'torch imported'")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "0 done, 3 already done" in again.stderr
    assert len(results(out)) == 3


def test_turbo_table_is_napari_s(tmp_path):
    pytest.importorskip("napari")
    from napari.utils.colormaps import ensure_colormap

    from napari_gapcam.engine.overlay import turbo_lut

    napari_turbo = ensure_colormap("turbo").map(np.linspace(0, 1, 256))[:, :3]
    np.testing.assert_allclose(turbo_lut(), napari_turbo, atol=1 / 255)


# the table the CLI carried before it took turbo from cmap: napari's "turbo" at 256 levels
OLD_TURBO_HEX = (
    "30123b32154333184a341b51351e5836215f37246638276d392a733a2d793b2f803c32863d358b3e38913f3b973f3e9c"
    "4040a24143a74146ac4249b1424bb5434eba4451bf4454c34456c74559cb455ccf455ed34661d64664da4666dd4669e0"
    "466be3476ee64771e94773eb4776ee4778f0477bf2467df44680f64682f84685fa4687fb458afc458cfd448ffe4391fe"
    "4294ff4196ff4099ff3e9bfe3d9efe3ba0fd3aa3fc38a5fb37a8fa35abf833adf731aff52fb2f42eb4f22cb7f02ab9ee"
    "28bceb27bee925c0e723c3e422c5e220c7df1fc9dd1ecbda1ccdd81bd0d51ad2d21ad4d019d5cd18d7ca18d9c818dbc5"
    "18ddc218dec018e0bd19e2bb19e3b91ae4b61ce6b41de7b21fe9af20eaac22ebaa25eca727eea42aefa12cf09e2ff19b"
    "32f29835f39438f4913cf58e3ff68a43f78746f8844af8804ef97d52fa7a55fa7659fb735dfc6f61fc6c65fd6969fd66"
    "6dfe6271fe5f75fe5c79fe597dff5680ff5384ff5188ff4e8bff4b8fff4992ff4796fe4499fe429cfe409ffd3fa1fd3d"
    "a4fc3ca7fc3aa9fb39acfb38affa37b1f936b4f836b7f735b9f635bcf534bef434c1f334c3f134c6f034c8ef34cbed34"
    "cdec34d0ea34d2e935d4e735d7e535d9e436dbe236dde037dfdf37e1dd37e3db38e5d938e7d739e9d539ebd339ecd13a"
    "eecf3aefcd3af1cb3af2c93af4c73af5c53af6c33af7c13af8be39f9bc39faba39fbb838fbb637fcb336fcb136fdae35"
    "fdac34fea933fea732fea431fea130fe9e2ffe9b2dfe992cfe962bfe932afe9029fd8d27fd8a26fc8725fc8423fb8122"
    "fb7e21fa7b1ff9781ef9751df8721cf76f1af66c19f56918f46617f36315f26014f15d13f05b12ef5811ed5510ec530f"
    "eb500eea4e0de84b0ce7490ce5470be4450ae2430ae14109df3f08dd3d08dc3b07da3907d83706d63506d43305d23105"
    "d02f05ce2d04cc2b04ca2a04c82803c52603c32503c12302be2102bc2002b91e02b71d02b41b01b21a01af1801ac1701"
    "a91601a71401a41301a112019e10019b0f01980e01950d01920b018e0a018b09028808028507028106027e05027a0403"
)


def test_turbo_is_the_table_the_cli_carried():
    from napari_gapcam.engine.overlay import turbo_lut

    old = np.frombuffer(bytes.fromhex("".join(OLD_TURBO_HEX)), np.uint8).reshape(256, 3) / 255
    lut = turbo_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.float32
    np.testing.assert_allclose(lut, old, atol=1 / 255)
