"""Big reads: a read refused, before it happens, when its peak (from the header) would not fit;
tiled runs that decode each chunk of the source at most twice, with the maps unchanged."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from _cli import ome_zarr_levels
from napari_gapcam.cli import main, read_peak, tile_blocks
from napari_gapcam.cli.inputs import InputError
from napari_gapcam.cli.pages import open_pages
from napari_gapcam.cli.pyramid import Levels


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def header_only_png(path: Path, width: int, height: int, colour: int = 0) -> Path:
    """A PNG whose header says ``height``×``width`` (grey: colour 0, RGB: 2), its data cut
    short: only a reader that decodes would notice (a few hundred bytes, nothing allocated)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(1000))) + _png_chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def memory(monkeypatch: pytest.MonkeyPatch, available: float) -> None:
    monkeypatch.setattr(read_peak, "available_memory", lambda: int(available))


def test_a_png_of_40000_squared_is_refused_from_its_header(tmp_path, monkeypatch, capsys):
    """1.6 GB decoded, but Pillow's read peaks at 3 bytes a pixel (4.8 GB): with 8 GB available
    the old check (the decoded size against half of it) let it through to the peak."""
    png = header_only_png(tmp_path / "huge.png", 40000, 40000)
    assert png.stat().st_size < 1000
    memory(monkeypatch, 8e9)
    with pytest.raises(InputError) as refused:
        open_pages(png)
    words = str(refused.value)
    for part in ("40000×40000 PNG (L)", "decodes to 1.6 GB", "peaks at about 4.8 GB",
                 "8.0 GB of memory available", "tiled TIFF or a zarr array"):  # fmt: skip
        assert part in words, words
    out = tmp_path / "out"
    code = main(["predict", str(png), "--weights", "demo", "--device", "cpu", "--out", str(out)])
    assert code == 1
    assert f"skipped {png}: this 40000×40000 PNG (L) decodes to 1.6 GB" in capsys.readouterr().err
    memory(monkeypatch, 16e9)  # 4.8 GB fits in half of 16: the read is tried (and the cut data
    with pytest.raises(InputError, match="not a readable image"):  # found short)
        open_pages(png)


@pytest.mark.parametrize(
    ("mode", "per_pixel"), [("RGB", 10.0), ("L", 3.0), ("P", 11.0), ("I;16", 6.0)]
)
def test_the_estimate_is_the_measured_peak_per_pixel_of_each_mode(tmp_path, monkeypatch, mode,
                                                                  per_pixel):  # fmt: skip
    """A real 64×80 image: refused just below its estimated peak ×2, read just above; a palette
    PNG (one band in its header) counts the RGB it becomes."""
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (64, 80, 3), np.uint8)
    image = Image.fromarray(rgb)
    image = image.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else image
    image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257) if mode == "I;16" else image
    image = image.convert("L") if mode == "L" else image
    path = tmp_path / "small.png"
    image.save(path)
    with Image.open(path) as header:
        assert header.mode.startswith(mode)
    peak = 64 * 80 * per_pixel
    memory(monkeypatch, 2 * peak - 1)
    with pytest.raises(InputError, match=f"peaks at about {peak / 1000:.1f} KB"):
        open_pages(path)
    memory(monkeypatch, 2 * peak + 1)
    assert open_pages(path).read(0).shape[:2] == (64, 80)


def test_a_compressed_tiff_counts_its_strip_and_its_compressed_bytes(tmp_path, monkeypatch):
    """One zlib strip of a whole page: decoded page + the strip decoded + 2 × compressed."""
    page = np.random.default_rng(0).integers(0, 256, (256, 300), np.uint8)
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, page, compression="zlib", rowsperstrip=256)
    with tifffile.TiffFile(path) as tiff:
        decoded, peak = read_peak.tiff_estimate(tiff.series[0])
        compressed = sum(tiff.pages[0].databytecounts)
    assert decoded == page.nbytes and peak == 2 * page.nbytes + 2 * compressed
    memory(monkeypatch, 2 * peak - 1)
    with pytest.raises(InputError, match="reading it whole \\(tifffile\\)"):
        open_pages(path)
    memory(monkeypatch, 2 * peak + 1)
    np.testing.assert_array_equal(open_pages(path).read(0), page)


