"""CAM localization on held-out synthetic shapes, through the napari-gapcam engine.

For every image: one forward pass (``model.run``), then the CAM box of the ground-truth class
at each threshold of a sweep (as MaxBoxAcc does, Choe et al., CVPR 2020), compared with the
true box. Two baselines are scored on the same images: a centred box of the split's mean true
box size, and the whole image.

    python benchmarks/localization/benchmark.py            # 500 held-out images (seed 1000)
    python benchmarks/localization/benchmark.py --n 100    # quicker
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import napari_gapcam
from napari_gapcam.synthetic import CLASS_NAMES, iou, make_dataset

DEFAULT_WEIGHTS = Path(napari_gapcam.__file__).parent / "data" / "shapes_resnet18.pt"
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
REFERENCE = (
    "Published reference (Choe et al., CVPR 2020, MaxBoxAcc): CAM on ResNet-50 reaches 63.7 on "
    "ImageNet and 63.0 on CUB."
)


def centred_box(shape: tuple[int, int], size: tuple[float, float]) -> tuple[int, int, int, int]:
    """A box of ``size`` (h, w) centred in an image of ``shape``, clipped to the image."""
    h, w = min(size[0], shape[0]), min(size[1], shape[1])
    y0, x0 = round((shape[0] - h) / 2), round((shape[1] - w) / 2)
    return y0, x0, y0 + round(h), x0 + round(w)


def summarize(ious: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Metrics from an (images × thresholds) IoU table and per-image classification hits."""
    hits = ious >= 0.5
    corloc = hits.mean(0)
    best = int(np.argmax(corloc))
    return {
        "corloc@0.2": float(corloc[np.flatnonzero(THRESHOLDS == 0.2)[0]]),
        "maxboxacc": float(corloc[best]),
        "best_tau": float(THRESHOLDS[best]),
        "miou@0.2": float(ious[:, THRESHOLDS == 0.2].mean()),
        "miou@best": float(ious[:, best].mean()),
        "top1loc@0.2": float((hits[:, THRESHOLDS == 0.2][:, 0] & correct).mean()),
        "top1loc@best": float((hits[:, best] & correct).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--n", type=int, default=500, help="held-out images")
    parser.add_argument("--seed", type=int, default=1000, help="held-out seed (training uses 0)")
    parser.add_argument("--input-size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = napari_gapcam.load_model("resnet18", weights=args.weights, device="cpu")
    input_size = args.input_size or model.input_size
    data = make_dataset(args.n, args.seed)
    mean_size = np.mean([(b[2] - b[0], b[3] - b[1]) for _, _, b in data], axis=0)

    cam_ious = np.zeros((args.n, len(THRESHOLDS)))
    centre_ious, whole_ious = np.zeros((args.n, 1)), np.zeros((args.n, 1))
    correct = np.zeros(args.n, dtype=bool)
    labels = np.array([label for _, label, _ in data])
    for i, (image, label, box) in enumerate(data):
        result = model.run(image, input_size=input_size)
        correct[i] = result.topk(1)[0][0] == label
        cam = result.cam(label)  # the ground-truth class, computed once for the whole sweep
        for j, tau in enumerate(THRESHOLDS):
            found = napari_gapcam.boxes_from_map(cam, tau)  # what result.box(label, tau) gives
            cam_ious[i, j] = iou(found[0] if found else None, box)
        centre_ious[i] = iou(centred_box(image.shape[:2], mean_size), box)
        whole_ious[i] = iou((0, 0, *image.shape[:2]), box)
    seconds = time.perf_counter() - start

    rows = {
        "CAM (ground-truth class)": summarize(cam_ious, correct),
        f"centred box, mean size {mean_size[0]:.0f}×{mean_size[1]:.0f} px": summarize(
            np.repeat(centre_ious, len(THRESHOLDS), 1), correct
        ),
        "whole image": summarize(np.repeat(whole_ious, len(THRESHOLDS), 1), correct),
    }
    print(
        f"{args.n} held-out images (seed {args.seed}), weights {args.weights.name}, "
        f"input_size {input_size}, {seconds:.0f}s\n"
    )
    print(f"Classification top-1: {correct.mean():.3f}\n")
    print(
        "| method | CorLoc@0.2 | MaxBoxAcc (best τ) | mean IoU@0.2 | mean IoU@best τ "
        "| top-1 loc@0.2 | top-1 loc@best τ |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        tau = f"τ={m['best_tau']:.2f}" if name.startswith("CAM") else "no τ"
        print(
            f"| {name} | {m['corloc@0.2']:.3f} | {m['maxboxacc']:.3f} ({tau}) "
            f"| {m['miou@0.2']:.3f} | {m['miou@best']:.3f} | {m['top1loc@0.2']:.3f} "
            f"| {m['top1loc@best']:.3f} |"
        )
    print("\nCAM CorLoc per threshold:")
    corloc = (cam_ious >= 0.5).mean(0)
    print("  ".join(f"{t:.2f}:{c:.2f}" for t, c in zip(THRESHOLDS, corloc, strict=True)))
    best = int(np.argmax(corloc))
    print("\nPer class (top-1 accuracy / CAM CorLoc at best τ):")
    for c, name in enumerate(CLASS_NAMES):
        sel = labels == c
        print(
            f"  {name:10s} n={sel.sum():3d}  acc {correct[sel].mean():.3f}  "
            f"corloc {(cam_ious[sel, best] >= 0.5).mean():.3f}"
        )
    print(f"\n{REFERENCE}")


if __name__ == "__main__":
    main()
