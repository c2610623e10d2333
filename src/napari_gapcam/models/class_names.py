"""Class names: given, the weights' own, a file beside the checkpoint, ImageNet's, ``class i``."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from .errors import WeightsError

NamesArg = Sequence[str] | str | os.PathLike | None


@cache
def imagenet_categories() -> list[str]:
    """torchvision's 1000 ImageNet category names."""
    import torchvision

    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def sidecar_names(path: Path) -> list[str] | None:
    """Names from a ``.json`` or ``.txt`` file with the checkpoint's name beside it, else from
    a Hugging Face ``config.json`` beside it (``label_names``, or ``id2label``), if any."""
    for suffix in (".json", ".txt"):
        sidecar = path.with_suffix(suffix)
        if sidecar.is_file():
            return read_names(sidecar)
    return _hugging_face_names(path.parent / "config.json")


def _hugging_face_names(config: Path) -> list[str] | None:
    """timm's ``label_names`` or transformers' ``id2label`` of a model folder's config."""
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # some other config: not ours to judge
    if not isinstance(data, dict):
        return None
    names = data.get("label_names") or data.get("pretrained_cfg", {}).get("label_names")
    if isinstance(names, list):
        return unique_names([str(name) for name in names], config)
    labels = data.get("id2label")
    if isinstance(labels, dict) and all(str(k).isdigit() for k in labels):
        return unique_names([str(labels[k]) for k in sorted(labels, key=int)], config)
    return None


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not in a text of names
NAMES_WAY_OUT = "Give a UTF-8 .txt file with one name per line, or a .json list of names."


def read_names(path: str | os.PathLike) -> list[str]:
    """A ``.json`` list of names, or UTF-8 text with one name per line (blank lines skipped).

    :class:`WeightsError`, naming the file and the way out, for a missing file, bytes that are
    not UTF-8 (the byte and its offset), invalid JSON or JSON that is not a list of names, a
    file without names, and names given twice (a class could not be found by its name).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file. {NAMES_WAY_OUT}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise WeightsError(
            f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}): is it the right file? {NAMES_WAY_OUT}"
        ) from None
    if path.suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except ValueError as error:
            raise WeightsError(f"{path} is not valid JSON ({error}). {NAMES_WAY_OUT}") from None
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise WeightsError(f"{path} must hold a JSON list of names. {NAMES_WAY_OUT}")
        names = [str(name) for name in names]
    else:
        binary = CONTROL.search(text)
        if binary:
            raise WeightsError(
                f"{path} holds control bytes ({ord(binary.group()):#04x} at offset "
                f"{len(text[: binary.start()].encode())}): a binary file, not names? "
                f"{NAMES_WAY_OUT}"
            )
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise WeightsError(f"{path} holds no names. {NAMES_WAY_OUT}")
    return unique_names(names, path)


def unique_names(names: list[str], source: str | os.PathLike) -> list[str]:
    """``names`` when no name is given twice, else :class:`WeightsError` naming ``source`` (a
    class asked for by name could not be found): a names file, a checkpoint, a config."""
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:
        shown = ", ".join(map(repr, twice[:5])) + (" …" if len(twice) > 5 else "")
        raise WeightsError(
            f"{source} names {len(twice)} class(es) more than once ({shown}): each class needs "
            "its own name, or a class asked for by name could not be told apart."
        )
    return names


def resolve_class_names(
    given: NamesArg, from_weights: Sequence[str] | None, num_classes: int, label: str
) -> list[str]:
    """``given`` (a list or a file), else the weights' names, else ImageNet's, else ``class i``."""
    if isinstance(given, (str, os.PathLike)):
        names, source = read_names(Path(given).expanduser()), str(given)
    elif given is not None:
        names, source = [str(name) for name in given], "class_names"
    elif from_weights is not None:
        names, source = list(from_weights), label
    elif num_classes == 1000:
        return imagenet_categories()
    else:
        return [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise WeightsError(
            f"Class-name count mismatch: {source} gives {len(names)} names, but the model's "
            f"dense layer has {num_classes} classes."
        )
    return names
