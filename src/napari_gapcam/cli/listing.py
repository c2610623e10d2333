"""The inputs of ``gapcam predict``, listed one output folder at a time.

A screen of 10⁶ images is never a list in memory, nor are its 10⁵ wells. :func:`survey`
checks the input arguments once (what each names, how many inputs their folders hold) and keeps
only the arguments; :meth:`Listing.groups` walks and lists them again, group by group. A group
is the inputs whose outputs go to one folder of ``--out``: a well's ``B02/`` with
``--recursive`` (that subfolder of every tree given: its twins are found by name, not kept),
the top level for files, globs and folders named without it. Output names are made unique
within a group (:func:`~napari_gapcam.cli.inputs.items`): two groups' names cannot clash. The
driver holds one group at a time, so its memory grows with the largest folder, not with the
number of inputs or folders. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .inputs import EMPTY_FOLDER, IMAGE_SUFFIXES, is_zarr, list_folder, named
from .tree import folders

Member = tuple[Path, str, int]  # a (resolved) folder listed into a group, its output
# subfolder, the argument that named it
Top = tuple[Path, bool, int]  # a folder argument (resolved), walked (--recursive)?, its argument
Problem = tuple[str, str]  # (argument or file, reason)


@dataclass
class Listing:
    """The inputs of a run, as the arguments that name them (see the module)."""

    files: list[Path] = field(default_factory=list)  # named files and glob matches: top level
    tops: list[Top] = field(default_factory=list)  # folders named, each once
    skip: frozenset[Path] = frozenset()  # folders a walk does not enter (the output folder)
    exclude: Callable[[Path], bool] | None = None  # the output folder's own files, label images
    dropped: set[Path] = field(default_factory=set)  # inputs that failed a check before the run
    count: int = 0  # inputs (once each, after exclusion)
    excluded: int = 0  # the output folder's own files left out
    zarrs: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return self.count

    def groups(self, unreadable: list[Problem] | None = None) -> Iterator[list[tuple[Path, str]]]:
        """Each group's inputs, ``(path, output subfolder)``, each path once, in order."""
        for found in self._listed([] if unreadable is None else unreadable):
            yield [(path, sub) for path, sub in found.items() if self._kept(path)]

    def members(self) -> Iterator[list[Member]]:
        """Each group's folders: the top level (the folders named, with the files named), then
        each walked subfolder with its twins in the other trees given (``plateB/B02`` with
        ``plateA/B02``), in the order of the walks."""
        yield [(top, "", argument) for top, _, argument in self.tops]
        walked = [(top, argument) for top, recursive, argument in self.tops if recursive]
        for i, (top, argument) in enumerate(walked):
            for real, sub in folders(top, self.skip, is_zarr):
                if not sub or any(_twin(other, sub, self.skip) for other, _ in walked[:i]):
                    continue  # the top level, or listed with an earlier tree's twin
                twins = [(_twin(other, sub, self.skip), a) for other, a in walked[i + 1 :]]
                yield [(real, sub, argument)] + [(t, sub, a) for t, a in twins if t is not None]

    def paths(self) -> Iterator[Path]:
        """Every input, group by group."""
        return (path for group in self.groups() for path, _ in group)

    def drop(self, paths: Iterable[Path]) -> None:
        """Leave out inputs that failed a check (they are reported as failed)."""
        new = set(paths) - self.dropped
        self.dropped |= new
        self.count -= len(new)

    def _listed(
        self, unreadable: list[Problem], counts: list[int] | None = None
    ) -> Iterator[dict[Path, str]]:
        """Each group's listing, ``{path: output subfolder}`` (the first, the top level's, with
        the files named); ``counts``: each argument's entries, added up."""
        for n, members in enumerate(self.members()):
            found: dict[Path, str] = dict.fromkeys(self.files, "") if n == 0 else {}
            for folder, sub, argument in members:
                before = len(unreadable)
                listed = list_folder(folder, unreadable, resolved=True)
                if counts is not None:
                    counts[argument] += len(listed) + len(unreadable) - before
                for path in listed:
                    found.setdefault(path, sub)
            yield found

    def _kept(self, path: Path) -> bool:
        return path not in self.dropped and not (self.exclude is not None and self.exclude(path))


