"""Messages that name a parameter, said in each interface's own words.

An engine error's way out often names a parameter: "use ``weights='path/to/file.pth'``". In
Python that is the right advice; on the command line the same parameter is ``--weights``. So an
error keeps its message as parts: plain text and :class:`Term` s (a parameter, and the value to
give it). ``str(error)`` says the terms as Python does (``weights='x'``); an interface with other
names says them its own way with :meth:`Worded.say` (the command line: ``--weights x``). No text
is ever rewritten after the fact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_UNSET = object()


@dataclass(frozen=True)
class Term:
    """A parameter in a message, with the value advised (if any); ``note`` is how Python says
    it when not as ``name=value`` (``None``, ``See result.class_names for all.``)."""

    name: str
    value: Any = _UNSET
    note: str = ""

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET

    def __str__(self) -> str:
        if self.note:
            return self.note
        return f"{self.name}={self.value!r}" if self.has_value else self.name


class Worded(Exception):
    """An error whose message is made of text and :class:`Term` s (see the module docstring).

    Mix it in before the built-in base: ``class WeightsError(Worded, RuntimeError)``."""

    def __init__(self, *parts: Any) -> None:
        self.parts = tuple(parts)
        super().__init__("".join(map(str, self.parts)))

    @property
    def terms(self) -> list[str]:
        """The parameters the message names."""
        return [part.name for part in self.parts if isinstance(part, Term)]

    def say(self, term: Callable[[Term], str]) -> str:
        """The message with each term said by ``term``."""
        return "".join(part if isinstance(part, str) else term(part) for part in self.parts)


def said(error: BaseException, term: Callable[[Term], str]) -> str:
    """``error``'s message in an interface's words (its own text when it has no terms)."""
    if isinstance(error, Worded):
        return error.say(term)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # KeyError's str() quotes its message
    return str(error)


class ParameterError(Worded, ValueError):
    """A parameter's value that cannot work; the message names the way out."""
