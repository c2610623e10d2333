"""``gapcam predict --tiles`` on a synthetic whole-slide mosaic: tiles/s against the bare forward.

A side×side RGB mosaic of 256² synthetic scenes is written as a pyramidal tiled TIFF (3 levels,
as scanners write them); ``gapcam predict --tiles --weights demo`` (resnet18, tiles of 192²,
overlap 64) runs on it in a fresh process. Its tiles/s exclude the start-up (importing torch,
loading the model: measured by the same command on a 256² slide, one tile) and include
everything else: reading blocks from the TIFF, normalising, the forward, stitching, saving each
block, merging, the OME-Zarr pyramid, CSV and GeoJSON. The baseline is the bare batched forward
of the same model on as many tiles of random input (batches of ``--batch-size``), in this
process with the same threads.

Usage: python benchmarks/cli/tiles.py [--side 4096] [--threads 2] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def mosaic(path: Path, side: int) -> None:
    import tifffile

    from napari_gapcam.synthetic import make_sample

    rng = np.random.default_rng(0)
    n = side // 256
    rows = [
        np.concatenate([make_sample(rng, size=(256, 256))[0] for _ in range(n)], 1)
        for _ in range(n)
    ]
    image = np.concatenate(rows, 0)
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        tiff.write(image, subifds=2, tile=(256, 256), photometric="rgb", compression="zlib")
        for k in (1, 2):
            level = image[:: 2**k, :: 2**k]
            tiff.write(level, subfiletype=1, tile=(256, 256), photometric="rgb")


def cli(slide: Path, out: Path, extra: list[str]) -> tuple[float, float, dict]:
    """(wall seconds, peak RSS MiB, record) of one ``gapcam predict --tiles`` process."""
    args = [sys.executable, "-m", "napari_gapcam.cli", "predict", str(slide), "--tiles"]
    args += ["--weights", "demo", "--device", "cpu", "--out", str(out), *extra]
    start = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(process.stderr.read().decode() if process.stderr else "failed")
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    return wall, usage.ru_maxrss / 1024, record


def bare(tiles: int, size: int, batch: int, threads: int) -> float:
    """Seconds of the bare batched forward over ``tiles`` tiles (after a warm-up)."""
    import torch

    from napari_gapcam import load_model
    from napari_gapcam.models import DEMO_WEIGHTS

    torch.set_num_threads(threads)
    model = load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
    inputs = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        model.forward_batch(inputs)
        start = time.perf_counter()
        for _ in range(0, tiles, batch):
            model.forward_batch(inputs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        mosaic(root / "slide.tif", args.side)
        mosaic(root / "small.tif", 256)
        common = ["--batch-size", str(args.batch_size)]
        if args.workers:
            common += ["--workers", str(args.workers)]
        else:
            common += ["--threads", str(args.threads)]
        startup, _, _ = cli(root / "small.tif", root / "small", common)
        wall, peak, record = cli(root / "slide.tif", root / "out", common)
        tiles, size = record["tiles"]["run"], record["tiles"]["size"]
        base = bare(tiles, size, args.batch_size, args.threads)
        written = sum(p.stat().st_size for p in (root / "out").rglob("*") if p.is_file())
    ours = tiles / (wall - startup)
    where = f"--workers {args.workers}" if args.workers else f"{args.threads} threads"
    print(f"{args.side}² mosaic, {tiles} tiles of {size}², batch {args.batch_size}, {where}")
    print(
        f"| gapcam predict --tiles | {wall:.1f} s wall ({startup:.1f} s start-up) | "
        f"{ours:.1f} tiles/s | peak {peak:.0f} MiB | {written / 1e6:.2f} MB written |"
    )
    print(
        f"| bare batched forward | {base:.1f} s | {tiles / base:.1f} tiles/s | "
        f"ratio {ours / (tiles / base):.2f}× |"
    )


if __name__ == "__main__":
    main()