@dataclass
class Survey:
    """What the input arguments name: the listing, the arguments naming nothing, the files
    in their folders that cannot be read (links that loop or dangle, FIFOs…)."""

    listing: Listing
    problems: list[Problem]
    unreadable: list[Problem]


def survey(
    arguments: Sequence[str],
    owned: Callable[[Path], bool],
    recursive: bool = False,
    skip: Collection[Path] = (),
    hidden: Collection[Path] = (),
) -> Survey:
    """Check the arguments and count their inputs, keeping only the arguments (see the module).

    ``owned``: the output folder's own files (never inputs; counted as ``excluded``);
    ``hidden``: other paths that are no inputs (label images), left out without a count;
    ``skip``: folders a ``--recursive`` walk does not enter (the output folder)."""
    skipped = frozenset(Path(p).resolve() for p in skip)
    listing = Listing(skip=skipped, exclude=lambda path: path in hidden or owned(path))
    problems: list[tuple[int, str, str]] = []
    unreadable: list[Problem] = []
    files: list[Path] = []
    named_tops: list[Top] = []
    for index, argument in enumerate(arguments):
        what = named(argument)
        if what.problem is not None:
            problems.append((index, argument, what.problem))
        files.extend(what.files)
        if what.folder is not None:
            named_tops.append((what.folder.resolve(), recursive, index))
    listing.tops = [top for top in named_tops if not _covered(top, named_tops, skipped)]
    covered = {argument for _, _, argument in named_tops} - {a for _, _, a in listing.tops}
    # a file named beside a folder that is listed anyway is listed there, once
    listing.files = [f for f in dict.fromkeys(files) if not _listed_there(f, listing.tops, skipped)]
    counts = [0] * len(arguments)
    for found in listing._listed(unreadable, counts):
        for path in found:
            if path in hidden:
                continue
            if owned(path):
                listing.excluded += 1
                continue
            listing.count += 1
            if path.suffix.lower() not in IMAGE_SUFFIXES and is_zarr(path):
                listing.zarrs.append(path)
    empty = [a for _, _, a in listing.tops if not counts[a] and a not in covered]
    problems += [(i, arguments[i], EMPTY_FOLDER) for i in empty]
    return Survey(listing, [(a, why) for _, a, why in sorted(problems)], unreadable)


def _reached(folder: Path, tree: Path, skip: Collection[Path]) -> bool:
    """A walk of ``tree`` lists ``folder`` (both resolved): it lies below it, through no
    hidden, skipped or zarr folder."""
    try:
        parts = folder.relative_to(tree).parts
    except ValueError:
        return False
    for part in parts:
        tree = tree / part
        if part.startswith(".") or tree in skip or is_zarr(tree):
            return False
    return True


def _twin(tree: Path, sub: str, skip: Collection[Path]) -> Path | None:
    """``tree``'s own folder ``sub`` when its walk lists it (no link on the way), else None."""
    folder = tree / sub
    if not os.path.isdir(folder) or os.path.realpath(folder) != str(folder):
        return None
    return folder if _reached(folder, tree, skip) else None


def _covered(top: Top, tops: Sequence[Top], skip: Collection[Path]) -> bool:
    """A folder argument another one lists already: the same folder named before (walked, or
    as this one is), or a folder a walk of another reaches."""
    folder, walked, argument = top
    for other, other_walked, other_argument in tops:
        if other_argument == argument:
            continue
        if other == folder:
            if other_walked and not walked:
                return True
            if other_walked == walked and other_argument < argument:
                return True
        elif other_walked and _reached(folder, other, skip):
            return True
    return False


def _listed_there(path: Path, tops: Sequence[Top], skip: Collection[Path]) -> bool:
    """A named file that a folder's listing finds too (its folder is listed)."""
    if not (path.suffix.lower() in IMAGE_SUFFIXES or is_zarr(path)):
        return False
    parent = path.parent
    return any(parent == top or (walked and _reached(parent, top, skip)) for top, walked, _ in tops)
