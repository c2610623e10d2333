"""``gapcam evaluate``: localization metrics of a model's maps against true boxes.

Each input with true boxes (:mod:`~napari_gapcam.cli.true_boxes`) is run once; its map is that of
the class the boxes file gives, else ``--class``, else the image's top-1 (``--class`` given
wins over the file). :func:`napari_gapcam.localization_metrics` (Choe et al., CVPR 2020) gives
MaxBoxAccV2, MaxBoxAcc and the best threshold τ per IoU δ, and PxAP with ``--true-masks``
(:mod:`~napari_gapcam.cli.true_masks`; nonzero = the object). With ``--recursive`` the input
folders' subfolders are walked, and the box file and the masks name an input by its path below
the folder given (:mod:`~napari_gapcam.cli.relative_match`). The numbers are printed and written
as JSON (atomically). Exit codes (listed under ``--help``, :mod:`~napari_gapcam.cli.epilogs`):
0 done, 1 when an input could not be read (the others are evaluated), 2 for a usage or set-up
error (nothing written), 130 interrupted, 143 terminated (no report written).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .inputs import InputError, expand
from .messages import EXIT_FAILED, EXIT_OK, error, say
from .pages import local_reads, open_pages
from .preflight import DEVICE, UsageError, method_options, read_class_names, weights_argument
from .relative_match import AmbiguousName
from .true_boxes import BoxFileError, match, read_true_boxes
from .true_masks import find_masks, match_masks

REPORT = "gapcam-evaluation.json"  # --out without --methods


def _inputs(args: argparse.Namespace) -> tuple[dict[Path, Any], dict[Path, Path] | None]:
    """The inputs with true boxes (and their masks); usage errors before any model."""
    if not DEVICE.match(args.device):
        raise UsageError(f"--device {args.device}: use auto, cpu, cuda, cuda:N or mps.")
    if args.true_boxes is None and args.methods is None:
        raise UsageError(
            "give --true-boxes FILE (where the maps should be: localization) or --methods "
            "A,B (which map to trust: faithfulness), or both"
        )
    try:
        table = read_true_boxes(args.true_boxes) if args.true_boxes else None
    except BoxFileError as problem:
        raise UsageError(f"--true-boxes {problem}") from None
    masks = _mask_files(args)
    folder = Path(args.true_masks or "").expanduser()
    skip = [folder] if args.true_masks and folder.is_dir() else []  # a plate's masks/ is no well
    found = expand(args.inputs, lambda path: path in masks, args.recursive, skip)
    if found.problems:
        listed = "\n".join(f"  {argument}: {reason}" for argument, reason in found.problems)
        raise UsageError(
            f"{len(found.problems)} input argument(s) name nothing to read:\n{listed}\n"
            "Check the paths (quote globs: 'val/*.png'); a folder of subfolders needs --recursive."
        )
    for file, reason in found.unreadable:
        say(f"skipped {file}: {reason}")
    if table is None:  # --methods alone: every input, no true boxes
        return dict.fromkeys(found.paths), None
    try:
        truths, unused = match(found.paths, table, found.subfolders)
    except AmbiguousName as problem:
        raise UsageError(f"--true-boxes {args.true_boxes}: {problem}") from None
    if not truths:
        raise UsageError(
            f"no input is named in {args.true_boxes} (by path, file name or stem): check the "
            f"file column ({', '.join(list(table)[:3])} …) against the inputs."
        )
    if unused:
        say(f"note: {len(unused)} file(s) in {args.true_boxes} are not among the inputs "
            f"(e.g. {unused[0]})")  # fmt: skip
    without = len(found.paths) - len(truths)
    if without:
        say(f"note: {without} input(s) have no true boxes: left out")
    if not masks:
        return truths, None
    try:
        return truths, match_masks(list(truths), masks, found.subfolders)
    except InputError as problem:
        raise UsageError(str(problem)) from None


def _mask_files(args: argparse.Namespace) -> dict[Path, Any]:
    """``--true-masks``' files (walked with ``--recursive``) and their keys; none without it."""
    if not args.true_masks:
        return {}
    try:
        return find_masks(args.true_masks, args.recursive)
    except InputError as problem:
        raise UsageError(str(problem)) from None


