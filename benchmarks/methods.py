"""Time per stack and per map of every method against pytorch-grad-cam and TorchCAM, one run.

    .venv/bin/python benchmarks/methods.py                  # 64 planes of 224², resnet50
    .venv/bin/python benchmarks/methods.py --planes 8       # a quick look

Same network (random weights: speed does not depend on them), same layer (the last maps before
the pooling), same images, same class. Ours: ``load_model(arch, weights=None, method=M)``, then
``run_batch`` (uint8 images: preprocessing included) and ``cams(c)`` (maps upsampled to the
image, normalised). pytorch-grad-cam: one batched call on the normalised tensor
(``target_layers=[model.layer4[-1]]``, ``ClassifierOutputTarget(c)`` per image). TorchCAM: its
extractor on the model's forward of the batch. Score-CAM and Ablation-CAM rerun the network
per channel in both anchors, so they are timed per map (one image, resnet18's 512 channels, both
sides at every channel; ``--ablation-arch resnet50`` for Ablation-CAM on resnet50); ours
Score-CAM twice: its masked passes in float32 and under ``precision="auto"`` (its default:
bfloat16 where the CPU has AMX). Medians of
``--repeat`` after a warm-up call; ratios are baseline / ours (> 1: ours faster). Prints one JSON
line per row, then the table.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
from timing import median_s  # (same folder)

HEAD_ONLY = ("cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam")
PGC = {  # our name → pytorch-grad-cam's class
    "cam": None,
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "ablationcam": "AblationCAM",
    "scorecam": "ScoreCAM",
}
TORCHCAM = {  # our name → TorchCAM's class (where it has the method)
    "cam": "CAM",
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def tensor_of(stack: np.ndarray):
    import torch

    x = (stack.astype(np.float32) / 255 - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))


def ours(arch: str, method: str, stack: np.ndarray, c: int, **options):
    from napari_gapcam import load_model

    model = load_model(arch, weights=None, device="cpu", method=method, **options)

    def call() -> None:
        if len(stack) == 1:
            model.run(stack[0]).cam(c)
        else:
            model.run_batch(stack).cams(c)

    return call


def pytorch_grad_cam(arch: str, method: str, stack: np.ndarray, c: int):
    import pytorch_grad_cam as pgc
    import torchvision
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = getattr(torchvision.models, arch)(weights=None).eval()
    x = tensor_of(stack)
    targets = [ClassifierOutputTarget(c)] * len(stack)

    def call() -> None:
        with getattr(pgc, PGC[method])(model=net, target_layers=[net.layer4[-1]]) as cam:
            cam(input_tensor=x, targets=targets)

    return call


def torchcam(arch: str, method: str, stack: np.ndarray, c: int):
    import torch
    import torchcam.methods as tcm
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None).eval()
    x = tensor_of(stack)
    grad = method not in ("cam", "scorecam")

    def call() -> None:
        with getattr(tcm, TORCHCAM[method])(net, target_layer="layer4") as extractor:
            with torch.set_grad_enabled(grad):
                scores = net(x)
            extractor([c] * len(stack), scores)

    return call


def row(name: str, arch: str, method: str, stack: np.ndarray, repeat: int, **options) -> dict:
    import torch

    torch.manual_seed(0)
    c = 1
    out = {"row": name, "method": method, "arch": arch, "images": len(stack)}
    out["ours_s"] = median_s(ours(arch, method, stack, c, **options), repeat)
    for anchor, table, make in (
        ("pytorch-grad-cam", PGC, pytorch_grad_cam),
        ("TorchCAM", TORCHCAM, torchcam),
    ):
        if table.get(method):
            seconds = median_s(make(arch, method, stack, c), repeat)
            out[f"{anchor}_s"] = seconds
            out[f"{anchor}_ratio"] = seconds / out["ours_s"]
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--planes", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--methods", default=",".join(PGC), help="comma-separated")
    parser.add_argument("--ablation-arch", default="resnet18", help="Ablation-CAM's network")
    args = parser.parse_args()
    import torch
    import torchvision

    from napari_gapcam.engine.precision import resolve_precision

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (args.planes, args.size, args.size, 3), dtype=np.uint8)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}; "
        f"{args.planes} planes of {args.size}², median of {args.repeat}"
    )
    rows = []
    for method in args.methods.split(","):
        if method in HEAD_ONLY:
            rows.append(row("stack", "resnet50", method, stack, args.repeat))
        elif method == "ablationcam":  # pytorch-grad-cam: ~8 min a map on resnet50 here
            rows.append(row("one map", args.ablation_arch, method, stack[:1], 1))
        elif method == "scorecam":  # ours in float32, and "auto" (bfloat16 where native)
            for precision in ("fp32", "auto"):
                runs_as = resolve_precision(precision, torch.device("cpu"))
                name = f"one map ({precision}{' → ' + runs_as if runs_as != precision else ''})"
                one = row(name, "resnet18", method, stack[:1], 1, precision=precision)
                rows.append(one)
    print("\n| method | case | ours (s) | pytorch-grad-cam (s) | ratio | TorchCAM (s) | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r['method']}", f"{r['row']}, {r['arch']}", f"{r['ours_s']:.2f}"]
        for anchor in ("pytorch-grad-cam", "TorchCAM"):
            if f"{anchor}_s" in r:
                cells += [f"{r[f'{anchor}_s']:.2f}", f"{r[f'{anchor}_ratio']:.1f}×"]
            else:
                cells += ["—", "—"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
