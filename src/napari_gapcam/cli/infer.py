"""Chunks of inputs for the command line: an input's pages → its maps, overlay and record.

:func:`~napari_gapcam.cli.stream.process_chunk` runs in the ``gapcam`` process or on a dask
worker; each process loads a model once (:func:`get_model`; a random init is seeded, so every
process makes the same model). Pages go through ``model.run_each`` in groups of
``batch_size``, and each input is written as soon as its last page is done. A map is written at
the image's size, or at a grid of at most ``max_map_pixels`` cells over a bigger image (its
placement is recorded). An input's files go into its run's staging folder (``Options.stage``)
and its record into its outcome; the run lands them
(:meth:`~napari_gapcam.cli.store.Store.land`), so running a chunk twice (a retry after a worker
died) gives the same files, never a duplicate, and a chunk of a run that ended lands nothing."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from ..engine.grid import bounded_grid, grid_placement
from ..models.spec import ModelSpec
from .inputs import Item
from .messages import reason
from .outputs import OutputFolder, ZarrMaps, write_png, write_tiff
from .page_objects import PageObjects
from .pages import Pages
from .verify import complete, output_files

_MODELS: dict[ModelSpec, Any] = {}
MAX_MAP_PIXELS = 2**22  # a map is written at most at 2048² cells (~4 M) over a bigger image


@dataclass(frozen=True)
class Options:
    """A batch run's settings (all but ``batch_size`` and ``overwrite`` shape the outputs)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    class_ref: str | None = None  # a class name or index; None: each page's top-1
    topk: int = 5
    threshold: float | None = None  # None: the checkpoint's box_threshold, else 0.2
    input_size: int | None = None
    square: bool | None = None  # True: squash to a square; None: the model's own config
    max_map_pixels: int = MAX_MAP_PIXELS
    batch_size: int = 8  # pages per call of model.run_each
    overwrite: bool = False
    # whole slides (--tiles): native pixels, in blocks of tiles (napari_gapcam.cli.tile_blocks)
    tiles: bool = False
    level: int = 0
    tile_size: int | None = None  # None: --input-size, else the model's
    overlap: int | None = None  # pixels; None: two feature cells
    background: str | None = None  # "auto": skip tiles without foreground
    all_probabilities: bool = False  # the tile CSV: every class instead of the top-k
    block_tiles: int = 8  # a block (task, unit of resuming) is N×N tiles
    labels: str | None = None  # --labels: label images matched to inputs by stem
    scale: str = "each"  # "shared": one range per class over a multi-page input's pages
    min_area: int = 64  # pixels: the smallest region listed in a page's "regions"
    stage: str | None = None  # the run's staging folder (not a setting: where, not what)

    def settings(self) -> dict[str, Any]:
        """What a record must match to count as done (the device is left out). No torch.

        Options added after the first release appear only when not at their default, so the
        records of earlier runs still match."""
        settings = asdict(self)
        model = settings.pop("model")
        del settings["batch_size"], settings["overwrite"], settings["stage"], model["device"]
        if model["method"] == "auto":  # as before --method existed: earlier records match
            del model["method"]
        if model["layer"] is None:  # as before --layer existed
            del model["layer"]
        if model["layers"]:  # as JSON reads it back
            model["layers"] = list(model["layers"])
        else:  # as before --layers existed
            del model["layers"]
        options = {name: value for name, value in model["options"] if (name, value) != FP32}
        if options:  # --max-channels N: {"max_channels": N}, as JSON reads it back
            model["options"] = options
        else:  # as before the methods' options existed (and Score-CAM ran in float32)
            del model["options"]
        del settings["block_tiles"]  # blocks change how a slide is split, not its outputs
        for name in NEWER_OPTIONS:
            if settings[name] == _DEFAULTS[name]:
                del settings[name]
        for key, path in (("weights", self.model.weights), ("class_names", self.model.class_names)):
            if path is not None and os.path.isfile(path):
                model[f"{key}_modified"] = os.stat(path).st_mtime_ns
        return {**model, **settings}


FP32 = ("precision", "fp32")  # Score-CAM's precision before it had one: not in its records
NEWER_OPTIONS = ("tiles", "level", "tile_size", "overlap", "background", "all_probabilities",
                 "labels", "scale", "min_area")  # fmt: skip
_DEFAULTS = {name: Options.__dataclass_fields__[name].default for name in NEWER_OPTIONS}


