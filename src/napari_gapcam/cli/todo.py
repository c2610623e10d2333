"""The inputs a run computes, kept on disk: the driver holds none of them.

A first run over a screen of 10⁶ images has 10⁶ inputs to do; the run needs them three times
(the claims of their outputs, ``results.jsonl`` without their lines, then the computing), so
:class:`TodoList` keeps them in a SQLite file of its own (``<out>/.gapcam/todo.sqlite``, written
only by the run holding the folder's lock, deleted when it ends) and reads them back a page at a
time. It is read from one thread at a time (the run's reader thread while the run computes).
No torch here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .inputs import Item

PAGE = 512  # inputs read back per query


class TodoList:
    """Items in the order added; ``len``, ``in`` (by stem) and iteration (see the module)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.unlink(missing_ok=True)  # a killed run's
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to recover
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("CREATE TABLE todo (seq INTEGER PRIMARY KEY, file TEXT, stem TEXT UNIQUE)")
        self.count = 0

    def extend(self, items: Iterable[Item]) -> None:
        before = self.db.total_changes
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO todo (file, stem) VALUES (?, ?)", ((i.path, i.stem) for i in items)
        )
        self.db.execute("COMMIT")
        self.count += self.db.total_changes - before

    def __len__(self) -> int:
        return self.count

    def __contains__(self, stem: object) -> bool:
        found = self.db.execute("SELECT 1 FROM todo WHERE stem = ?", (stem,)).fetchone()
        return found is not None

    def __iter__(self) -> Iterator[Item]:
        last = 0
        while True:
            page = self.db.execute(
                "SELECT seq, file, stem FROM todo WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, PAGE),
            ).fetchall()
            if not page:
                return
            yield from (Item(file, stem) for _, file, stem in page)
            last = page[-1][0]

    def close(self) -> None:
        self.db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> TodoList:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
