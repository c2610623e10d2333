"""Which files gapcam wrote, so that it replaces those and never a user's own file.

The record store (:mod:`~napari_gapcam.cli.store`) keeps the name (relative to the folder,
``/``-separated) of every file or folder a run was about to write: a run claims an input's
outputs before it computes the input, so a run killed half-way leaves its files claimed.

Before the model loads, every output a run will write that exists and is not claimed is a usage
error naming it (``cell_overlay.png`` of the user's, beside ``cell.png``; a ``results.jsonl`` of
their own). ``gapcam evaluate --out FILE`` replaces only a report it wrote (a JSON object with
its keys), never an input, a box or mask file or any other file. No torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from .inputs import Item, is_zarr
from .outputs import RESULTS, OutputFolder
from .store import Store

REPORT_KEYS = ("images", "max_box_acc_v2", "box_acc", "files")  # gapcam evaluate's JSON
REPORT_BYTES = 2**30  # a report larger than this is not read to recognise it
SHOWN = 10  # files in the way named in the message


def in_the_way(store: Store, names: Iterable[str]) -> Iterator[Path]:
    """The paths of ``names`` that exist and gapcam did not write (a link counts as a file)."""
    return (
        store.root / name
        for name in names
        if os.path.lexists(store.root / name) and not store.wrote(name)
    )


def owned(out: OutputFolder) -> Callable[[Path], bool]:
    """Whether a path is one of the folder's own files: its store, temporaries, and the maps,
    overlays and results it claims. Such files are never inputs, even when ``--out`` is an
    input folder; the images the user put there stay inputs, whatever their names."""
    stores: list[Store] = []  # opened at the first path under the folder

    def owns(path: Path) -> bool:
        if not out.contains(path):
            return False
        if out.owns(path):
            return True
        if not stores:
            stores.append(Store(out.root))
        return stores[0].wrote(out.name_of(path))

    return owns


def planned_outputs(item: Item, options: Any) -> list[str]:
    """What a run writes for ``item`` (relative to the output folder)."""
    stem = item.stem
    if getattr(options, "tiles", False):
        names = [f"{stem}_cam.ome.zarr", f"{stem}_tiles.csv", f"{stem}_regions.geojson"]
    else:
        cam = f"{stem}_cam.zarr" if is_zarr(Path(item.path)) else f"{stem}_cam.tif"
        names = [cam, f"{stem}_overlay.png"]
        if getattr(options, "labels", None):
            names.append(f"{stem}_objects.csv")
    return names


def blocking(store: Store, todo: Iterable[Item], options: Any) -> str | None:
    """The usage error when a file a run would write is a user's own (else None); ``todo``
    is taken whole, holding only the first few files in the way."""
    names = chain([RESULTS], (name for item in todo for name in planned_outputs(item, options)))
    shown, count = [], 0
    for path in in_the_way(store, names):
        count += 1
        if count <= SHOWN:
            shown.append(f"  {path}")
    if not count:
        return None
    listed = "\n".join(shown) + ("\n  …" if count > SHOWN else "")
    return (
        f"{count} file(s) in the output folder {store.root} are in the way of this run's "
        f"outputs, and gapcam did not write them:\n{listed}\ngapcam never replaces a file of "
        "yours: move them, or give another --out."
    )


def is_evaluate_report(path: Path) -> bool:
    """``path`` holds a JSON report of ``gapcam evaluate`` (it may be replaced)."""
    try:
        if path.stat().st_size > REPORT_BYTES:
            return False
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in REPORT_KEYS)
