"""An input's outputs as they were written, and whether they still are.

A record keeps, beside the names of its outputs, ``output_files``: each output's size and, up to
:data:`~napari_gapcam.cli.inputs.HASHED_BYTES` (1 MiB), the SHA-256 of its bytes (a zarr
folder: its files' total size and count). A re-run redoes an input whose outputs differ, saying
why (``x_cam.tif has 0 bytes, 16 512 were written``): a truncated, emptied or overwritten file is
never taken for a finished one. Records written before this was kept are checked as before: each
output exists (a zarr folder with its metadata). No torch here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .inputs import fingerprint


def complete(path: Path) -> bool:
    """A written output: a file, or a zarr folder with its metadata (an array or a group)."""
    if path.is_dir():
        return any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))
    return path.is_file()


def output_files(root: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"size", "sha256"} or {"size", "files"}}`` of outputs just written in ``root``."""
    described = {}
    for name in names:
        found = fingerprint(Path(root) / name)
        found.pop("mtime_ns", None)  # a copied or touched output is still the same output
        described[name] = found
    return described


def damage(root: Path, record: Mapping[str, Any]) -> str | None:
    """Why ``record``'s outputs in ``root`` are not those it was written with, else None."""
    names = [n for n in (record.get("outputs") or {}).values() if isinstance(n, str)]
    written = record.get("output_files")
    for name in names:
        path = Path(root) / name
        if not complete(path):
            return f"{name} is missing or incomplete"
        if not isinstance(written, Mapping) or not isinstance(written.get(name), Mapping):
            continue  # a record from before sizes were kept: existing is all it says
        try:
            now = output_files(root, [name])[name]
        except OSError as error:
            return f"{name} cannot be read ({error.strerror or error})"
        was = written[name]
        if now.get("size") != was.get("size"):
            return f"{name} has {now.get('size'):,} bytes, {was.get('size'):,} were written"
        if now.get("files") != was.get("files"):
            return f"{name} holds {now.get('files')} files, {was.get('files')} were written"
        if was.get("sha256") and now.get("sha256") != was["sha256"]:
            return f"{name} is not the file written (its content differs)"
    return None
