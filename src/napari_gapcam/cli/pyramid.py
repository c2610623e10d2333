"""The levels of one image for ``gapcam predict --tiles``: a pyramid read lazily, level by level.

A TIFF (OME-TIFF, SVS-like: a series and its sub-resolution levels) is read through tifffile's
zarr store (``tifffile.imread(path, aszarr=True)``), an OME-Zarr through its ``multiscales``
metadata (NGFF 0.4 or 0.5), a plain zarr array as one level; PNG and JPEG are one level in
memory. Every level is an H×W or H×W×3/4 array-like sliced only where tiles are read (a
:class:`~napari_gapcam.cli.inputs.LazyPlane`: leading axes of size 1 dropped, planar RGB seen as
samples last). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import TIFF_SUFFIXES, InputError, LazyPlane, is_zarr, open_pages


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


def as_plane(array: Any, axes: str | None = None) -> LazyPlane:
    """An array of one image as a lazy H×W[×S] plane: axes of size 1 dropped, then Y×X, Y×X×S
    or S×Y×X (S: 3 or 4 samples or channels). ``axes`` (tifffile's letters, or OME-Zarr's
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
    return LazyPlane(array, (0,) * lead, planar)


def _from_zarr(node: Any) -> tuple[list[Any], str | None]:
    """The levels (biggest first) of a zarr array or multiscales group, and their axes."""
    if hasattr(node, "shape"):
        return [node], None
    attrs = dict(node.attrs)
    found = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not found:
        raise InputError(
            "a zarr group without multiscales metadata: pass the array inside it (e.g. path/0)"
        )
    names = [a["name"] if isinstance(a, dict) else str(a) for a in found[0].get("axes", [])]
    axes = "".join(n[:1].upper() for n in names) or None
    levels = [node[str(d["path"])] for d in found[0].get("datasets", [])]
    return sorted(levels, key=lambda a: -int(np.prod(a.shape))), axes


def open_levels(path: str | Path) -> Levels:
    """Open an input's pyramid (metadata only); :class:`InputError` says why it cannot be."""
    path = Path(path)
    try:
        if is_zarr(path) or path.suffix.lower() in TIFF_SUFFIXES:
            import zarr

            if is_zarr(path):
                arrays, axes = _from_zarr(zarr.open(str(path), mode="r"))
            else:
                import tifffile

                with tifffile.TiffFile(path) as tiff:
                    axes = tiff.series[0].axes
                arrays, _ = _from_zarr(zarr.open(tifffile.imread(path, aszarr=True), mode="r"))
            levels = [as_plane(level, axes) for level in arrays]
        else:
            pages = open_pages(path)
            if pages.count != 1:
                raise InputError(f"--tiles needs one image; this file holds {pages.count}")
            levels = [pages.read(0)]
    except InputError:
        raise
    except ImportError:
        raise InputError("--tiles on TIFF and zarr inputs needs zarr: pip install zarr") from None
    except Exception as error:
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise InputError(f"not a readable image: {detail}") from error
    if min(levels[0].shape[:2]) < 1:
        raise InputError(f"empty image {tuple(levels[0].shape)}")
    return Levels(levels)
