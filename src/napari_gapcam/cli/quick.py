"""A record's files known again by one ``stat`` each: how a no-op re-run stays cheap.

When an input lands, the store keeps each of its files' stat key: size, modification time,
*change* time and inode (the input, its label image, its outputs). A file whose four are as
kept has not been written since: replacing a file's bytes, even at the same size with its
modification time put back (``touch -d``, ``cp -p``, ``rsync -t``), sets its change time to
now, and no call lets a user set it back. So an input whose keys all match is done without
hashing a byte; any difference (a copy, a touch, a restore from backup) sends it through the
full check (:func:`~napari_gapcam.cli.inputs.unchanged`, :func:`~napari_gapcam.cli.verify.damage`:
sizes and, up to 1 MiB, SHA-256 hashes), after which a file found unchanged gets its new keys.

A file changed within a second of its key being taken could share that key's change time
(filesystems stamp times at a clock tick): such a key is not kept for an input or a label
image (the next run checks them in full, as git treats its "racy" entries).

Windows' ``st_ctime`` is the creation time, which an in-place rewrite keeps: there, and for
folders (zarr), there are no quick keys and every check is the full one. No torch here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENABLED = os.name == "posix"
SETTLED_NS = 1_000_000_000  # a change time this close to now may be shared with a later write


def stat_key(path: str | os.PathLike) -> list[int] | None:
    """``[size, mtime_ns, ctime_ns, inode]`` of a regular file; None for anything else."""
    if not ENABLED:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not (info.st_mode & 0o170000) == 0o100000:  # S_ISREG
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def settled_key(path: str | os.PathLike) -> list[int] | None:
    """:func:`stat_key`, unless the file changed within :data:`SETTLED_NS` of now."""
    key = stat_key(path)
    if key is None or key[2] > time.time_ns() - SETTLED_NS:
        return None
    return key


def stat_keys(
    root: Path, record: Mapping[str, Any], input_key: list[int] | None = None
) -> dict[str, list[int]] | None:
    """``{file: key}`` of ``record``'s input and label image (absolute paths) and outputs
    (names in ``root``), now (``input_key``: the input's, taken before it was read); None when
    one of them has no key (a folder, or not POSIX)."""
    keys: dict[str, list[int] | None] = {record["file"]: input_key or settled_key(record["file"])}
    labels = record.get("labels")
    if labels:
        keys[labels.get("file", "")] = settled_key(labels.get("file", ""))
    for name in (record.get("outputs") or {}).values():
        if isinstance(name, str):
            keys[name] = stat_key(Path(root) / name)
    if any(key is None for key in keys.values()):
        return None
    return keys  # type: ignore[return-value]


def still(root: Path, kept: Mapping[str, Any] | None) -> bool:
    """Every file of ``kept`` (:func:`stat_keys` when the record landed) has its key still."""
    if not kept:
        return False
    root = os.fspath(root)
    join = os.path.join  # an input's absolute path stays as it is
    return all(stat_key(join(root, name)) == key for name, key in kept.items())
