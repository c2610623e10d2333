"""What the speed benchmarks share: the median of timed calls, and ours' ``--precision`` list."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def median_s(fn: Callable[[], object], repeat: int, warm_up: bool = True) -> float:
    """The median of ``repeat`` timed calls of ``fn``, after one untimed call if ``warm_up``."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision fp32,auto``: ours at each precision, a row each (the anchors run float32;
    ``auto`` is bfloat16 where the device computes it natively, e.g. a CPU with AMX)."""
    parser.add_argument(
        "--precision",
        type=lambda text: text.split(","),
        default=["fp32", "auto"],
        help="ours, comma-separated (fp32, bf16, fp16, auto): a row each; the anchors run float32",
    )
