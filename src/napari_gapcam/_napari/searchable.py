"""Combo boxes you can type into: the popup filters the items (substring, any case)."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QCompleter


def make_searchable(combo: QComboBox, placeholder: str, pick: Callable[[str], None]) -> None:
    """Make ``combo`` editable with a filtering popup; ``pick(text)`` runs on Enter or a choice."""
    combo.setEditable(True)
    combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
    completer = combo.completer()
    completer.setFilterMode(Qt.MatchFlag.MatchContains)
    completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
    combo.lineEdit().setPlaceholderText(placeholder)
    completer.activated[str].connect(pick)
    combo.lineEdit().returnPressed.connect(lambda: pick(combo.lineEdit().text()))
    combo.currentIndexChanged.connect(lambda _index: show_start(combo))


def show_start(combo: QComboBox) -> None:
    """A label wider than the box shows its start: QLineEdit scrolls to its cursor, which
    setting the text puts at the end ("orwich terrier"). Call it after a change made with the
    combo's signals blocked (magicgui's ``reset_choices``)."""
    line = combo.lineEdit()
    if line is not None:
        line.setCursorPosition(0)


def select_text(combo: QComboBox, text: str) -> bool:
    """Select the item labelled ``text``, else the first starting with it, else the first
    containing it; False if none does."""
    index = -1
    for match in (Qt.MatchFlag.MatchExactly, Qt.MatchFlag.MatchStartsWith):
        if index < 0:
            index = combo.findText(text, match)
    if index < 0:
        index = combo.findText(text, Qt.MatchFlag.MatchContains)
    if index >= 0:
        combo.setCurrentIndex(index)
    return index >= 0