def get_model(spec: ModelSpec) -> Any:
    """The model for ``spec``, loaded once per process (a dask worker keeps it between tasks)."""
    if spec not in _MODELS:
        _MODELS[spec] = spec.load()
    return _MODELS[spec]


def class_ref(reference: str | None, class_names: Sequence[str]) -> str | int | None:
    """``--class``: a name as given, else an index when it is a number."""
    if reference is None or reference in class_names:
        return reference
    return int(reference) if reference.lstrip("-").isdigit() else reference


def check_options(options: Options) -> list[str]:
    """Load the model, check ``--class`` and that a forward pass at ``--input-size`` fits in
    memory; returns the class names (errors say what is wrong)."""
    model = get_model(options.model)
    size = options.input_size or model.input_size
    model.check_memory((size, size))  # InputTooLargeError: a usage error, before any input
    reference = class_ref(options.class_ref, model.class_names)
    if reference is not None:  # the engine's own lookup and messages (no forward pass)
        from ..engine.maps import class_index

        class_index(model.class_names, reference)
    return list(model.class_names)


def map_grid(image_shape: tuple[int, int], options: Options) -> tuple[int, int]:
    """The grid a map is written at: the image's size, or at most ``max_map_pixels`` cells."""
    return bounded_grid(image_shape, options.max_map_pixels)


def chosen_class(result: Any, options: Options) -> int:
    """The page's class whose map is written: ``--class``, else its top-1."""
    reference = class_ref(options.class_ref, result.class_names)
    return result.topk(1)[0][0] if reference is None else result.class_index(reference)


def summarise(
    result: Any, options: Options, threshold: float, scale: str = "each"
) -> tuple[np.ndarray, dict[str, Any]]:
    """A page's map of the chosen class (float32, at :func:`map_grid`) and its JSON: top-k and
    class, from the result protocol; its box and regions are :func:`localize`'s to fill in.
    ``scale``: ``"shared"`` for the pages of a ``--scale shared`` input (one batch: their
    range)."""
    top = result.topk(options.topk)
    index = chosen_class(result, options)
    cam = result.heat(index, map_grid(result.image_shape, options), scale)  # kept by the result
    return cam, {
        "topk": [{"index": i, "name": n, "probability": p} for i, n, p in top],
        "class": {
            "index": index,
            "name": result.class_names[index],
            "probability": float(result.probabilities[index]),
        },
        "box": None,
        "regions": [],
    }


def localize(
    page: dict[str, Any], result: Any, options: Options, threshold: float, scale: str = "each"
) -> None:
    """Fill in ``page``'s box and regions (image pixels) from the map :func:`summarise` made
    (the result keeps it: it is not made again). On the writer thread, off the network's."""
    index, grid = page["class"]["index"], map_grid(result.image_shape, options)
    box = result.box(index, threshold, grid, scale)
    page["box"] = None if box is None else [int(v) for v in box]
    page["regions"] = [  # every region of at least --min-area px, largest first
        {"box": [int(v) for v in b], "share": share}
        for b, share in result.regions(index, threshold, options.min_area, grid, scale)
    ]


