"""Set-up errors found before the model loads, each naming its option or file: an ``--out``
that cannot be written (empty, under a file, read-only, a full disk), a ``--scheduler`` address
that is no dask address, the files read beside a checkpoint (``<weights>.gapcam.json``, class
names), and an ``--overlap`` that leaves a tile nothing of its own. No torch here."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MIN_FREE = 2**20  # a run needs room for its lock, its records and a map: at least 1 MiB
ADDRESS_SCHEMES_WITH_PORT = ("tcp", "tls", "ws", "wss")


class UsageError(Exception):
    """A command line that cannot run; the message says what is wrong and the way out."""


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    return next(p for p in (path, *path.parents) if os.path.lexists(p))


def writable_place(argument: str, what: str) -> Path:
    """``--out``'s absolute path, once it is known to be creatable and writable: not empty,
    not under a file, on a writable folder with at least ``MIN_FREE`` bytes free. ``what``
    says what ``--out`` names (``folder`` or ``file``)."""
    if not argument.strip():
        raise UsageError(f"--out is empty: give the output {what} (it is created).")
    path = Path(argument).expanduser().resolve()
    existing = nearest_existing(path)
    if existing != path and not existing.is_dir():
        raise UsageError(
            f"--out {argument}: {existing} is a file, so nothing can be created under it: "
            f"give another output {what}."
        )
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {argument}: {folder} is not writable (read-only, or no permission): "
            f"give an output {what} where you can write."
        )
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE:
        raise UsageError(
            f"--out {argument}: the disk of {folder} has {free} bytes free: free some space, "
            f"or give an output {what} on another disk."
        )
    return path


def check_scheduler(address: str) -> None:
    """A dask address: ``[scheme://]host[:port]`` of a scheme dask.distributed knows."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ADDRESS_SCHEMES_WITH_PORT:
            host, _ = parse_host_port(location, 8786)
            if not host:
                raise ValueError("no host")
    except (ValueError, TypeError) as problem:
        raise UsageError(
            f"--scheduler {address} is not a dask scheduler address ({problem}): give "
            "tcp://HOST:PORT, e.g. tcp://scheduler-host:8786."
        ) from None


def check_weights_files(weights: str | None) -> None:
    """A checkpoint file's companions, read as the loader will read them: its settings
    (``<weights>.gapcam.json``) and its class names (``.json``/``.txt`` beside it, a Hugging
    Face ``config.json``)."""
    if weights is None or not os.path.isfile(weights):
        return
    from ..models.class_names import sidecar_names
    from ..models.errors import WeightsError
    from ..models.sidecar import read_sidecar

    try:
        read_sidecar(weights)
        sidecar_names(Path(weights))
    except WeightsError as problem:
        raise UsageError(f"--weights {weights}: {problem}") from None


def check_overlap(overlap: int | None, tile_size: int | None) -> None:
    """``--overlap`` below the tile size (a tile must keep pixels of its own)."""
    if overlap is not None and tile_size is not None and overlap >= tile_size:
        raise UsageError(
            f"--overlap {overlap} is not less than the tile size {tile_size} (--tile-size, "
            "else --input-size, else the model's): neighbouring tiles would share everything. "
            "Give a smaller --overlap (e.g. two map cells, 64 for a ResNet)."
        )
