"""The output folder of a batch run: its files' names, atomic writes, the run's staging.

Every file is written to a temporary name (``.gapcam-tmp-…``) and renamed into place
(``os.replace``, atomic on POSIX and Windows), so a run killed at any moment leaves only
complete files under their final names. A run's chunks (here or on dask workers) write an
input's outputs into the run's staging folder (``OutputFolder(root, stage)``: the same
relative names under ``.gapcam/stage/<token>/``); the run that holds the folder lands them
(:meth:`~napari_gapcam.cli.store.Store.land`). What is done is the record store's to say
(:mod:`~napari_gapcam.cli.store`); ``results.jsonl`` is its export.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

TEMP_PREFIX = ".gapcam-tmp-"
RESULTS = "results.jsonl"
RECORDS = "records"
FOLDER = ".gapcam"  # the record store and the runs' staging folders (napari_gapcam.cli.store)


def replace(source: Path, final: Path) -> None:
    """``source`` → ``final``, atomically (a folder, as a zarr map, replaces a folder)."""
    final.parent.mkdir(parents=True, exist_ok=True)  # a --recursive run's subfolder
    if source.is_dir() and final.is_dir():  # a directory cannot replace a non-empty one
        old = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-old-{final.name}")
        os.replace(final, old)
        os.replace(source, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, final)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final`` (same suffix) that replaces ``final`` on success."""
    temp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
    final.parent.mkdir(parents=True, exist_ok=True)  # a --recursive run's subfolder
    try:
        yield temp
        replace(temp, final)
    finally:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        elif temp.exists():
            temp.unlink()


def write_text_atomic(final: Path, text: str) -> None:
    with atomic_path(final) as temp:
        temp.write_text(text, encoding="utf-8")


def is_current(record: dict[str, Any] | None, file: str, settings: dict[str, Any]) -> bool:
    """The record is for ``file`` as it is now (:func:`~napari_gapcam.cli.inputs.unchanged`),
    made with ``settings``, and so is its label image (``--labels``), if it had one."""
    from .inputs import unchanged

    return (
        record is not None
        and record.get("file") == file
        and record.get("settings") == settings
        and unchanged(record.get("input"), file)
        and changed_labels(record) is None
    )


def changed_labels(record: dict[str, Any]) -> str | None:
    """The label image a record's objects were scored on, when it changed since (else None)."""
    from .inputs import unchanged

    labels = record.get("labels")
    if not labels:
        return None
    file = labels.get("file", "")
    recorded = {key: value for key, value in labels.items() if key != "file"}
    return None if unchanged(recorded, file) else file


class OutputFolder:
    """Where a run writes: ``<stem>_cam.tif|zarr``, ``<stem>_overlay.png``, results.

    ``stage``: the run's staging folder, where its chunks write (None: straight into place).
    """

    def __init__(self, root: str | os.PathLike, stage: str | os.PathLike | None = None) -> None:
        self.root = Path(root).resolve()
        self.store_folder = self.root / FOLDER
        self.records = self.root / RECORDS  # a tiled slide's saved blocks: <stem>.parts/
        self.results = self.root / RESULTS
        self.stage = None if stage is None else Path(stage)

    @property
    def written(self) -> Path:
        """The folder this run's chunks write into: the staging folder, or the root."""
        return self.root if self.stage is None else self.stage

    def target(self, final: Path) -> Path:
        """Where a chunk writes ``final`` (its staged twin when the run stages)."""
        return final if self.stage is None else self.stage / self.name_of(final)

    def prepare(self) -> None:
        """Delete the temporaries a killed run left at the top of the folder."""
        for leftover in self.root.glob(f"{TEMP_PREFIX}*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    def owns(self, path: Path) -> bool:
        """True for the folder's store, staging, saved blocks and temporaries (its other
        files: the claims of :func:`napari_gapcam.cli.claims.owned`)."""
        if not self.contains(path):
            return False
        path = Path(path)
        return (
            _within(path, self.records)
            or _within(path, self.store_folder)
            or path.name.startswith(TEMP_PREFIX)
        )

    def contains(self, path: str | os.PathLike) -> bool:
        """``path`` (absolute) lies below the folder (a string test: no file system call)."""
        return _within(path, self.root) and os.fspath(path) != os.fspath(self.root)

    def name_of(self, path: Path) -> str:
        """An output's name in the folder: relative, ``/``-separated (``B02/site1_cam.tif``)."""
        return Path(path).relative_to(self.root).as_posix()

    def cam_path(self, stem: str, zarr: bool = False) -> Path:
        return self.root / f"{stem}_cam.{'zarr' if zarr else 'tif'}"

    def overlay_path(self, stem: str) -> Path:
        return self.root / f"{stem}_overlay.png"

    def append_result(self, line: str) -> None:
        """Append a record's line (its JSON) to results.jsonl in one ``write`` (no torn
        lines)."""
        data = (line + "\n").encode("utf-8")
        fd = os.open(self.results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def _within(path: str | os.PathLike, folder: Path) -> bool:
    """``path`` is ``folder`` or lies below it (both absolute, as written)."""
    path, folder_ = os.fspath(path), os.fspath(folder)
    return path == folder_ or path.startswith(folder_.rstrip(os.sep) + os.sep)


def write_tiff(
    final: Path, maps: list[np.ndarray], placement: dict[str, Any] | None = None
) -> None:
    """float32 maps → a TIFF: H×W for one, an N×H×W stack for several; ``placement`` (the
    grid's ``scale``/``translate`` over the image) goes into its description (tifffile's
    JSON metadata)."""
    import tifffile

    data = maps[0] if len(maps) == 1 else np.stack(maps)
    metadata = dict(placement or {})
    if data.ndim == 3 and "shape" in metadata:  # tifffile's own key: the N×h×w stack's shape
        metadata["grid"] = metadata.pop("shape")
    with atomic_path(final) as temp:
        tifffile.imwrite(
            temp,
            data.astype(np.float32, copy=False),
            photometric="minisblack",
            metadata=metadata,
        )


def write_png(final: Path, rgb: np.ndarray) -> None:
    import imageio.v3 as iio

    with atomic_path(final) as temp:
        iio.imwrite(temp, rgb, extension=".png")


class ZarrMaps:
    """An N×H×W float32 zarr written chunk by chunk (``chunk`` pages) into a temporary folder.

    ``add`` buffers pages in order and writes each full chunk once; ``commit`` renames the
    folder into place; ``abort`` deletes it.
    """

    def __init__(
        self,
        final: Path,
        count: int,
        shape: tuple[int, int],
        chunk: int,
        placement: dict[str, Any] | None = None,
    ) -> None:
        import zarr

        self.final, self.chunk = final, chunk
        self.temp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
        self.array = zarr.open(
            str(self.temp), mode="w", shape=(count, *shape), chunks=(chunk, *shape), dtype="f4"
        )
        if placement:
            self.array.attrs.update(placement)
        self.buffer: list[np.ndarray] = []
        self.start = 0

    def add(self, cam: np.ndarray) -> None:
        self.buffer.append(cam)
        if len(self.buffer) == self.chunk or self.start + len(self.buffer) == self.array.shape[0]:
            stop = self.start + len(self.buffer)
            self.array[self.start : stop] = np.stack(self.buffer)
            self.start, self.buffer = stop, []

    def commit(self) -> None:
        with atomic_path(self.final) as temp:
            os.replace(self.temp, temp)

    def abort(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)
