"""Faithfulness speed: ours against TorchCAM's deletion / insertion loop and pytorch-grad-cam's
ROADCombined, on the same network, images, maps and classes, in one run.

    .venv/bin/python benchmarks/faithfulness.py                      # 2 images, 224 steps
    .venv/bin/python benchmarks/faithfulness.py --steps 32 --images 2 # a quicker look

ResNet-50 with random weights (speed does not depend on them), 224² uint8 images. Ours:
``napari_gapcam.faithfulness(model, images, metrics=...)`` end to end (preprocessing, the
forward pass, the maps, every perturbed input batched with batch norms folded, ROAD's imputation
by multigrid-preconditioned CG). TorchCAM: ``DeletionInsertionMetric(steps=S)`` (its default
batch of 32, and a batch of 8) on the same normalised tensor and our maps (handed to it by a
stub extractor, so it computes no map: only its loop is timed), the torchvision module eager.
pytorch-grad-cam: ``ROADCombined()`` on the same tensor, maps and ``ClassifierOutputTarget``.
Medians of ``--repeat`` calls after a warm-up call; ratio = anchor / ours (> 1: ours faster).
Ours runs at each ``--precision`` (default ``fp32,auto``: ``auto`` is bfloat16 autocast where the
device computes it natively, e.g. a CPU with AMX), with how far its scores are from float32's.
Prints one JSON line per row, then a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform

import numpy as np
from timing import add_precision_argument, median_s  # (same folder)


class GivenMaps:
    """A TorchCAM extractor handing back given maps: TorchCAM's loop, no CAM computed."""

    def __init__(self, model, maps) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--steps", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    add_precision_argument(parser)
    args = parser.parse_args()

    import torch

    if args.threads:  # on a CPU shared with other jobs, one thread each side is steadier
        torch.set_num_threads(args.threads)
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.metrics import DeletionInsertionMetric

    from napari_gapcam import faithfulness, load_model
    from napari_gapcam.engine.faithfulness.rows import prepare

    torch.manual_seed(0)
    model = load_model(args.arch, weights=None, device=args.device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 224, 224, 3), dtype=np.uint8)
    rows = prepare(model, images, None, None, None, None, None)
    tensor, maps = rows.inputs, rows.maps
    classes = [int(c) for c in rows.classes]
    net = torch.nn.Sequential(model.features, model.head).eval()
    softmax = lambda logits: torch.softmax(logits, -1)  # noqa: E731

    def ours(metrics, precision):
        return lambda: faithfulness(
            model, images, metrics=metrics, steps=args.steps, precision=precision
        )

    def torchcam(batch):
        def call():
            metric = DeletionInsertionMetric(
                GivenMaps(net, maps), softmax, steps=args.steps, batch_size=batch
            )
            metric.update(tensor, class_idx=classes)

        return call

    def pgc_road():
        targets = [ClassifierOutputTarget(c) for c in classes]
        ROADCombined()(tensor, maps.cpu().numpy(), targets, net)

    anchors = {
        "deletion + insertion": [
            ("TorchCAM (batch 32)", torchcam(32)),
            ("TorchCAM (batch 8)", torchcam(8)),
        ],
        "road": [("pytorch-grad-cam ROADCombined", pgc_road)],
    }
    columns = {"deletion + insertion": ("deletion", "insertion"), "road": ("road",)}
    rows_out = []
    for metric, metric_anchors in anchors.items():
        theirs = {name: median_s(fn, args.repeat) for name, fn in metric_anchors}
        tables = {p: ours(columns[metric], p)() for p in args.precision}  # also a warm-up
        for precision in args.precision:
            mine = median_s(ours(columns[metric], precision), args.repeat)
            # how far this precision's scores are from float32's (same images, maps, classes)
            apart = None
            if "fp32" in tables and precision != "fp32":
                cols = list(columns[metric])
                apart = float((tables[precision][cols] - tables["fp32"][cols]).abs().max().max())
            for anchor, seconds in theirs.items():
                row = {
                    "metric": metric,
                    "precision": tables[precision].attrs["precision"],
                    "anchor": anchor,
                    "images": args.images,
                    "steps": args.steps if metric != "road" else 18,
                    "ours_s": round(mine, 3),
                    "anchor_s": round(seconds, 3),
                    "ratio": round(seconds / mine, 2),
                    "max_score_difference_vs_fp32": None if apart is None else round(apart, 4),
                }
                rows_out.append(row)
                print(json.dumps(row), flush=True)
    threads = torch.get_num_threads()
    print(
        f"\n{args.arch}, {args.images} images of 224², {args.device} ({platform.machine()}, "
        f"{threads} threads), torch {torch.__version__}, medians of {args.repeat}"
    )
    print("\n| metric | ours | anchor | ours (s) | anchor (s) | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows_out:
        print(
            f"| {r['metric']} | {r['precision']} | {r['anchor']} | {r['ours_s']} | "
            f"{r['anchor_s']} | {r['ratio']}× |"
        )


if __name__ == "__main__":
    main()
