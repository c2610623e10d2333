"""Batch inputs: files, folders and globs → image files, each with a stable output stem, and
what identifies a file's content (to know whether it changed). Reading an input's pages is
:mod:`.pages`. No torch here.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
HASHED_BYTES = 2**20  # files up to 1 MiB are also known by a hash of their content


class InputError(Exception):
    """An input that cannot be read; the message says why."""


@dataclass(frozen=True)
class Item:
    """One input: its absolute path and the unique prefix of its output files."""

    path: str
    stem: str


def is_zarr(path: Path) -> bool:
    """A folder that is a zarr array or group (v2 or v3 metadata, or a ``.zarr`` name)."""
    return path.is_dir() and (
        path.suffix == ".zarr" or any((path / m).is_file() for m in ("zarr.json", ".zarray"))
    )


def _is_input(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES) or is_zarr(path)


class Found(NamedTuple):
    """What the arguments name: the inputs, the arguments naming nothing, and the files
    left out because they are the output folder's own files."""

    paths: list[Path]
    problems: list[tuple[str, str]]  # (argument, reason)
    excluded: list[Path]
    unreadable: list[tuple[str, str]] = []  # (file in a folder, reason): never read, reported
    subfolders: dict[Path, str] = {}  # --recursive: an input's folder below the one given


def _special(path: Path) -> str | None:
    """Why a folder's entry that looks like an input cannot be one: a link that loops or
    dangles, a FIFO, socket or device (reading a FIFO would wait forever); else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return _missing_reason(path) if os.path.islink(path) else None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not an image file"
    if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a socket or device, not an image file"
    return None


def list_folder(
    path: Path, unreadable: list[tuple[str, str]], resolved: bool = False
) -> list[Path]:
    """A folder's inputs (not recursive), resolved; its links that loop or dangle, and its
    special files with an image's suffix, go to ``unreadable``. ``resolved``: ``path`` is.

    One directory listing: a regular file is known by its entry's type, with no ``stat``
    (a folder of 10⁵ images is listed in a fraction of a second)."""
    found = []
    real = path if resolved else path.resolve()
    try:
        entries = sorted(os.scandir(path), key=lambda entry: entry.name)
    except OSError as error:
        unreadable.append((str(path), f"cannot be listed ({error.strerror})"))
        return []
    for entry in entries:
        name = entry.name
        image = os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        if not entry.is_symlink() and entry.is_file(follow_symlinks=False):
            if image:
                found.append(real / name)
            continue
        candidate = Path(entry.path)
        if _is_input(candidate):  # a link to an image, a zarr folder
            found.append(candidate.resolve())
        elif entry.is_symlink() or image:
            reason = _special(candidate)
            if reason is not None:
                unreadable.append((str(candidate.absolute()), reason))
    return found


def _missing_reason(path: Path) -> str:
    """Why ``path`` names nothing: a broken link, a link loop, no permission, or no file."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself)"
        if error.errno == errno.EACCES:
            return "permission denied"
        if os.path.islink(path):
            return f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return "no such file or folder"
    return _special(path) or "no such file or folder"


EMPTY_FOLDER = "no PNG, JPEG, TIFF or zarr inputs in this folder"


class Named(NamedTuple):
    """What one input argument names: files (a file, a zarr, a glob's matches; resolved), or
    a folder to list, or nothing (``problem`` says why)."""

    files: list[Path]
    folder: Path | None = None
    problem: str | None = None


def named(argument: str) -> Named:
    """Sort one input argument (see :class:`Named`)."""
    path = Path(argument).expanduser()
    if is_zarr(path) or path.is_file():
        return Named([path.resolve()])
    if path.is_dir():
        return Named([], path)
    if glob.has_magic(argument):
        found = sorted(
            p.resolve() for p in map(Path, glob.glob(os.path.expanduser(argument))) if _is_input(p)
        )
        problem = None if found else "no PNG, JPEG, TIFF or zarr inputs match this pattern"
        return Named(found, None, problem)
    return Named([], None, _missing_reason(path))


def expand(
    arguments: Sequence[str],
    exclude: Callable[[Path], bool] | None = None,
    recursive: bool = False,
    skip: Collection[Path] = (),
) -> Found:
    """Files, folders (their images, not recursive) and globs → :class:`Found`.

    A problem is ``(argument, reason)`` for an argument that names nothing to read. A file
    named explicitly is kept whatever its suffix (reading it says whether it is supported).
    No path for which ``exclude`` is true (the output folder's own files) is an input.
    """
    paths: list[Path] = []
    problems: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    subfolders: dict[Path, str] = {}
    for argument in arguments:
        what = named(argument)
        if what.problem is not None:
            problems.append((argument, what.problem))
        found = what.files
        if what.folder is not None:
            before = len(unreadable)
            if recursive:
                from .tree import walk

                entries = walk(what.folder, list_folder, unreadable, skip, is_zarr)
                subfolders.update((p, sub) for p, sub in entries if sub)  # resolved
                found = [p for p, _ in entries]
            else:
                found = list_folder(what.folder, unreadable)  # resolved
            if not found and len(unreadable) == before:
                problems.append((argument, EMPTY_FOLDER))
        paths.extend(found)
    unique = list(dict.fromkeys(paths))  # each resolved where it was found
    excluded = [p for p in unique if exclude is not None and exclude(p)]
    kept = [p for p in unique if p not in excluded]
    return Found(kept, problems, excluded, unreadable, subfolders)


