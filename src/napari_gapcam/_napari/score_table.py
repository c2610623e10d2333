"""The scores table of *compare methods*: a row per method, a column per metric, in a narrow dock.

A read-only magicgui ``Table`` whose headers are short (each says which way is better: ↑ or ↓)
and whose header tooltips say what each metric measures; its height follows its rows.
"""

from __future__ import annotations

from magicgui.widgets import Table
from qtpy.QtWidgets import QAbstractItemView, QSizePolicy, QStyledItemDelegate, QWidget

# short headers (the dock is narrow) and what each column means, which way is better
HEADERS = {
    "avg_drop": ("drop ↓", "Average drop: how much p(class) falls when only the map's pixels "
                 "are kept (lower is better)."),
    "increase": ("incr ↑", "Increase in confidence: 1 when keeping only the map's pixels "
                 "raises p(class) (higher is better)."),
    "deletion": ("del ↓", "Deletion AUC: p(class) as the map's pixels are removed, most "
                 "relevant first (lower is better)."),
    "insertion": ("ins ↑", "Insertion AUC: p(class) as the map's pixels are revealed over a "
                  "blurred image, most relevant first (higher is better)."),
    "road": ("ROAD ↑", "ROAD: least- minus most-relevant-first removal with noisy linear "
             "imputation, combined over 10…90 % (higher is better)."),
    "max_box_acc_v2": ("MaxBoxAccV2 ↑", "Box accuracy against the true boxes, best threshold, "
                       "IoU 0.3/0.5/0.7 (higher is better)."),
    "pxap": ("PxAP ↑", "Pixel average precision against the true masks (higher is better)."),
}  # fmt: skip
ROW_PX = 24  # a row's height


def score_table() -> Table:
    """An empty, hidden, read-only table; whole rows are selected, one at a time."""
    table = Table(label="scores")
    native = table.native
    native.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    native.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    native.setItemDelegate(QStyledItemDelegate(native))  # the cells' text as written
    fit_width(native)
    table.visible = False
    return table


def fit_width(native: QWidget) -> None:
    """A list or table takes the dock's width and never widens it (it scrolls instead)."""
    policy = native.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
    native.setSizePolicy(policy)
    native.setMinimumWidth(1)


def fill(table: Table, rows: list[str], scores: list[dict[str, float]]) -> list[str]:
    """``rows`` (labels) of ``scores`` (by metric) in ``table``; gives the metrics, in the
    columns' order (the first row's order, then any new ones)."""
    columns: list[str] = []
    for row in scores:
        columns += [key for key in row if key not in columns]
    data = [[cell(row.get(key)) for key in columns] for row in scores]
    headers = [HEADERS.get(key, (key, ""))[0] for key in columns]
    table.value = {"data": data, "index": rows, "columns": headers}
    native = table.native
    for j, key in enumerate(columns):
        item = native.horizontalHeaderItem(j)
        if item is not None:
            item.setToolTip(HEADERS.get(key, (key, key))[1])
    native.resizeColumnsToContents()
    header, side = native.horizontalHeader(), native.verticalHeader()
    height = header.height() + side.length() + 2 * native.frameWidth()
    room = native.parentWidget().width() if native.parentWidget() is not None else 0
    if side.width() + header.length() + 2 * native.frameWidth() > room:  # it scrolls sideways
        height += native.horizontalScrollBar().sizeHint().height()
    native.setFixedHeight(height)
    table.visible = bool(rows)
    return columns


def cell(value: float | None) -> str:
    """A score as shown: three decimals, or a dash when missing."""
    return "—" if value is None or value != value else f"{value:.3f}"


def shown_cells(table: Table) -> tuple[list[str], list[str], list[list[str]]]:
    """The row headers, column headers and cells as the user sees them (through the table's
    item delegate)."""
    from qtpy.QtCore import QLocale

    native, locale = table.native, QLocale()
    delegate = native.itemDelegate()
    rows = [native.verticalHeaderItem(i).text() for i in range(native.rowCount())]
    columns = [native.horizontalHeaderItem(j).text() for j in range(native.columnCount())]
    shown = [[native.item(i, j).text() for j in range(len(columns))] for i in range(len(rows))]
    cells = [[delegate.displayText(text, locale) for text in row] for row in shown]
    return rows, columns, cells
