"""Tiled runs at native pixels: objects found in a mosaic, stitched vs whole image, lazy block
reads of one pyramid level, background tiles skipped (NaN), one scale over the image."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_gapcam.engine.tiling import plan
from napari_gapcam.synthetic import make_sample

SIDE = 256  # one scene; a 4×4 mosaic is 1024²


@pytest.fixture(scope="module")
def mosaic():
    rng = np.random.default_rng(1)
    scenes = [make_sample(rng, size=(SIDE, SIDE)) for _ in range(16)]
    rows = [np.concatenate([s[0] for s in scenes[4 * r : 4 * r + 4]], 1) for r in range(4)]
    return np.concatenate(rows, 0), scenes


def found(result_map, scenes, cell: int) -> int:
    """Scenes whose true class's map peaks inside the true box."""
    hits = 0
    per = SIDE // cell
    for n, (_, label, box) in enumerate(scenes):
        r, c = divmod(n, 4)
        part = result_map(label)[r * per : (r + 1) * per, c * per : (c + 1) * per]
        y, x = np.unravel_index(np.nanargmax(part), part.shape)
        py, px = (y + 0.5) * cell, (x + 0.5) * cell
        hits += box[0] <= py < box[2] and box[1] <= px < box[3]
    return hits


def test_tiles_find_the_objects_a_shrunk_mosaic_loses(demo, mosaic):
    image, scenes = mosaic
    tiled = demo.run_tiled(image)
    assert tiled.stride == 32 and tiled.grids.shape == (6, 32, 32) and tiled.skipped == 0
    hits = found(tiled.raw_cam, scenes, 32)
    assert hits >= 14
    whole = demo.run(image)  # today's default: the short side → 192, a 6×6 map
    cell = image.shape[0] // whole.features.shape[-1]
    assert found(lambda c: whole.raw_cam(c), scenes, cell) <= hits - 4


def test_stitched_equals_the_whole_image_up_to_tile_borders(demo, mosaic):
    image, _ = mosaic
    whole = demo.run(image, input_size=image.shape[0])  # native pixels, one pass
    tiled = demo.run_tiled(image)
    for c in range(6):
        reference = whole.raw_cam(c)
        span = reference.max() - reference.min()
        difference = np.abs(tiled.raw_cam(c) - reference) / span
        assert difference.mean() <= 0.05, (c, difference.mean())


def test_the_plan_covers_the_grid_once_with_interiors():
    tiling = plan((1000, 700), 32, 224, 64)
    assert tiling.grid == (32, 22) and tiling.tile_cells == 7 and tiling.margin == 1
    for axis, n in enumerate(tiling.grid):
        kept = [tiling.kept(axis, k) for k in range(len(tiling.starts[axis]))]
        assert kept[0][0] == 0 and kept[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(kept, kept[1:], strict=False))


def test_a_lazy_pyramid_reads_only_its_level_a_block_at_a_time(demo, mosaic, chunk_reads):
    image, _ = mosaic
    from conftest import ChunkReads

    reads = {0: ChunkReads(), 1: chunk_reads}
    levels = [
        reads[0].counted(da.from_array(image, chunks=(256, 256, 3)), axis=None),
        reads[1].counted(da.from_array(image[::2, ::2], chunks=(128, 128, 3)), axis=None),
    ]
    result = demo.run_tiled(levels, level=1, contrast_limits=(0, 255))
    assert result.level == 1 and result.image_shape == (512, 512)
    assert not reads[0]  # level 0 never read
    chunks = {}
    for location in reads[1]:
        chunks[location] = chunks.get(location, 0) + 1
    assert len(chunks) == 16 and max(chunks.values()) <= 6  # blocks of tiles, not per tile
    reference = demo.run_tiled(image[::2, ::2])
    np.testing.assert_allclose(result.grids.astype(float), reference.grids.astype(float))


def test_background_tiles_are_skipped_and_empty(demo):
    image = np.full((1024, 1024, 3), 250, np.uint8)  # a bright slide background
    scene = make_sample(np.random.default_rng(3), size=(256, 256))[0]
    image[:256, :256] = scene  # tissue in one corner
    result = demo.run_tiled(image, background="auto")
    assert result.skipped > 48 and len(result.tile_boxes) + result.skipped == 64
    grid = result.raw_cam(0)
    assert np.isnan(grid[-5:, -5:]).all() and np.isfinite(grid[:6, :6]).all()
    everything = demo.run_tiled(image)
    assert everything.skipped == 0 and np.isfinite(everything.raw_cam(0)).all()


def test_one_scale_over_the_whole_image_and_boxes_in_pixels(demo, mosaic):
    image, scenes = mosaic
    result = demo.run_tiled(image)
    c = result.topk(1)[0][0]
    full = result.cam(c, shape=(512, 512))
    assert full.shape == (512, 512) and np.nanmax(full) == pytest.approx(1.0, abs=0.02)
    assert np.nanmin(full) == pytest.approx(0.0, abs=0.02)
    grid = result.cam(c, shape=result.grids.shape[1:])  # at the grid: the raw map rescaled once
    raw = result.raw_cam(c)
    np.testing.assert_allclose(grid, (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-3)
    box = result.box(c, threshold=0.5)
    assert box is not None and all(v % 32 == 0 or v == 1024 for v in box)
    assert result.tile_probabilities.shape == (len(result.tile_boxes), 6)
    with pytest.raises(ValueError, match="Tiles need a method whose maps stitch.*EigenCAM"):
        demo.with_method("eigencam").run_tiled(image)


def test_half_precision_and_grids_in_a_temporary_file(demo, mosaic, monkeypatch):
    from napari_gapcam.engine import tiles

    image, _ = mosaic
    full = demo.run_tiled(image[:512, :512])
    half = demo.run_tiled(image[:512, :512], precision="bf16")
    span = np.ptp(full.grids.astype(float))
    assert np.abs(half.grids.astype(float) - full.grids.astype(float)).max() <= 0.05 * span
    monkeypatch.setattr(tiles, "MEMORY_GRIDS", 1024)  # every grid beyond: a memmap
    on_disk = demo.run_tiled(image[:512, :512])
    assert isinstance(on_disk.grids, np.memmap)
    np.testing.assert_array_equal(np.asarray(on_disk.grids), full.grids)
    with pytest.raises(ValueError, match="Unknown precision"):
        demo.run_tiled(image[:256, :256], precision="fp8")
