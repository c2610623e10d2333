"""A run's steps under the folder's lock and the store's lease: land, export, report.

Under the lock the run reads what is left again, claims the files it will write, takes the
store's lease (:meth:`~napari_gapcam.cli.store.Store.begin_run`), and lands each input as its
outcome comes back: its staged files in place and its record written in one transaction
(:meth:`~napari_gapcam.cli.store.Store.land`), then its line appended to ``results.jsonl``. A
run that lost the lease stops. ``results.jsonl`` is exported at the start (without the inputs
to redo) and at the end, after SIGINT and SIGTERM too.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Callable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from .claims import blocking, planned_outputs
from .folder_lock import FolderBusyError, FolderLock, describe_holder
from .left import Tally, left_to_do
from .messages import EXIT_FAILED, EXIT_OK, error, say
from .outputs import RESULTS, OutputFolder
from .preflight import Plan
from .store import FencedError, Store
from .todo import TodoList

TODO = "todo.sqlite"  # in the store's folder: the inputs this run computes

# chunks, what to call while waiting for workers, and the function that runs a chunk
# (process_chunk by default) → each chunk's outcomes as it finishes
Runner = Callable[..., Iterator[list[dict[str, Any]]]]


@dataclasses.dataclass
class Run:
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
        asked = len(self.plan.inputs) + len(self.plan.failures)
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
        with TodoList(out.store_folder / TODO) as todo:
            tally = Tally()
            todo.extend(left_to_do(store, self.plan, options, report=True, tally=tally))
            self.counts["skipped"] = tally.done
            refused = blocking(store, todo, options)  # put there while this run loaded its model
            if refused is not None:
                return None, refused, 0
            store.begin_run(self.token, self.command)
            store.claim(chain([RESULTS], (n for i in todo for n in planned_outputs(i, options))))
            return self._land_all(store, runner, todo)

    def _land_all(
        self, store: Store, runner: Runner | None, todo: TodoList
    ) -> tuple[str | None, None, int]:
        """Compute and land ``todo`` (this run holds the lease); export results.jsonl."""
        out = self.out
        out.prepare()  # only a dead run's temporaries can be here: we hold the lock
        stopped = None
        try:
            if todo:
                # drops the lines of the inputs to redo (appended as each lands) and any line
                # an earlier run left: never two lines for one input, even after a SIGKILL
                store.export(out.results, leave_out=todo)
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
    todo: TodoList,
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

    finished, total = 0, len(todo)

    def waiting(workers: int) -> None:
        done = counts["skipped"] + finished
        progress.write(
            f"gapcam: {done} of {counts['skipped'] + total} inputs done; waiting for dask workers "
            f"({workers} connected) …",
            file=sys.stderr,
        )

    with tqdm(total=total, unit="input", disable=not sys.stderr.isatty()) as progress:
        try:
            for outcomes in runner(chunked(todo, chunk_size), waiting):
                for outcome in outcomes:
                    if outcome["status"] == "done":
                        try:
                            line = _land(store, token, outcome)
                        except FencedError as problem:
                            return str(problem)
                        except OSError as problem:
                            outcome = {**outcome, "status": "failed", "error": str(problem)}
                        else:
                            out.append_result(line)
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


def _land(store: Store, token: str, outcome: dict[str, Any]) -> str:
    """An input's staged files in place and its record written (a tiled slide's saved blocks
    then deleted); its line of results.jsonl."""
    line = store.land(token, outcome["record"], Path(outcome["stage"]), outcome.get("input_key"))
    if outcome.get("parts"):
        shutil.rmtree(outcome["parts"], ignore_errors=True)
    return line
