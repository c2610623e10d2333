"""The record store of an output folder: one SQLite database, the truth about every input.

``<out>/.gapcam/store.sqlite`` (WAL mode where the filesystem allows it, else SQLite's rollback
journal) holds, per input, its record (the JSON line of ``results.jsonl``: file, fingerprint,
settings, outputs with their sizes and hashes), the settings it was made with, the quick
stat keys of its files (:mod:`~napari_gapcam.cli.quick`) and the run that wrote it; the names
of every file gapcam wrote in the folder (:mod:`~napari_gapcam.cli.claims`); the runs, and
the lease: the token of the one run allowed to land outputs.

Only the ``gapcam`` process holding the folder's lock (:mod:`~napari_gapcam.cli.folder_lock`)
writes here; dask workers never open it. A run's workers write into the run's own staging
folder, ``<out>/.gapcam/stage/<token>/``, and the run lands each input
(:meth:`Store.land`): in one transaction it checks that it still holds the lease, renames the
staged files into place and writes the record. A run that lost the lease, or the chunks a
killed client left running on a cluster, never land anything: their staging folders are
deleted by the next run. No torch here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .outputs import FOLDER, atomic_path, replace
from .quick import stat_keys

DATABASE = "store.sqlite"
STAGE = "stage"
BUSY_MS = 60_000  # how long a reader waits for a writer's transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    stem TEXT PRIMARY KEY,  -- the input's output prefix (B02/site1 with --recursive)
    file TEXT NOT NULL,     -- the input's absolute path
    settings TEXT NOT NULL, -- json.dumps(settings, sort_keys=True)
    body TEXT NOT NULL,     -- the record: its line of results.jsonl
    quick TEXT,             -- stat keys of its input and outputs when it landed (quick.py)
    run TEXT                -- the token of the run that wrote it
);
CREATE INDEX IF NOT EXISTS records_by_file ON records (file);
CREATE INDEX IF NOT EXISTS records_by_folded_stem ON records (fold(stem));
CREATE TABLE IF NOT EXISTS written (name TEXT PRIMARY KEY);  -- files gapcam wrote (claims)
CREATE TABLE IF NOT EXISTS runs (
    token TEXT PRIMARY KEY, command TEXT, pid INTEGER, host TEXT, started REAL, ended REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class FencedError(RuntimeError):
    """A run tried to land outputs without holding the folder's lease."""


def settings_key(settings: Mapping[str, Any]) -> str:
    """The settings as the store compares them."""
    return json.dumps(settings, sort_keys=True)


def store_folder(root: Path) -> Path:
    return Path(root) / FOLDER


def stage_folder(root: Path, token: str) -> Path:
    """Where run ``token``'s workers write before the run lands their files."""
    return store_folder(root) / STAGE / token


