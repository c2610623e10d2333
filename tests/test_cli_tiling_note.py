"""``--tiles``: a tile size or overlap the engine adjusts (whole map cells, an even overlap
below the tile) is said in a ``note:`` line, never silently."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest

from napari_gapcam.cli import main
from napari_gapcam.cli.tiling_note import tiling_note
from napari_gapcam.engine.tiling import plan, tile_cells
from napari_gapcam.synthetic import make_sample


@pytest.mark.parametrize(
    "size, overlap, said",
    [
        (192, 64, None),  # whole cells, an even overlap: as asked
        (192, None, None),  # the default, two cells
        (192, 0, None),
        (192, 180, "--overlap 180 is used as 128 px"),  # cut: a 6-cell tile keeps 2 of its own
        (192, 40, "--overlap 40 is used as 64 px"),  # rounded to an even number of cells
        (200, 64, "the tile size 200 (--tile-size) is used as 192 px"),
        (64, None, "the default overlap 64 is used as 0 px"),  # a 2-cell tile: no overlap left
    ],
)
def test_the_note_says_what_the_tiling_uses(size, overlap, said):
    note = tiling_note(size, 32, overlap, "--tile-size")
    assert note is None if said is None else said in note
    if note and "--overlap" in note:
        assert "allowed: 0 to 128 in steps of 64" in note
    cells, overlap_cells = tile_cells(size, 32, 64 if overlap is None else overlap)
    tiling = plan((1000, 1000), 32, size, 64 if overlap is None else overlap)
    assert (tiling.tile_cells, 2 * tiling.margin) == (cells, overlap_cells)  # the same rule


def test_predict_tiles_prints_the_overlap_it_uses(tmp_path, capsys):
    """--overlap 180 passes the check (below the 192 px tile) but a 6-cell tile keeps 2 cells
    of its own: 128 px are used, and the run says so once."""
    pytest.importorskip("zarr")
    pytest.importorskip("ome_zarr")
    iio.imwrite(tmp_path / "scene.png", make_sample(np.random.default_rng(1), size=(384, 384))[0])
    code = main(["predict", str(tmp_path / "scene.png"), "--tiles", "--weights", "demo",
                 "--device", "cpu", "--out", str(tmp_path / "out"), "--tile-size", "192",
                 "--overlap", "180"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "note: --overlap 180 is used as 128 px" in err and err.count("note: --overlap") == 1
    assert "allowed: 0 to 128 in steps of 64" in err
