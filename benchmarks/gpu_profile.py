"""Where a stack run's time goes on a GPU: ``torch.profiler`` over ``run_batch``.

    python3 benchmarks/gpu_profile.py [--planes 256] [--out DIR]

Prints the wall time of one ``run_batch`` (256×512² RGB uint8, batch 32, random ResNet-50) and
of the bare batched forward, the time the GPU was busy during the run (kernels and copies,
summed), and the operations that took the most device time: a "Memcpy … Pageable" row is a
copy that waited for the GPU, a low busy share a GPU starved by the host. A Chrome trace goes
to ``--out``. Without a GPU it profiles the CPU (a smoke run).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from speed import _paired_ms  # benchmarks/ is on the path when this script runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_profile"))
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from napari_gapcam import load_model

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    model = load_model("resnet50", weights=None, device=device)
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (args.planes, args.side, args.side, 3), dtype=np.uint8)
    inputs = torch.randn(args.batch, 3, 224, 224, device=device)
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    network = torch.nn.Sequential(model.features, model.head).eval()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def ours() -> None:
        model.run_batch(stack, batch_size=args.batch)
        sync()

    def bare() -> None:
        with torch.inference_mode():
            for _ in range(0, args.planes, args.batch):
                network(inputs)
        sync()

    ours(), bare()  # warm-up
    ours_ms, bare_ms = _paired_ms(ours, bare, 5)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    stack_text = f"{args.planes}×{args.side}² RGB uint8, batch {args.batch}"
    print(f"{name}, torch {torch.__version__}: {stack_text}")
    print(f"run_batch {ours_ms:.1f} ms, bare forward {bare_ms:.1f} ms: {bare_ms / ours_ms:.2f}×")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        ours()
        wall_ms = 1000 * (time.perf_counter() - start)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    if cuda:
        busy_ms = sum(getattr(a, key, 0.0) for a in averages) / 1000
        print(f"profiled run {wall_ms:.1f} ms, GPU busy {busy_ms:.1f} ms ({busy_ms / wall_ms:.0%})")
    print(averages.table(sort_by=key, row_limit=20))
    os.makedirs(args.out, exist_ok=True)
    trace = os.path.join(args.out, "run_batch_trace.json")
    prof.export_chrome_trace(trace)
    print(f"trace: {trace}")


if __name__ == "__main__":
    main()
