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
second class of the same image (ours: from the same passes; theirs: another call).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="ours (default: auto)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import pytorch_grad_cam.score_cam as pgc_score_cam
    import torch
    import torchvision
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from napari_gapcam import load_model

    pgc_score_cam.tqdm.tqdm = lambda iterable: iterable  # no progress bar in their loop
    torch.manual_seed(0)
    network = getattr(torchvision.models, args.arch)().eval().to(args.device)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.pt"
        torch.save(network.state_dict(), path)
        model = load_model(args.arch, weights=path, device=args.device, method="scorecam")
    model = model.with_method("scorecam", max_channels=args.channels, batch_size=args.batch_size)
    method = model.method_object
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), np.uint8)
    c = 0

    first = model.run(image)
    kept = first.features.mean(dim=(1, 2)).topk(args.channels).indices.sort().values
    inputs = first._batch.inputs.take([0]).to(args.device)
    pgc = ScoreCAM(network, [network.layer4[-1]], reshape_transform=lambda a: a[:, kept])
    targets = [ClassifierOutputTarget(c)]

    def ours() -> np.ndarray:
        return model.run(image).cam(c, (args.size, args.size))

    def theirs() -> np.ndarray:
        return pgc(inputs, targets=targets)[0]

    def ours_two() -> None:  # a second class of the same image: from the same passes
        result = model.run(image)
        result.cam(c, (args.size, args.size)), result.cam(1, (args.size, args.size))

    ours_map, theirs_map = ours(), theirs()  # warm-up
    ours_two()
    times: dict[str, list[float]] = {"ours": [], "pytorch-grad-cam": [], "ours_two": []}
    for _ in range(args.repeat):
        for name, fn in (("ours", ours), ("pytorch-grad-cam", theirs), ("ours_two", ours_two)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    row = {
        "arch": args.arch,
        "size": args.size,
        "channels": args.channels,
        "passes": method.passes(1),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "ours_s": round(medians["ours"], 3),
        "pgc_s": round(medians["pytorch-grad-cam"], 3),
        "ratio": round(medians["pytorch-grad-cam"] / medians["ours"], 2),
        # two classes of one image: theirs is two calls (2 × its median), ours one run
        "ours_two_classes_s": round(medians["ours_two"], 3),
        "ratio_two_classes": round(2 * medians["pytorch-grad-cam"] / medians["ours_two"], 2),
        "max_map_difference": float(f"{np.abs(ours_map - theirs_map).max():.2e}"),
        "all_s": {name: [round(t, 3) for t in ts] for name, ts in times.items()},
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
