"""Helpers of the ``gapcam`` tests (test_cli*.py): images to run on, runs, results, processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from napari_gapcam.cli import main


def image(seed: int, shape: tuple[int, ...] = (40, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, np.uint8)


def read(path: Path) -> np.ndarray:
    return tifffile.imread(path) if path.suffix in (".tif", ".tiff") else iio.imread(path)


def make_images(folder: Path, count: int = 0) -> dict[str, np.ndarray]:
    """PNG (RGB, grey), JPEG, 16-bit grey TIFF, RGB TIFF, 3-page TIFF; or ``count`` PNGs."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    if count:
        for i in range(count):
            iio.imwrite(folder / f"img{i:03d}.png", rng.integers(0, 256, (64, 72, 3), np.uint8))
    else:
        iio.imwrite(folder / "rgb.png", rng.integers(0, 256, (64, 80, 3), np.uint8))
        iio.imwrite(folder / "grey.png", rng.integers(0, 256, (70, 64), np.uint8))
        iio.imwrite(folder / "photo.jpg", rng.integers(0, 256, (64, 64, 3), np.uint8))
        tifffile.imwrite(folder / "grey16.tif", rng.integers(0, 65536, (72, 64), np.uint16))
        tifffile.imwrite(
            folder / "rgb.tiff", rng.integers(0, 256, (64, 66, 3), np.uint8), photometric="rgb"
        )
        stack = rng.integers(0, 65536, (3, 64, 68), np.uint16)
        tifffile.imwrite(folder / "stack.tif", stack, photometric="minisblack")
    return {p.name: read(p) for p in sorted(folder.iterdir())}


def output_stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def results(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def gapcam(*args: object) -> int:
    return main([str(a) for a in args])


def predictor(size: int | str) -> Callable[..., int]:
    """``predict(inputs, out, weights, *extra)``: ``gapcam predict`` of resnet18 with
    ``weights`` at ``--input-size size`` on the CPU (compared with the CPU engine: a GPU's TF32
    convolutions differ more); ``inputs`` one path or a list; later options win."""

    def predict(inputs: object, out: Path, weights: object, *extra: object) -> int:
        listed = inputs if isinstance(inputs, list) else [inputs]
        return main(
            ["predict", *map(str, listed), "--model", "resnet18", "--weights", str(weights),
             "--input-size", str(size), "--out", str(out), "--device", "cpu",
             *map(str, extra)]
        )  # fmt: skip

    return predict


def cli_process(*args: object, **kwargs) -> subprocess.Popen:
    """``python -m napari_gapcam.cli ARGS`` in its own process, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "napari_gapcam.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_until_stopped(process: subprocess.Popen | int, timeout: float = 120) -> None:
    """Until ``process`` (or the process of that pid) has stopped itself (SIGSTOP): a
    deterministic point to kill it at. The look every 10 ms only waits: it decides nothing."""
    pid = process if isinstance(process, int) else process.pid
    deadline = time.monotonic() + timeout
    stat = Path(f"/proc/{pid}/stat")
    alive = (
        (lambda: stat.exists()) if isinstance(process, int) else (lambda: process.poll() is None)
    )
    while time.monotonic() < deadline and alive():
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")


def stop_before_second_record() -> int:
    """Run on a dask worker (``client.run``): the worker's process stops itself (SIGSTOP)
    before finishing its second input, that is in the middle of a chunk. Returns its pid."""
    import os
    import signal

    from napari_gapcam.cli import infer

    finish, count = infer._Job.finish, [0]

    def stopping(self):
        count[0] += 1
        if count[0] == 2:
            os.kill(os.getpid(), signal.SIGSTOP)
        return finish(self)

    infer._Job.finish = stopping
    return os.getpid()


def records(out: Path) -> dict[str, dict]:
    """The output folder's records by stem, read from its record store."""
    from napari_gapcam.cli.store import Store

    with Store(out) as store:
        return dict(store.records())


def assert_readable(out: Path) -> None:
    """Every file under its final name is complete: TIFF, PNG and JSON parse."""
    for path in out.rglob("*"):
        if path.name.startswith(".gapcam-tmp-") or path.is_dir():
            continue
        if path.suffix == ".tif":
            assert tifffile.imread(path).dtype == np.float32
        elif path.suffix == ".png":
            assert iio.imread(path).ndim == 3
        elif path.suffix in (".json", ".jsonl"):
            [json.loads(line) for line in path.read_text().splitlines()]


def ome_zarr_levels(path: Path) -> list[np.ndarray]:
    """The levels of the OME-Zarr image at ``path``, read with ome-zarr's own reader."""
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Multiscales, Reader

    logging.getLogger("ome_zarr").setLevel(logging.ERROR)
    (node,) = [n for n in Reader(parse_url(str(path), mode="r"))() if n.load(Multiscales)]
    return [np.asarray(level) for level in node.data]


def record_task_keys(monkeypatch) -> set[str]:
    """Every task key the cluster of the next ``gapcam predict --workers/--scheduler`` run
    sees (a scheduler plugin, read before the run closes its client): the tasks the run
    submitted, and any read of a lazy input that went to the cluster instead of being done
    where it was asked for."""
    from contextlib import contextmanager

    from distributed.diagnostics.plugin import SchedulerPlugin

    from napari_gapcam.cli import distributed as scale_out

    class TaskKeys(SchedulerPlugin):
        name = "gapcam-test-task-keys"

        def __init__(self) -> None:
            self.keys: set[str] = set()

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            self.keys.add(str(key))

    def keys(dask_scheduler) -> list[str]:
        return sorted(dask_scheduler.plugins[TaskKeys.name].keys)

    seen: set[str] = set()
    real = scale_out.client

    @contextmanager
    def recording(*args, **kwargs):
        with real(*args, **kwargs) as connection:
            connection.register_plugin(TaskKeys())
            try:
                yield connection
            finally:
                seen.update(connection.run_on_scheduler(keys))

    monkeypatch.setattr(scale_out, "client", recording)
    return seen


def forget(out: Path, stem: str) -> None:
    """Drop ``stem``'s record from the store: as a run killed after writing its outputs and
    before its record."""
    from napari_gapcam.cli.store import Store

    with Store(out, write=True) as store:
        store.forget(stem)


def as_before_the_store(out: Path) -> None:
    """Turn an output folder into what gapcam wrote before its record store and its ledger:
    one ``records/<stem>.json`` per input, nothing else of gapcam's own."""
    import shutil

    for stem, record in records(out).items():
        path = out / "records" / f"{stem}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record) + "\n")
    shutil.rmtree(out / ".gapcam")
