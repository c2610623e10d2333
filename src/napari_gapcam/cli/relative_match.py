"""Files named in a table (true boxes, true masks) matched to the inputs: first by the path
relative to the folder given (``B02/site1.png``, or ``B02/site1`` without the suffix; an absolute
path names that file), else by the plain name (``site1.png``, ``site1``) when one input alone has
it among those whose folders agree with the entry's (``plate1/B02/site1.png`` may name
``B02/site1.png`` or a top-level ``site1.png``, never ``C03/site1.png``). A name that several
inputs have (``site1.png`` in ``B02/`` and ``C03/`` of a ``--recursive`` walk, or in two folders
given) names none of them: it is an :class:`AmbiguousName`, never a guess. No torch here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar

from .inputs import base_stem

E = TypeVar("E", bound=Hashable)
Keys = tuple[str, str]  # a relative path with its suffix and without it: ("B02/a.png", "B02/a")
PATH_TRIES = ((0, 0), (1, 0), (1, 1))  # (level of the inputs' keys, which of the entry's keys)
NAME_TRIES = ((2, 0), (3, 0), (3, 1))  # the same for the plain names (levels 2 and 3)


class AmbiguousName(ValueError):
    """An entry of a table whose name several inputs have; the message says which."""


def keys_of(name: str) -> Keys:
    """A table's entry (``B02\\site1.png``, ``./B02/site1.png``) as ``/``-separated keys."""
    path = PurePosixPath(name.replace("\\", "/"))
    return str(path), str(path.with_name(base_stem(Path(path.name)))) if path.name else str(path)


def input_keys(
    paths: Sequence[Path], subfolders: Mapping[Path, str] | None = None
) -> dict[Path, Keys]:
    """Each input → its keys below the folder given (``subfolders``: its folder there, from a
    ``--recursive`` walk; none: the input's own name)."""
    subfolders = subfolders or {}
    keys = {}
    for path in paths:
        folder = subfolders.get(path, "")
        prefix = f"{folder}/" if folder else ""
        keys[path] = (f"{prefix}{path.name}", f"{prefix}{base_stem(path)}")
    return keys


@dataclass
class Matched(Generic[E]):
    """Each input an entry names, the entries that name none, those that name several."""

    found: dict[Path, E] = field(default_factory=dict)
    unused: list[E] = field(default_factory=list)
    ambiguous: list[tuple[E, list[Path]]] = field(default_factory=list)


def _plain(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def match_names(inputs: Mapping[Path, Keys], entries: Mapping[E, Keys]) -> Matched[E]:
    """Match every entry to at most one input (one input to at most one entry, the first):
    by relative path first, over all entries, then by plain name (see the module)."""
    levels: list[dict[str, list[Path]]] = [{}, {}, {}, {}]
    for path, (name, stem) in inputs.items():
        for level, key in enumerate((name, stem, _plain(name), _plain(stem))):
            levels[level].setdefault(key, []).append(path)
        levels[0].setdefault(str(path), []).append(path)  # an absolute path names its file
    matched: Matched[E] = Matched()
    pending = []
    for entry, keys in entries.items():
        if not _take(matched, entry, [levels[level].get(keys[k], []) for level, k in PATH_TRIES]):
            pending.append(entry)
    for entry in pending:
        keys = entries[entry]
        found = [levels[level].get(_plain(keys[k]), []) for level, k in NAME_TRIES]
        found = [[p for p in hits if _agree(keys[0], inputs[p][0])] for hits in found]
        if not _take(matched, entry, found):
            matched.unused.append(entry)
    return matched


def _agree(entry: str, relative: str) -> bool:
    """Whether the folders of an entry and of an input's relative path agree where both say
    something (``plate1/B02/a.png`` and ``B02/a.png`` do, ``C03/a.png`` and ``B02/a.png`` not)."""
    mine, theirs = entry.split("/")[:-1], relative.split("/")[:-1]
    n = min(len(mine), len(theirs))
    return mine[len(mine) - n :] == theirs[len(theirs) - n :]


def _take(matched: Matched, entry: Hashable, tries: list[list[Path]]) -> bool:
    """Give ``entry`` the one input of its first try that finds any; False when none does."""
    for hits in tries:
        if len(hits) > 1:
            matched.ambiguous.append((entry, hits))
        elif hits and hits[0] not in matched.found:
            matched.found[hits[0]] = entry
        elif hits:
            matched.unused.append(entry)  # its input has an entry already
        if hits:
            return True
    return False


def ambiguity(matched: Matched, inputs: Mapping[Path, Keys]) -> str | None:
    """The error line for ``matched``'s ambiguous entries, with the way out; None when none."""
    if not matched.ambiguous:
        return None
    entry, paths = matched.ambiguous[0]
    relative = [inputs[path][0] for path in paths]
    shown = relative if len(set(relative)) == len(relative) else [str(p) for p in paths]
    named = ", ".join(shown[:3]) + (" …" if len(shown) > 3 else "")
    return (
        f"{len(matched.ambiguous)} name(s) match several inputs, e.g. {entry} matches "
        f"{named}: none is guessed. Name each input by its path relative to the folder given "
        f"(e.g. {relative[0]}), or give one folder at a time."
    )
