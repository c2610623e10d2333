"""What a run has left to do: the inputs whose records are missing, stale or made otherwise.

An input is done when its record in the store (:mod:`~napari_gapcam.cli.store`) is for this
file, made with these settings, and its files are as they were: one ``stat`` each when their
stat keys are as kept (:mod:`~napari_gapcam.cli.quick`), else the full check (sizes and hashes:
:func:`~napari_gapcam.cli.inputs.unchanged`, :func:`~napari_gapcam.cli.verify.damage`). No torch
here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .inputs import Item, items, unchanged
from .messages import say
from .outputs import changed_labels, is_current
from .preflight import Plan
from .quick import stat_keys, still
from .store import Store, settings_key
from .verify import damage


@dataclass
class Tally:
    """What :func:`left_to_do` found, once its inputs are all taken."""

    todo: int = 0  # inputs to compute
    done: int = 0  # inputs done
    checked: int = 0  # of those, found done by the full check (their stat keys are old)


def left_to_do(
    store: Store, plan: Plan, options: Any, report: bool = False, tally: Tally | None = None
) -> Iterator[Item]:
    """The inputs to compute (named from the folder's history), one output folder at a time
    (:meth:`~napari_gapcam.cli.listing.Listing.groups`), counted in ``tally``; with ``report``
    (under the lock) say why each one is redone, and keep the new stat keys of those the full
    check found done."""
    tally = Tally() if tally is None else tally
    settings = options.settings()
    wanted = settings_key(settings)
    table = plan.label_table
    again = 0
    for group in plan.inputs.groups():
        rows = {}  # file → its record as stored: a stem stays its file's
        for path, _ in group:
            found = store.row_of(str(path))
            if found is not None:
                rows[str(path)] = found
        history = {file: row[0] for file, row in rows.items()}
        subfolders = {path: sub for path, sub in group if sub}
        fresh = []
        for item in items([p for p, _ in group], history, subfolders, store.holder):
            found = rows.get(item.path)
            if found is None:
                tally.todo += 1
                yield item
                continue
            _, kept, quick, body = found
            current = (
                kept == wanted
                and still(store.root, json.loads(quick) if quick else None)
                and (table is None or stale_labels(body, item, table) is None)
            )
            why = None
            if not current:
                record = json.loads(body)
                why = stale(store.root, record, item, table)
                current = why is None and is_current(record, item.path, settings)
                if current:
                    fresh.append((item.stem, stat_keys(store.root, record)))
                    tally.checked += 1
            if current:
                if not options.overwrite:
                    tally.done += 1
                    continue
                again += 1  # unchanged: redone because of --overwrite, not "changed"
            elif report and kept == wanted:  # record: decoded above
                if why is None:
                    same = unchanged(record.get("input"), item.path)
                    labels = changed_labels(record) if same else None
                    what = f"its label image {labels}" if labels else item.path
                    why = f"{what} changed since its outputs were made"
                say(f"{why}: computing {item.path} again")
            tally.todo += 1
            yield item
        if fresh and report:
            store.refresh((stem, keys) for stem, keys in fresh if keys is not None)
    if report and again:
        say(f"--overwrite: computing {again} unchanged input(s) again")


def stale_labels(body: str, item: Item, table: Any) -> str | None:
    """How an input's label image moved since its record (``--labels``), else None."""
    from .labels import labels_moved

    return labels_moved(json.loads(body), item.path, table)


def stale(root: Any, record: dict[str, Any], item: Item, table: Any) -> str | None:
    """Why a record of ``item``'s file no longer stands for its outputs: an output changed
    since it was written, or a label image was added or another one matches (``--labels``
    ``table``); else None."""
    if record.get("file") != item.path:
        return None
    damaged = damage(root, record)
    if damaged is not None:
        return damaged
    from .labels import labels_moved

    return labels_moved(record, item.path, table)
