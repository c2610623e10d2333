"""Tiled runs: speed against the bare batched forward, and peak memory over lazy images.

    .venv/bin/python benchmarks/tiles.py                 # ≈ 3 min on 2 cores
    .venv/bin/python benchmarks/tiles.py --sides 4096 8192 16384
    .venv/bin/python benchmarks/tiles.py --threads 1 --arch resnet50 --method gradcam layercam

Speed: ``run_tiled`` on a 2048² RGB uint8 mosaic (tiles read, normalised, batched, stitched)
vs the bare batched forward of the same model over as many tiles already made into one input
tensor, timed alternately (medians). Memory: the resident set's high-water mark during a tiled
run over a lazily generated dask image (never held whole), minus the set before it, for each
side, each in a fresh process: bounded, and independent of the image's size.

``--method``: seconds per tile of each named method against the CAM, measured in the same run
(nothing else is timed): every class's maps of one batch of ``--batch`` tiles of 224²
(``class_maps`` alone, on the batch's real maps) and a whole ``run_tiled`` of a
``--side``² image; a method whose row refuses tiles has no ``run_tiled`` time.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

import numpy as np
from speed import _status  # the resident-set fields of /proc/self/status (same folder)
from timing import median_s


def _model(arch: str):
    import torch

    from napari_gapcam import load_model
    from napari_gapcam.models import DEMO_WEIGHTS

    torch.manual_seed(0)
    weights = DEMO_WEIGHTS if arch == "resnet18" else None
    return load_model(arch, weights=weights, device="cpu")


def speed_row(arch: str, repeat: int) -> dict:
    import torch

    model = _model(arch)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    result = model.run_tiled(image)  # warm-up: folding, the memory probe
    tiles, size = len(result.tile_boxes), result.tiling.tile_size
    batch = max(1, min(16, 8 * 224 * 224 // (size * size)))
    inputs = torch.randn(batch, 3, size, size)

    def bare() -> None:
        with torch.inference_mode():
            for _ in range(0, tiles, batch):
                model.forward_batch(inputs)

    ours, base = [], []
    for _ in range(repeat):
        for fn, out in ((lambda: model.run_tiled(image), ours), (bare, base)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return {
        "case": f"{arch}: run_tiled on 2048² ({tiles} tiles of {size}²) vs bare batched forward",
        "ours": tiles / float(np.median(ours)),
        "base": tiles / float(np.median(base)),
    }


def method_rows(arch: str, methods: list[str], repeat: int, batch: int, side: int) -> list:
    """Seconds per tile of ``class_maps`` (all classes, one batch) and of ``run_tiled``."""
    import torch

    from napari_gapcam.engine.methods import METHODS

    model = _model(arch)
    image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    tiles = len(model.run_tiled(image).tile_boxes)  # warm-up: folding, the memory probe
    inputs = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = model.forward_batch(inputs)[0].float().contiguous()
    classes = len(model.class_names)

    def timed(fn) -> float:  # warmed up already (above)
        return median_s(fn, repeat, warm_up=False)

    rows = []
    for name in ["cam", *(m for m in methods if m != "cam")]:
        other = model.with_method(name)
        method = other.method_object.on_host()
        maps = timed(lambda: method.class_maps(features, classes)) / batch  # noqa: B023
        tiled = timed(lambda: other.run_tiled(image)) / tiles if METHODS[name].tiles else None  # noqa: B023
        rows.append({"method": name, "class_maps": maps, "run_tiled": tiled, "tiles": tiles})
    return rows


def memory_case(side: int, arch: str, seconds: float | None = None) -> dict:
    """One memory row, in this process (a fresh subprocess); with ``seconds``, the run stops
    after that long (the peak is reached with the first batches and stays flat)."""
    import dask.array as da

    from napari_gapcam.engine.tiles import iter_tiled

    model = _model(arch)
    model.run_tiled(np.zeros((512, 512, 3), np.uint8))  # warm-up

    def block(block_info=None):
        loc = block_info[None]["chunk-location"]
        rng = np.random.default_rng(loc[0] * 10_000 + loc[1])
        shape = block_info[None]["chunk-shape"]
        return rng.integers(0, 256, shape, dtype=np.uint8)

    image = da.map_blocks(block, chunks=((1024,) * (side // 1024),) * 2 + ((3,),), dtype=np.uint8)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _status("VmRSS")
    start = time.perf_counter()
    steps = iter_tiled(model, image, contrast_limits=(0, 255))
    done, total, result = next(steps)
    while done < total and (seconds is None or time.perf_counter() - start < seconds):
        done, total, result = next(steps)
    elapsed = time.perf_counter() - start
    extra = _status("VmHWM") - before
    return {
        "side": side,
        "tiles": f"{done} of {total}" if done < total else str(total),
        "seconds": elapsed,
        "extra_mib": extra / 2**20,
        "image_mib": side * side * 3 / 2**20,
        "grids_mib": result.grids.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sides", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--arch", default="resnet18", help="resnet18: the demo; resnet50: random")
    parser.add_argument("--method", nargs="+", help="time these methods' tiles against the CAM")
    parser.add_argument("--batch", type=int, default=8, help="--method: tiles in the batch")
    parser.add_argument("--side", type=int, default=896, help="--method: run_tiled's image side")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help="stop each memory run after this long")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(memory_case(args.case, args.arch, args.seconds)))
        return
    import torch

    print(
        f"{platform.machine()}, {torch.get_num_threads()} threads, Python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}; "
        f"medians of {args.repeat}"
    )
    if args.method:
        rows = method_rows(args.arch, args.method, args.repeat, args.batch, args.side)
        print(
            f"{args.arch}, {rows[0]['tiles']} tiles of 224² in run_tiled({args.side}²); "
            f"class_maps: one batch of {args.batch}. Seconds per tile (× the CAM's)"
        )
        print("| method | class_maps | run_tiled |")
        cam = rows[0]
        for row in rows:
            maps = f"{row['class_maps']:.4f} ({row['class_maps'] / cam['class_maps']:.2f}×)"
            tiled = row["run_tiled"]
            tiled = "refused" if tiled is None else f"{tiled:.4f} ({tiled / cam['run_tiled']:.2f}×)"
            print(f"| {row['method']} | {maps} | {tiled} |")
        return
    row = speed_row(args.arch, args.repeat)
    print(
        f"| {row['case']} | {row['ours']:.1f} tiles/s | {row['base']:.1f} tiles/s | "
        f"{row['ours'] / row['base']:.2f}× |"
    )
    for side in args.sides:
        command = [sys.executable, __file__, "--case", str(side), "--arch", args.arch]
        command += ["--seconds", str(args.seconds)] if args.seconds else []
        out = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        print(
            f"| lazy {side}² RGB ({out['image_mib']:.0f} MiB): {out['tiles']} tiles in "
            f"{out['seconds']:.0f} s | extra peak {out['extra_mib']:.0f} MiB | grids "
            f"{out['grids_mib']:.1f} MiB |"
        )


if __name__ == "__main__":
    main()
