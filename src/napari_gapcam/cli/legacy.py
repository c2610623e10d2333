"""Output folders written before the record store: their records move into it.

Such a folder keeps one JSON record per input (``records/<stem>.json``, ``B02/site1.json``
below a ``--recursive`` run's subfolders) and a ledger of the files gapcam wrote
(``.gapcam-written``, one name per line; a folder older than the ledger: the files its records
name). Reading it fills a store (an in-memory one before the run holds the folder); the first
run that holds the folder moves them into its database and deletes the old files. A tiled
slide's saved blocks (``records/<stem>.parts/``) stay where they are. No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

RECORDS = "records"
LEDGER = ".gapcam-written"


def _record_files(root: Path) -> list[tuple[str, Path]]:
    folder = root / RECORDS
    found = []
    for where, subfolders, files in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not name.endswith(".parts")]
        relative = Path(where).relative_to(folder).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        found.extend(
            (prefix + name[: -len(".json")], Path(where) / name)
            for name in files
            if name.endswith(".json")
        )
    return sorted(found)


def import_legacy(store: Store, root: Path, remove: bool = False) -> int:
    """Put ``root``'s old records and ledger into ``store``; ``remove``: delete them after.
    Returns how many records moved."""
    root = Path(root)
    files = _record_files(root) if (root / RECORDS).is_dir() else []
    ledger = root / LEDGER
    try:
        names = {line for line in ledger.read_text(encoding="utf-8").splitlines() if line}
    except (OSError, UnicodeDecodeError):
        names = set()
    moved = 0
    with store.transaction():
        for stem, path in files:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or "file" not in record:
                continue
            record["stem"] = stem
            names.update(n for n in (record.get("outputs") or {}).values() if isinstance(n, str))
            store._put(record, None, None)
            moved += 1
        if moved:
            names.add("results.jsonl")
        store.db.executemany("INSERT OR IGNORE INTO written VALUES (?)", ((n,) for n in names))
    if remove:
        for _, path in files:
            path.unlink(missing_ok=True)
        ledger.unlink(missing_ok=True)
        for where, _, _ in sorted(os.walk(root / RECORDS), reverse=True):  # deepest first
            try:
                os.rmdir(where)  # only when empty: a slide's saved blocks stay
            except OSError:
                pass
    return moved
