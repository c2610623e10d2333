"""gapcam predict at plate scale: throughput, no-op re-runs, driver memory and files per input.

    PYTHONPATH=src .venv/bin/python benchmarks/cli/plates.py             # N = 2000 (a few minutes)
    PYTHONPATH=src .venv/bin/python benchmarks/cli/plates.py --n 100000  # the issue's figure (10⁵)

N synthetic random uint8 RGB PNGs (``--side`` 64²) in a screen's tree
``screen/plate{p}/A01..H12/site{k}.png`` (9 sites per well, 96 wells per plate: twice the
inputs are twice the wells, as in a screen), the bundled demo model (``--weights demo``,
resnet18), ``--device cpu --threads 1``.
Rows, each against a baseline measured in the same run:

1. end to end: ``gapcam predict plate/ --recursive --out OUT`` run **in-process** through
   ``napari_gapcam.cli.main`` (the model already loaded by a warm-up run, so start-up is not
   counted), images/s, vs the engine's own ``model.run_batch`` + ``result.cams(result.top1())`` on
   the decoded arrays (same model object, batch size and input size; decoding not counted);
   target ≥ 0.9×. Medians of ``--repeat`` runs, timed alternately.
2. a no-op re-run (the same command again, nothing changed) as a **subprocess**, minus start-up
   (the same no-op re-run of a 1-input plate): µs per input; target ≤ 60 µs.
3. the driver's peak resident memory (``ru_maxrss`` of the subprocess) of a first run and of a
   no-op re-run, at N and 2N inputs: bytes per input = (peak(2N) − peak(N)) / N; target flat.
4. files the output folder holds per input, and the most entries in one of its folders.

``--profile K``: the K costliest functions (own time) of an in-process no-op re-run (cProfile).
``--noop-only``: only rows 2–4 at N (one first run as a subprocess, then the no-op re-runs); with
``--side 32 --input-size 32`` it makes the issue's 10⁵-input figure in about half an hour here.
Run it with the checkout to measure (``PYTHONPATH=old/src`` measures another one).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

WELLS = [f"{row}{col:02d}" for row in "ABCDEFGH" for col in range(1, 13)]
SITES = 9  # images per well


def make_plate(root: Path, n: int, side: int, seed: int, sites: int = SITES) -> list[Path]:
    """``n`` random RGB PNGs, ``sites`` per well, 96 wells per plate:
    ``root/plate<p>/<well>/site<k>.png`` (more inputs: more wells and plates, as in a screen)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        plate, well = divmod(i // sites, len(WELLS))
        path = root / f"plate{plate}" / WELLS[well] / f"site{i % sites}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def in_process(argv: list[str]) -> float:
    """Seconds of ``gapcam`` run in this process (its output swallowed)."""
    from napari_gapcam.cli import main

    sink = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(sink), redirect_stderr(sink):
        code = main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"gapcam {' '.join(argv)} exited {code}:\n{sink.getvalue()}")
    return seconds


_CHILD = """
import os, sys
from napari_gapcam.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status, open(os.environ["PLATES_PEAK"], "w") as peak:
    peak.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
sys.exit(code)
"""


