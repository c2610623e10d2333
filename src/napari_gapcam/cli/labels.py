"""``--labels DIR_OR_PATTERN``: label images (and true masks) matched to inputs by file stem.

A label image belongs to the input whose stem it has, or its stem followed by one of
``LABEL_SUFFIXES`` (cellpose writes ``<stem>_cp_masks.png``, many tools ``<stem>_labels.tif``
or ``<stem>_masks.tif``): ``plate/A01.png`` ↔ ``masks/A01.tif`` or ``masks/A01_masks.png``.
Label files are never inputs. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .inputs import InputError, base_stem, expand

LABEL_SUFFIXES = ("_cp_masks", "_labels", "_label", "_masks", "_mask", "_seg")


def label_key(path: Path) -> str:
    """The input stem a label file is for: its stem without a known suffix."""
    stem = base_stem(path)
    for suffix in LABEL_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def find_labels(argument: str) -> dict[str, Path]:
    """Label files named by a folder or a glob, by the input stem they are for; raises
    :class:`InputError` when the argument names none, or two files for one stem."""
    found = expand([argument])
    if found.problems or not found.paths:
        reason = found.problems[0][1] if found.problems else "no image files"
        raise InputError(f"--labels {argument}: {reason}")
    table: dict[str, Path] = {}
    for path in found.paths:
        key = label_key(path)
        if key in table:
            raise InputError(
                f"--labels {argument}: {table[key].name} and {path.name} are both for inputs "
                f"named {key}: keep one"
            )
        table[key] = path
    return table


_TABLES: dict[tuple[str, int], dict[str, Path]] = {}  # (--labels, its folder's time) → files


def _folder_time(argument: str) -> int:
    """The modification time of the folder ``argument`` lists (a glob's folder): it changes
    when a file is added, removed or renamed in it."""
    folder = Path(argument.split("*")[0].split("?")[0].split("[")[0])
    folder = folder if folder.is_dir() else folder.parent
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return -1


def label_table(argument: str | None) -> dict[str, Path] | None:
    """:func:`find_labels` of ``--labels``, read again only when its folder changed (a dask
    worker keeps it between runs); None without it, or when it names nothing now."""
    if not argument:
        return None
    key = (argument, _folder_time(argument))
    if key not in _TABLES:
        try:
            _TABLES[key] = find_labels(argument)
        except InputError:
            return None
    return _TABLES[key]


def labels_moved(record: dict, input_path: str, table: dict[str, Path] | None) -> str | None:
    """How the label image of an input differs from the one its record was scored on: one was
    added, or another file matches now; else None (a changed or removed file is the record's
    own check)."""
    if table is None or record is None:
        return None
    now = label_for(input_path, table)
    was = (record.get("labels") or {}).get("file")
    if was is None and now is not None:
        return f"the label image {now} was added"
    if now is not None and str(now) != was:
        return f"the label image is now {now} (was {was})"
    return None


def label_for(input_path: str | Path, table: dict[str, Path]) -> Path | None:
    """The label file of an input (by its stem), or None; never the input itself."""
    found = table.get(base_stem(Path(input_path)))
    return None if found is None or found == Path(input_path) else found


def label_files(table: dict[str, Path]) -> set[Path]:
    return set(table.values())


def read_labels(path: Path, pages: int, shape: Iterable[int]) -> np.ndarray:
    """The label image(s) for an input of ``pages`` pages of ``shape``: H×W, or N×H×W for
    a stack; :class:`InputError` for another size or non-integer labels."""
    import imageio.v3 as iio
    import tifffile

    suffix = path.suffix.lower()
    labels = np.asarray(tifffile.imread(path) if suffix in (".tif", ".tiff") else iio.imread(path))
    shape = tuple(int(s) for s in shape)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and labels.shape[:2] == shape:
        raise InputError(f"the label image {path.name} is RGB: give one integer label per pixel")
    want = shape if pages == 1 else (pages, *shape)
    if labels.shape != want:
        raise InputError(
            f"the label image {path.name} has shape {labels.shape}, the input {want}: a label "
            "image has the input's size (one per page of a stack)"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.array_equal(labels, np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"the label image {path.name} holds {labels.dtype}, not integers")
    return labels
