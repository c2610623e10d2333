"""One run at a time per output folder: an OS lock on ``<out>/.gapcam-lock``.

The lock is ``flock`` (``msvcrt.locking`` on Windows) on an open file, so the operating system
drops it when the holding process ends in any way, SIGKILL included: a lock file left by a dead
run is stale by construction and the next run takes it over. The file holds who has it (pid,
host, start time, command), which a second run prints when it finds the folder busy.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

LOCK_NAME = ".gapcam-lock"


class FolderBusyError(RuntimeError):
    """Another live run holds the output folder; the message names it."""


def _try_lock(handle: IO[str]) -> bool:
    """Take the lock without waiting; False when another open file holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        handle.seek(0)  # every process locks the same first byte
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def describe_holder(holder: dict[str, Any]) -> str:
    """``pid 123 on host, started 2026-12-02 05:48:37 (gapcam predict …)``."""
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}{command}"


class FolderLock:
    """``with FolderLock(root):`` holds ``root`` for this process, or raises FolderBusyError.

    ``previous`` is the holder a stale lock file named (a run that ended without releasing
    it), or None.
    """

    def __init__(self, root: Path, command: str = "") -> None:
        self.path = Path(root) / LOCK_NAME
        self.command = command
        self.previous: dict[str, Any] | None = None
        self._handle: IO[str] | None = None

    def _read(self, handle: IO[str]) -> dict[str, Any] | None:
        handle.seek(0)
        try:
            holder = json.loads(handle.read() or "null")
        except ValueError:
            return None
        return holder if isinstance(holder, dict) else None

    def acquire(self) -> None:
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        if not _try_lock(handle):
            holder = self._read(handle)
            handle.close()
            who = describe_holder(holder) if holder else "a run whose details are not readable"
            raise FolderBusyError(
                f"the output folder {self.path.parent} is in use by another gapcam run: {who}. "
                "Wait for it to finish, or use another --out. (If that process is gone, run "
                "again: its lock goes with it.)"
            )
        self.previous = self._read(handle)
        handle.seek(0)
        handle.truncate()
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": self.command,
        }
        handle.write(json.dumps(holder))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()  # an empty file: nobody holds it
            self._handle.close()  # closing drops the OS lock
            self._handle = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
