"""``--tiles``: the tile size and overlap a run uses, said where they are not what was asked. The
engine tiles in whole map cells (:func:`~napari_gapcam.engine.tiling.tile_cells`): a tile size
that is not whole cells, or an overlap that is not an even number of cells or leaves a tile no
cells of its own, is adjusted, and the run says so in a ``note:`` line (the stride, and so the
cells, are known only once the model is loaded)."""

from __future__ import annotations

from typing import Any


def tiling_note(size: int, stride: int, overlap: int | None, size_from: str) -> str | None:
    """What differs from what was asked, and why, in one line; None when nothing does.
    ``size_from`` names where the tile size came from (``--tile-size``, …)."""
    from ..engine.tiling import tile_cells

    asked = 2 * stride if overlap is None else int(overlap)
    cells, overlap_cells = tile_cells(size, stride, asked)
    said = []
    if cells * stride != size:
        said.append(
            f"the tile size {size} ({size_from}) is used as {cells * stride} px: a tile is "
            f"whole map cells of {stride} px"
        )
    if overlap_cells * stride != asked:
        most = cells - 1 - (cells - 1) % 2
        what = f"--overlap {overlap}" if overlap is not None else f"the default overlap {asked}"
        said.append(
            f"{what} is used as {overlap_cells * stride} px: tiles overlap by an even number of "
            f"map cells of {stride} px, at most {most} of a tile's {cells} (allowed: 0 to "
            f"{most * stride} in steps of {2 * stride})"
        )
    return "; ".join(said) or None


def options_note(options: Any, size: int, stride: int) -> str | None:
    """:func:`tiling_note` of a run's options (``tile_size``, ``input_size``, ``overlap``)."""
    size_from = (
        "--tile-size" if options.tile_size else "--input-size" if options.input_size
        else "the model's input size"
    )  # fmt: skip
    return tiling_note(size, stride, options.overlap, size_from)