def subprocess_run(argv: list[str], work: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of ``gapcam …`` in a fresh process. The peak is the
    child's own ``VmHWM``: its ``ru_maxrss`` would include this process's size at the fork."""
    peak = work / "peak.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PLATES_PEAK": str(peak)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"gapcam {' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return wall, int(peak.read_text()) * 1024


def folder_counts(out: Path) -> tuple[int, int, str]:
    """(files under ``out``, most entries in one folder, that folder relative to ``out``)."""
    files, most, where = 0, 0, "."
    for folder, subfolders, names in os.walk(out):
        files += len(names)
        if len(names) + len(subfolders) > most:
            most, where = len(names) + len(subfolders), os.path.relpath(folder, out)
    return files, most, where


def engine_seconds(model, stack: np.ndarray, batch: int, input_size: int | None) -> float:
    """``run_batch`` + every image's top-1 map at its own size, 512 images per call."""
    start = time.perf_counter()
    for first in range(0, len(stack), 512):
        result = model.run_batch(
            stack[first : first + 512], batch_size=batch, input_size=input_size
        )
        result.cams(result.top1())
    return time.perf_counter() - start


Row = tuple[str, int, float, float]  # a function, its calls, own and cumulative seconds


def profile_noop(argv: list[str], top: int) -> tuple[list[Row], list[Row]]:
    """An in-process no-op re-run under cProfile: the ``top`` functions by own time, and the
    ``top`` functions of napari_gapcam.cli by cumulative time below ``predict``."""
    profiler = cProfile.Profile()
    profiler.enable()
    in_process(argv)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats("tottime")
    rows, ours = [], []
    for (file, line, name), (_, calls, own, cumulative, _) in list(stats.stats.items()):
        where = f"{Path(file).name}:{line}({name})" if line else name
        rows.append((where, calls, own, cumulative))
        skip = ("main", "predict", "predict_command")
        if f"napari_gapcam{os.sep}cli" in file and name not in skip:
            ours.append(rows[-1])
    by_own = sorted(rows, key=lambda row: -row[2])[:top]
    return by_own, sorted(ours, key=lambda row: -row[3])[:top]


def describe() -> None:
    import torch

    import napari_gapcam

    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} (1 min)"
    )
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"napari-gapcam {napari_gapcam.__version__} ({Path(napari_gapcam.__file__).parent})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="inputs (the issue's figure: 100000)")
    parser.add_argument("--side", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", type=int, default=5, metavar="K")
    parser.add_argument("--noop-only", action="store_true", help="rows 2–4 only, at N")
    options = parser.parse_args()
    n = options.n
    import torch

    torch.set_num_threads(1)
    describe()
    common = ["--weights", "demo", "--device", "cpu", "--threads", "1"]
    common += ["--batch-size", str(options.batch_size)]
    if options.input_size:
        common += ["--input-size", str(options.input_size)]

    def predict(plate: Path, out: Path) -> list[str]:
        return ["predict", str(plate), "--recursive", "--out", str(out), *common]

    if options.noop_only:
        noop_only(options, predict)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        paths = make_plate(work / "plate", n, options.side, 0)
        make_plate(work / "plate2", 2 * n, options.side, 1)
        make_plate(work / "one", 1, options.side, 2)
        print(f"plates of {n}, {2 * n} and 1 inputs made in {time.perf_counter() - start:.0f} s")

        # 1. end to end (in-process, model loaded) vs run_batch + maps on the decoded arrays
        in_process(predict(work / "one", work / "warm"))  # loads the model, warms the paths
        from napari_gapcam.cli import infer

        (model,) = infer._MODELS.values()  # the very model the command used
        import imageio.v3 as iio

        start = time.perf_counter()
        stack = np.stack([iio.imread(path) for path in paths])
        decode = time.perf_counter() - start
        engine_seconds(
            model, stack[: 4 * options.batch_size], options.batch_size, options.input_size
        )
        ends, engines = [], []
        for k in range(options.repeat):
            out = work / f"e2e{k}"
            ends.append(in_process(predict(work / "plate", out)))
            engines.append(engine_seconds(model, stack, options.batch_size, options.input_size))
            if k + 1 < options.repeat:
                shutil.rmtree(out)
        end_rate, engine_rate = n / np.median(ends), n / np.median(engines)
        files, most, where = folder_counts(out)

        # 3. the driver's peak memory: first runs and no-op re-runs at N and 2N (subprocesses)
        first = {m: subprocess_run(predict(work / p, work / f"mem{m}"), work) for m, p in
                 ((n, "plate"), (2 * n, "plate2"))}  # fmt: skip
        # 2. no-op re-runs minus start-up (a 1-input plate's no-op re-run)
        subprocess_run(predict(work / "one", work / "one-out"), work)
        noop: dict[int, list[tuple[float, int]]] = {1: [], n: [], 2 * n: []}
        for _ in range(options.repeat):
            for m, plate in ((1, "one"), (n, "plate"), (2 * n, "plate2")):
                out_m = work / ("one-out" if m == 1 else f"mem{m}")
                noop[m].append(subprocess_run(predict(work / plate, out_m), work))
        noop_s = {m: float(np.median([s for s, _ in runs])) for m, runs in noop.items()}
        noop_rss = {m: max(r for _, r in runs) for m, runs in noop.items()}
        per_input_us = (noop_s[n] - noop_s[1]) / (n - 1) * 1e6
        profile = profile_noop(predict(work / "plate", work / f"mem{n}"), options.profile)
        load = os.getloadavg()[0]

    mib = 2**20
    run_growth = (first[2 * n][1] - first[n][1]) / n
    noop_growth = (noop_rss[2 * n] - noop_rss[n]) / n
    print(f"\nload average after: {load:.2f} (1 min); decode alone: {n / decode:.0f} images/s")
    print(f"\n| {n} inputs, {options.side}² RGB PNG, demo resnet18, batch {options.batch_size}, "
          "1 thread | measured | baseline | ratio / figure | target |")  # fmt: skip
    print("|---|---|---|---|---|")
    print(f"| end to end, in-process `gapcam predict --recursive` vs `run_batch` + `cams(top1)` | "
          f"{end_rate:.1f} images/s | {engine_rate:.1f} images/s | {end_rate / engine_rate:.2f}× "
          "| ≥ 0.9× |")  # fmt: skip
    print(f"| no-op re-run (subprocess) of {n} / {2 * n} inputs vs 1 input (start-up) | "
          f"{noop_s[n]:.2f} / {noop_s[2 * n]:.2f} s | {noop_s[1]:.2f} s | "
          f"{per_input_us:.0f} µs per input | ≤ 60 µs |")  # fmt: skip
    print(f"| peak RSS of a first run, {n} / {2 * n} inputs | {first[n][1] / mib:.0f} / "
          f"{first[2 * n][1] / mib:.0f} MiB | | {run_growth / 1024:.1f} KiB per input "
          "| flat |")  # fmt: skip
    print(f"| peak RSS of a no-op re-run, {n} / {2 * n} inputs | {noop_rss[n] / mib:.0f} / "
          f"{noop_rss[2 * n] / mib:.0f} MiB | {noop_rss[1] / mib:.0f} MiB (1 input) | "
          f"{noop_growth / 1024:.1f} KiB per input | flat |")  # fmt: skip
    print(f"| first run (subprocess, with start-up), {n} / {2 * n} inputs | {first[n][0]:.1f} / "
          f"{first[2 * n][0]:.1f} s | | {n / first[n][0]:.1f} images/s | |")  # fmt: skip
    print(f"| files in --out per input | {files} files | {n} inputs | {files / n:.2f} | |")
    print(f"| most entries in one folder of --out | {most} (`{where}`) | | | no flat folder |")
    print(f"\nno-op re-run of {n} inputs, in-process, cProfile, top {options.profile}")
    titles = ("by own time", "napari_gapcam.cli by cumulative time")
    for title, rows in zip(titles, profile, strict=True):
        print(f"\n{title}:\n\n| function | calls | own s | cumulative s |\n|---|---|---|---|")
        for where, calls, own, cumulative in rows:
            print(f"| `{where}` | {calls} | {own:.3f} | {cumulative:.3f} |")


def noop_only(options: argparse.Namespace, predict: Any) -> None:
    """Rows 2–4 at N: a first run (a subprocess), then no-op re-runs against a 1-input plate's."""
    n = options.n
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        make_plate(work / "plate", n, options.side, 0)
        make_plate(work / "one", 1, options.side, 2)
        print(f"plates of {n} and 1 inputs made in {time.perf_counter() - start:.0f} s")
        first = subprocess_run(predict(work / "plate", work / "out"), work)
        rate = n / first[0]
        print(f"first run: {first[0]:.0f} s, {rate:.0f} images/s, peak {first[1] >> 20} MiB")
        subprocess_run(predict(work / "one", work / "one-out"), work)
        runs: dict[int, list[tuple[float, int]]] = {1: [], n: []}
        for _ in range(options.repeat):
            for m, plate, out in ((1, "one", "one-out"), (n, "plate", "out")):
                runs[m].append(subprocess_run(predict(work / plate, work / out), work))
        seconds = {m: float(np.median([s for s, _ in r])) for m, r in runs.items()}
        peaks = {m: max(p for _, p in r) for m, r in runs.items()}
        files, most, where = folder_counts(work / "out")
    per_input = (seconds[n] - seconds[1]) / (n - 1) * 1e6
    print(f"\n| {n} inputs, {options.side}² PNG | measured | target |\n|---|---|---|")
    print(f"| no-op re-run vs 1 input (start-up {seconds[1]:.2f} s) | {seconds[n]:.2f} s: "
          f"{per_input:.0f} µs per input | ≤ 60 µs |")  # fmt: skip
    growth = (peaks[n] - peaks[1]) / n / 1024
    print(f"| peak RSS of the no-op re-run | {peaks[n] >> 20} MiB ({peaks[1] >> 20} MiB for 1 "
          f"input: {growth:.2f} KiB per input) | flat |")  # fmt: skip
    print(f"| files per input; most entries in one folder | {files / n:.2f}; {most} (`{where}`) "
          "| |")  # fmt: skip


if __name__ == "__main__":
    main()
