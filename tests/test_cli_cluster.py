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

from test_cli import SIZE, assert_readable, make_images, results

pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    return path


def _args(folder: Path, out: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "napari_gapcam.cli", "predict", str(folder), "--model",
            "resnet18", "--weights", str(weights), "--input-size", SIZE, "--out", str(out),
            "--device", "cpu", *extra]  # fmt: skip


def _engine_cam(weights: Path, image: np.ndarray) -> np.ndarray:
    from napari_gapcam import load_model

    result = load_model("resnet18", weights=weights, device="cpu").run(image, input_size=64)
    return result.cam(result.topk(1)[0][0])


def test_two_local_workers_give_the_single_process_maps(tmp_path, weights):
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
                cam, _engine_cam(weights, plane), atol=2e-3
            )  # batched vs single forward: 1e-4 apart


def test_a_worker_killed_mid_run_costs_nothing(tmp_path, weights):
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
        process = subprocess.Popen(
            _args(tmp_path / "in", out, weights, "--scheduler", cluster.scheduler_address,
                  "--chunk-size", "3", "--batch-size", "1"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and process.poll() is None:
            if list((out / "records").glob("*.json")):  # the run is under way
                busy = [address for address, keys in client.processing().items() if keys]
                if busy:
                    killed = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.005)
        _, err = process.communicate(timeout=300)
    assert killed is not None, "the run ended before a worker could be killed"
    assert process.returncode == 0, err
    lines = results(out)
    names = sorted(Path(r["file"]).name for r in lines)
    assert names == sorted(images)  # every input once: none missing, no duplicates
    assert len(list((out / "records").glob("*.json"))) == len(images)
    assert_readable(out)
    for name in ("img000.png", "img012.png", "img023.png"):
        written = tifffile.imread(out / f"{name[:-4]}_cam.tif")
        np.testing.assert_allclose(
            written, _engine_cam(weights, images[name]), atol=2e-3
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
        LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None)
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        cluster.scale(0)
        deadline = time.monotonic() + 30
        while client.nthreads() and time.monotonic() < deadline:
            time.sleep(0.05)
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