class Store:
    """An output folder's records, claims, runs and lease (see the module's docstring).

    ``Store(root)`` reads: the database when there is one, else an in-memory copy of what a
    folder written before the store keeps (``records/*.json``, ``.gapcam-written``), or an
    empty store. ``Store(root, write=True)`` (under the folder's lock) creates the database,
    moving such a folder's records into it.
    """

    def __init__(self, root: str | os.PathLike, write: bool = False) -> None:
        self.root = Path(root)
        self.path = store_folder(self.root) / DATABASE
        exists = self.path.is_file()
        if write or exists:
            if write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
            _functions(self.db)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            if write:
                self.db.execute("PRAGMA journal_mode = WAL")  # rollback journal if refused
                self.db.execute("PRAGMA synchronous = NORMAL")
        else:
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            _functions(self.db)
        if write or not exists:
            self.db.executescript(SCHEMA)
        if not exists:
            self._import_legacy(remove=write)

    def _import_legacy(self, remove: bool) -> None:
        """Take in what a folder written before the store keeps (:mod:`.legacy`); ``remove``:
        delete those files once they are in the database."""
        from .legacy import legacy_claims, legacy_records, remove_legacy

        found = legacy_records(self.root)
        names = legacy_claims(self.root, [record for _, record in found])
        with self.transaction():
            for _, record in found:
                self._put(record, None, None)
            self.db.executemany("INSERT OR IGNORE INTO written VALUES (?)", ((n,) for n in names))
        if remove:
            remove_legacy(self.root, [path for path, _ in found])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # records ---------------------------------------------------------------------------------
    def files(self) -> dict[str, str]:
        """``{file: stem}`` of every record (a stem stays its file's, even when redone)."""
        return dict(self.db.execute("SELECT file, stem FROM records"))

    def row_of(self, file: str) -> tuple[str, str, str | None, str] | None:
        """``(stem, settings key, quick keys, record)`` of ``file``'s record, or None."""
        return self.db.execute(
            "SELECT stem, settings, quick, body FROM records WHERE file = ?", (file,)
        ).fetchone()

    def holder(self, folded: str) -> str | None:
        """The file of a record whose stem, casefolded, is ``folded`` (else None)."""
        found = self.db.execute(
            "SELECT file FROM records WHERE fold(stem) = ? LIMIT 1", (folded,)
        ).fetchone()
        return None if found is None else found[0]

    def row(self, stem: str) -> tuple[str, str, str | None, str] | None:
        """``(file, settings key, quick keys, record)`` of ``stem`` as stored (JSON), or None."""
        return self.db.execute(
            "SELECT file, settings, quick, body FROM records WHERE stem = ?", (stem,)
        ).fetchone()

    def record(self, stem: str) -> dict[str, Any] | None:
        found = self.row(stem)
        return None if found is None else json.loads(found[3])

    def records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every ``(stem, record)``, sorted by stem."""
        for stem, body in self.db.execute("SELECT stem, body FROM records ORDER BY stem"):
            yield stem, json.loads(body)

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM records").fetchone()[0]

    def put(self, record: Mapping[str, Any], quick: Any = None, run: str | None = None) -> None:
        """Write ``record`` (replacing its stem's); outside :meth:`land`, for imports and
        tests."""
        with self.transaction():
            self._put(record, quick, run)

    def _put(self, record: Mapping[str, Any], quick: Any, run: str | None) -> str:
        """Write ``record``; its line (as ``results.jsonl`` holds it)."""
        body = json.dumps(record)
        self.db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",
            (
                record["stem"],
                record["file"],
                settings_key(record.get("settings") or {}),
                body,
                None if quick is None else json.dumps(quick),
                run,
            ),
        )
        self._bump()
        return body

    def forget(self, stem: str) -> None:
        """Drop ``stem``'s record (its input is done no more)."""
        with self.transaction():
            self.db.execute("DELETE FROM records WHERE stem = ?", (stem,))
            self._bump()

    def refresh(self, quick: Iterable[tuple[str, Any]]) -> None:
        """New quick keys for records whose files were checked in full and found unchanged
        (a touched or copied file): the next run checks them quickly again."""
        rows = [(json.dumps(keys), stem) for stem, keys in quick]
        if rows:
            with self.transaction():
                self.db.executemany("UPDATE records SET quick = ? WHERE stem = ?", rows)

    # claims ------------------------------------------------------------------------------------
    def wrote(self, name: str) -> bool:
        """gapcam wrote ``name`` (relative to the folder, ``/``-separated)."""
        found = self.db.execute("SELECT 1 FROM written WHERE name = ?", (name,)).fetchone()
        return found is not None

    def claim(self, names: Iterable[str]) -> None:
        """Add ``names`` to the files gapcam wrote, before it writes them."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO written VALUES (?)", ((name,) for name in names)
            )

    # runs and the lease ---------------------------------------------------------------------------
    def begin_run(self, token: str, command: str) -> None:
        """Record the run and give it the lease (the folder's lock is held)."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, NULL)",
                (token, command, os.getpid(), socket.gethostname(), time.time()),
            )
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('lease', ?)", (token,))
        shutil.rmtree(store_folder(self.root) / STAGE, ignore_errors=True)  # dead runs' own

    def end_run(self, token: str) -> None:
        """The run ends: its lease too, and the staging folders (its own, and any a dead
        run's workers left)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET ended = ? WHERE token = ?", (time.time(), token))
            if self.lease() == token:
                self.db.execute("DELETE FROM meta WHERE key = 'lease'")
        shutil.rmtree(store_folder(self.root) / STAGE, ignore_errors=True)

    def lease(self) -> str | None:
        found = self.db.execute("SELECT value FROM meta WHERE key = 'lease'").fetchone()
        return None if found is None else found[0]

    def land(
        self,
        token: str,
        record: Mapping[str, Any],
        stage: Path,
        input_key: list[int] | None = None,
    ) -> str:
        """Move ``record``'s staged outputs into place and write it, in one transaction,
        if run ``token`` holds the lease; else :class:`FencedError` and nothing lands.
        ``input_key``: the input's stat key taken before it was read (None: no quick keys).
        Returns the record's line."""
        names = [n for n in (record.get("outputs") or {}).values() if isinstance(n, str)]
        with self.transaction():
            if self.lease() != token:
                raise FencedError(
                    f"run {token[:8]} no longer holds {self.root}: its outputs of "
                    f"{record.get('file')} are not kept"
                )
            for name in names:
                replace(Path(stage) / name, self.root / name)
            quick = stat_keys(self.root, record, input_key) if input_key else None
            return self._put(record, quick, token)

    # results.jsonl -----------------------------------------------------------------------------
    def version(self) -> int:
        found = self.db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return 0 if found is None else int(found[0])

    def _bump(self) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES ('version', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def bump(self) -> None:
        with self.transaction():
            self._bump()

    def export(self, path: Path, leave_out: Collection[str] = ()) -> int:
        """``path`` ← one line per record, sorted by file, but those of the stems in
        ``leave_out``, atomically; returns the count. Skipped when ``path`` is this store's last
        full export and no record changed since."""
        if not len(leave_out) and self.exported(path):
            return self.count()
        count = 0
        with atomic_path(path) as temp, open(temp, "w", encoding="utf-8") as lines:
            rows = self.db.execute("SELECT stem, body FROM records ORDER BY file, stem")
            for stem, body in rows:
                if stem not in leave_out:
                    lines.write(body + "\n")
                    count += 1
        if not len(leave_out):
            with self.transaction():
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('export', ?)",
                    (json.dumps([self.version(), _file_key(path)]),),
                )
        return count

    def exported(self, path: Path) -> bool:
        """``path`` is this store's last full export, and no record changed since."""
        return self._meta("export") == json.dumps([self.version(), _file_key(path)])

    def _meta(self, key: str) -> str | None:
        found = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if found is None else found[0]

    # transactions ------------------------------------------------------------------------------
    def transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception); nests as one."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.outer = db, False

    def __enter__(self) -> None:
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if kind else "COMMIT")


def _functions(db: sqlite3.Connection) -> None:
    """The SQL functions the schema uses: ``fold(stem)``, a stem as names on a
    case-insensitive file system compare (Python's ``str.casefold``)."""
    db.create_function("fold", 1, lambda text: text and text.casefold(), deterministic=True)


def _file_key(path: Path) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]