class _Job:
    """One input on its way through: pages in, files out."""

    def __init__(
        self,
        item: Item,
        pages: Pages,
        out: OutputFolder,
        options: Options,
        threshold: float,
        source: dict[str, Any],
        key: list[int] | None = None,
    ) -> None:
        self.item, self.pages, self.out, self.options = item, pages, out, options
        self.threshold, self.source = threshold, source  # source: the input's fingerprint
        self.key = key  # the input's stat key before it was read (quick.py)
        self.zarr = pages.kind == "zarr"
        self.cam_path = out.cam_path(item.stem, self.zarr)
        self.grid = map_grid(pages.shape, options)
        scale, translate = grid_placement(pages.shape, self.grid)
        self.placement = {"shape": list(self.grid), "scale": scale, "translate": translate}
        self.shared = options.scale == "shared" and pages.count > 1
        if self.shared:  # the map's metadata says so (each page's own range otherwise)
            self.placement["cam_scale"] = "shared"
        self.ranges: dict[str, list[float]] = {}
        self.maps: list[np.ndarray] | ZarrMaps = (
            ZarrMaps(out.target(self.cam_path), pages.count, self.grid, pages.chunk, self.placement)
            if self.zarr
            else []
        )
        self.results: list[dict[str, Any]] = []
        self.error: str | None = None
        self.objects = PageObjects(item, pages, out, options) if options.labels else None
        self.held: list[tuple[np.ndarray | None, Any]] = []  # --scale shared: pages until the last
        self.writes: list[Future] = []  # this input's writes so far (the writer thread's)
        self.writer: Executor = _Inline()  # process_stream gives its writer thread

    def add(self, index: int, image: np.ndarray, result: Any) -> Future | None:
        """Take page ``index``'s result; once the last page is in, the outcome's future (its
        files are written on the writer thread)."""
        if self.shared:  # every page's map waits for the range over all pages
            self.held.append((image if index == 0 else None, result))
            if len(self.held) < self.pages.count:
                return None
            from ..engine.result import Result

            held, self.held = self.held, []
            pages = Result.join([r for _, r in held])  # one batch: one range per class
            classes = {chosen_class(page, self.options) for page in pages}
            self.ranges = {pages.class_names[c]: list(pages.raw_range(c)) for c in sorted(classes)}
            outcome = None
            for n, (first, _) in enumerate(held):
                outcome = self._page(n, first, pages[n], "shared")
            return outcome
        return self._page(index, image, result)

    def _page(self, index: int, image: Any, result: Any, scale: str = "each") -> Future | None:
        cam, page = summarise(result, self.options, self.threshold, scale)
        self.writes.append(
            self.writer.submit(localize, page, result, self.options, self.threshold, scale)
        )
        if self.objects is not None:
            self.objects.add(index, result, chosen_class(result, self.options))
        self.results.append(page)
        if isinstance(self.maps, ZarrMaps):
            self.writes.append(self.writer.submit(self.maps.add, cam))
        else:
            self.maps.append(cam)
        if index == 0:
            self.writes.append(self.writer.submit(self._overlay, image, cam))
        if len(self.results) < self.pages.count:
            return None
        return self.writer.submit(self.finish)

    def _overlay(self, image: np.ndarray, cam: np.ndarray) -> None:
        from ..engine.overlay import overlay

        write_png(self.out.target(self.out.overlay_path(self.item.stem)), overlay(image, cam))

    def finish(self) -> dict[str, Any]:
        """Write the map and the objects table, check the files; the input's outcome (on the
        writer thread, after this input's other writes)."""
        try:
            for write in self.writes:
                write.result()  # an earlier write's error is this input's
            return self._finish()
        except Exception as error:
            return self.fail(reason(error))

    def _finish(self) -> dict[str, Any]:
        if isinstance(self.maps, ZarrMaps):
            self.maps.commit()
        else:
            write_tiff(self.out.target(self.cam_path), self.maps, self.placement)
        outputs = {"cam": self.cam_path, "overlay": self.out.overlay_path(self.item.stem)}
        if self.objects is not None and self.objects.write() is not None:
            outputs["objects"] = self.objects.path
        missing = [p.name for p in outputs.values() if not complete(self.out.target(p))]
        if missing:  # never a record for outputs that are not all there
            raise OSError(f"{', '.join(missing)} vanished after being written")
        record = {
            "file": self.item.path,
            "stem": self.item.stem,
            "input": self.source,
            "outputs": (names := {k: self.out.name_of(path) for k, path in outputs.items()}),
            "output_files": output_files(self.out.written, names.values()),
            "shape": list(self.pages.shape),
            "map": self.placement,  # the map's grid and where its cells sit in image pixels
            "pages": self.pages.count,
            "threshold": self.threshold,
            "scale": self.options.scale,
            **({"ranges": self.ranges} if self.shared else {}),
            **({"labels": self.objects.source} if self.objects and self.objects.source else {}),
            "results": self.results,
            "settings": self.options.settings(),
        }
        return {
            "file": self.item.path,
            "status": "done",
            "record": record,
            "stage": str(self.out.written),  # where the run finds the files to land
            "input_key": self.key,
        }

    def fail(self, reason: str) -> dict[str, Any]:
        self.error = reason
        if isinstance(self.maps, ZarrMaps):
            self.maps.abort()
        return {"file": self.item.path, "status": "failed", "error": reason}


class _Inline:
    """An executor that runs each call at once (a job made outside
    :func:`~napari_gapcam.cli.stream.process_stream`)."""

    def submit(self, function: Any, *arguments: Any) -> Future:
        done: Future = Future()
        try:
            done.set_result(function(*arguments))
        except Exception as error:
            done.set_exception(error)
        return done


def chunked(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """``items`` in lists of ``size``, made as they are taken."""
    each = iter(items)
    while chunk := list(islice(each, max(1, size))):
        yield chunk