def base_stem(path: Path) -> str:
    """The name without its suffix, and without ``.ome`` (``slide.ome.tif`` → ``slide``)."""
    stem = path.stem if path.suffix.lower() != ".zarr" else path.name[: -len(".zarr")]
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") and len(stem) > 4 else stem


def hashed_stem(path: Path, length: int = 8) -> str:
    return f"{base_stem(path)}-{hashlib.sha1(str(path).encode()).hexdigest()[:length]}"


def items(
    paths: Sequence[Path],
    history: Mapping[str, str] | None = None,
    subfolders: Mapping[Path, str] | None = None,
    holder: Callable[[str], str | None] | None = None,
) -> list[Item]:
    """Give each path a unique output prefix, stable over the output folder's history.

    ``history`` maps the files the folder already has outputs of to their stems: such a file
    keeps its stem, and no other file gets it; ``holder(key)`` (the record store's
    :meth:`~napari_gapcam.cli.store.Store.holder`) names the file of any other stem whose
    casefolded form is ``key``. A new file gets its stem when nobody else has or wants it
    (compared case-insensitively, as on macOS and Windows), else its stem plus a hash of its
    absolute path (``A01-1a2b3c4d``), so a second folder's ``A01.png`` never overwrites the
    first one's outputs. An input of ``subfolders`` (``--recursive``) has its folder before its
    stem (``B02/site1``): its outputs mirror the tree.
    """
    subfolders = subfolders or {}

    def prefixed(path: Path, stem: str) -> str:
        folder = subfolders.get(path)
        return f"{folder}/{stem}" if folder else stem

    history = dict(history or {})
    taken = {stem.casefold(): file for file, stem in history.items()}

    def held(stem: str, file: str) -> bool:  # another file has this stem
        key = stem.casefold()
        other = taken.get(key) if key in taken else holder(key) if holder else None
        return other is not None and other != file

    wanted: dict[str, int] = {}
    for path in paths:
        if str(path) not in history:
            key = prefixed(path, base_stem(path)).casefold()
            wanted[key] = wanted.get(key, 0) + 1
    result = []
    for path in paths:
        file = str(path)
        if file in history:
            result.append(Item(file, history[file]))
            continue
        stem = prefixed(path, base_stem(path))
        if wanted[stem.casefold()] > 1 or held(stem, file):
            length = 8
            stem = prefixed(path, hashed_stem(path, length))
            while held(stem, file) and length < 40:
                length = min(40, 2 * length)
                stem = prefixed(path, hashed_stem(path, length))
        taken[stem.casefold()] = file
        result.append(Item(file, stem))
    return result


def fingerprint(path: str | Path) -> dict[str, Any]:
    """What identifies an input's content: size and modification time, and for a small file
    (at most ``HASHED_BYTES``) a hash of its bytes. A zarr folder: its files' total size, their
    count and the latest modification time."""
    path = Path(path)
    if path.is_dir():
        size = count = latest = 0
        for root, _, files in os.walk(path):
            for name in files:
                info = os.stat(os.path.join(root, name))
                size, count, latest = size + info.st_size, count + 1, max(latest, info.st_mtime_ns)
        return {"size": size, "files": count, "mtime_ns": latest}
    info = os.stat(path)
    found: dict[str, Any] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    if info.st_size <= HASHED_BYTES:
        found["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def unchanged(recorded: Mapping[str, Any] | None, path: str | Path) -> bool:
    """True when ``path`` still holds what ``recorded`` (its :func:`fingerprint`) describes:
    for a file up to ``HASHED_BYTES`` the same size and content hash (a same-size replacement
    with its time put back is caught; a touched copy is unchanged), above it the same size and
    time."""
    if not recorded:
        return False
    try:
        info = os.stat(path)
    except OSError:
        return False
    if os.path.isdir(path):
        return fingerprint(path) == dict(recorded)
    if info.st_size != recorded.get("size"):
        return False
    digest = recorded.get("sha256")
    if digest is not None:  # up to the hash limit the bytes decide, whatever the time says
        return fingerprint(path).get("sha256") == digest
    return info.st_mtime_ns == recorded.get("mtime_ns")
