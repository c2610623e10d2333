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


def select_text(combo: QComboBox, text: str) -> bool:
    """Select the item labelled ``text``, else the first containing it; False if none does."""
    index = combo.findText(text, Qt.MatchFlag.MatchExactly)
    if index < 0:
        index = combo.findText(text, Qt.MatchFlag.MatchContains)
    if index >= 0:
        combo.setCurrentIndex(index)
    return index >= 0
