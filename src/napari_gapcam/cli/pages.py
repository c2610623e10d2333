"""An input file → its pages: PNG and JPEG (imageio), TIFF (tifffile: 16-bit grey, RGB,
multi-page), a zarr array N×H×W[×3] (one input, its pages read one at a time).

A TIFF page of more than ``LAZY_BYTES`` is not loaded: it is a ``dask.array`` over its memory
map (uncompressed) or tifffile's zarr store, which the engine reads band by band; so are big
zarr pages. Every read of such an array runs on dask's synchronous scheduler, in the process and
thread that asks for it (:func:`local_reads`), never on a dask.distributed cluster. No torch.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import IMAGE_SUFFIXES, TIFF_SUFFIXES, InputError, is_zarr
from .read_peak import check_chunks, check_pil, check_tiff

LAZY_BYTES = 2**25  # a TIFF page above 32 MiB is read lazily

_LOCAL = threading.Lock()
_local_depth = 0
_local_config: Any = None


@contextmanager
def local_reads() -> Iterator[None]:
    """While inside, dask arrays compute on the synchronous scheduler, in the calling thread.

    The lazy inputs are dask arrays, which the engine reads with ``np.asarray(image[r0:r1])``;
    without this, a ``dask.distributed.Client`` (the default scheduler in the ``gapcam`` process
    with ``--workers``, and a worker's own client inside a task) would ship those reads to the
    cluster. dask's configuration is process-wide, so the setting is counted: it is restored when
    the last of the threads inside (a worker may run several tasks) leaves.
    """
    import dask

    global _local_depth, _local_config
    with _LOCAL:
        if _local_depth == 0:
            _local_config = dask.config.set(scheduler="synchronous")
        _local_depth += 1
    try:
        yield
    finally:
        with _LOCAL:
            _local_depth -= 1
            if _local_depth == 0:
                _local_config.__exit__(None, None, None)
                _local_config = None


def read_locally(function: Callable[..., Any], *arguments: Any) -> Any:
    """``function(*arguments)`` with :func:`local_reads`: how chunks and blocks of inputs run,
    in the ``gapcam`` process or as a task on a dask worker."""
    with local_reads():
        return function(*arguments)


def lazy_view(source: Any, lead: int = 0) -> Any:
    """``source`` (a zarr array, or a memory map) as a dask array, read only where sliced.

    Axis ``lead`` holds the rows (the axes before it are pages). A memory map is chunked in
    bands of whole rows of one page of about ``LAZY_BYTES`` / 4; a zarr array keeps its own
    chunks (a TIFF's tiles), or a band of its chunks when they are whole rows (a TIFF's
    strips)."""
    import dask.array as da

    shape = tuple(int(s) for s in source.shape)
    row_bytes = int(np.prod(shape[lead + 1 :])) * np.dtype(source.dtype).itemsize
    rows = max(1, min(shape[lead], LAZY_BYTES // 4 // max(1, row_bytes)))
    if hasattr(source, "chunks") and not isinstance(source, np.ndarray):  # zarr
        chunks = [int(c) for c in source.chunks]
        if tuple(chunks[lead + 1 :]) == shape[lead + 1 :]:  # strips: a band of them
            chunks[lead] = max(1, rows // chunks[lead]) * chunks[lead]
        return da.from_array(source, chunks=tuple(chunks), name=False)  # no hash of the data
    return da.from_array(source, chunks=(1,) * lead + (rows, *shape[lead + 1 :]), name=False)


def samples_last(page: Any) -> Any:
    """A planar page (S×Y×X, as tifffile gives planar RGB TIFFs) as Y×X×S."""
    import dask.array as da

    return da.moveaxis(page, 0, -1)


@dataclass
class Pages:
    """The planes of one input; ``read(i)`` gives plane ``i`` as H×W or H×W×3/4.

    A plane is a numpy array, or for a big page a dask array (read in bands by the engine).
    """

    kind: str  # "image", "tiff" or "zarr"
    count: int
    shape: tuple[int, int]
    array: Any  # pages by index: numpy (image, TIFF), the zarr array, or a dask view
    chunk: int = 1  # zarr chunking over the pages
    plane: Callable[[int], Any] | None = None  # lazy planes: index → plane

    def read(self, index: int) -> Any:
        if self.plane is not None:
            return self.plane(index)
        return _layout(np.asarray(self.array[index]))

    def __iter__(self) -> Iterator[Any]:
        return (self.read(i) for i in range(self.count))


def _check_layout(shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (3, 4))):
        raise InputError(f"unsupported image layout {shape} (expected H×W or H×W×3/4)")
    if min(shape[:2]) < 1:
        raise InputError(f"empty image {shape}: it has no pixels")
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise InputError(f"unsupported pixel type {dtype}")
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError("complex pixels are not supported")


def _layout(plane: np.ndarray) -> np.ndarray:
    """H×W, H×W×1 → H×W; grey + alpha → grey; RGB(A) kept; anything else is an error."""
    if plane.ndim == 3 and plane.shape[-1] in (1, 2):
        plane = plane[..., 0]
    _check_layout(plane.shape, plane.dtype)
    return plane


def open_pages(path: str | Path) -> Pages:
    """Open one input; raise :class:`InputError` (with the reason) when it cannot be read."""
    path = Path(path)
    try:
        if is_zarr(path):
            pages = _zarr_pages(path)
        elif path.suffix.lower() in TIFF_SUFFIXES:
            pages = _tiff_pages(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            pages = _image_pages(path)
        else:
            raise InputError(
                f"unsupported format {path.suffix or '(no suffix)'!r}: use PNG, JPEG, TIFF or "
                "a zarr array"
            )
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError("file not found") from None
    except Exception as error:  # every reader has its own errors: report them, go on
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        if "Could not find a backend" in detail:  # imageio's words for "no reader took it"
            detail = f"no reader recognises it as {path.suffix.lstrip('.').upper()}"
        raise InputError(f"not a readable image: {detail}") from error
    if pages.count == 0:
        raise InputError("holds no pages (a stack of 0 images): nothing to compute")
    return pages


def _image_pages(path: Path) -> Pages:
    """PNG/JPEG, decoded whole: refused, before decoding, when the read's peak (estimated from
    the header: :mod:`~napari_gapcam.cli.read_peak`) would not fit in memory (Pillow's own
    decompression-bomb limit is not used, so the size limit does not depend on the format)."""
    import imageio.v3 as iio
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit below
    try:
        with Image.open(path) as header:  # the size, without decoding
            check_pil(header)
        image = _layout(np.asarray(iio.imread(path)))
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return Pages("image", 1, image.shape[:2], image[None])


def _lazy_source(path: Path, series: Any) -> Any | None:
    """The series as a memory map (uncompressed) or a zarr array (tifffile's store), or None."""
    import tifffile

    try:
        return tifffile.memmap(path, series=0, mode="r")
    except (ValueError, OSError):
        pass
    try:
        import zarr
    except ImportError:
        return None
    return zarr.open(series.aszarr(), mode="r")


def _tiff_pages(path: Path) -> Pages:
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        axes, shape = series.axes, tuple(int(s) for s in series.shape)
        planar = axes.endswith("SYX")
        plane_axes = 3 if (axes.endswith("YXS") or planar) else 2
        plane_bytes = int(np.prod(shape[-plane_axes:])) * np.dtype(series.dtype).itemsize
        source = None
        if plane_bytes > LAZY_BYTES and axes.endswith(("YX", "YXS")):
            source = _lazy_source(path, series)
        lead = shape[:-plane_axes]
        if source is not None:
            view = lazy_view(source, len(lead))
            check_chunks(view, "this TIFF")

            def page(i: int) -> Any:
                plane = view[tuple(int(n) for n in np.unravel_index(i, lead))]
                return samples_last(plane) if planar else plane

            first = page(0)
            if plane_axes == 2 or first.shape[-1] in (3, 4):
                _check_layout(first.shape, first.dtype)
                return Pages("tiff", int(np.prod(lead)), first.shape[:2], view, plane=page)
        check_tiff(series)
        array = series.asarray()
    if array.size == 0:  # reshape(-1, 0, 0) cannot say what is wrong
        raise InputError(f"empty image {array.shape}: it has no pixels")
    if "S" in axes:  # samples (RGB) last
        array = np.moveaxis(array, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    planes = array.reshape(
        (-1, *array.shape[-3:]) if axes.endswith("S") else (-1, *array.shape[-2:])
    )
    first = _layout(planes[0])
    return Pages("tiff", len(planes), first.shape[:2], planes)


def _zarr_pages(path: Path) -> Pages:
    """A zarr array N×H×W[×3] (or one H×W image): a small page is read whole from zarr when its
    turn comes; a big one is a dask array (made on first use, so that opening stays cheap for
    any number of pages)."""
    try:
        import zarr
    except ImportError:
        raise InputError("reading zarr needs the zarr package: pip install zarr") from None
    array = zarr.open(str(path), mode="r")
    if not hasattr(array, "shape"):
        raise InputError("a zarr group, not an array: pass the array inside it (e.g. path/0)")
    shape = tuple(int(s) for s in array.shape)
    check_chunks(array, "this zarr array")
    big = int(np.prod(shape[-3:] if len(shape) == 4 else shape[-2:])) * array.dtype.itemsize
    big = big > LAZY_BYTES  # such pages are read band by band
    if len(shape) == 2:
        view = lazy_view(array)
        return Pages("zarr", 1, shape, view[None], 1, (lambda i: view) if big else None)
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (3, 4)):
        if shape[0] == 0:
            raise InputError(f"a zarr array of shape {shape} holds no pages: nothing to compute")
        views = functools.cache(lambda: lazy_view(array, 1))
        plane = (lambda i: views()[int(i)]) if big else None
        return Pages("zarr", shape[0], shape[1:3], array, int(array.chunks[0]), plane)
    raise InputError(f"unsupported zarr array shape {shape} (expected N×H×W or N×H×W×3)")
