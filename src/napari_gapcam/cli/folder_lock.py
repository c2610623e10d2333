"""One run at a time per output folder: an OS lock on ``<out>/.gapcam-lock``.

The lock is the ``filelock`` package's native lock (``flock`` on POSIX, ``msvcrt.locking`` on
Windows) on an open file, so the operating system drops it when the holding process ends in
any way, SIGKILL included. Who holds it (pid, host, start time, command) is kept beside it in
``<out>/.gapcam-lock.json`` (filelock owns the lock file itself), which a second run prints
when it finds the folder busy. A holder file found by a run that got the lock was left by a
run that ended without releasing it: the new run takes over and says so.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .outputs import TEMP_PREFIX

LOCK_NAME = ".gapcam-lock"
HOLDER_NAME = ".gapcam-lock.json"


class FolderBusyError(RuntimeError):
    """Another live run holds the output folder; the message names it."""


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 123 on host, started 2026-12-02 05:48:37 (gapcam predict …)``."""
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}{command}"


def _os_lock(path: Path) -> Any:
    """filelock's native lock on ``path``: never its soft (marker-file) fallback, which a
    killed run would leave behind."""
    from filelock import FileLock

    try:
        return FileLock(path, fallback_to_soft=False)  # filelock >= 4
    except TypeError:  # filelock 3: a native lock or an OSError, never a soft one
        return FileLock(path)


class FolderLock:
    """``with FolderLock(root):`` holds ``root`` for this process, or raises FolderBusyError.

    ``previous`` is the holder a stale holder file named (a run that ended without releasing
    the lock), or None.
    """

    def __init__(self, root: Path, command: str = "") -> None:
        self.path = Path(root) / LOCK_NAME
        self.holder_path = Path(root) / HOLDER_NAME
        self.command = command
        self.previous: dict[str, Any] | None = None
        self._lock: Any = None

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.holder_path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def acquire(self) -> None:
        from filelock import Timeout

        lock = _os_lock(self.path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = self._holder()
            who = describe_holder(holder) if holder else "a run whose details are not readable"
            raise FolderBusyError(
                f"the output folder {self.path.parent} is in use by another gapcam run: {who}. "
                "Wait for it to finish, or use another --out. (If that process is gone, run "
                "again: its lock goes with it.)"
            ) from None
        self._lock = lock
        self.previous = self._holder()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": self.command,
        }
        temp = self.holder_path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{HOLDER_NAME}")
        temp.write_text(json.dumps(holder), encoding="utf-8")
        os.replace(temp, self.holder_path)  # a reader sees the old holder or the new one

    def release(self) -> None:
        if self._lock is not None:
            self.holder_path.unlink(missing_ok=True)  # nobody holds it
            self._lock.release()  # drops the OS lock
            self._lock = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
