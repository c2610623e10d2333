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

from .claims import blocking, claims_of, planned_outputs
from .folder_lock import FolderBusyError, FolderLock, describe_holder
from .inputs import Item, items, unchanged
from .messages import EXIT_FAILED, EXIT_OK, error, option, say
from .outputs import RESULTS, OutputFolder, changed_labels, is_current
from .preflight import Plan, UsageError, check
from .verify import damage

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
    history = {record["file"]: stem for stem, record in known.items()}
    named = items(plan.paths, history, plan.subfolders)
    settings = options.settings()
    todo, again = [], 0
    for item in named:
        record = known.get(item.stem)
        why = None if record is None else stale(out, record, item, plan.label_table)
        if record is not None and why is None and is_current(record, item.path, settings):
            if not options.overwrite:
                continue
            again += 1  # unchanged: redone because of --overwrite, not "changed"
        elif report and record is not None and record.get("settings") == settings:
            if why is None:
                labels = (
                    changed_labels(record) if unchanged(record.get("input"), item.path) else None
                )
                what = f"its label image {labels}" if labels else item.path
                why = f"{what} changed since its outputs were made"
            say(f"{why}: computing {item.path} again")
        todo.append(item)
    if report and again:
        say(f"--overwrite: computing {again} unchanged input(s) again")
    return todo, len(named) - len(todo)


def stale(out: OutputFolder, record: dict[str, Any], item: Item, table: Any) -> str | None:
    """Why a record of ``item``'s file no longer stands for its outputs: an output changed
    since it was written, or a label image was added or another one matches (``--labels``
    ``table``); else None."""
    if record.get("file") != item.path:
        return None
    damaged = damage(out.root, record)
    if damaged is not None:
        return damaged
    from .labels import labels_moved

    return labels_moved(record, item.path, table)


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
    if out.root.is_dir() and (in_the_way := blocking(claims_of(out), todo, options)):
        return error(in_the_way)  # a file of the user's: before the model loads
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
    if runner is None and not out.root.is_dir():  # nothing to compute, nothing written before
        say(f"0 done, 0 already done, {counts['failed']} failed; nothing written")
        return EXIT_FAILED if counts["failed"] else EXIT_OK
    lock = FolderLock(out.root, command)
    try:
        out.root.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except FolderBusyError as busy:
        return error(str(busy))
    except OSError as problem:  # the disk filled up, or the folder turned read-only, meanwhile
        return error(f"--out {out.root}: cannot create or lock it ({problem})")
    stopped = refused = None
    try:
        if lock.previous:
            say(f"took over the lock of a run that ended: {describe_holder(lock.previous)}")
        todo, counts["skipped"] = left_to_do(out, plan, options, report=True)
        claims = claims_of(out)
        refused = blocking(claims, todo, options)  # put there while this run loaded its model
        if refused is None:
            claims.claim([RESULTS, *(n for item in todo for n in planned_outputs(item, options))])
            out.prepare()  # only a dead run's temporaries can be here: we hold the lock
            # drops duplicates and torn lines an earlier run may have left, and the lines of the
            # inputs to redo (appended as each finishes): never two lines for one input
            out.rebuild_results(leave_out={item.stem for item in todo})
            if todo and runner is not None:
                stopped = _collect(runner, todo, chunk_size, out, counts)
            elif todo:  # changed while this run looked, before it held the folder
                stopped = f"{len(todo)} input(s) changed meanwhile: run the same command again"
    finally:
        total = out.rebuild_results() if refused is None else 0
        lock.release()
    if refused is not None:
        return error(refused)
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
