"""``--recursive``: the inputs of a folder tree (a plate's wells, a screen's plates), each with the
subfolder it is in, so that its outputs go to the same subfolder of ``--out`` (the tree is
mirrored: ``plate/B02/site1.tif`` → ``OUT/B02/site1_cam.tif``).

Subfolders are walked in name order, without following links to folders (a link loop cannot
trap the walk); a zarr folder is one input, not a folder to walk; the output folder itself and
the folders in ``skip`` are not walked. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

Entry = tuple[Path, str]  # an input and its folder relative to the walked one ("" at the top)


def walk(
    top: Path,
    list_folder: Callable[[Path, list[tuple[str, str]]], list[Path]],
    unreadable: list[tuple[str, str]],
    skip: Collection[Path] = (),
    is_input: Callable[[Path], bool] = lambda path: False,
) -> list[Entry]:
    """Every input under ``top`` (``list_folder`` gives a folder's own inputs, reporting its
    unreadable entries) with its subfolder, ``/``-separated; a folder that ``is_input`` (a zarr)
    is not walked."""
    return [
        (path, relative)
        for folder, relative in folders(top, skip, is_input)
        for path in list_folder(folder, unreadable)
    ]


def folders(
    top: Path,
    skip: Collection[Path] = (),
    is_input: Callable[[Path], bool] = lambda path: False,
) -> Iterator[Entry]:
    """``top`` and every folder below it to list (resolved: a subfolder that is no link is its
    resolved parent's child, so no ``realpath`` per folder), each with its path relative to
    ``top`` (``""`` for ``top``), depth first in name order (a folder that cannot be listed has
    no subfolders here: listing its inputs reports it). Only the folders waiting to be walked
    are held."""
    pending = [(top.resolve(), "")]
    skipped = {Path(p).resolve() for p in skip}
    while pending:
        folder, relative = pending.pop()
        yield folder, relative
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):  # the entry's type: no stat
                continue
            path = folder / entry.name
            if entry.name.startswith(".") or path in skipped or is_input(path):
                continue
            pending.append((path, f"{relative}/{entry.name}" if relative else entry.name))
