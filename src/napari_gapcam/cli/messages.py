"""The command line's exit codes and error lines, in command-line words."""

from __future__ import annotations

import re
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def say(message: str) -> None:
    """A line for the user on stderr: progress, notes, inputs skipped."""
    print(f"gapcam: {message}", file=sys.stderr)


def reason(error: BaseException) -> str:
    """Why an input failed, in one line: an :class:`~napari_gapcam.cli.inputs.InputError`'s own
    words (they name the problem), else the error's type and words."""
    from .inputs import InputError

    return str(error) if isinstance(error, InputError) else f"{type(error).__name__}: {error}"


def error(message: str) -> int:
    """Print a usage or set-up error; returns exit code 2."""
    print(f"gapcam: error: {cli_words(message)}", file=sys.stderr)
    return EXIT_USAGE


_API_WORDS = [  # the engine speaks Python; on the command line the same advice reads so
    (re.compile(r"\bsquare=True\b"), "--square"),
    (re.compile(r"\b(weights|device|input_size|class_names)=(['\"]?)([^'\"\s,)]+)\2"), None),
    (re.compile(r"See result\.class_names for all\."), "--class takes a class name or index."),
    (re.compile(r"\bor None\b"), "or none (--weights none)"),
]


def cli_words(message: str) -> str:
    """An engine message in command-line words: ``device='auto'`` → ``--device auto``."""
    for pattern, replacement in _API_WORDS:
        if replacement is None:
            message = pattern.sub(
                lambda m: f"--{m.group(1).replace('_', '-')} {m.group(3)}", message
            )
        else:
            message = pattern.sub(replacement, message)
    return message.replace("--weights None", "--weights none")
