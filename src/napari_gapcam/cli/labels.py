"""``--labels DIR_OR_PATTERN``: label images (and true masks) matched to inputs by file stem.

A label image belongs to the input whose stem it has, or its stem followed by one of
``LABEL_SUFFIXES`` (cellpose writes ``<stem>_cp_masks.png``, many tools ``<stem>_labels.tif``
or ``<stem>_masks.tif``): ``plate/A01.png`` ↔ ``masks/A01.tif`` or ``masks/A01_masks.png``.
Label files are never inputs. No torch here.
"""

from __future__ import annotations

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
