"""The inputs of ``gapcam predict``, listed one output folder at a time.

A screen of 10⁶ images is never a list in memory. :func:`survey` checks the input arguments
once (what each names, which folders a ``--recursive`` walk lists, how many inputs there are)
and keeps only the folders; :meth:`Listing.groups` lists the inputs again, group by group. A
group is the inputs whose outputs go to one folder of ``--out``: a well's ``B02/`` with
``--recursive`` (the same subfolder of every tree given), the top level for files, globs and
folders named without it. Output names are made unique within a group
(:func:`~napari_gapcam.cli.inputs.items`): two groups' names cannot clash. The driver holds one
group at a time, so its memory grows with the largest folder, not with the number of inputs.
No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .inputs import EMPTY_FOLDER, IMAGE_SUFFIXES, is_zarr, list_folder, named
from .tree import folders

Member = tuple[Path, str, int]  # a (resolved) folder listed into a group, its output
# subfolder, the argument that named it
Problem = tuple[str, str]  # (argument or file, reason)


@dataclass
class Listing:
    """The inputs of a run, as folders to list (see the module)."""

    files: list[Path] = field(default_factory=list)  # named files and glob matches: top level
    members: dict[str, list[Member]] = field(default_factory=dict)  # group → its folders
    exclude: Callable[[Path], bool] | None = None  # the output folder's own files, label images
    dropped: set[Path] = field(default_factory=set)  # inputs that failed a check before the run
    count: int = 0  # inputs (once each, after exclusion)
    excluded: int = 0  # the output folder's own files left out
    zarrs: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return self.count

    def groups(self, unreadable: list[Problem] | None = None) -> Iterator[list[tuple[Path, str]]]:
        """Each group's inputs, ``(path, output subfolder)``, each path once, in order."""
        for key, members in self.members.items():
            found = self._listed(key, members, [] if unreadable is None else unreadable)
            yield [(path, sub) for path, sub in found.items() if self._kept(path)]

    def paths(self) -> Iterator[Path]:
        """Every input, group by group."""
        return (path for group in self.groups() for path, _ in group)

    def drop(self, paths: Iterable[Path]) -> None:
        """Leave out inputs that failed a check (they are reported as failed)."""
        new = set(paths) - self.dropped
        self.dropped |= new
        self.count -= len(new)

    def _listed(
        self,
        key: str,
        members: Sequence[Member],
        unreadable: list[Problem],
        counts: list[int] | None = None,
    ) -> dict[Path, str]:
        found: dict[Path, str] = dict.fromkeys(self.files, "") if key == "" else {}
        for folder, sub, argument in members:
            before = len(unreadable)
            listed = list_folder(folder, unreadable, resolved=True)
            if counts is not None:
                counts[argument] += len(listed) + len(unreadable) - before
            for path in listed:
                found.setdefault(path, sub)
        return found

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
    """List the arguments' inputs once, keeping their folders and counts (see the module).

    ``owned``: the output folder's own files (never inputs; counted as ``excluded``);
    ``hidden``: other paths that are no inputs (label images), left out without a count;
    ``skip``: folders a ``--recursive`` walk does not enter (the output folder)."""
    listing = Listing(exclude=lambda path: path in hidden or owned(path))
    problems: list[tuple[int, str, str]] = []
    unreadable: list[Problem] = []
    seen: set[Path] = set()  # folders already listed (two arguments naming one tree)
    files: list[Path] = []
    folder_arguments = []
    covered: set[int] = set()
    for index, argument in enumerate(arguments):
        what = named(argument)
        if what.problem is not None:
            problems.append((index, argument, what.problem))
        files.extend(what.files)
        if what.folder is None:
            continue
        folder_arguments.append(index)
        top = what.folder.resolve()
        tops = folders(top, skip, is_zarr) if recursive else [(top, "")]
        for real, sub in tops:  # resolved
            if real in seen:  # listed for an argument before: this one is no empty folder
                covered.add(index)
                continue
            seen.add(real)
            listing.members.setdefault(sub.casefold(), []).append((real, sub, index))
    # a file named beside a folder that is listed anyway is listed there, once
    listing.files = [path for path in dict.fromkeys(files) if not _listed_there(path, seen)]
    if listing.files:
        listing.members.setdefault("", [])
    counts = [0] * len(arguments)
    for key, members in listing.members.items():
        for path in listing._listed(key, members, unreadable, counts):
            if path in hidden:
                continue
            if owned(path):
                listing.excluded += 1
                continue
            listing.count += 1
            if path.suffix.lower() not in IMAGE_SUFFIXES and is_zarr(path):
                listing.zarrs.append(path)
    empty = [i for i in folder_arguments if not counts[i] and i not in covered]
    problems += [(i, arguments[i], EMPTY_FOLDER) for i in empty]
    return Survey(listing, [(a, why) for _, a, why in sorted(problems)], unreadable)


def _listed_there(path: Path, seen: Collection[Path]) -> bool:
    """A named file that its folder's listing finds too (its folder is listed)."""
    return path.parent in seen and (path.suffix.lower() in IMAGE_SUFFIXES or is_zarr(path))