def test_a_zarr_array_of_one_big_chunk_is_refused(tmp_path, monkeypatch):
    zarr = pytest.importorskip("zarr")
    array = zarr.open(str(tmp_path / "one.zarr"), mode="w", shape=(512, 512), chunks=(512, 512),
                      dtype=np.uint8)  # fmt: skip
    array[:] = 7
    memory(monkeypatch, 2 * (2 * 512 * 512 + read_peak.BAND_BYTES) - 1)
    with pytest.raises(InputError, match="re-save it with smaller chunks"):
        open_pages(tmp_path / "one.zarr")
    memory(monkeypatch, 1e12)
    assert int(open_pages(tmp_path / "one.zarr").read(0)[3, 3]) == 7


def _tiled(source: Path, out: Path) -> int:
    return main(["predict", str(source), "--tiles", "--weights", "demo", "--device", "cpu",
                 "--tile-size", "128", "--overlap", "64", "--class", "all", "--block-tiles",
                 "4", "--batch-size", "16", "--out", str(out)])  # fmt: skip


def _outputs(out: Path, stem: str) -> tuple[np.ndarray, list[dict]]:
    with open(out / f"{stem}_tiles.csv") as handle:
        return ome_zarr_levels(out / f"{stem}_cam.ome.zarr")[0], list(csv.DictReader(handle))


@pytest.mark.parametrize("chunk", [256, 64])
def test_tiled_blocks_decode_each_chunk_at_most_twice_with_the_maps_unchanged(
    tmp_path, monkeypatch, chunk
):
    """A 512² RGB zarr in ``chunk``² chunks, 128² tiles 64 px apart (8×8, crossing chunk
    borders both ways; a tile spans 3 chunks of 64), read through a dask counter: ≤ 2 decodes
    a chunk (blocks of N×N tiles decoded some 4 to 9 times); the maps and tiles equal those of
    the same pixels as a PNG (an image in memory: blocks of N×N tiles); the OME-Zarr is valid
    NGFF 0.4."""
    zarr = pytest.importorskip("zarr")
    import dask.array as da

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (512, 512, 3), np.uint8)
    pixels[150:350, 200:400] = (250, 40, 40)
    store = zarr.open(str(tmp_path / "slide.zarr"), mode="w", shape=pixels.shape,
                      chunks=(chunk, chunk, 3), dtype=np.uint8)  # fmt: skip
    store[:] = pixels
    iio.imwrite(tmp_path / "slide.png", pixels)
    reads: Counter = Counter()

    def count(block: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        if block_id is not None:
            reads[block_id[:2]] += 1
        return block

    opened = zarr.open(str(tmp_path / "slide.zarr"), mode="r")
    source = da.from_array(opened, chunks=(chunk, chunk, 3), name=False)
    counted = source.map_blocks(count, dtype=np.uint8)
    reads.clear()  # dask calls it when the array is made
    real = tile_blocks.open_levels
    monkeypatch.setattr(
        tile_blocks, "open_levels",
        lambda path: Levels([counted]) if str(path).endswith(".zarr") else real(path),
    )  # fmt: skip
    assert _tiled(tmp_path / "slide.zarr", tmp_path / "chunks") == 0
    grid = 512 // chunk
    assert set(reads) == {(r, c) for r in range(grid) for c in range(grid)}
    assert max(reads.values()) <= 2, reads
    assert sum(reads.values()) < 2 * grid * grid  # the first band's chunks once
    assert _tiled(tmp_path / "slide.png", tmp_path / "memory") == 0
    (maps, tiles), (expected, expected_tiles) = (
        _outputs(tmp_path / "chunks", "slide"), _outputs(tmp_path / "memory", "slide"),
    )  # fmt: skip
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert tiles == expected_tiles and len(tiles) == 64
    record = json.loads((tmp_path / "chunks" / "results.jsonl").read_text())
    assert record["tiles"]["blocks"] == 2  # bands of 256 rows: 4 tile rows, whole chunks
    _check_ngff(tmp_path / "chunks" / "slide_cam.ome.zarr")


def _check_ngff(path: Path) -> None:
    """The CLI's map: NGFF 0.4 (ome-zarr-models), OMERO channels with colours, nested keys."""
    zarr = pytest.importorskip("zarr")
    models = pytest.importorskip("ome_zarr_models.v04.image")
    models.Image.from_zarr(zarr.open_group(str(path), mode="r"))
    attrs = json.loads((path / ".zattrs").read_text())
    assert all(len(c["color"]) == 6 for c in attrs["omero"]["channels"])
    for dataset in attrs["multiscales"][0]["datasets"]:
        array = json.loads((path / dataset["path"] / ".zarray").read_text())
        assert array["dimension_separator"] == "/"
