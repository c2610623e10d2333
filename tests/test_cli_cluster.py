"""``gapcam predict`` on dask.distributed: the same maps, and a dead worker loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from _cli import (
    assert_readable,
    make_images,
    record_task_keys,
    records,
    results,
    stop_before_second_record,
    wait_until_stopped,
)

pytest.importorskip("dask.distributed")


SIZE = "64"


def _args(folder: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "napari_gapcam.cli", "predict", str(folder), "--model",
            "resnet18", "--weights", str(weights), "--input-size", SIZE, "--out", str(out),
            "--device", "cpu", *extra]  # fmt: skip


def _engine_cam(model, image: np.ndarray) -> np.ndarray:
    result = model.run(image, input_size=int(SIZE))
    return result.cam(result.topk(1)[0][0])


def test_two_local_workers_give_the_single_process_maps(tmp_path, weights, tiny_model):
    images = make_images(tmp_path / "in")
    out = tmp_path / "out"
    done = subprocess.run(
        _args(tmp_path / "in", out, weights, "--workers", "2", "--chunk-size", "2"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = results(out)
    assert sorted(Path(r["file"]).name for r in lines) == sorted(images)
    for record in lines:
        image = images[Path(record["file"]).name]
        written = tifffile.imread(out / record["outputs"]["cam"])
        planes = image if record["pages"] > 1 else image[None]
        for plane, cam in zip(planes, written.reshape(planes.shape[:3]), strict=True):
            np.testing.assert_allclose(
                cam, _engine_cam(tiny_model, plane), atol=2e-3
            )  # batched vs single forward: 1e-4 apart


def test_lazy_inputs_are_read_on_the_workers_own_threads(
    tmp_path, weights, tiny_model, monkeypatch
):
    """With --workers 2 a zarr image (a dask array) is read by the task that needs it, on
    dask's synchronous scheduler: the cluster sees the run's tasks and nothing else (a read
    sent back to the cluster would show as tasks of its own)."""
    zarr = pytest.importorskip("zarr")
    from napari_gapcam.cli import main

    picture = np.random.default_rng(3).integers(0, 4096, (64, 70)).astype(np.uint16)
    source = zarr.open(str(tmp_path / "plate.zarr"), mode="w", shape=picture.shape,
                       chunks=(16, 70), dtype="u2")  # fmt: skip
    source[:] = picture
    make_images(tmp_path / "in", count=2)
    keys = record_task_keys(monkeypatch)
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "plate.zarr"), str(tmp_path / "in"), "--model", "resnet18",
            "--weights", str(weights), "--input-size", SIZE, "--out", str(out), "--device",
            "cpu", "--workers", "2", "--chunk-size", "1"]  # fmt: skip
    assert main(args) == 0
    assert keys and all(k.startswith(("check_options-", "read_locally-")) for k in keys), keys
    assert sum(k.startswith("read_locally-") for k in keys) == 3  # one task per input
    assert len(results(out)) == 3
    written = zarr.open(str(out / "plate_cam.zarr"), mode="r")[:]
    np.testing.assert_allclose(written[0], _engine_cam(tiny_model, picture), atol=2e-3)


def test_a_worker_killed_mid_run_costs_nothing(tmp_path, weights, tiny_model):
    """One of two workers stops itself in the middle of a chunk (after its first record,
    before its second) and is killed there: the other worker redoes the chunk."""
    from dask.distributed import Client, LocalCluster

    images = make_images(tmp_path / "in", count=24)
    out = tmp_path / "out"
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        victim = sorted(client.nthreads())[0]
        pid = client.run(stop_before_second_record, workers=[victim])[victim]
        process = subprocess.Popen(
            _args(tmp_path / "in", out, weights, "--scheduler", cluster.scheduler_address,
                  "--chunk-size", "3", "--batch-size", "1"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_until_stopped(pid)  # mid-chunk: one record of its chunk written
        finally:
            os.kill(pid, signal.SIGKILL)
        _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    lines = results(out)
    names = sorted(Path(r["file"]).name for r in lines)
    assert names == sorted(images)  # every input once: none missing, no duplicates
    assert len(records(out)) == len(images)
    assert_readable(out)
    for name in ("img000.png", "img012.png", "img023.png"):
        written = tifffile.imread(out / f"{name[:-4]}_cam.tif")
        np.testing.assert_allclose(
            written, _engine_cam(tiny_model, images[name]), atol=2e-3
        )  # batched vs single forward: 1e-4 apart


def test_no_worker_left_exits_1_keeping_what_is_done(tmp_path, weights, monkeypatch, capsys):
    """Item 5: an in-process LocalCluster whose workers are closed: no endless wait."""
    from dask.distributed import Client, LocalCluster

    from napari_gapcam.cli import distributed as scale_out
    from napari_gapcam.cli import main

    make_images(tmp_path / "in", count=4)
    out = tmp_path / "out"
    common = ["--model", "resnet18", "--weights", str(weights), "--input-size", SIZE,
              "--out", str(out), "--device", "cpu"]  # fmt: skip
    first_two = [str(tmp_path / "in" / f"img00{i}.png") for i in range(2)]
    assert main(["predict", *first_two, *common]) == 0
    monkeypatch.setattr(scale_out, "REPORT", 0.0)  # a progress line at every look
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # a cluster whose workers are gone: it has none
        assert not client.nthreads()
        every = ["predict", str(tmp_path / "in"), *common, "--scheduler",
                 cluster.scheduler_address, "--worker-timeout", "1"]  # fmt: skip
        capsys.readouterr()
        assert main(every) == 1  # the model check finds no worker
        assert "no dask worker came within 1 s" in capsys.readouterr().err
        monkeypatch.setattr(scale_out, "check_on_cluster", lambda *args: [])
        start = time.monotonic()
        assert main(every) == 1  # the workers went after the check
        assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "2 of 4 inputs done; waiting for dask workers (0 connected)" in err
    assert "no dask worker left for 1 s: 2 input(s) in 1 chunk(s) were not run" in err
    assert "0 done, 2 already done, 0 failed" in err
    assert sorted(Path(r["file"]).name for r in results(out)) == ["img000.png", "img001.png"]
    assert not list(out.glob(".gapcam-tmp-*"))
