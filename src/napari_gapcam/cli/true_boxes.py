"""True boxes for ``gapcam evaluate``: a CSV, JSON or COCO file → boxes per image file.

Boxes are half-open pixel boxes ``(y0, x0, y1, x1)``, as everywhere in this package.

- CSV with a header ``file,y0,x0,y1,x1[,class]``: one row per box (several rows per file for
  several boxes);
- JSON: ``{"a.png": [[y0, x0, y1, x1], …], …}``, or ``{"a.png": {"boxes": [[…]], "class":
  "disk"}}``, or a list of ``{"file": "a.png", "box": [y0, x0, y1, x1], "class": "disk"}``;
- COCO (a JSON object with ``images`` and ``annotations``): ``bbox`` is ``[x, y, width,
  height]`` → ``(round(y), round(x), round(y + height), round(x + width))``; the class is the
  category's ``name``.

A file is named as in the file (a name or a relative path); :func:`match` finds an input by
its path relative to the folder given, else by its plain name or stem when one input alone has
it. No torch here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.localize import Box
from .relative_match import AmbiguousName, ambiguity, input_keys, keys_of, match_names


class BoxFileError(ValueError):
    """The boxes file cannot be read; the message says where and why."""


@dataclass
class Truth:
    """One image's true boxes and, when the file says it, its class (a name or an index)."""

    boxes: list[Box] = field(default_factory=list)
    class_ref: str | None = None


def _box(values: Any, where: str) -> Box:
    try:
        y0, x0, y1, x1 = (int(round(float(v))) for v in values)
    except (TypeError, ValueError, OverflowError):  # not numbers, NaN, inf
        message = f"{where}: a box is four finite numbers y0, x0, y1, x1, got {values!r}"
        raise BoxFileError(message[:300]) from None
    if not (y1 > y0 and x1 > x0):
        raise BoxFileError(f"{where}: an empty box {[y0, x0, y1, x1]} (needs y1 > y0, x1 > x0)")
    return (y0, x0, y1, x1)


def _add(table: dict[str, Truth], name: str, box: Box, class_ref: Any, where: str) -> None:
    truth = table.setdefault(str(name), Truth())
    truth.boxes.append(box)
    if class_ref not in (None, ""):
        if truth.class_ref is not None and truth.class_ref != str(class_ref):
            raise BoxFileError(
                f"{where}: {name} has boxes of classes {truth.class_ref} and {class_ref}: "
                "one class per image (its map is evaluated against all its boxes)"
            )
        truth.class_ref = str(class_ref)


def _read_csv(path: Path) -> dict[str, Truth]:
    """The stdlib reader, not pandas.read_csv: an error names the file's own line (pandas skips
    blank lines and joins quoted line breaks, so a row no longer knows its line)."""
    table: dict[str, Truth] = {}
    data = path.read_bytes()
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise BoxFileError(f"{path.name} holds a NUL byte at offset {offset}: a binary file?")
    try:
        return _read_csv_rows(data.decode("utf-8-sig"), path, table)
    except UnicodeDecodeError as error:
        raise BoxFileError(
            f"{path.name} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}): a binary file, not a CSV of boxes?"
        ) from None
    except csv.Error as error:  # NUL bytes, a field too large
        raise BoxFileError(f"{path.name} is not a readable CSV ({error})") from None


def _read_csv_rows(text: str, path: Path, table: dict[str, Truth]) -> dict[str, Truth]:
    with io.StringIO(text, newline="") as handle:
        reader = csv.DictReader(handle)
        need = {"file", "y0", "x0", "y1", "x1"}
        if reader.fieldnames is None or not need <= {f.strip() for f in reader.fieldnames}:
            raise BoxFileError(
                f"{path.name}: a CSV of true boxes needs the header file,y0,x0,y1,x1[,class]; "
                f"got {reader.fieldnames}"
            )
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            where = f"{path.name} line {reader.line_num}"  # the file's line, blank ones counted
            box = _box([row["y0"], row["x0"], row["y1"], row["x1"]], where)
            _add(table, row["file"], box, row.get("class"), where)
    return table


