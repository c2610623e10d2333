"""Which files gapcam wrote, so that it replaces those and never a user's own file.

An output folder keeps a ledger, ``.gapcam-written``: one path per line (relative to the
folder, ``/``-separated) of every file or folder a run was about to write. A run claims an
input's outputs in the ledger (one appended ``write``) before it computes the input, so a run
killed half-way leaves its files claimed. A folder written before the ledger existed: the files
its records name, the records themselves and ``results.jsonl`` are its claims.

Before the model loads, every output a run will write that exists and is not claimed is a usage
error naming it (``cell_overlay.png`` of the user's, beside ``cell.png``; a ``results.jsonl`` of
their own). ``gapcam evaluate --out FILE`` replaces only a report it wrote (a JSON object with
its keys), never an input, a box or mask file or any other file. No torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .inputs import Item, is_zarr
from .outputs import RECORDS, RESULTS, OutputFolder

LEDGER = ".gapcam-written"
REPORT_KEYS = ("images", "max_box_acc_v2", "box_acc", "files")  # gapcam evaluate's JSON
REPORT_BYTES = 2**30  # a report larger than this is not read to recognise it


class Claims:
    """The files of ``root`` gapcam wrote: its ledger, and the legacy claims of ``records``
    (every record by stem, complete or not)."""

    def __init__(self, root: Path, records: Mapping[str, Mapping[str, Any]]) -> None:
        self.root, self.path = Path(root), Path(root) / LEDGER
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        self.names = {line for line in text.splitlines() if line}
        for stem, record in records.items():
            self.names.add(f"{RECORDS}/{stem}.json")
            outputs = record.get("outputs")
            self.names.update(str(n) for n in (outputs or {}).values() if isinstance(n, str))
        if records:
            self.names.add(RESULTS)

    def owns(self, name: str) -> bool:
        """``name`` (relative to the folder, ``/``-separated) is a file gapcam wrote."""
        return name in self.names

    def in_the_way(self, names: Iterable[str]) -> list[Path]:
        """The paths of ``names`` that exist and are not gapcam's (a link counts as a file)."""
        return [
            self.root / name
            for name in names
            if name not in self.names and os.path.lexists(self.root / name)
        ]

    def claim(self, names: Iterable[str]) -> None:
        """Add ``names`` to the ledger (one ``write``, appended; the folder exists)."""
        new = sorted(set(names) - self.names)
        if not new:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, "".join(name + "\n" for name in new).encode("utf-8"))
        finally:
            os.close(fd)
        self.names.update(new)


def claims_of(out: OutputFolder) -> Claims:
    """The claims of an output folder, read now."""
    return Claims(out.root, out.all_records(complete_only=False))


def owned(out: OutputFolder) -> Callable[[Path], bool]:
    """Whether a path is one of the folder's own files: its records, temporaries, and the maps,
    overlays and results it claims. Such files are never inputs, even when ``--out`` is an
    input folder; the images the user put there stay inputs, whatever their names."""
    claims: list[Claims] = []  # read at the first path under the folder

    def owns(path: Path) -> bool:
        path = Path(path)
        if out.owns(path):
            return True
        if out.root not in path.parents:
            return False
        if not claims:
            claims.append(claims_of(out))
        return claims[0].owns(out.name_of(path))

    return owns


def planned_outputs(item: Item, options: Any) -> list[str]:
    """What a run writes for ``item`` (relative to the output folder), its record included."""
    stem = item.stem
    if getattr(options, "tiles", False):
        names = [f"{stem}_cam.ome.zarr", f"{stem}_tiles.csv", f"{stem}_regions.geojson"]
    else:
        cam = f"{stem}_cam.zarr" if is_zarr(Path(item.path)) else f"{stem}_cam.tif"
        names = [cam, f"{stem}_overlay.png"]
        if getattr(options, "labels", None):
            names.append(f"{stem}_objects.csv")
    return [*names, f"{RECORDS}/{stem}.json"]


def blocking(claims: Claims, todo: Iterable[Item], options: Any) -> str | None:
    """The usage error when a file a run would write is a user's own (else None)."""
    names = [RESULTS, *(name for item in todo for name in planned_outputs(item, options))]
    found = claims.in_the_way(names)
    if not found:
        return None
    shown = "\n".join(f"  {path}" for path in found[:10]) + ("\n  …" if len(found) > 10 else "")
    return (
        f"{len(found)} file(s) in the output folder {claims.root} are in the way of this run's "
        f"outputs, and gapcam did not write them:\n{shown}\ngapcam never replaces a file of "
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
