"""``gapcam predict --tiles``: each input planned, its blocks run (here or on dask workers),
and the input finished as soon as its last block is saved.

The blocks of every input are tasks of one runner (:mod:`napari_gapcam.cli.predict`'s, the same
that runs chunks of inputs), so one slide spreads over every worker. Outcomes are per input,
as for the other inputs: ``done`` (with its record), or ``failed`` (a block failed: the blocks
saved are kept, and the next run computes only the others).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .inputs import Item
from .messages import reason
from .outputs import OutputFolder
from .pages import local_reads
from .tile_blocks import TiledPlan, plan_input, process_blocks
from .tiled_record import finish_tiled


def run_tiled_inputs(
    runner: Callable[..., Iterator[list[dict[str, Any]]]],
    todo: Sequence[Item],
    options: Any,
    geometry: dict[str, Any],
    root: str,
    waiting: Callable[[int], None],
    say: Callable[[str], None],
) -> Iterator[list[dict[str, Any]]]:
    """Yield each input's outcome (a one-item list) as it is done or has failed."""
    out = OutputFolder(root, options.stage)
    names = list(geometry["class_names"])
    threshold = geometry["box_threshold"] if options.threshold is None else options.threshold

    def finish(plan: TiledPlan) -> dict[str, Any]:
        try:
            return finish_tiled(plan, options, out, names, threshold)
        except Exception as error:
            return {"file": plan.item.path, "status": "failed", "error": reason(error)}

    plans: dict[str, TiledPlan] = {}
    outstanding: dict[str, int] = {}
    errors: dict[str, str] = {}
    tasks = []
    for item in todo:
        try:
            with local_reads():  # the contrast and the background read the image here
                plan = plan_input(item, options, geometry, out)
        except Exception as error:
            yield [{"file": item.path, "status": "failed", "error": reason(error)}]
            continue
        total = len(plan.tiling.tiles())
        if plan.skipped:
            say(f"{item.path}: {plan.skipped} of {total} tiles are background: skipped")
        saved = plan.blocks - len(plan.left)
        if saved:
            say(
                f"{item.path}: {saved} of {plan.blocks} blocks of tiles saved by an earlier "
                f"run; computing the other {len(plan.left)}"
            )
        if not plan.left:
            yield [finish(plan)]
            continue
        plans[item.path], outstanding[item.path] = plan, len(plan.left)
        tasks.extend(plan.left)
    if not tasks:
        return
    for outcomes in runner([[task] for task in tasks], waiting, process_blocks):
        for outcome in outcomes:
            path = outcome["file"]
            if outcome["status"] == "failed":
                errors.setdefault(path, outcome["error"])
            outstanding[path] -= 1
            if outstanding[path]:
                continue
            if path in errors:
                left = f"block(s) failed ({errors[path]}); the blocks done are kept"
                yield [{"file": path, "status": "failed", "error": left}]
            else:
                yield [finish(plans[path])]
