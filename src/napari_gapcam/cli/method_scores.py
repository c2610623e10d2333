"""``gapcam evaluate --methods a,b --metrics …``: which map to trust, per image and method.

Each input is run through :func:`napari_gapcam.faithfulness` under every method named (the map
of the class the boxes file gives, else ``--class``, else the image's top-1), a few images at a
time. One CSV row per image × method (the metrics, and MaxBoxAccV2 / PxAP where true boxes are
given) is written atomically to ``--out``; the mean per method and metric is printed and written
beside it as ``<out>_summary.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .messages import EXIT_FAILED, EXIT_OK, say
from .preflight import UsageError

METRICS = ("avg_drop", "increase", "deletion", "insertion", "road")
TABLE = "gapcam-methods.csv"  # --out's default
HEADERS = ("file,class,class_name,method,", "method,")  # how the table and summary begin
IMAGES_PER_CALL = 8  # images read and scored at a time (memory stays flat in the inputs)


def _listed(text: str, known: list[str], option: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        bad = ", ".join(unknown) or "nothing"
        raise UsageError(f"{option} {text!r}: {bad} is not known; use a comma-separated list of "
                         f"{', '.join(known)}")  # fmt: skip
    return list(dict.fromkeys(names))


def methods_argument(text: str | None) -> list[str] | None:
    """``--methods``: method names of the table (``"all"``: every one)."""
    from ..engine.methods import METHODS

    if text is None:
        return None
    return list(METHODS) if text == "all" else _listed(text, list(METHODS), "--methods")


def metrics_argument(text: str) -> list[str]:
    """``--metrics``: faithfulness metric names."""
    return _listed(text, list(METRICS), "--metrics")


def check_steps(steps: int | None) -> None:
    """``--steps``: a positive number."""
    if steps is not None and steps < 1:
        raise UsageError(f"--steps {steps}: give a positive number of steps.")


def methods_out(args: argparse.Namespace, read: list[Path]) -> Path:
    """``--out`` with ``--methods``: a CSV file that can be written, none of the files this run
    reads, and neither it nor its summary a file of the user's (only tables of gapcam's own are
    replaced)."""
    from .setup_checks import writable_place

    args.out = TABLE if args.out is None else args.out
    out = writable_place(args.out, "file")
    if out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give the CSV file to write.")
    summary = out.with_name(f"{out.stem}_summary.csv")
    reads = {Path(p).resolve() for p in read if p is not None}
    if args.true_boxes:
        reads.add(Path(args.true_boxes).expanduser().resolve())
    for path, header in zip((out, summary), HEADERS, strict=True):
        if path in reads:
            raise UsageError(f"--out {args.out}: {path} is read by this run: give another file.")
        if path.exists() and not _starts_with(path, header):
            raise UsageError(
                f"--out {args.out}: {path} exists and is not a table of gapcam evaluate: gapcam "
                "never replaces a file of yours. Give another file name, or move it."
            )
    return out


def _starts_with(path: Path, header: str) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(header)).decode("utf-8", "replace") == header
    except OSError:
        return False


def add_method_arguments(evaluate: argparse.ArgumentParser) -> None:
    """--methods and --metrics of ``gapcam evaluate``."""
    evaluate.add_argument(
        "--methods",
        metavar="A,B,…",
        help="score the maps of these methods ('all': every one) with faithfulness metrics: one "
        "CSV row per image × method in --out, the mean per method printed (--true-boxes then "
        "optional: localization beside them)",
    )
    evaluate.add_argument(
        "--metrics",
        default=",".join(METRICS),
        metavar="A,B,…",
        help="with --methods: avg_drop (↓), increase (↑), deletion (↓), insertion (↑), road "
        "(↑) (default: all)",
    )
    evaluate.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="with --methods: deletion and insertion steps (default: 224 pixels of a 224² input "
        "a step, as RISE)",
    )
    evaluate.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16", "auto"),
        default="fp32",
        help="with --methods: the perturbed inputs' network passes, Score-CAM's masked inputs "
        "too (default fp32, the anchors' numbers; bf16 / fp16 autocast, or auto: bf16 where the "
        "device computes it natively, a CPU with AMX or a GPU, about 3× faster there, scores "
        "within about 0.005)",
    )


def run_methods(
    args: argparse.Namespace,
    model: Any,
    inputs: dict[Path, Any],
    classes: dict[Path, int | None],
    out: Path,
) -> int:
    """Score every input under every method; write the CSV and its summary."""
    import pandas as pd

    from .. import faithfulness
    from ..engine.methods import taken_options, takes
    from .pages import local_reads, open_pages

    methods, metrics = args.methods, args.metrics
    frames, failed, done = [], 0, 0
    paths = list(inputs)
    for start in range(0, len(paths), IMAGES_PER_CALL):
        images, names, wanted, boxes = [], [], [], []
        for path in paths[start : start + IMAGES_PER_CALL]:
            try:
                pages = open_pages(path)
                with local_reads():
                    images.append(pages.read(0))
            except Exception as problem:
                say(f"skipped {path}: {problem}")
                failed += 1
                continue
            names.append(str(path))
            wanted.append(classes.get(path))
            truth = inputs[path]
            boxes.append(truth.boxes if truth is not None else None)
        if not images:
            continue
        known = [c for c in wanted if c is not None]
        chosen = wanted if len(known) == len(wanted) else None
        if chosen is None and known:  # some images' classes given: each image's top-1 for all
            say("note: images without a class use their top-1")
            top = [
                model.run(image, input_size=args.input_size, square=args.square or None).topk(1)[0][
                    0
                ]
                for image in images
            ]
            chosen = [c if c is not None else t for c, t in zip(wanted, top, strict=True)]
        given = boxes if all(b is not None for b in boxes) else None
        for method in methods:
            options = dict(taken_options(method, getattr(args, "method_options", ())))
            if takes(method, "precision"):  # Score-CAM's reruns: evaluate's --precision
                options["precision"] = args.precision
            scorer = model.with_method(method, **options) if options else model  # --max-channels
            for group in _by_size(images):  # the engine scores images of one size at a time
                frame = faithfulness(
                    scorer,
                    [images[i] for i in group],
                    classes=None if chosen is None else [chosen[i] for i in group],
                    method=method,
                    metrics=metrics,
                    steps=args.steps,
                    precision=args.precision,
                    boxes=None if given is None else [given[i] for i in group],
                    input_size=args.input_size,
                    square=args.square or None,
                )
                frame.insert(0, "file", [names[group[i]] for i in frame["image"]])
                frames.append(frame.drop(columns=["image"]))
        done += len(images)
        say(f"{done}/{len(paths)} images scored")
    if not frames:
        say("no input could be read: nothing evaluated")
        return EXIT_FAILED
    table = pd.concat(frames, ignore_index=True)
    _write(table, out)
    summary = _summary(table, methods)
    _write(summary.reset_index(), out.with_name(f"{out.stem}_summary.csv"))
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    say(f"wrote {out} ({len(table)} rows) and {out.stem}_summary.csv")
    return EXIT_FAILED if failed else EXIT_OK


def _by_size(images: list[Any]) -> list[list[int]]:
    """The images' indices grouped by their shape, in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    return list(groups.values())


def _summary(table: Any, methods: list[str]) -> Any:
    """The mean of every metric per method, methods in the order asked."""
    numeric = [c for c in table.columns if c not in ("file", "class", "class_name", "method")]
    return table.groupby("method")[numeric].mean().loc[methods]


def _write(frame: Any, path: Path) -> None:
    from .outputs import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, frame.to_csv(index=False))
