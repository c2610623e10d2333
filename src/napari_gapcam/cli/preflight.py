"""What ``gapcam predict`` checks before it loads a model or creates anything.

Every usage error that can be found without the model is found here, at once: inputs that name
nothing (a typo, an empty folder, a broken link, a link loop), ``--weights`` and
``--class-names`` files that are missing or unreadable, duplicate class names, a device string
that names no device, a missing optional package, and zarr inputs whose maps would not fit on
``--out``'s disk. No torch, no napari; nothing is written.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .claims import owned
from .inputs import InputError, is_zarr
from .listing import Listing, survey
from .outputs import OutputFolder
from .pages import open_pages
from .setup_checks import (
    UsageError,
    check_overlap,
    check_scheduler,
    check_weights_files,
    writable_place,
)

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")
BIG_OUTPUT = 10 * 2**30  # maps above 10 GiB get a note with their size


@dataclass
class Plan:
    """The checked command: where to write, what to read, what failed already."""

    out: Path
    inputs: Listing  # the inputs, listed one output folder at a time
    weights: str | None
    class_names: str | None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)
    labels: str | None = None  # --labels, as an absolute path or pattern
    method_options: tuple[tuple[str, Any], ...] = ()  # --max-channels, --precision: given
    label_table: dict[str, Path] | None = None  # its label images by the input stem they are for

    def fail(self, failures: list[tuple[str, str]]) -> None:
        """Inputs that failed a check before the run: reported, never run."""
        self.failures.extend(failures)
        self.inputs.drop(Path(file) for file, _ in failures)


def demo_weights() -> Path:
    """The bundled demo checkpoint (found without torch)."""
    from ..models import DEMO_WEIGHTS

    return DEMO_WEIGHTS


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_output_folder(out: str) -> Path:
    root = writable_place(out, "folder")
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: give a folder (it is created).")
    return root


def weights_argument(weights: str) -> str | None:
    """``--weights``: ``none`` → a random init, ``demo`` → the bundled demo model, a file → its
    absolute path (it must exist), anything else → a torchvision weights name."""
    if weights.lower() == "none":
        return None
    if weights.lower() == "demo":
        return str(demo_weights())
    path = Path(weights).expanduser()
    if path.exists():
        if path.is_dir():
            raise UsageError(f"--weights {weights} is a folder: give the checkpoint file in it.")
        return str(path.resolve())
    if "/" in weights or "\\" in weights or path.suffix.lower() in WEIGHT_SUFFIXES:
        raise UsageError(
            f"--weights {weights}: no such file. Give a checkpoint file, a torchvision weights "
            "name (IMAGENET1K_V1, …; see 'gapcam models'), 'demo' or 'none' (random init)."
        )
    return weights


def read_class_names(argument: str) -> list[str]:
    """``--class-names FILE``: the models' reader (a JSON list or UTF-8 text, one name per line,
    no duplicates); its errors are usage errors that name the option."""
    from ..models.class_names import read_names
    from ..models.errors import WeightsError

    try:
        return read_names(Path(argument).expanduser())
    except WeightsError as problem:
        raise UsageError(f"--class-names {problem}") from None


def _need(module: str, option: str, extra: str, package: str | None = None) -> None:
    if importlib.util.find_spec(module) is None:
        raise UsageError(
            f"{option} needs the {package or module} package: pip install 'napari-gapcam[{extra}]'"
        )


def _zarr_inputs(plan: Plan, max_map_pixels: int) -> int:
    """Open each zarr input's metadata: no pages → a failed input; returns the maps' bytes."""
    from .infer import Options, map_grid

    total = 0
    failures = []
    for path in plan.inputs.zarrs:
        try:
            pages = open_pages(path)
        except InputError as error:
            failures.append((str(path), str(error)))
            continue
        grid = map_grid(pages.shape, Options(max_map_pixels=max_map_pixels))
        size = pages.count * int(np.prod(grid)) * 4
        total += size
        if size > BIG_OUTPUT:
            plan.notes.append(
                f"{path.name} holds {pages.count:,} pages of {pages.shape[0]}×{pages.shape[1]}: "
                f"its maps will take {_size(size)} in --out, and one forward pass per page"
            )
    plan.fail(failures)
    return total


OPTION_ARGUMENTS = {"max_channels": "max_channels", "precision": "map_precision"}  # → args.…


def method_options(args: Any, methods: Sequence[str] = ()) -> tuple[tuple[str, Any], ...]:
    """The methods' options given (``--max-channels N`` → ``(("max_channels", N),)``,
    predict's ``--precision P`` → ``(("precision", P),)``); one
    that neither ``--method`` nor any of ``methods`` (evaluate's ``--methods``) takes is a usage
    error that names the methods taking it (their rows in the methods table)."""
    from ..engine.methods import METHODS, taken_options

    given = {option: getattr(args, dest, None) for option, dest in OPTION_ARGUMENTS.items()}
    options = tuple((option, value) for option, value in given.items() if value is not None)
    asked = list(dict.fromkeys([args.method, *methods]))
    for option, value in options:
        if any(taken_options(name, [(option, value)]) for name in asked):
            continue
        flag = f"--{option.replace('_', '-')}"
        takers = [row for row in METHODS.values() if option in row.options]
        labels, names = " or ".join(r.label for r in takers), " or ".join(r.name for r in takers)
        if methods:
            got = f"neither --method {args.method} nor --methods {','.join(methods)} takes it"
            way = f"add {names} to --methods (or use --method {names})"
        else:
            got, way = f"--method {args.method} does not take it", f"use --method {names}"
        raise UsageError(
            f"{flag} {value} is an option of {labels} ({takers[0].cost}); {got}. "
            f"{way[0].upper()}{way[1:]}, or leave {flag} out."
        )
    return options


def _check_modes(args: Any) -> None:
    """Options that do not go together."""
    tiles = getattr(args, "tiles", False)
    if args.class_ref == "all" and not tiles:
        raise UsageError("--class all writes every class's map with --tiles only: add --tiles.")
    if tiles and getattr(args, "labels", None):
        raise UsageError("--labels works on whole images, not with --tiles (not yet).")
    if tiles and getattr(args, "scale", "each") == "shared":
        raise UsageError(
            "--scale shared compares the pages of a stack; a --tiles map already has one "
            "scale over the whole image: leave --scale out."
        )


def _match_labels(plan: Plan, table: dict[str, Path], argument: str) -> None:
    from .labels import label_for

    plan.labels = os.path.abspath(os.path.expanduser(argument))  # workers see the same
    plan.label_table = table
    missing, first = 0, None
    for path in plan.inputs.paths():
        if label_for(path, table) is None:
            missing, first = missing + 1, first or path
    if missing == len(plan.inputs):
        raise UsageError(
            f"--labels {argument}: no label image matches any input by name (an input "
            "a.png takes a.tif, a_labels.tif, a_masks.png or a_cp_masks.png)."
        )
    if missing:
        plan.notes.append(
            f"{missing} input(s) have no label image in --labels (e.g. {first.name}): "
            "no objects table for them"
        )


def _tiled_inputs(plan: Plan, level: int) -> None:
    """Open each TIFF and zarr input's pyramid (metadata only): a failure, or no ``--level``
    in it, is a failed input (before any model)."""
    from .pyramid import open_levels

    failures = []
    for path in plan.inputs.paths():
        if not (is_zarr(path) or path.suffix.lower() in (".tif", ".tiff")):
            continue
        try:
            count = len(open_levels(path).levels)
        except InputError as error:
            failures.append((str(path), str(error)))
            continue
        if level >= count:
            reason = f"--level {level}: the image has {count} level(s) (0 to {count - 1})"
            failures.append((str(path), reason))
    plan.fail(failures)


def _free_bytes(folder: Path) -> int:
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    return shutil.disk_usage(existing).free


def check(args: Any) -> Plan:
    """Every check that needs no model; raises :class:`UsageError`."""
    out = check_output_folder(args.out)
    options = method_options(args)
    if not DEVICE.match(args.device):
        raise UsageError(
            f"--device {args.device}: use auto (cuda, then mps, then cpu), cpu, cuda, cuda:N "
            "or mps."
        )
    if args.workers or args.scheduler:
        _need("distributed", "--workers" if args.workers else "--scheduler", "cluster")
    if args.scheduler:
        check_scheduler(args.scheduler)
    if args.model and args.model.startswith("timm:"):
        _need("timm", f"--model {args.model}", "timm")
    weights = weights_argument(args.weights)
    check_weights_files(weights)
    class_names = None
    if args.class_names:
        read_class_names(args.class_names)
        class_names = str(Path(args.class_names).expanduser().resolve())
    _check_modes(args)
    if getattr(args, "tiles", False):
        check_overlap(args.overlap, args.tile_size or args.input_size)
    table = None
    if getattr(args, "labels", None):
        from .labels import find_labels

        try:
            table = find_labels(args.labels)
        except InputError as problem:
            raise UsageError(
                f"{problem}; give the folder or a quoted glob of label images."
            ) from None
    owns = owned(OutputFolder(out))
    label_paths = {p.resolve() for p in table.values()} if table else set()
    recursive = getattr(args, "recursive", False)
    found = survey(args.inputs, owns, recursive, skip=[out], hidden=label_paths)
    if found.problems:
        listed = "\n".join(f"  {argument}: {reason}" for argument, reason in found.problems)
        raise UsageError(
            f"{len(found.problems)} input argument(s) name nothing to read:\n{listed}\n"
            "Check the paths (quote globs: 'data/*.png'); nothing was run."
        )
    inputs = found.listing
    if not inputs.count and found.unreadable:
        listed = "\n".join(f"  {file}: {reason}" for file, reason in found.unreadable)
        raise UsageError(f"no input can be read:\n{listed}")
    if not inputs.count:
        raise UsageError(
            f"every input is an output of the folder {out} (its own outputs are never "
            "inputs): give the images' folder, or another --out."
        )
    if inputs.zarrs:
        _need("zarr", "a zarr input", "zarr")
    plan = Plan(out, inputs, weights, class_names, method_options=options)
    plan.failures.extend(found.unreadable)
    if table is not None:
        _match_labels(plan, table, args.labels)
    if getattr(args, "tiles", False):
        # the map is an OME-Zarr; TIFF and zarr inputs are read through zarr and ome-zarr
        _need("zarr", "--tiles", "zarr")
        _need("ome_zarr", "--tiles (its OME-Zarr map)", "zarr", "ome-zarr")
        _tiled_inputs(plan, args.level)
        return plan
    needed = _zarr_inputs(plan, args.max_map_pixels)
    free = _free_bytes(out)
    if needed > free:
        raise UsageError(
            f"the maps of the zarr inputs need {_size(needed)}, but {out}'s disk has "
            f"{_size(free)} free: choose another --out, or lower --max-map-pixels."
        )
    return plan
