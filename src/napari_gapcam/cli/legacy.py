"""Output folders written before the record store: what they keep, read to move it in.

Such a folder keeps one JSON record per input (``records/<stem>.json``, ``B02/site1.json``
below a ``--recursive`` run's subfolders) and a ledger of the files gapcam wrote
(``.gapcam-written``, one name per line; a folder older than the ledger: the files its records
name). The store (:mod:`~napari_gapcam.cli.store`) takes them in: into memory before the run
holds the folder, into its database (deleting these files) once it does. A tiled slide's saved
blocks (``records/<stem>.parts/``) stay where they are. No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORDS = "records"
LEDGER = ".gapcam-written"


def legacy_records(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(file, record)`` of each readable record of ``root``, its ``stem`` set from its path."""
    folder = Path(root) / RECORDS
    if not folder.is_dir():
        return []
    found = []
    for where, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.endswith(".parts"))
        relative = Path(where).relative_to(folder).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = Path(where) / name
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and "file" in record:
                record["stem"] = prefix + name[: -len(".json")]
                found.append((path, record))
    return found


def legacy_claims(root: Path, records: list[dict[str, Any]]) -> set[str]:
    """The files gapcam wrote in ``root``: its ledger's names, and what its records name."""
    try:
        text = (Path(root) / LEDGER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    names = {line for line in text.splitlines() if line}
    for record in records:
        outputs = record.get("outputs") or {}
        names.update(name for name in outputs.values() if isinstance(name, str))
    if records:
        names.add("results.jsonl")
    return names


def remove_legacy(root: Path, files: list[Path]) -> None:
    """Delete the records moved into the store, the ledger and the folders left empty."""
    for path in files:
        path.unlink(missing_ok=True)
    (Path(root) / LEDGER).unlink(missing_ok=True)
    for where, _, _ in sorted(os.walk(Path(root) / RECORDS), reverse=True):  # deepest first
        try:
            os.rmdir(where)  # only when empty: a slide's saved blocks stay
        except OSError:
            pass
