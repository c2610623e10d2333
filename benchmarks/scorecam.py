"""Score-CAM per map: ours against pytorch-grad-cam's ScoreCAM at the same number of channels.

    .venv/bin/python benchmarks/scorecam.py                   # resnet50, 224², 256 channels
    .venv/bin/python benchmarks/scorecam.py --channels 32     # a quick look (ratio ~ the same)

Same network (torchvision's, random weights: speed does not depend on them), same layer (layer4,
the last maps before the pooling), same normalised input tensor, same class, same channels:
ours keeps the ``--channels`` most active channels (``max_channels``), pytorch-grad-cam gets
exactly those through its ``reshape_transform`` (so both run one forward pass per channel).
Ours: ``model.run(image)`` and the raw map (preprocessing and the first pass included);
pytorch-grad-cam: one call on the input tensor (its own first pass included; its batch size
16, its default; tqdm off). The calls alternate (ours, theirs, ours, …) so a busy machine slows
both alike; medians of ``--repeat`` after one warm-up call each. Prints one JSON line: seconds
per map, the ratio (theirs / ours: > 1, ours faster) and how far the two maps are apart; and a
second class of the same image (ours: from the same passes; theirs: another call). Ours runs
at each ``--precision`` (default ``fp32,auto``; ``auto`` is bfloat16 where the device computes
it natively, e.g. a CPU with AMX), a row each; the map difference says what it costs.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import add_precision_argument  # (same folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="ours (default: auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    add_precision_argument(parser)
    args = parser.parse_args()

    import pytorch_grad_cam.score_cam as pgc_score_cam
    import torch
    import torchvision
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from napari_gapcam import load_model
    from napari_gapcam.engine.precision import resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    pgc_score_cam.tqdm.tqdm = lambda iterable: iterable  # no progress bar in their loop
    torch.manual_seed(0)
    network = getattr(torchvision.models, args.arch)().eval().to(args.device)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.pt"
        torch.save(network.state_dict(), path)
        model = load_model(args.arch, weights=path, device=args.device, method="scorecam")
    models = {
        p: model.with_method(
            "scorecam", max_channels=args.channels, batch_size=args.batch_size, precision=p
        )
        for p in args.precision
    }
    method = models[args.precision[0]].method_object
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), np.uint8)
    c = 0

    first = models[args.precision[0]].run(image)
    kept = first.features.mean(dim=(1, 2)).topk(args.channels).indices.sort().values
    inputs = first._batch.inputs.take([0]).to(args.device)
    pgc = ScoreCAM(network, [network.layer4[-1]], reshape_transform=lambda a: a[:, kept])
    targets = [ClassifierOutputTarget(c)]
    shape = (args.size, args.size)

    def ours(p: str):
        return lambda: models[p].run(image).cam(c, shape)

    def theirs() -> np.ndarray:
        return pgc(inputs, targets=targets)[0]

    def ours_two(p: str):  # a second class of the same image: from the same passes
        def call() -> None:
            result = models[p].run(image)
            result.cam(c, shape), result.cam(1, shape)

        return call

    calls = {"pytorch-grad-cam": theirs}
    for p in args.precision:
        calls[f"ours {p}"], calls[f"ours_two {p}"] = ours(p), ours_two(p)
    maps = {name: fn() for name, fn in calls.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeat):  # alternated: a busy machine slows every call alike
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    theirs_s = medians["pytorch-grad-cam"]
    for p in args.precision:
        row = {
            "arch": args.arch,
            "size": args.size,
            "channels": args.channels,
            "passes": method.passes(1),
            "device": args.device,
            "precision": p,
            "runs_as": resolve_precision(p, torch.device(args.device)),
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "ours_s": round(medians[f"ours {p}"], 3),
            "pgc_s": round(theirs_s, 3),
            "ratio": round(theirs_s / medians[f"ours {p}"], 2),
            # two classes of one image: theirs is two calls (2 × its median), ours one run
            "ours_two_classes_s": round(medians[f"ours_two {p}"], 3),
            "ratio_two_classes": round(2 * theirs_s / medians[f"ours_two {p}"], 2),
            "max_map_difference": float(
                f"{np.abs(maps[f'ours {p}'] - maps['pytorch-grad-cam']).max():.2e}"
            ),
            "all_s": {name: [round(t, 3) for t in times[name]] for name in (f"ours {p}",)},
        }
        print(json.dumps(row))


if __name__ == "__main__":
    main()
