"""The levels of one image for ``gapcam predict --tiles``: a pyramid read lazily, level by level.

A TIFF (OME-TIFF, SVS-like: a series and its sub-resolution levels) is read through tifffile's
zarr store (``tifffile.imread(path, aszarr=True)``: level ``k`` of the series is its array
``k``), an OME-Zarr through ``ome-zarr``'s reader (NGFF 0.4 or 0.5: its ``multiscales`` node's
levels, as dask arrays), a plain zarr array as one level; PNG and JPEG are one level in memory.
Every level is an H×W or H×W×3/4 ``dask.array`` sliced only where tiles are read (leading axes
of size 1 dropped, planar RGB moved to samples last). No torch here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import TIFF_SUFFIXES, InputError, is_zarr
from .pages import lazy_view, open_pages, samples_last


@dataclass
class Levels:
    """An image's pyramid: ``levels[0]`` the full resolution, then smaller ones."""

    levels: list[Any]

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [tuple(int(s) for s in level.shape[:2]) for level in self.levels]  # type: ignore

    def downsample(self, level: int) -> tuple[float, float]:
        """Level-0 pixels per pixel of ``level`` along y and x."""
        (h0, w0), (h, w) = self.shapes[0], self.shapes[level]
        return h0 / h, w0 / w


def as_plane(array: Any, axes: str | None = None) -> Any:
    """An array of one image as a lazy H×W[×S] dask array: axes of size 1 dropped, then Y×X,
    Y×X×S or S×Y×X (S: 3 or 4 samples or channels). ``axes`` (tifffile's letters, or OME-Zarr's
    axis names) says which is which; without it a leading 3 or 4 counts as samples.
    :class:`InputError` for anything else (a stack)."""
    shape = tuple(int(s) for s in array.shape)
    if axes is None or len(axes) != len(shape):
        axes = "YX" if len(shape) == 2 else None
    if axes is None:
        lead = 0
        while len(shape) - lead > 2 and shape[lead] == 1:
            lead += 1
        rest = shape[lead:]
        planar = len(rest) == 3 and rest[0] in (3, 4) and rest[-1] not in (3, 4)
        ok = len(rest) == 2 or (len(rest) == 3 and (planar or rest[-1] in (3, 4)))
    else:
        axes = axes.upper().replace("C", "S")
        lead = 0
        while lead < len(shape) - 2 and axes[lead] not in "YX" and shape[lead] == 1:
            lead += 1
        rest, kept = shape[lead:], axes[lead:]
        planar = kept == "SYX" and rest[0] in (3, 4)
        ok = kept == "YX" or planar or (kept == "YXS" and rest[-1] in (3, 4))
    if not ok:
        raise InputError(
            f"--tiles needs one image (Y×X or Y×X×3), not an array of shape {shape}: "
            "pass one image of a stack"
        )
    import dask.array as da

    view = array if isinstance(array, da.Array) else lazy_view(array)
    view = view[(0,) * lead]
    return samples_last(view) if planar else view


def _ome_zarr(path: Path) -> tuple[list[Any], str | None]:
    """The levels (dask arrays, biggest first) of an OME-Zarr image and its axes' letters,
    through ome-zarr's reader; a plain zarr array is one level."""
    import zarr

    with warnings.catch_warnings():  # ome-zarr's own deprecations at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Multiscales, Reader

    node = zarr.open(str(path), mode="r")
    if hasattr(node, "shape"):  # an array, not an image group
        return [node], None
    # ome-zarr warns when the data's NGFF version is not the newest: reading both is the point
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    location = parse_url(str(path), mode="r")
    images = [n for n in (Reader(location)() if location else []) if n.load(Multiscales)]
    if not images:
        raise InputError(
            "a zarr group without multiscales metadata: pass the array inside it (e.g. path/0)"
        )
    image = images[0]
    names = [a["name"] if isinstance(a, dict) else str(a) for a in image.metadata.get("axes", [])]
    levels = sorted(image.data, key=lambda a: -int(np.prod(a.shape)))
    return levels, "".join(n[:1].upper() for n in names) or None


def _tiff(path: Path) -> tuple[list[Any], str]:
    """A TIFF's first series and its sub-resolution levels, as zarr arrays of tifffile's store."""
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        axes, count = series.axes, len(series.levels)
    store = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    return ([store] if hasattr(store, "shape") else [store[str(k)] for k in range(count)]), axes


def open_levels(path: str | Path) -> Levels:
    """Open an input's pyramid (metadata only); :class:`InputError` says why it cannot be."""
    path = Path(path)
    try:
        if is_zarr(path) or path.suffix.lower() in TIFF_SUFFIXES:
            arrays, axes = _ome_zarr(path) if is_zarr(path) else _tiff(path)
            levels = [as_plane(level, axes) for level in arrays]
        else:
            pages = open_pages(path)
            if pages.count != 1:
                raise InputError(f"--tiles needs one image; this file holds {pages.count}")
            levels = [pages.read(0)]
    except InputError:
        raise
    except ImportError as missing:
        raise InputError(
            f"--tiles on TIFF and zarr inputs needs {missing.name or 'zarr'}: "
            "pip install 'napari-gapcam[zarr]'"
        ) from None
    except Exception as error:
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise InputError(f"not a readable image: {detail}") from error
    if min(levels[0].shape[:2]) < 1:
        raise InputError(f"empty image {tuple(levels[0].shape)}")
    return Levels(levels)
