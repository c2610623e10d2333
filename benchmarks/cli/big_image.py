"""gapcam predict on a big image and a no-op re-run: peak memory and wall time.

Rows: (1) a 12000² uint8 grey TIFF (144 MB), resnet18 with random weights at the default input
size: the run's peak resident memory (the child's ``ru_maxrss``), wall time and what it wrote;
(2) a finished folder of 200 small PNGs run again (nothing to do): wall time.

Usage: python benchmarks/cli/big_image.py [--side 12000] [--inputs 200]
Run it with the checkout to measure (``PYTHONPATH=old/src python …`` measures another one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of ``python -m napari_gapcam.cli …``."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "napari_gapcam.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode() if process.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(stderr, file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, code


def size_of(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=12000)
    parser.add_argument("--inputs", type=int, default=200)
    options = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--model", "resnet18", "--weights", "none", "--device", "cpu", "--threads", "1"]
    with tempfile.TemporaryDirectory() as work:
        import tifffile

        big = Path(work) / "big.tif"
        rng = np.random.default_rng(0)
        side = options.side
        pixels = rng.integers(0, 256, (options.side, options.side), np.uint8)
        tifffile.imwrite(big, pixels, photometric="minisblack", rowsperstrip=512)
        del pixels
        side = options.side
        out = Path(work) / "big-out"
        wall, peak, code = run(["predict", str(big), "--out", str(out), *common], env)
        written = {
            p.name: size_of(p) for p in out.iterdir() if not p.name.startswith(("records", "."))
        }
        print(
            f"| {side}² uint8 TIFF ({big.stat().st_size / 1e6:.0f} MB) | peak {peak:.0f} MiB | "
            f"{wall:.1f} s | exit {code} | wrote "
            + ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(written.items()))
            + " |"
        )

        import imageio.v3 as iio

        folder = Path(work) / "small"
        folder.mkdir()
        for i in range(options.inputs):
            iio.imwrite(folder / f"i{i:03d}.png", rng.integers(0, 256, (48, 48, 3), np.uint8))
        out = Path(work) / "small-out"
        small = ["predict", str(folder), "--out", str(out), "--input-size", "32", *common]
        first, _, code = run(small, env)
        again, peak, code_again = run(small, env)
        print(
            f"| no-op re-run of {options.inputs} done inputs | peak {peak:.0f} MiB | "
            f"{again:.2f} s (first run {first:.1f} s) | exit {code}/{code_again} |"
        )


if __name__ == "__main__":
    main()
