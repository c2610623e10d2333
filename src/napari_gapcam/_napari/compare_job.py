"""The work of *compare methods*, off the UI thread: each chosen method's map of one plane and its
faithfulness scores, through one small adapter over the engine.

The adapter (the functions above :class:`Task`) is the only place that names what the engine
offers for this: a row's ``head_only`` capability (a finished result switches to the method
with no forward pass: ``result.with_method(model)``), ``model.with_method(name)`` (the same
network under another method, no reload) and
:func:`napari_gapcam.engine.faithfulness.faithfulness`. Every other choice reads the methods'
table, never a method's name.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .run import Cancelled, CancelToken

if TYPE_CHECKING:
    import pandas

    from ..engine.methods import MethodInfo

ID_COLUMNS = ("image", "class", "class_name", "method")  # a faithfulness row's identity
KEYS = ("contrast_limits", "input_size", "square")  # how the run read the plane


# ------------------------------------------------------------------ the adapter
def method_rows() -> list[MethodInfo]:
    """Every method of the table, in its order."""
    from ..engine.methods import METHODS

    return list(METHODS.values())


def head_only(row: MethodInfo) -> bool:
    """The method needs only the head: a finished result switches to it, no forward pass."""
    return bool(getattr(row, "head_only", False))


def with_method(model: Any, name: str) -> Any:
    """``model`` under the method ``name`` (itself when it is its own)."""
    return model if model.method == name else model.with_method(name)


def switched(result: Any, model: Any) -> Any:
    """A finished result under ``model``'s method, with no forward pass (head-only methods)."""
    return result.with_method(model)


def faithfulness_scores(
    model: Any,
    image: np.ndarray,
    c: int,
    name: str,
    progress: Callable[[int, int], bool],
    boxes: list | None,
    contrast: tuple[float, float] | None,
    geometry: tuple[int | None, bool | None],
) -> pandas.DataFrame:
    """The faithfulness table of class ``c``'s map of ``image`` under the method ``name``
    (``boxes``: the true boxes, image pixels, for the localization columns). The plane is read
    as the run read it: its contrast limits and input size go along when the engine takes
    them, else a grey plane is scaled to 8 bits by its contrast limits."""
    from ..engine.faithfulness import faithfulness

    taken = inspect.signature(faithfulness).parameters
    extra = {
        key: value
        for key, value in zip(KEYS, (contrast, *geometry), strict=True)
        if key in taken and value is not None
    }
    if contrast is not None and "contrast_limits" not in taken:
        image = to_8_bits(image, contrast)
    found = {"boxes": [boxes]} if boxes is not None else {}
    return faithfulness(
        model, [image], classes=[c], method=name, progress=progress, **found, **extra
    )


def to_8_bits(image: np.ndarray, contrast: tuple[float, float]) -> np.ndarray:
    """A grey plane clipped to its contrast limits and scaled to uint8 (0 → low, 255 → high)."""
    low, high = (float(v) for v in contrast)
    unit = (np.asarray(image, np.float32) - low) / max(high - low, 1e-12)
    return np.round(np.clip(np.nan_to_num(unit), 0, 1) * 255).astype(np.uint8)


def score_columns(table: pandas.DataFrame) -> dict[str, float]:
    """A one-row faithfulness table's scores by column (its identity columns left out)."""
    row = table.iloc[0]
    return {
        str(k): float(row[k]) for k in table.columns if k not in ID_COLUMNS and _is_number(row[k])
    }


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


# ------------------------------------------------------------------ the job
@dataclass(frozen=True)
class Task:
    """One comparison: class ``c`` of the plane ``result`` (a finished run's) made by ``model``
    from ``image`` (read as the run read it: ``contrast``, ``geometry`` = input size, square),
    maps at ``grid`` cells under ``scale``, for each row of ``methods``; ``own``: models to use
    for some methods (a method's name → the model handed over with it, its options kept, or
    the model under the dock's options for that method, e.g. Score-CAM's channels)."""

    model: Any
    result: Any
    image: Any
    contrast: tuple[float, float] | None
    geometry: tuple[int | None, bool | None]
    c: int
    grid: tuple[int, int]
    scale: str
    methods: tuple[MethodInfo, ...]
    boxes: list | None = None
    own: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a comparison found: each method's map and scores, the methods that failed (and
    why), and how long it took."""

    maps: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]
    errors: dict[str, str]
    seconds: float = 0.0


def plane_map(task: Task, row: MethodInfo, token: CancelToken) -> tuple[Any, np.ndarray]:
    """``row``'s model and its map of the task's class: the result's own method as it is, a
    head-only method by switching the result, any other by running the plane again (``task.own``'s
    model for its method: the model handed over with it)."""
    model = task.own.get(row.name) or with_method(task.model, row.name)
    if row.name == task.result.method_info.name:
        result = task.result
    elif head_only(row):
        result = switched(task.result, model)
    else:
        with token.watching(model):
            result = model.run(task.image, task.contrast, *task.geometry)
    return model, np.asarray(result.cam(task.c, task.grid, task.scale), np.float32)


def compare(task: Task, token: CancelToken) -> Iterator[tuple[str, Any]]:
    """Job body: ``("progress", (done, total, text))`` before each step (a map, then the
    scores, per method), then ``("done", Outcome)``; nothing more once ``token`` is set."""
    start = time.perf_counter()
    task = _read(task)
    outcome = Outcome({}, {}, {})
    total = 2 * len(task.methods)
    for i, row in enumerate(task.methods):
        try:
            rerun = row.name != task.result.method_info.name and not head_only(row)
            cost = f" ({row.cost})" if rerun else ""
            yield "progress", (2 * i, total, f"{row.label}: its map{cost}…")
            model, heat = plane_map(task, row, token)
            yield "progress", (2 * i + 1, total, f"{row.label}: faithfulness…")
            table = faithfulness_scores(
                model,
                task.image,
                task.c,
                row.name,
                lambda _done, _total: not token.is_set,
                task.boxes,
                task.contrast,
                task.geometry,
            )
        except Cancelled:
            return
        except Exception as error:  # this method fails: the others go on
            if token.is_set:
                return
            outcome.errors[row.name] = f"{type(error).__name__}: {error}"
            continue
        if token.is_set:
            return
        outcome.maps[row.name], outcome.scores[row.name] = heat, score_columns(table)
    outcome.seconds = time.perf_counter() - start
    yield "done", outcome


def _read(task: Task) -> Task:
    """The task with its plane read into memory once (a lazy plane: read here, in the job)."""
    from dataclasses import replace

    return replace(task, image=np.asarray(task.image))
