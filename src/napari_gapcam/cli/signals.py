"""SIGTERM handled like SIGINT: what ``kill``, SLURM at wall time, ``docker stop`` and systemd
send becomes :class:`Terminated` (a :class:`KeyboardInterrupt`), so a run ends as an interrupted
one does: ``results.jsonl`` rebuilt from the records, the lock released, temporaries left for the
next run to delete, exit 143 (128 + 15) with a message."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def _raise(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` in the main thread (elsewhere, where Python
    cannot set a handler, nothing changes); the previous handler is put back after."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
