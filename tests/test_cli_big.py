"""Big inputs and quick re-runs (issue 19, item 9): lazy TIFF pages, bounded maps, no napari."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_gapcam.cli import inputs
from napari_gapcam.engine.grid import bounded_grid, grid_placement
from test_cli_safety import SIZE, image, predict, results, tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory)


@pytest.fixture
def engine(weights):
    from napari_gapcam import load_model

    return load_model("resnet18", weights=weights, device="cpu")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_big_tiff_page_is_read_lazily_with_the_same_map(
    tmp_path, weights, engine, monkeypatch, compression
):
    """Above LAZY_BYTES a page is a LazyPlane (memory map, or tifffile's zarr store when
    compressed) read band by band; its map equals the one of the page in memory."""
    if compression:
        pytest.importorskip("zarr")
    monkeypatch.setattr(inputs, "LAZY_BYTES", 1000)
    picture = image(7, (3, 60, 70))
    tifffile.imwrite(tmp_path / "big.tif", picture, photometric="minisblack",
                     compression=compression, rowsperstrip=8)  # fmt: skip
    pages = inputs.open_pages(tmp_path / "big.tif")
    assert pages.count == 3 and isinstance(pages.read(1), inputs.LazyPlane)
    np.testing.assert_array_equal(pages.read(1)[10:20], picture[1, 10:20])
    out = tmp_path / "out"
    assert predict(tmp_path / "big.tif", out, weights) == 0
    written = tifffile.imread(out / "big_cam.tif")
    for plane, cam in zip(picture, written, strict=True):
        expected = engine.run(plane, input_size=int(SIZE))
        np.testing.assert_allclose(cam, expected.cam(expected.topk(1)[0][0]), atol=2e-3)


def test_a_big_map_is_written_at_a_bounded_grid_with_its_placement(tmp_path, weights, engine):
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
    expected = engine.run(picture, input_size=int(SIZE))
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

    from napari_gapcam.cli.overlay_png import turbo_lut

    napari_turbo = ensure_colormap("turbo").map(np.linspace(0, 1, 256))[:, :3]
    np.testing.assert_allclose(turbo_lut(), napari_turbo, atol=1 / 255)
