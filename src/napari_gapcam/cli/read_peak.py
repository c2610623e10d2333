"""How much memory reading an input takes at its peak, estimated from its header, and the
refusal, before the read, of a read that would not fit.

The peak is not the decoded size. imageio's Pillow read holds Pillow's own image (4 bytes a
pixel for RGB), its ``tobytes`` copy and the array: measured with ``ru_maxrss`` on this
machine (50 MP RGB, 25 MP and 256 MP for the rarer modes; PNG and JPEG alike) the peak is, in
bytes a pixel, L 3.0, 1 3.0, I;16 6.0, LA 8.0, RGB 10.0 (3.3× the array), RGBA and CMYK 12.0,
P 11.0 (a palette becomes RGB: 11× what the header's one band suggests). A compressed TIFF read
whole by tifffile peaks at the decoded series, plus the compressed bytes read, plus the
segments its threads decode (50 MP RGB, zlib: measured 1.26× tiled 512², 1.44× striped, 2.17×
one strip; estimated 1.26×, 1.44×, 2.33×). A lazily read input
(a TIFF page above ``LAZY_BYTES``, a zarr array) decodes a whole chunk (a tile, a band of
strips; one strip of a whole page is the page) whenever it touches it: the chunk counts twice
(compressed and decoded) plus the band read. Estimate: ``peak = bytes a pixel × pixels`` (the
table) or the sums above; a read is refused when ``peak > PEAK_SHARE × available memory``.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .inputs import InputError

PEAK_SHARE = 0.5  # a read may peak at this share of the available memory
# Pillow's mode → (bytes a pixel of the array imageio returns, bytes a pixel at the peak of
# imageio.v3.imread); the peaks measured (above), "PA" (a palette with transparency, read as
# RGBA), LAB/HSV/RGBX/I/F by the same count
PIL_PEAK = {
    "1": (1, 3.1), "L": (1, 3.0), "P": (3, 11.0), "PA": (4, 13.0), "LA": (2, 8.0),
    "La": (2, 8.0), "RGB": (3, 10.0), "YCbCr": (3, 10.0), "LAB": (3, 10.0), "HSV": (3, 10.0),
    "RGBA": (4, 12.0), "RGBa": (4, 12.0), "RGBX": (4, 12.0), "CMYK": (4, 12.0),
    "I;16": (2, 6.0), "I;16B": (2, 6.0), "I;16L": (2, 6.0), "I;16N": (2, 6.0), "I": (4, 12.0),
    "F": (4, 12.0),
}  # fmt: skip
UNKNOWN_MODE = 16.0  # bytes a pixel at the peak for a mode not in the table
DECODE_THREADS = 4  # segments tifffile decodes at once (at most)
BAND_BYTES = 2**23  # a band the engine reads of a lazy input (LAZY_BYTES / 4)
WAY_OUT = (
    "convert it to a tiled TIFF or a zarr array (read block by block, with or without "
    "--tiles), or use a machine with more memory"
)


def available_memory() -> int:
    """The host's available memory in bytes (``psutil``)."""
    import psutil

    return int(psutil.virtual_memory().available)


def size_text(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def check_peak(what: str, decoded: float, peak: float, reader: str, way_out: str = WAY_OUT) -> None:
    """Raise :class:`InputError` when ``peak`` bytes exceed ``PEAK_SHARE`` of the available
    memory; the message names the decoded size, the peak, what is available and the way out."""
    free = available_memory()
    if peak > PEAK_SHARE * free:
        raise InputError(
            f"{what} decodes to {size_text(decoded)}; {reader} peaks at about "
            f"{size_text(peak)}, more than half of the {size_text(free)} of memory available: "
            f"{way_out}"
        )


def pil_estimate(header: Any) -> tuple[float, float]:
    """``(decoded bytes, peak bytes)`` of reading a Pillow-opened (not decoded) image."""
    width, height = header.size
    mode = "PA" if header.mode == "P" and "transparency" in header.info else header.mode
    decoded, peak = PIL_PEAK.get(mode, (4, UNKNOWN_MODE))
    return width * height * decoded, width * height * peak


def check_pil(header: Any) -> None:
    """Refuse a PNG/JPEG whose Pillow read would not fit (before decoding it)."""
    decoded, peak = pil_estimate(header)
    width, height = header.size
    kind = getattr(header, "format", None) or "image"
    check_peak(
        f"this {height}×{width} {kind} ({header.mode})", decoded, peak,
        f"reading it (Pillow, {peak / (width * height):g} bytes a pixel)",
    )  # fmt: skip


def tiff_estimate(series: Any) -> tuple[float, float]:
    """``(decoded bytes, peak bytes)`` of ``series.asarray()``: the series, the compressed
    bytes read, and the segments decoded at once."""
    decoded = float(series.nbytes)
    pages = [p for p in series.pages if p is not None]
    compressed = segment = 0.0
    segments = 0
    for page in pages:
        if getattr(page, "compression", 1) in (1, None):  # uncompressed: read into place
            continue
        counts = getattr(page, "databytecounts", ()) or ()
        compressed += float(sum(counts))
        segments += len(counts)
        chunks = getattr(page, "chunks", None) or page.shape
        segment = max(segment, math.prod(chunks) * page.dtype.itemsize)
    threads = min(DECODE_THREADS, os.cpu_count() or 1, max(1, segments))
    return decoded, decoded + 2 * compressed + threads * segment


def check_tiff(series: Any) -> None:
    """Refuse a TIFF series read whole (its pages are small) whose read would not fit."""
    decoded, peak = tiff_estimate(series)
    check_peak(
        f"this TIFF ({len(series.pages)} page(s) of {'×'.join(map(str, series.shape[-3:]))})",
        decoded, peak, "reading it whole (tifffile)",
    )  # fmt: skip


def largest_chunk(array: Any) -> float:
    """Bytes of the largest chunk of a dask or zarr array (the whole array if unchunked)."""
    chunks = getattr(array, "chunks", None)
    itemsize = getattr(array, "dtype", None)
    itemsize = itemsize.itemsize if itemsize is not None else 1
    if not chunks:
        return float(math.prod(array.shape) * itemsize)
    if isinstance(chunks[0], tuple):  # dask: the sizes along each axis
        return float(math.prod(max(c) if c else 0 for c in chunks) * itemsize)
    return float(math.prod(int(c) for c in chunks) * itemsize)


def check_chunks(array: Any, what: str = "this input", extra: float = BAND_BYTES) -> None:
    """Refuse a lazily read input whose every read decodes a chunk too big for memory (one
    compressed strip of a whole page, say): ``peak = 2 × chunk + extra`` (the band read)."""
    chunk = largest_chunk(array)
    check_peak(
        f"{what} (chunks of {size_text(chunk)})", float(math.prod(array.shape)
        * array.dtype.itemsize), 2 * chunk + extra, "each read (a whole chunk decoded)",
        "re-save it with smaller chunks (a tiled TIFF, a zarr array chunked by 1024² or less), "
        "or use a machine with more memory",
    )  # fmt: skip
