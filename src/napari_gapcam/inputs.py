"""Batch inputs: files, folders and globs → image files; each file → its pages.

PNG and JPEG are read with imageio, TIFF with tifffile (16-bit grey, RGB, multi-page), and a
zarr array N×H×W[×3] is one input whose pages are read one at a time. No torch here.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")


class InputError(Exception):
    """An input that cannot be read; the message says why."""


@dataclass(frozen=True)
class Item:
    """One input: its absolute path and the unique prefix of its output files."""

    path: str
    stem: str


def is_zarr(path: Path) -> bool:
    """A folder that is a zarr array or group (v2 or v3 metadata, or a ``.zarr`` name)."""
    return path.is_dir() and (
        path.suffix == ".zarr" or any((path / m).is_file() for m in ("zarr.json", ".zarray"))
    )


def _is_input(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES) or is_zarr(path)


def expand(arguments: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their images, not recursive) and globs → (absolute paths, problems).

    A problem is ``(argument, reason)`` for an argument that names nothing to read. A file
    named explicitly is kept whatever its suffix (reading it says whether it is supported).
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if is_zarr(path) or path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if _is_input(p))
            if not found:
                problems.append((argument, "no PNG, JPEG, TIFF or zarr inputs in this folder"))
        elif glob.has_magic(argument):
            found = sorted(
                p for p in map(Path, glob.glob(os.path.expanduser(argument))) if _is_input(p)
            )
            if not found:
                problems.append((argument, "no PNG, JPEG, TIFF or zarr inputs match this pattern"))
        else:
            found = []
            problems.append((argument, "no such file or folder"))
        paths.extend(found)
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    return unique, problems


def items(paths: Sequence[Path]) -> list[Item]:
    """Give each path a unique output prefix: its stem, plus a hash of its path on a clash."""
    stems = [p.stem if p.suffix.lower() != ".zarr" else p.name[: -len(".zarr")] for p in paths]
    clashes = {s for s in stems if stems.count(s) > 1}
    return [
        Item(
            str(p),
            f"{s}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}" if s in clashes else s,
        )
        for p, s in zip(paths, stems, strict=True)
    ]


@dataclass
class Pages:
    """The planes of one input; ``read(i)`` gives plane ``i`` as H×W or H×W×3/4."""

    kind: str  # "image", "tiff" or "zarr"
    count: int
    shape: tuple[int, int]
    array: Any  # numpy for image/tiff, a zarr array for zarr
    chunk: int = 1  # zarr chunking over the pages

    def read(self, index: int) -> np.ndarray:
        return _layout(np.asarray(self.array[index]))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.read(i) for i in range(self.count))


def _layout(plane: np.ndarray) -> np.ndarray:
    """H×W, H×W×1 → H×W; grey + alpha → grey; RGB(A) kept; anything else is an error."""
    if plane.ndim == 3 and plane.shape[-1] == 1:
        plane = plane[..., 0]
    elif plane.ndim == 3 and plane.shape[-1] == 2:
        plane = plane[..., 0]
    if not (plane.ndim == 2 or (plane.ndim == 3 and plane.shape[-1] in (3, 4))):
        raise InputError(f"unsupported image layout {plane.shape} (expected H×W or H×W×3/4)")
    if min(plane.shape[:2]) < 1:
        raise InputError(f"empty image {plane.shape}")
    if not (np.issubdtype(plane.dtype, np.number) or plane.dtype.kind == "b"):
        raise InputError(f"unsupported pixel type {plane.dtype}")
    if np.issubdtype(plane.dtype, np.complexfloating):
        raise InputError("complex pixels are not supported")
    return plane


def open_pages(path: str | Path) -> Pages:
    """Open one input; raise :class:`InputError` (with the reason) when it cannot be read."""
    path = Path(path)
    try:
        if is_zarr(path):
            return _zarr_pages(path)
        suffix = path.suffix.lower()
        if suffix in TIFF_SUFFIXES:
            return _tiff_pages(path)
        if suffix in IMAGE_SUFFIXES:
            import imageio.v3 as iio

            image = _layout(np.asarray(iio.imread(path)))
            return Pages("image", 1, image.shape[:2], image[None])
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("file not found") from None
    except Exception as error:  # every reader has its own errors: report them, go on
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        if "Could not find a backend" in detail:  # imageio's words for "no reader took it"
            detail = f"no reader recognises it as {path.suffix.lstrip('.').upper()}"
        raise InputError(f"not a readable image: {detail}") from error
    raise InputError(
        f"unsupported format {path.suffix or '(no suffix)'!r}: use PNG, JPEG, TIFF or a zarr array"
    )


def _tiff_pages(path: Path) -> Pages:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        axes, array = series.axes, series.asarray()
    if "S" in axes:  # samples (RGB) last
        array = np.moveaxis(array, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    planes = array.reshape(
        (-1, *array.shape[-3:]) if axes.endswith("S") else (-1, *array.shape[-2:])
    )
    first = _layout(planes[0])
    return Pages("tiff", len(planes), first.shape[:2], planes)


def _zarr_pages(path: Path) -> Pages:
    try:
        import zarr
    except ImportError:
        raise InputError("reading zarr needs the zarr package: pip install zarr") from None
    array = zarr.open(str(path), mode="r")
    if not hasattr(array, "shape"):
        raise InputError("a zarr group, not an array: pass the array inside it (e.g. path/0)")
    shape = tuple(array.shape)
    if len(shape) == 2:
        return Pages("zarr", 1, shape, _Single(array), 1)
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (3, 4)):
        return Pages("zarr", shape[0], shape[1:3], array, int(array.chunks[0]))
    raise InputError(f"unsupported zarr array shape {shape} (expected N×H×W or N×H×W×3)")


class _Single:
    """A 2D array seen as a one-page stack."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.array[:])
