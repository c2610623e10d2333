"""``gapcam predict``, step by step: check, find what is left, load, lock, compute, report.

1. :func:`~napari_gapcam.cli.preflight.check` finds every usage error (nothing created).
2. The records say which inputs are done (same file, unchanged, same settings); when none is
   left the run ends here, without importing torch.
3. The model is loaded and checked (a set-up error still creates nothing).
4. The output folder is created and locked for this run (:mod:`~napari_gapcam.cli.folder_lock`);
   under the lock the records are read again and the inputs left are computed, in chunks,
   in this process or on dask workers.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .folder_lock import FolderBusyError, FolderLock, describe_holder
from .inputs import Item, items, unchanged
from .messages import EXIT_FAILED, EXIT_OK, error, option, say
from .outputs import OutputFolder, changed_labels, is_current
from .preflight import Plan, UsageError, check

# chunks, what to call while waiting for workers, and the function that runs a chunk
# (process_chunk by default) → each chunk's outcomes as it finishes
Runner = Callable[..., Iterator[list[dict[str, Any]]]]
SETUP_ERRORS = (ValueError, KeyError, IndexError, OSError, RuntimeError, MemoryError)


def options_of(args: argparse.Namespace, plan: Plan) -> Any:
    from ..models.spec import ModelSpec
    from .infer import Options

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


def left_to_do(
    out: OutputFolder, plan: Plan, options: Any, report: bool = False
) -> tuple[list[Item], int]:
    """The inputs to compute (named from the folder's history) and how many are done."""
    known = out.all_records(complete_only=False)  # a stem stays its file's, even if redone
    named = items(plan.paths, {record["file"]: stem for stem, record in known.items()})
    records = {stem: r for stem, r in known.items() if out.has_outputs(r)}
    settings = options.settings()
    todo = []
    for item in named:
        record = records.get(item.stem)
        if not options.overwrite and is_current(record, item.path, settings):
            continue
        if report and record is not None and record.get("settings") == settings:
            labels = changed_labels(record) if unchanged(record.get("input"), item.path) else None
            what = f"its label image {labels}" if labels else item.path
            say(f"{what} changed since its outputs were made: computing {item.path} again")
        todo.append(item)
    return todo, len(named) - len(todo)


def predict(args: argparse.Namespace) -> int:
    try:
        plan = check(args)
    except UsageError as problem:
        return error(str(problem))
    options = options_of(args, plan)
    out = OutputFolder(plan.out)
    for note in plan.notes:
        say(f"note: {note}")
    if plan.excluded:
        say(
            f"left out {len(plan.excluded)} file(s) written by gapcam in the output folder "
            f"{out.root} (its outputs are never inputs)"
        )
    for file, reason in plan.failures:
        say(f"skipped {file}: {reason}")
    counts = {"done": 0, "skipped": 0, "failed": len(plan.failures)}
    todo, _ = left_to_do(out, plan, options)
    command = shlex.join(["gapcam", *getattr(args, "argv", ["predict"])])[:500]
    if not todo:  # nothing to compute: no torch, no model
        return _locked(out, plan, options, counts, command, None, args.chunk_size)
    if plan.weights is None:
        say(
            f"note: --weights none: a random model (seed {args.seed}); its classes and maps "
            "carry no meaning"
        )
    try:
        with _engine(args, options, out) as (runner, checked):
            if options.tiles:
                runner = _tiled_runner(runner, options, checked, str(out.root))
            return _locked(out, plan, options, counts, command, runner, args.chunk_size)
    except _SetupError as problem:
        return problem.code


def _tiled_runner(runner: Runner, options: Any, geometry: dict[str, Any], root: str) -> Runner:
    """A runner of inputs that splits each slide into blocks of tiles (its outcomes are the
    inputs' outcomes, as for chunks of inputs)."""
    from .tiled_run import run_tiled_inputs

    def run(chunks: list[list[Item]], waiting: Callable[[int], None]) -> Any:
        todo = [item for chunk in chunks for item in chunk]
        return run_tiled_inputs(runner, todo, options, geometry, root, waiting, say)

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
    from .infer import check_options, process_chunk
    from .pages import read_locally
    from .tile_blocks import check_tiled

    check = check_tiled if options.tiles else check_options
    if not (args.workers or args.scheduler):
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        checked = _setup(check, options)
        yield (
            (
                lambda chunks, _, function=process_chunk: (
                    read_locally(function, chunk, options, str(out.root)) for chunk in chunks
                )
            ),
            checked,
        )
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


def _locked(
    out: OutputFolder,
    plan: Plan,
    options: Any,
    counts: dict[str, int],
    command: str,
    runner: Runner | None,
    chunk_size: int,
) -> int:
    """Under the folder's lock: mend results.jsonl, compute what is left, report."""
    if runner is not None:
        out.root.mkdir(parents=True, exist_ok=True)
    elif not out.root.is_dir():  # nothing to compute and nothing written before
        say(f"0 done, 0 already done, {counts['failed']} failed; nothing written")
        return EXIT_FAILED if counts["failed"] else EXIT_OK
    lock = FolderLock(out.root, command)
    try:
        lock.acquire()
    except FolderBusyError as busy:
        return error(str(busy))
    stopped = None
    try:
        if lock.previous:
            say(f"took over the lock of a run that ended: {describe_holder(lock.previous)}")
        out.prepare()  # only a dead run's temporaries can be here: we hold the lock
        out.rebuild_results()  # drops duplicates and torn lines an earlier run may have left
        todo, counts["skipped"] = left_to_do(out, plan, options, report=True)
        if todo and runner is not None:
            stopped = _collect(runner, todo, chunk_size, out, counts)
        elif todo:  # changed while this run looked, before it held the folder
            stopped = f"{len(todo)} input(s) changed meanwhile: run the same command again"
    finally:
        total = out.rebuild_results()
        lock.release()
    if stopped:
        say(f"error: {stopped}")
    done = counts["done"] + counts["skipped"]
    say(
        f"{counts['done']} done, {counts['skipped']} already done, {counts['failed']} failed; "
        f"{total} inputs in {out.results}"
        + (f" ({done} of {len(plan.paths) + len(plan.failures)} asked for)" if stopped else "")
    )
    return EXIT_FAILED if counts["failed"] or stopped else EXIT_OK


def _collect(
    runner: Runner, todo: list[Item], chunk_size: int, out: OutputFolder, counts: dict[str, int]
) -> str | None:
    """Stream outcomes into results.jsonl, the progress bar and the counts; returns why the
    run stopped early (no worker left), else None."""
    from tqdm import tqdm

    from .distributed import NoWorkersError
    from .infer import chunked

    finished = 0

    def waiting(workers: int) -> None:
        done, total = counts["skipped"] + finished, counts["skipped"] + len(todo)
        progress.write(
            f"gapcam: {done} of {total} inputs done; waiting for dask workers "
            f"({workers} connected) …",
            file=sys.stderr,
        )

    with tqdm(total=len(todo), unit="input", disable=not sys.stderr.isatty()) as progress:
        try:
            for outcomes in runner(chunked(todo, chunk_size), waiting):
                for outcome in outcomes:
                    counts[outcome["status"]] += 1
                    if outcome["status"] == "done":
                        out.append_result(outcome["record"])
                    elif outcome["status"] == "failed":
                        progress.write(
                            f"gapcam: skipped {outcome['file']}: {outcome['error']}",
                            file=sys.stderr,
                        )
                progress.update(len(outcomes))
                finished += len(outcomes)
        except NoWorkersError as problem:
            return str(problem)
    return None