def _read_coco(path: Path, data: dict[str, Any]) -> dict[str, Truth]:
    try:
        names = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories") or []}
        files = {image["id"]: image["file_name"] for image in data["images"]}
    except (KeyError, TypeError, AttributeError) as error:
        message = f"{path.name}: COCO images need id and file_name, categories id ({error!r})"
        raise BoxFileError(message) from None
    table: dict[str, Truth] = {}
    for n, annotation in enumerate(data["annotations"]):
        where = f"{path.name} annotation {n}"
        try:
            x, y, w, h = (float(v) for v in annotation["bbox"])
            file = files[annotation["image_id"]]
        except (KeyError, TypeError, ValueError) as error:
            message = f"{where}: needs image_id and bbox [x, y, w, h] ({error})"
            raise BoxFileError(message) from None
        category = annotation.get("category_id")
        if category is not None and category not in names:
            raise BoxFileError(
                f"{where}: category_id {category!r} is not among the file's categories "
                f"({'none given' if not names else sorted(names)[:10]}): a COCO file names its "
                "classes in categories [{id, name}]"
            )
        _add(table, file, _box([y, x, y + h, x + w], where), names.get(category), where)
    for file in files.values():  # an image without annotations has no box
        table.setdefault(file, Truth())
    return table


def _read_json(path: Path) -> dict[str, Truth]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except RecursionError:
        raise BoxFileError(f"{path.name}: JSON nested too deeply to be a boxes file") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise BoxFileError(f"{path.name} is not valid JSON ({str(error)[:200]})") from None
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return _read_coco(path, data)
    table: dict[str, Truth] = {}
    if isinstance(data, list):
        for n, entry in enumerate(data):
            where = f"{path.name} entry {n}"
            if not isinstance(entry, dict) or "file" not in entry or "box" not in entry:
                raise BoxFileError(f'{where}: expected {{"file": …, "box": [y0, x0, y1, x1]}}')
            _add(table, entry["file"], _box(entry["box"], where), entry.get("class"), where)
        return table
    if not isinstance(data, dict):
        raise BoxFileError(f"{path.name}: expected an object of files, a list, or COCO")
    for file, entry in data.items():
        where = f"{path.name} {file}"
        if isinstance(entry, dict) and ("boxes" not in entry or set(entry) - {"boxes", "class"}):
            raise BoxFileError(
                f'{where}: expected [[y0, x0, y1, x1], …] or {{"boxes": [[y0, x0, y1, x1], …], '
                f'"class": …}}, got the keys {sorted(entry)[:6]}'
            )
        boxes, class_ref = (
            (entry["boxes"], entry.get("class")) if isinstance(entry, dict) else (entry, None)
        )
        if not isinstance(boxes, (list, tuple)):
            raise BoxFileError(f"{where}: expected a list of boxes [y0, x0, y1, x1], got {boxes!r}")
        if boxes and not isinstance(boxes[0], (list, tuple)):
            boxes = [boxes]  # one box
        table.setdefault(str(file), Truth())
        for box in boxes:
            _add(table, file, _box(box, where), class_ref, where)
    return table


def read_true_boxes(path: str | Path) -> dict[str, Truth]:
    """The true boxes of every file named in ``path`` (CSV, JSON or COCO JSON)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BoxFileError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() == ".json":
        return _read_json(path)
    raise BoxFileError(f"{path.name}: give a .csv (file,y0,x0,y1,x1[,class]), .json or COCO .json")


def match(
    inputs: Sequence[Path], table: dict[str, Truth], subfolders: Mapping[Path, str] | None = None
) -> tuple[dict[Path, Truth], list[str]]:
    """Each input with true boxes → its :class:`Truth`, and the names in the file that no
    input has. An entry names an input by its path relative to the folder given (``B02/a.png``
    with ``subfolders``, the ``--recursive`` walk's; else its file name), else by its plain file
    name or stem when one input alone has it (:mod:`.relative_match`); a name that several
    inputs have raises :class:`~.relative_match.AmbiguousName`."""
    keys = input_keys(inputs, subfolders)
    matched = match_names(keys, {entry: keys_of(entry) for entry in table})
    problem = ambiguity(matched, keys)
    if problem is not None:
        raise AmbiguousName(problem)
    found = {path: table[matched.found[path]] for path in inputs if path in matched.found}
    unused = set(matched.unused)
    return found, [entry for entry in table if entry in unused]
