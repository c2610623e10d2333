"""Which map to trust: faithfulness scores of a model's maps, one row per image and class.

:func:`faithfulness` runs the images once, takes each row's map (the model's method, or
another by ``method``) upsampled to the network's input and min-max normalised, and scores it
by what the network does when the input is changed where the map points:

- ``avg_drop`` / ``increase`` (:mod:`.confidence`): the input times the map;
- ``deletion`` / ``insertion`` (:mod:`.causal`): RISE's pixels removed / revealed in the map's
  order;
- ``road`` (:mod:`.road`): ROAD's most / least relevant pixels removed and imputed
  (:mod:`.imputation`).

Every perturbed input of every image goes through the network in batches on the model's
device, batch norms folded (:mod:`.scoring`). With true ``boxes`` (and ``masks``) the
localization metrics of :mod:`~napari_gapcam.engine.metrics` (MaxBoxAccV2, PxAP) of each map
sit beside them. ``table.attrs["better"]`` says which way is better for each column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._torch import torch
from ..batch import _as_images
from ..precision import PRECISIONS, check_precision, resolve_precision
from ..preprocess import target_size
from .causal import causal, pixels_per_step
from .confidence import confidence
from .road import PERCENTILES, road
from .rows import Rows, localization_columns, prepare, row_count, with_method
from .scoring import FaithfulnessCancelled, Progress, Scorer

if TYPE_CHECKING:
    import pandas

METRICS = ("avg_drop", "increase", "deletion", "insertion", "road")
BETTER = {
    "avg_drop": "lower",
    "increase": "higher",
    "deletion": "lower",
    "insertion": "higher",
    "road": "higher",
    "max_box_acc_v2": "higher",
    "pxap": "higher",
}
__all__ = ["BETTER", "METRICS", "FaithfulnessCancelled", "faithfulness"]


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """The metrics asked for, in order; an unknown name is an error naming the valid ones."""
    chosen = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        what = f"Unknown metric {unknown[0]!r}" if unknown else "No metric"
        raise ValueError(f"{what}: use any of {', '.join(METRICS)}.")
    return tuple(dict.fromkeys(chosen))


def _inputs_per_row(metrics: tuple[str, ...], pixels: int, steps: int | None, q: int) -> int:
    """How many perturbed inputs one row costs."""
    per_row = ("avg_drop" in metrics or "increase" in metrics) * 1
    steps_per_curve = pixels_per_step(pixels, steps)[1]
    per_row += sum(m in metrics for m in ("deletion", "insertion")) * steps_per_curve
    per_row += ("road" in metrics) * 2 * q
    return per_row


def faithfulness(
    model: Any,
    images: Any,
    classes: Any = None,
    method: str | None = None,
    metrics: Sequence[str] | str = METRICS,
    steps: int | None = None,
    *,
    batch_size: int | None = None,
    boxes: Sequence[Any] | None = None,
    masks: Sequence[Any] | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    noise: float = 0.01,
    percentiles: Sequence[float] = PERCENTILES,
    deletion_baseline: float | str = 0.0,
    insertion_baseline: float | str = "blur",
    contrast_limits: Sequence[float] | None = None,
    input_size: int | None = None,
    square: bool | None = None,
    precision: str = "fp32",
) -> pandas.DataFrame:
    """Faithfulness scores of ``model``'s maps of ``images``: a DataFrame, one row per image
    and class (columns ``image``, ``class``, ``class_name``, ``method``, then one per metric).

    ``images``: an N×H×W(×3/4) array or a sequence of images of one size (as
    ``model.run_batch``). ``classes``: None (each image's top class), one class for every image,
    or one entry per image (a class, or a list of classes: a row each). ``method``: None (the
    model's), or a method's name (``model.with_method(name)``). ``metrics``: any of
    :data:`METRICS`. ``steps``: deletion / insertion steps (default 224: RISE's 224 pixels a
    step of a 224² input); ``deletion_baseline`` / ``insertion_baseline``: a number (in the
    normalised tensor: 0 is the mean colour) or ``"blur"``. ``percentiles``, ``noise`` and
    ``seed``: ROAD's. ``boxes`` (per image, a box ``(y0, x0, y1, x1)`` in image pixels or a list
    of them) and ``masks`` (per image, H×W bool) add ``max_box_acc_v2`` and ``pxap``.
    ``batch_size``: inputs per network pass (default: as ``run_batch``). ``precision``: the
    perturbed inputs' passes, ``"fp32"`` (default: the anchors' numbers), ``"bf16"`` /
    ``"fp16"`` autocast or ``"auto"`` (bfloat16 where the device computes it natively, see
    :mod:`~napari_gapcam.engine.precision`): on a CPU with AMX bfloat16 is about 3× faster,
    its scores within about 0.005 of float32's (the images' own maps and scores stay
    float32). ``progress(done,
    total)`` is called after each batch of network inputs; returning False cancels
    (:class:`FaithfulnessCancelled`). ``attrs["better"]``: ``"lower"`` or ``"higher"`` per column.
    """
    import pandas as pd

    chosen = check_metrics(metrics)
    check_precision(precision, allow_auto=True)
    network = with_method(model, method)
    n = len(_as_images(images)[0])
    size = network.config.geometry(input_size, square)
    shape = target_size(*_as_images(images)[1][:2], *size)
    perturbed = _inputs_per_row(chosen, shape[0] * shape[1], steps, len(percentiles))
    scorer = Scorer(network, 1, n + row_count(classes, n) * perturbed, progress)
    rows: Rows = prepare(
        network, images, classes, batch_size, contrast_limits, input_size, square, scorer.advance
    )
    scorer.batch_size = rows.batch_size
    precision = resolve_precision(precision, rows.inputs.device)
    scorer.dtype = PRECISIONS[precision]
    pixels = shape[0] * shape[1]
    device = rows.inputs.device
    # the scores before any change, on the host as the scorer's are (float64)
    chosen_logits = rows.logits.gather(1, rows.classes[:, None])[:, 0].double().cpu()
    probabilities = torch.softmax(rows.logits, 1).gather(1, rows.classes[:, None])[:, 0]
    probabilities, logits = probabilities.double().cpu(), chosen_logits
    args = (rows.inputs, rows.maps, rows.classes)
    scores: dict[str, Any] = {}
    if "avg_drop" in chosen or "increase" in chosen:
        scores.update(confidence(scorer, *args, probabilities))
    modes = tuple(m for m in ("deletion", "insertion") if m in chosen)
    if modes:
        baselines = (deletion_baseline, insertion_baseline)
        scores.update(causal(scorer, *args, probabilities, steps, modes, *baselines))
    if "road" in chosen:
        generator = torch.Generator(device=device).manual_seed(int(seed))
        scores.update(road(scorer, *args, logits, tuple(percentiles), noise, generator))
    table = pd.DataFrame(
        {
            "image": rows.images,
            "class": rows.classes.tolist(),
            "class_name": [network.class_names[c] for c in rows.classes.tolist()],
            "method": network.method,
            **{m: scores[m].numpy() for m in chosen},
        }
    )
    if boxes is not None or masks is not None:
        for name, values in localization_columns(rows, boxes, masks).items():
            table[name] = values
    table.attrs["better"] = {c: BETTER[c] for c in table.columns if c in BETTER}
    table.attrs["steps"] = pixels_per_step(pixels, steps)[1]
    table.attrs["precision"] = precision
    table.attrs["input_shape"] = tuple(rows.maps.shape[-2:])
    return table
