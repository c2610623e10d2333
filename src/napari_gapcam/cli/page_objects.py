"""``--labels``: one input's per-object CAM scores, page by page, into ``<stem>_objects.csv``.

The label image matched to the input (:mod:`~napari_gapcam.cli.labels`) is read once (H×W, or
N×H×W for a stack); each page's :meth:`~napari_gapcam.engine.result.CamResult.object_scores` gives
its objects' rows (``label``, ``area``, one column per class, ``cam_class``, ``cam_share``; a
stack's rows have an ``image`` column first). Columns: every class of a model of up to
``ALL_CLASSES`` classes, else the page's top-k and the chosen class (1000 maps at the image's
size per page would cost more than the run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .inputs import Item, fingerprint
from .outputs import OutputFolder, write_text_atomic
from .pages import Pages

ALL_CLASSES = 64


class PageObjects:
    """The objects table of one input, filled page by page; ``path`` is None without labels."""

    def __init__(self, item: Item, pages: Pages, out: OutputFolder, options: Any) -> None:
        from .labels import label_for, label_table, read_labels

        found = label_for(item.path, label_table(options.labels) or {})
        self.options, self.stack = options, pages.count > 1
        self.path = out.root / f"{item.stem}_objects.csv"
        self.target = out.target(self.path)  # where it is written: the run's staging folder
        self.source: dict[str, Any] | None = None
        self.labels = None
        if found is not None:
            self.source = {"file": str(found), **fingerprint(found)}
            self.labels = read_labels(found, pages.count, pages.shape)
        self.tables: list[Any] = []

    def add(self, index: int, result: Any, chosen: int) -> None:
        """Page ``index``'s object scores; ``chosen`` is the class whose map is written (with
        more than ``ALL_CLASSES`` classes, only it and the top-k get columns)."""
        if self.labels is None:
            return
        classes = None
        if result.num_classes > ALL_CLASSES:
            top = [i for i, _, _ in result.topk(self.options.topk)]
            classes = list(dict.fromkeys([*top, chosen]))
        table = result.object_scores(self.labels[index] if self.stack else self.labels, classes)
        if self.stack:
            table.insert(0, "image", index)
        self.tables.append(table)

    def write(self) -> Path | None:
        """Write the table (atomically); None when the input has no label image."""
        if self.labels is None:
            return None
        import pandas as pd

        table = pd.concat(self.tables, ignore_index=True)
        write_text_atomic(self.target, table.to_csv(index=False, float_format="%.6g"))
        return self.path
