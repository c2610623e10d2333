"""``gapcam predict``, step by step: check, find what is left, load, lock, compute, report.

1. :func:`~napari_gapcam.cli.preflight.check` finds every usage error (nothing created); the
   inputs are listed one output folder at a time (:mod:`~napari_gapcam.cli.listing`), never
   held all at once.
2. The record store (:mod:`~napari_gapcam.cli.store`) says which inputs are done (same file,
   unchanged, same settings); when none is left the run ends here, without importing torch.
3. The model is loaded and checked (a set-up error still creates nothing).
4. The output folder is created and locked for this run (:mod:`~napari_gapcam.cli.folder_lock`)
   and the run takes the store's lease; under the lock the records are read again, the inputs
   left are kept on disk (:mod:`~napari_gapcam.cli.todo`) and computed, in chunks, in this
   process or on dask workers, which write into the run's staging folder; each input lands
   (its files in place, its record written) as its outcome comes back.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .claims import blocking
from .inputs import Item
from .landing import Run, Runner
from .left import Tally, left_to_do
from .messages import EXIT_FAILED, error, option, say
from .outputs import OutputFolder
from .preflight import Plan, UsageError, check
from .store import Store, stage_folder

SETUP_ERRORS = (ValueError, KeyError, IndexError, OSError, RuntimeError, MemoryError)


def run_precision(requested: str, device: str) -> str:
    """The precision a Score-CAM run's masked passes use, decided once here for every
    process: ``"auto"`` → ``"bf16"`` where ``device`` computes it natively, else ``"fp32"``
    (a ``device`` this machine lacks, a cluster's: a GPU's bf16, another's fp32)."""
    from ..engine.device import resolve_device
    from ..engine.precision import AUTO, native_bf16

    if requested != AUTO:
        return requested
    try:
        return "bf16" if native_bf16(resolve_device(device)) else "fp32"
    except (ValueError, RuntimeError):  # not on this machine (its workers have it)
        return "bf16" if device.startswith("cuda") else "fp32"


def options_of(args: argparse.Namespace, plan: Plan) -> Any:
    from ..engine.methods import takes
    from ..models.spec import ModelSpec
    from .infer import Options

    options = plan.method_options
    if takes(args.method, "precision"):  # decided here and recorded: a folder never mixes
        requested = dict(options).get("precision", "auto")
        chosen = run_precision(requested, args.device)
        options = (*((o, v) for o, v in options if o != "precision"), ("precision", chosen))

    demo = plan.weights is not None and args.weights.lower() == "demo"
    arch = args.model or ("resnet18" if demo else "resnet50")
    seed = args.seed if plan.weights is None else None
    return Options(
        model=ModelSpec(
            arch=arch,
            weights=plan.weights,
            device=args.device,
            class_names=plan.class_names,
            method=args.method,
            layer=args.layer,
            layers=args.layers,
            seed=seed,
            options=options,
        ),
        class_ref=args.class_ref,
        topk=args.topk,
        threshold=args.threshold,
        input_size=args.input_size,
        square=True if args.square else None,
        max_map_pixels=args.max_map_pixels,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        tiles=args.tiles,
        level=args.level,
        tile_size=args.tile_size,
        overlap=args.overlap,
        background=args.background,
        all_probabilities=args.all_probabilities,
        block_tiles=args.block_tiles,
        labels=plan.labels,
        scale=args.scale,
        min_area=args.min_area,
    )


def predict(args: argparse.Namespace) -> int:
    try:
        plan = check(args)
    except UsageError as problem:
        return error(str(problem))
    out = OutputFolder(plan.out)
    token = uuid.uuid4().hex  # this run's id: its lease and its staging folder
    options = dataclasses.replace(options_of(args, plan), stage=str(stage_folder(out.root, token)))
    for note in plan.notes:
        say(f"note: {note}")
    if plan.inputs.excluded:
        say(
            f"left out {plan.inputs.excluded} file(s) written by gapcam in the output folder "
            f"{out.root} (its outputs are never inputs)"
        )
    for file, reason in plan.failures:
        say(f"skipped {file}: {reason}")
    counts = {"done": 0, "skipped": 0, "failed": len(plan.failures)}
    with Store(out.root) as store:
        tally = Tally()
        todo = left_to_do(store, plan, options, tally=tally)
        in_the_way = blocking(store, todo, options) if out.root.is_dir() else deque(todo, 0)
        settled = not tally.todo and not tally.checked and store.exported(out.results)
        total = store.count()
    if in_the_way:
        return error(in_the_way)  # a file of the user's: before the model loads
    command = shlex.join(["gapcam", *getattr(args, "argv", ["predict"])])[:500]
    run = Run(out, plan, options, counts, command, token, args.chunk_size)
    if settled:  # all done, known by their stat keys, results.jsonl as exported: no lock
        counts["skipped"] = tally.done
        return run.report(None, total)
    if not tally.todo:  # nothing to compute: no torch, no model
        return run.locked(None)
    if plan.weights is None:
        say(
            f"note: --weights none: a random model (seed {args.seed}); its classes and maps "
            "carry no meaning"
        )
    if (
        getattr(args, "map_precision", None) is None
        and ("precision", "bf16") in options.model.options
    ):
        say(
            "note: Score-CAM's masked passes run in bf16, which this machine computes natively "
            "(about 2.5× faster, maps within about 0.01 of float32's); --precision fp32 for float32"
        )
    try:
        with _engine(args, options, out) as (runner, checked):
            if options.tiles:
                runner = _tiled_runner(runner, options, checked, str(out.root))
            return run.locked(runner)
    except _SetupError as problem:
        return problem.code


def _tiled_runner(runner: Runner, options: Any, geometry: dict[str, Any], root: str) -> Runner:
    """A runner of inputs that splits each slide into blocks of tiles (its outcomes are the
    inputs' outcomes, as for chunks of inputs)."""
    from .tiled_run import run_tiled_inputs

    note = geometry.pop("note", None)  # check_tiled's (maybe a worker's): said once, here
    if note:
        say(f"note: {note}")

    def run(chunks: list[list[Item]], waiting: Callable[[int], None]) -> Any:
        todo = [item for chunk in chunks for item in chunk]
        return run_tiled_inputs(runner, todo, options, geometry, root, waiting, say)

    return run


def _local_runner(options: Any, root: str) -> Runner:
    """Chunks run in this process: inputs as one stream (reading, inference and writing
    overlap across them, :func:`~napari_gapcam.cli.stream.process_stream`); tiled blocks one
    chunk at a time."""
    from .pages import local_reads, read_locally
    from .stream import process_chunk, process_stream

    def run(chunks: list[list[Item]], _: Any, function: Any = process_chunk) -> Any:
        if function is not process_chunk:
            for chunk in chunks:
                yield read_locally(function, chunk, options, root)
            return
        with local_reads():
            for outcome in process_stream((i for c in chunks for i in c), options, root):
                yield [outcome]

    return run


class _SetupError(Exception):
    """The model or the cluster could not be set up (already reported); ``code`` is the exit."""

    def __init__(self, code: int) -> None:
        self.code = code


def _setup(
    function: Callable[..., Any], *arguments: Any, keep: tuple[type[Exception], ...] = ()
) -> Any:
    """Load the model and check --class before any input: a set-up error is a usage error
    (errors of the ``keep`` types go on as they are). Returns what ``function`` returns."""
    try:
        return function(*arguments)
    except keep:
        raise
    except SETUP_ERRORS as problem:
        from ..engine.words import said

        message = said(problem, option)
        if "weights" in message.lower() and "weights" not in getattr(problem, "terms", ()):
            message += "\nOn the command line: --weights path/to/file.pth (or --weights none)."
        raise _SetupError(error(message)) from None


@contextmanager
def _engine(
    args: argparse.Namespace, options: Any, out: OutputFolder
) -> Iterator[tuple[Runner, Any]]:
    """A function running chunks: in this process, or on a dask cluster (checked first); and
    what the check returned (the class names; with --tiles, the tiles' geometry)."""
    from .infer import check_options
    from .stream import process_chunk
    from .tile_blocks import check_tiled

    check = check_tiled if options.tiles else check_options
    if not (args.workers or args.scheduler):
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        checked = _setup(check, options)
        yield _local_runner(options, str(out.root)), checked
        return
    from .distributed import ClusterError, NoWorkersError, check_on_cluster, client, run_chunks

    timeout = args.worker_timeout
    try:
        with client(args.workers, args.scheduler) as connection:
            try:
                checked = _setup(
                    check_on_cluster, connection, options, timeout, check, keep=(NoWorkersError,)
                )
            except NoWorkersError as problem:
                say(f"error: {problem}")
                raise _SetupError(EXIT_FAILED) from None
            yield (
                (
                    lambda chunks, waiting, function=process_chunk: run_chunks(
                        connection, chunks, options, str(out.root), timeout, waiting, function
                    )
                ),
                checked,
            )
    except NoWorkersError:
        raise
    except ClusterError as problem:
        raise _SetupError(error(str(problem))) from None
