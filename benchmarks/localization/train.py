"""Train a stock torchvision ResNet-18 on the synthetic shapes, from random init, on CPU.

Classification labels only: the true boxes are never used. Each batch is generated on the fly
(one image size per batch, drawn like :func:`napari_gapcam.synthetic.make_sample` draws it) and
preprocessed exactly as the engine does at inference (``napari_gapcam.engine.preprocess``: /255,
ImageNet mean/std, bilinear antialiased resize to short side = ``input_size``, no crop).

    python benchmarks/localization/train.py              # reproduces the shipped checkpoint
    python benchmarks/localization/train.py --steps 200  # a quick try
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from napari_gapcam.engine.preprocess import to_input_tensor
from napari_gapcam.synthetic import CLASS_NAMES, SIDE_RANGE, make_sample

DEFAULT_OUT = (
    Path(__file__).resolve().parents[2] / "src" / "napari_gapcam" / "data" / "shapes_resnet18.pt"
)


class Batches(torch.utils.data.IterableDataset):
    """Batch ``i`` comes from ``default_rng([seed, i])``: reproducible, apart from other seeds."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def __iter__(self):
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        start, stride = (info.id, info.num_workers) if info else (0, 1)
        args = self.args
        for step in range(start, args.steps, stride):
            rng = np.random.default_rng([args.seed, step])
            size = tuple(int(s) for s in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2))
            ramp = args.curriculum_steps
            clutter = min(1.0, step / ramp) if ramp > 0 else 1.0  # curriculum
            input_size = int(rng.choice(args.train_sizes))  # one short side per batch
            images, labels = [], []
            for _ in range(args.batch_size):
                image, label, _box = make_sample(rng, size=size, clutter=clutter)  # box unused
                if rng.random() < 0.5:
                    image = image[:, ::-1]
                if rng.random() < 0.5:
                    image = image[::-1]
                images.append(to_input_tensor(np.ascontiguousarray(image), input_size=input_size))
                labels.append(label)
            yield torch.cat(images), torch.tensor(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="training data and init seed")
    parser.add_argument("--steps", type=int, default=800, help="optimizer steps (one batch each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--input-size", type=int, default=192, help="short side at inference (saved)"
    )
    parser.add_argument(
        "--train-sizes",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[192],
        help="short sides to train at, one drawn per batch (comma-separated; default: 192)",
    )
    parser.add_argument(
        "--curriculum-steps",
        type=int,
        default=200,
        help="clutter ramps from 0 (flat grey, no distractors) to 1 over these first steps",
    )
    parser.add_argument("--lr", type=float, default=2e-3, help="peak OneCycle learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument(
        "--time-budget", type=float, default=900.0, help="stop early after this many seconds"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bfloat16 autocast (fast on CPUs with AVX512-BF16/AMX)",
    )
    parser.add_argument(
        "--box-threshold",
        type=float,
        default=0.55,
        help="box threshold the checkpoint suggests: the best τ on the design split (seed 999)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = torchvision.models.resnet18(num_classes=len(CLASS_NAMES))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.2
    )
    loader = torch.utils.data.DataLoader(
        Batches(args),
        batch_size=None,
        num_workers=1,
        prefetch_factor=4,
        persistent_workers=False,
    )

    recent_loss: list[float] = []
    recent_correct: list[float] = []
    steps_done = 0
    for step, (x, y) in enumerate(loader):
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        steps_done = step + 1
        recent_loss = (recent_loss + [loss.item()])[-50:]
        recent_correct = (recent_correct + [(logits.argmax(1) == y).float().mean().item()])[-50:]
        elapsed = time.perf_counter() - start
        if steps_done % 25 == 0 or steps_done == args.steps:
            print(
                f"step {steps_done:4d}/{args.steps}  {elapsed:6.0f}s  "
                f"lr {schedule.get_last_lr()[0]:.2e}  loss {np.mean(recent_loss):.3f}  "
                f"acc(last 50) {np.mean(recent_correct):.3f}",
                flush=True,
            )
        if elapsed > args.time_budget and steps_done < args.steps:
            print(f"time budget of {args.time_budget:.0f}s reached at step {steps_done}; stopping")
            break

    seconds = time.perf_counter() - start
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "arch": "resnet18",
            "state_dict": state,
            "class_names": list(CLASS_NAMES),
            "input_size": args.input_size,
            "box_threshold": args.box_threshold,
            "train_info": {
                "seconds": round(seconds, 1),
                "steps": steps_done,
                "epochs": 1,  # every batch is freshly generated: one pass, no repeats
                "samples": steps_done * args.batch_size,
                "batch_size": args.batch_size,
                "seed": args.seed,
                "curriculum_steps": args.curriculum_steps,
                "train_sizes": args.train_sizes,
                "lr": args.lr,
                "weight_decay": args.weight_decay,
                "label_smoothing": args.label_smoothing,
                "bf16": args.bf16,
                "threads": args.threads,
                "final_train_acc": round(float(np.mean(recent_correct)), 4),
                "final_train_loss": round(float(np.mean(recent_loss)), 4),
                "torch": str(torch.__version__),
            },
        },
        args.out,
    )
    size_mb = args.out.stat().st_size / 1e6
    print(
        f"done: {steps_done} steps, {steps_done * args.batch_size} images in {seconds:.0f}s "
        f"({seconds / 60:.1f} min); train acc (last 50 batches) {np.mean(recent_correct):.3f}; "
        f"saved {args.out} ({size_mb:.1f} MB)"
    )
    if math.isfinite(seconds) and seconds > 900:
        print("warning: training took longer than 15 minutes")


if __name__ == "__main__":
    main()