def evaluate_command(args: argparse.Namespace) -> int:
    from .method_scores import check_steps, methods_argument, methods_out, metrics_argument
    from .setup_checks import check_weights_files

    try:
        args.methods = methods_argument(args.methods)
        args.metrics = metrics_argument(args.metrics)
        args.method_options = method_options(args, args.methods or ())
        check_steps(args.steps)
        truths, masks = _inputs(args)
        read = [*truths, *(masks or {}).values()]
        out = methods_out(args, read) if args.methods else report_path(args, read)
        weights = weights_argument(args.weights)
        check_weights_files(weights)
        class_names = None
        if args.class_names:
            read_class_names(args.class_names)
            class_names = str(Path(args.class_names).expanduser().resolve())
    except UsageError as problem:
        return error(str(problem))
    import torch

    from ..engine.methods import taken_options
    from ..models.spec import ModelSpec
    from .infer import class_ref, get_model

    if args.threads:
        torch.set_num_threads(args.threads)
    demo = weights is not None and args.weights.lower() == "demo"
    arch = args.model or ("resnet18" if demo else "resnet50")
    spec = ModelSpec(
        arch=arch,
        weights=weights,
        device=args.device,
        class_names=class_names,
        method=args.method,
        layer=args.layer,
        layers=args.layers,
        seed=args.seed if weights is None else None,
        options=taken_options(args.method, args.method_options),
    )
    try:
        model = get_model(spec)
        classes = {}
        for path, truth in truths.items():
            reference = (
                args.class_ref if args.class_ref is not None else getattr(truth, "class_ref", None)
            )
            reference = class_ref(reference, model.class_names)
            classes[path] = None if reference is None else _index(model.class_names, reference)
    except (ValueError, KeyError, IndexError, OSError, RuntimeError) as problem:
        return error(problem)
    if args.methods:
        from .method_scores import run_methods

        return run_methods(args, model, truths, classes, out)
    return _run(args, model, truths, masks, classes, out)


def report_path(args: argparse.Namespace, read: list[Path]) -> Path:
    """``--out``: a JSON file that can be written, and none of the files this run reads (an
    input, the true boxes, a mask); an existing file only when it is a report of gapcam's."""
    from .claims import is_evaluate_report
    from .setup_checks import writable_place

    args.out = REPORT if args.out is None else args.out
    out = writable_place(args.out, "file")
    if out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give the JSON file to write.")
    boxes = Path(args.true_boxes).expanduser().resolve()
    if out == boxes or out in {Path(p).resolve() for p in read if p is not None}:
        what = "the --true-boxes file" if out == boxes else "an input (or its mask)"
        raise UsageError(f"--out {args.out} is {what}: give another file for the report.")
    if os.path.lexists(out) and not is_evaluate_report(out):
        raise UsageError(
            f"--out {args.out} exists and is not a report of gapcam evaluate: gapcam never "
            "replaces a file of yours. Give another file name, or move it."
        )
    return out


def _index(names: list[str], reference: str | int) -> int:
    from ..engine.maps import class_index

    return class_index(names, reference)


def _run(
    args: argparse.Namespace,
    model: Any,
    truths: dict[Path, Any],
    masks: dict[Path, Path] | None,
    classes: dict[Path, int | None],
    out: Path,
) -> int:
    from .. import localization_metrics
    from .labels import read_labels
    from .outputs import write_text_atomic

    maps, boxes, true_masks, files, failed = [], [], [], [], 0
    for path, truth in truths.items():
        try:
            pages = open_pages(path)
            if pages.count != 1:
                raise InputError(f"holds {pages.count} pages: evaluate takes single images")
            image = pages.read(0)
            mask = read_labels(masks[path], 1, pages.shape) > 0 if masks else None
            with local_reads():  # a big page (dask) is read here, band by band
                result = model.run(image, input_size=args.input_size, square=args.square or None)
        except Exception as problem:
            say(f"skipped {path}: {problem}")
            failed += 1
            continue
        c = classes[path]
        c = result.topk(1)[0][0] if c is None else c
        maps.append(result.cam(c))
        boxes.append(truth.boxes)
        if mask is not None:
            true_masks.append(mask)
        files.append({"file": str(path), "class": model.class_names[c], "boxes": truth.boxes})
    if not maps:
        say("no input could be read: nothing evaluated")
        return EXIT_FAILED
    metrics = localization_metrics(maps, boxes, true_masks if masks else None)
    report = {
        "images": len(maps),
        "max_box_acc_v2": metrics["max_box_acc_v2"],
        "max_box_acc": {str(d): v for d, v in metrics["max_box_acc"].items()},
        "best_threshold": {str(d): v for d, v in metrics["best_threshold"].items()},
        "pxap": metrics["pxap"],
        "model_threshold": model.box_threshold,
        "thresholds": [float(t) for t in metrics["thresholds"]],
        "box_acc": [[float(v) for v in row] for row in metrics["box_acc"]],
        "files": files,
    }
    print(f"{len(maps)} images, {sum(len(b) for b in boxes)} true boxes")
    print(f"MaxBoxAccV2  {metrics['max_box_acc_v2']:.4f}")
    for delta, value in metrics["max_box_acc"].items():
        tau = metrics["best_threshold"][delta]
        print(f"MaxBoxAcc @ IoU {delta:g}  {value:.4f}  (best threshold {tau:.2f})")
    if metrics["pxap"] is not None:
        print(f"PxAP  {metrics['pxap']:.4f}")
    print(f"the model's own threshold: {model.box_threshold:.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=1) + "\n")
    say(f"wrote {out}")
    return EXIT_FAILED if failed else EXIT_OK
