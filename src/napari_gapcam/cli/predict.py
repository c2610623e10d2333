"""``gapcam predict``, step by step: check, find what is left, load, lock, compute, report.

1. :func:`~napari_gapcam.cli.preflight.check` finds every usage error (nothing created).
2. The record store (:mod:`~napari_gapcam.cli.store`) says which inputs are done (same file,
   unchanged, same settings); when none is left the run ends here, without importing torch.
3. The model is loaded and checked (a set-up error still creates nothing).
4. The output folder is created and locked for this run (:mod:`~napari_gapcam.cli.folder_lock`)
   and the run takes the store's lease; under the lock the records are read again and the
   inputs left are computed, in chunks, in this process or on dask workers, which write into
   the run's staging folder; each input lands (its files in place, its record written) as its
   outcome comes back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from .claims import blocking, planned_outputs
from .folder_lock import FolderBusyError, FolderLock, describe_holder
from .inputs import Item, items, unchanged
from .messages import EXIT_FAILED, EXIT_OK, error, option, say
from .outputs import RESULTS, OutputFolder, changed_labels, is_current
from .preflight import Plan, UsageError, check
from .quick import stat_keys, still
from .store import FencedError, Store, settings_key, stage_folder
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


class Left(NamedTuple):
    todo: list[Item]  # the inputs to compute
    done: int  # how many are done
    checked: int  # how many were found done by the full check (their stat keys are old)


def left_to_do(store: Store, plan: Plan, options: Any, report: bool = False) -> Left:
    """The inputs to compute (named from the folder's history) and how many are done.

    An input is done when its record is for this file, made with these settings, and its files
    are as they were: one ``stat`` each when their stat keys are as kept
    (:mod:`~napari_gapcam.cli.quick`), else the full check (hashes), after which ``report``
    (under the lock) keeps their new keys."""
    named = items(plan.paths, store.files(), plan.subfolders)  # a stem stays its file's
    settings = options.settings()
    wanted = settings_key(settings)
    todo, again, fresh = [], 0, []
    table = plan.label_table
    for item in named:
        found = store.row(item.stem)
        if found is None:
            todo.append(item)
            continue
        file, kept, quick, body = found
        current = (
            file == item.path
            and kept == wanted
            and still(store.root, json.loads(quick) if quick else None)
            and (table is None or stale_labels(body, item, table) is None)
        )
        why = None
        if not current:
            record = json.loads(body)
            why = None if file != item.path else stale(store.root, record, item, table)
            current = why is None and is_current(record, item.path, settings)
            if current:
                fresh.append((item.stem, stat_keys(store.root, record)))
        if current:
            if not options.overwrite:
                continue
            again += 1  # unchanged: redone because of --overwrite, not "changed"
        elif report and file == item.path and kept == wanted:
            record = json.loads(body)
            if why is None:
                labels = (
                    changed_labels(record) if unchanged(record.get("input"), item.path) else None
                )
                what = f"its label image {labels}" if labels else item.path
                why = f"{what} changed since its outputs were made"
            say(f"{why}: computing {item.path} again")
        todo.append(item)
    if fresh and report:
        store.refresh((stem, keys) for stem, keys in fresh if keys is not None)
    if report and again:
        say(f"--overwrite: computing {again} unchanged input(s) again")
    return Left(todo, len(named) - len(todo), len(fresh))


def stale_labels(body: str, item: Item, table: Any) -> str | None:
    """How an input's label image moved since its record (``--labels``), else None."""
    from .labels import labels_moved

    return labels_moved(json.loads(body), item.path, table)


def stale(root: Any, record: dict[str, Any], item: Item, table: Any) -> str | None:
    """Why a record of ``item``'s file no longer stands for its outputs: an output changed
    since it was written, or a label image was added or another one matches (``--labels``
    ``table``); else None."""
    if record.get("file") != item.path:
        return None
    damaged = damage(root, record)
    if damaged is not None:
        return damaged
    from .labels import labels_moved

    return labels_moved(record, item.path, table)


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
    if plan.excluded:
        say(
            f"left out {len(plan.excluded)} file(s) written by gapcam in the output folder "
            f"{out.root} (its outputs are never inputs)"
        )
    for file, reason in plan.failures:
        say(f"skipped {file}: {reason}")
    counts = {"done": 0, "skipped": 0, "failed": len(plan.failures)}
    with Store(out.root) as store:
        todo, done, checked = left_to_do(store, plan, options)
        in_the_way = blocking(store, todo, options) if out.root.is_dir() else None
        settled = not todo and not checked and store.exported(out.results)
        total = store.count()
    if in_the_way:
        return error(in_the_way)  # a file of the user's: before the model loads
    command = shlex.join(["gapcam", *getattr(args, "argv", ["predict"])])[:500]
    run = _Run(out, plan, options, counts, command, token, args.chunk_size)
    if settled:  # all done, known by their stat keys, results.jsonl as exported: no lock
        counts["skipped"] = done
        return run.report(None, total)
    if not todo:  # nothing to compute: no torch, no model
        return run.locked(None)
    if plan.weights is None:
        say(
            f"note: --weights none: a random model (seed {args.seed}); its classes and maps "
            "carry no meaning"
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
    overlap across them, :func:`~napari_gapcam.cli.infer.process_stream`); tiled blocks one
    chunk at a time."""
    from .infer import process_chunk, process_stream
    from .pages import local_reads, read_locally

    def run(chunks: list[list[Item]], _: Any, function: Any = process_chunk) -> Any:
        if function is not process_chunk:
            for chunk in chunks:
                yield read_locally(function, chunk, options, root)
            return
        with local_reads():
            for outcome in process_stream([i for c in chunks for i in c], options, root):
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
    from .infer import check_options, process_chunk
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


@dataclasses.dataclass
class _Run:
    """A run's last steps, under the folder's lock and the store's lease."""

    out: OutputFolder
    plan: Plan
    options: Any
    counts: dict[str, int]
    command: str
    token: str
    chunk_size: int

    def locked(self, runner: Runner | None) -> int:
        """Under the folder's lock: mend results.jsonl, compute what is left, report."""
        out, counts = self.out, self.counts
        if runner is None and not out.root.is_dir():  # nothing to compute, nothing written
            say(f"0 done, 0 already done, {counts['failed']} failed; nothing written")
            return EXIT_FAILED if counts["failed"] else EXIT_OK
        lock = FolderLock(out.root, self.command)
        try:
            out.root.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except FolderBusyError as busy:
            return error(str(busy))
        except OSError as problem:  # the disk filled up, or the folder turned read-only
            return error(f"--out {out.root}: cannot create or lock it ({problem})")
        stopped = refused = None
        total = 0
        try:
            if lock.previous:
                say(f"took over the lock of a run that ended: {describe_holder(lock.previous)}")
            with Store(out.root, write=True) as store:
                try:
                    stopped, refused, total = self._under_lease(store, runner)
                finally:
                    store.end_run(self.token)
        finally:
            lock.release()
        if refused is not None:
            return error(refused)
        return self.report(stopped, total)

    def report(self, stopped: str | None, total: int) -> int:
        """The run's last line (and why it stopped early); its exit code."""
        counts, out = self.counts, self.out
        if stopped:
            say(f"error: {stopped}")
        done = counts["done"] + counts["skipped"]
        asked = len(self.plan.paths) + len(self.plan.failures)
        say(
            f"{counts['done']} done, {counts['skipped']} already done, {counts['failed']} "
            f"failed; {total} inputs in {out.results}"
            + (f" ({done} of {asked} asked for)" if stopped else "")
        )
        return EXIT_FAILED if counts["failed"] or stopped else EXIT_OK

    def _under_lease(
        self, store: Store, runner: Runner | None
    ) -> tuple[str | None, str | None, int]:
        """(why the run stopped early, the usage error that refused it, records exported)."""
        out, options = self.out, self.options
        todo, self.counts["skipped"], _ = left_to_do(store, self.plan, options, report=True)
        refused = blocking(store, todo, options)  # put there while this run loaded its model
        if refused is not None:
            return None, refused, 0
        store.begin_run(self.token, self.command)
        store.claim([RESULTS, *(n for item in todo for n in planned_outputs(item, options))])
        out.prepare()  # only a dead run's temporaries can be here: we hold the lock
        stopped = None
        try:
            if todo:
                # drops the lines of the inputs to redo (appended as each lands) and any line
                # an earlier run left: never two lines for one input, even after a SIGKILL
                store.export(out.results, leave_out={item.stem for item in todo})
                if runner is not None:
                    stopped = _collect(runner, todo, self.chunk_size, out, self.counts, store,
                                       self.token)  # fmt: skip
                else:  # changed while this run looked, before it held the folder
                    stopped = f"{len(todo)} input(s) changed meanwhile: run the same command again"
        finally:
            total = store.export(out.results)  # skipped when nothing changed since the last
        return stopped, None, total


def _collect(
    runner: Runner,
    todo: list[Item],
    chunk_size: int,
    out: OutputFolder,
    counts: dict[str, int],
    store: Store,
    token: str,
) -> str | None:
    """Land each input as its outcome comes back, then its line in results.jsonl, the
    progress bar and the counts; returns why the run stopped early (no worker left, or the
    lease lost), else None."""
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
                    if outcome["status"] == "done":
                        try:
                            _land(store, token, outcome)
                        except FencedError as problem:
                            return str(problem)
                        except OSError as problem:
                            outcome = {**outcome, "status": "failed", "error": str(problem)}
                        else:
                            out.append_result(outcome["record"])
                    counts[outcome["status"]] += 1
                    if outcome["status"] == "failed":
                        progress.write(
                            f"gapcam: skipped {outcome['file']}: {outcome['error']}",
                            file=sys.stderr,
                        )
                progress.update(len(outcomes))
                finished += len(outcomes)
        except NoWorkersError as problem:
            return str(problem)
    return None


def _land(store: Store, token: str, outcome: dict[str, Any]) -> None:
    """An input's staged files in place and its record written (a tiled slide's saved blocks
    then deleted)."""
    from pathlib import Path

    store.land(token, outcome["record"], Path(outcome["stage"]), outcome.get("input_key"))
    if outcome.get("parts"):
        import shutil

        shutil.rmtree(outcome["parts"], ignore_errors=True)
