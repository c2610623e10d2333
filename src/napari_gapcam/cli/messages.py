"""The command line's exit codes and error lines, in command-line words (an engine error's
parameters said as the options that set them, :mod:`napari_gapcam.engine.words`)."""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def say(message: str) -> None:
    """A line for the user on stderr: progress, notes, inputs skipped."""
    print(f"gapcam: {message}", file=sys.stderr)


def reason(error: BaseException) -> str:
    """Why an input failed, in one line: an :class:`~napari_gapcam.cli.inputs.InputError`'s own
    words (they name the problem), else the error's type and words."""
    from .inputs import InputError

    return str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"


def error(problem: str | BaseException) -> int:
    """Print a usage or set-up error (an engine error's terms said as options); returns 2."""
    from ..engine.words import said

    message = problem if isinstance(problem, str) else said(problem, option)
    print(f"gapcam: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def option(term: Any) -> str:
    """An engine error's parameter as the option that sets it: ``weights='x'`` → ``--weights
    x``, ``square=True`` → ``--square``, ``weights=None`` → ``--weights none``."""
    if term.name == "class":
        return "--class takes a class name or index."
    flag = f"--{term.name.replace('_', '-')}"
    if not term.has_value or term.value is True:
        return flag
    if isinstance(term.value, (list, tuple)):  # --layers layer3,layer4
        return f"{flag} {','.join(map(str, term.value))}"
    return f"{flag} {'none' if term.value is None else term.value}"
