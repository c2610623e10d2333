"""The output folder of a batch run: atomic files, per-input records, ``results.jsonl``.

Every file is written to a temporary name in the same folder (``.gapcam-tmp-…``) and renamed
into place (``os.replace``, atomic on POSIX and Windows), so a run killed at any moment leaves
only complete files under their final names. Only a run holding the folder's lock
(:mod:`napari_gapcam.cli.folder_lock`) writes, and it deletes the temporaries at its start: they
can only be a dead run's.

An input is done when its record ``records/<stem>.json`` exists and the outputs it names are
as written (:mod:`~napari_gapcam.cli.verify`): it is written last, after the map and the
overlay, and holds the input's JSON line
(its file, that file's fingerprint and the settings). ``results.jsonl`` gets each line as its
input finishes and is rebuilt from the records (atomically, one line per record) at the start
and the end of every run, so it never keeps a duplicate or a torn line.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .verify import damage

TEMP_PREFIX = ".gapcam-tmp-"
RESULTS = "results.jsonl"
RECORDS = "records"


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final`` (same suffix) that replaces ``final`` on success."""
    temp = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
    final.parent.mkdir(parents=True, exist_ok=True)  # a --recursive run's subfolder
    try:
        yield temp
        if temp.is_dir() and final.is_dir():  # a directory (zarr) cannot replace a non-empty one
            old = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-old-{final.name}")
            os.replace(final, old)
            os.replace(temp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, final)
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
    """Where a run writes: ``<stem>_cam.tif|zarr``, ``<stem>_overlay.png``, records, results."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.records = self.root / RECORDS
        self.results = self.root / RESULTS

    def prepare(self) -> None:
        """Create the folders and delete temporaries left by a killed run."""
        self.records.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.rglob(f"{TEMP_PREFIX}*"):  # a --recursive run's subfolders too
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    def owns(self, path: Path) -> bool:
        """True for the folder's records and temporaries (its other files: the claims of
        :func:`napari_gapcam.cli.claims.owned`)."""
        path = Path(path)
        if self.root not in path.parents:
            return False
        return self.records in (path, *path.parents) or path.name.startswith(TEMP_PREFIX)

    def name_of(self, path: Path) -> str:
        """An output's name in the folder: relative, ``/``-separated (``B02/site1_cam.tif``)."""
        return Path(path).relative_to(self.root).as_posix()

    def cam_path(self, stem: str, zarr: bool = False) -> Path:
        return self.root / f"{stem}_cam.{'zarr' if zarr else 'tif'}"

    def overlay_path(self, stem: str) -> Path:
        return self.root / f"{stem}_overlay.png"

    def record_path(self, stem: str) -> Path:
        return self.records / f"{stem}.json"

    def record(self, stem: str, complete_only: bool = True) -> dict[str, Any] | None:
        """The input's record when it and the files it names are complete, else ``None``
        (``complete_only=False``: the record even when its outputs are not all there)."""
        try:
            record = json.loads(self.record_path(stem).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or "file" not in record:
            return None
        return record if not complete_only or self.has_outputs(record) else None

    def has_outputs(self, record: dict[str, Any]) -> bool:
        """Every output the record names is there as it was written
        (:func:`~napari_gapcam.cli.verify.damage`)."""
        return damage(self.root, record) is None

    def all_records(self, complete_only: bool = True) -> dict[str, dict[str, Any]]:
        """Every (complete) record, by stem (none when the folder does not exist)."""
        if not self.records.is_dir():
            return {}
        stems = []
        for folder, subfolders, files in os.walk(self.records):
            subfolders[:] = [name for name in subfolders if not name.endswith(".parts")]
            relative = Path(folder).relative_to(self.records).as_posix()
            prefix = "" if relative == "." else f"{relative}/"  # --recursive: B02/site1
            stems.extend(prefix + name[: -len(".json")] for name in files if name.endswith(".json"))
        return {s: r for s in sorted(stems) if (r := self.record(s, complete_only))}

    def is_done(self, stem: str, file: str, settings: dict[str, Any]) -> bool:
        """Done: a record for this very file, unchanged since, made with these settings."""
        return is_current(self.record(stem), file, settings)

    def commit(self, record: dict[str, Any]) -> None:
        """Write the record (the input is done from now on)."""
        write_text_atomic(self.record_path(record["stem"]), json.dumps(record) + "\n")

    def append_result(self, record: dict[str, Any]) -> None:
        """Append the record's line to results.jsonl in one ``write`` (no torn lines)."""
        line = (json.dumps(record) + "\n").encode("utf-8")
        fd = os.open(self.results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def rebuild_results(self, leave_out: Collection[str] = ()) -> int:
        """results.jsonl ← one line per complete record, sorted by file; returns the count.
        The records of the stems in ``leave_out`` (inputs about to be redone, whose new lines
        are appended as they finish) are left out: a run killed even by SIGKILL leaves at most
        one line per input."""
        records = sorted(
            (r for stem, r in self.all_records().items() if stem not in leave_out),
            key=lambda r: r["file"],
        )
        write_text_atomic(self.results, "".join(json.dumps(r) + "\n" for r in records))
        return len(records)


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
