"""Speed and memory on big images, engine and widget: ratios against same-run baselines.

    xvfb-run -a .venv/bin/python benchmarks/speed.py            # engine + widget rows
    .venv/bin/python benchmarks/speed.py --engine-only           # no napari needed

Engine rows: ``model.run`` on an 8192² image vs the same run on the image pre-shrunk to 256²
(random ResNet-50 weights: speed does not depend on them), and the extra peak memory of the run
(resident set high-water mark, reset just before it, minus the resident set before it) as a
multiple of the image's bytes. Each case runs in a fresh process so peaks do not mix.
Widget rows: one class change (the overlay and, with box and mask on, their update) on an RGB
layer of 1024², 4096² and 6000², and the overlay's bytes. Medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np


def _shown(widget):
    """The widget's shown result (``session.shown``; ``_shown`` before the session existed,
    so the same script measures the code before a change too)."""
    return widget.session.shown if hasattr(widget, "session") else widget._shown


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _paired_ms(ours, baseline, repeat: int) -> tuple[float, float]:
    """Medians of ``ours`` and ``baseline`` timed alternately (a load change hits both)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((ours, times[0]), (baseline, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return 1000 * float(np.median(times[0])), 1000 * float(np.median(times[1]))


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def engine_case(kind: str, side: int, repeat: int, device: str = "cpu") -> dict:
    """One engine row, in this process (called in a fresh subprocess)."""
    import torch
    from skimage.transform import resize

    from napari_gapcam import load_model

    torch.manual_seed(0)
    model = load_model("resnet50", weights=None, device=device)
    rng = np.random.default_rng(0)
    if kind == "rgb_u8":
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    else:
        image = rng.integers(0, 65536, (side, side), dtype=np.uint16)
    small = resize(image[:: side // 256, :: side // 256], (256, 256), preserve_range=True).astype(
        image.dtype
    )
    model.run(small)  # warm-up (the big image's first run is the one measured)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the high-water mark
    before = _status("VmRSS")
    model.run(image)
    extra = _status("VmHWM") - before
    big = _median_ms(lambda: model.run(image), repeat)
    base = _median_ms(lambda: model.run(small), repeat)
    return {
        "case": f"{kind} {side}²" + ("" if device == "cpu" else f" on {device}"),
        "run_ms": big,
        "shrunk_ms": base,
        "ratio": big / base,
        "extra_bytes": extra,
        "image_bytes": image.nbytes,
        "memory_ratio": extra / image.nbytes,
    }


def stack_rows(planes: int, side: int, repeat: int) -> list[dict]:
    """Planes/s of ``run_batch`` + every plane's top-1 map vs TorchCAM's CAM image by image,
    and one 224² ``run`` + ``cam`` vs the bare torchvision forward."""
    import torch
    import torch.nn.functional as F
    import torchvision

    from napari_gapcam import load_model
    from napari_gapcam.engine.preprocess import to_input_tensor

    torch.manual_seed(0)
    model = load_model("resnet50", weights=None, device="cpu")
    network = torchvision.models.resnet50().eval()
    network.load_state_dict(_state_dict_of(model))  # the same weights
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (planes, side, side, 3), dtype=np.uint8)

    def ours() -> None:
        result = model.run_batch(stack)
        result.cams(result.top1())  # every plane's top-1 map at 512²

    rows = []
    try:
        from torchcam.methods import CAM
    except ImportError:
        CAM = None
    if CAM is not None:
        extractor = CAM(network, target_layer="layer4", fc_layer="fc")

        def torchcam() -> None:
            for plane in stack:
                with torch.no_grad():
                    scores = network(to_input_tensor(plane))
                (raw,) = extractor(int(scores[0].argmax()), scores)
                up = F.interpolate(raw[None], size=(side, side), mode="bilinear")[0, 0]
                (up - up.min()) / (up.max() - up.min())

        ours()  # warm-up (folding the batch norms, the memory probe)
        torchcam()
        ours_ms, theirs_ms = _paired_ms(ours, torchcam, repeat)
        extractor.remove_hooks()
        rows.append(
            {
                "case": f"stack {planes}×{side}² RGB: run_batch + top-1 maps vs TorchCAM CAM",
                "ours": planes / ours_ms * 1000,
                "base": planes / theirs_ms * 1000,
                "unit": "planes/s",
            }
        )
    image = stack[0, :224, :224]
    tensor = to_input_tensor(image)

    def single() -> None:
        result = model.run(image)
        result.cam(result.topk(1)[0][0])

    def bare() -> None:
        with torch.inference_mode():
            network(tensor)

    single(), bare()
    single_ms, bare_ms = _paired_ms(single, bare, 5 * repeat)
    rows.append(
        {
            "case": "one 224² image: run + cam vs bare torchvision forward",
            "ours": 1000 / single_ms,
            "base": 1000 / bare_ms,
            "unit": "images/s",
        }
    )
    return rows


def gpu_rows(planes: int, repeat: int) -> list[dict]:
    """On a GPU: ``run_batch`` (+ every plane's top-1 map at 512²) from a uint8 stack on the host
    vs the bare batched forward of the same model at the same batch size on inputs already on
    the GPU, in fp32, fp16 and bf16 autocast (target: ≥ 70 % of it); and one 224² ``run`` +
    ``cam`` vs the bare forward of that image."""
    import torch

    from napari_gapcam import load_model
    from napari_gapcam.engine.preprocess import (
        finish_input,
        reduce_image_for_input,
        to_input_tensor,
    )

    torch.manual_seed(0)
    model = load_model("resnet50", weights=None, device="cuda")
    gpu = torch.cuda.get_device_name()
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, (planes, 512, 512, 3), dtype=np.uint8)
    batch = 32
    inputs = torch.cat([to_input_tensor(plane) for plane in stack[:batch]]).cuda()
    inputs = inputs.contiguous(memory_format=torch.channels_last)
    network = torch.nn.Sequential(model.features, model.head).eval()
    rows = []
    for precision, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):

        def bare(dtype: torch.dtype | None = dtype, x: torch.Tensor = inputs) -> None:
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype=dtype, enabled=dtype is not None),
            ):
                for _ in range(0, planes, batch):
                    network(x)
            torch.cuda.synchronize()

        def ours(precision: str = precision) -> None:
            result = model.run_batch(stack, batch_size=batch, precision=precision)
            result.cams(result.top1())
            torch.cuda.synchronize()

        def ours_run(precision: str = precision) -> None:
            model.run_batch(stack, batch_size=batch, precision=precision)
            torch.cuda.synchronize()

        bare(), ours(), ours_run()
        for fn, what in ((ours, "run_batch + top-1 maps"), (ours_run, "run_batch alone")):
            ours_ms, bare_ms = _paired_ms(fn, bare, repeat)
            rows.append(
                {
                    "case": f"GPU {gpu}: {planes}×512² RGB uint8, batch {batch}, {precision}: "
                    f"{what} vs bare batched forward (inputs already on the GPU)",
                    "ours": planes / ours_ms * 1000,
                    "base": planes / bare_ms * 1000,
                    "unit": "planes/s",
                }
            )
    # where the time goes (fp32): the host side alone (read, copy to pinned memory, send,
    # resize and normalise), and the top-1 maps alone (made on the GPU, returned as float32)
    result = model.run_batch(stack, batch_size=batch)
    top = result.top1()

    def host_side() -> None:
        for start in range(0, planes, batch):
            reduced = [reduce_image_for_input(plane) for plane in stack[start : start + batch]]
            finish_input(reduced, "cuda")
        torch.cuda.synchronize()

    def maps_alone() -> None:
        result.cams(top)
        torch.cuda.synchronize()

    bare_fp32 = functools.partial(bare, None)
    for fn, what in ((host_side, "host side alone"), (maps_alone, "top-1 maps alone (512²)")):
        fn()
        ours_ms, bare_ms = _paired_ms(fn, bare_fp32, repeat)
        rows.append(
            {
                "case": f"GPU {gpu}: {planes}×512² RGB uint8, batch {batch}, fp32: {what} "
                "vs bare batched forward",
                "ours": planes / ours_ms * 1000,
                "base": planes / bare_ms * 1000,
                "unit": "planes/s",
            }
        )
    image = stack[0, :224, :224]
    tensor = to_input_tensor(image, device="cuda").contiguous(memory_format=torch.channels_last)

    def single() -> None:
        result = model.run(image)
        result.cam(result.topk(1)[0][0])
        torch.cuda.synchronize()

    def bare_single() -> None:
        with torch.inference_mode():
            network(tensor)
        torch.cuda.synchronize()

    single(), bare_single()
    single_ms, bare_ms = _paired_ms(single, bare_single, 10 * repeat)
    rows.append(
        {
            "case": f"GPU {gpu}: one 224² image, run + cam vs bare forward",
            "ours": 1000 / single_ms,
            "base": 1000 / bare_ms,
            "unit": "images/s",
        }
    )
    return rows


def _state_dict_of(model) -> dict:
    """The torchvision state dict of a ResNet loaded with load_model (features + fc)."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    state = {}
    for key, value in model.features.state_dict().items():
        index, rest = key.split(".", 1)
        state[f"{names[int(index)]}.{rest}"] = value
    state.update({f"fc.{k}": v for k, v in model.fc.state_dict().items()})
    return state


def widget_rows(sides: list[int], planes: int, repeat: int) -> list[dict]:
    """Class and threshold changes on big RGB layers, and on a stack after an all-planes run."""
    import napari

    from napari_gapcam._napari.widget import ALL, GapCamWidget

    rows = []
    viewer = napari.Viewer(show=False)
    widget = GapCamWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.weights.value = "none (random init)"
    widget.device.value = "cpu"
    rng = np.random.default_rng(0)
    cases = [(f"{side}²", rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for side in sides]
    cases.append(
        (f"stack {planes}×512², all planes", rng.integers(0, 256, (planes, 512, 512), np.uint8))
    )
    for label, image in cases:
        viewer.layers.clear()
        layer = viewer.add_image(image, name="big", contrast_limits=(0, 255))
        widget.image.value = layer
        widget.planes.value = ALL if image.ndim == 3 and image.shape[-1] != 3 else "current plane"
        widget.show_box.value = widget.show_mask.value = False
        _run(widget)
        rows += _change_rows(widget, viewer, label, image.shape, repeat)
        if _shown(widget).is_stack:
            rows += _view3d_rows(widget, viewer, label, image.shape, repeat)
    viewer.close()
    return rows


def _view3d_rows(widget, viewer, label: str, shape: tuple, repeat: int) -> list[dict]:
    """A 3D view of the stack: napari reads every plane of the overlay (a bounded volume)."""
    from qtpy.QtWidgets import QApplication

    widget.show_box.value = widget.show_mask.value = False
    classes = [i for i, _, _ in _shown(widget).top(10)][1:]
    cam = viewer.layers["big CAM"]
    volume = int(np.prod(cam.data.shape)) * 4  # what napari holds in 3D
    full = int(np.prod(shape)) * 4

    switches = []
    for _ in range(repeat):
        viewer.dims.ndisplay = 2
        QApplication.processEvents()
        start = time.perf_counter()
        viewer.dims.ndisplay = 3
        QApplication.processEvents()
        switches.append(time.perf_counter() - start)

    def select(c):
        widget.class_select.value = c

    rows = [{"case": f"switch to 3D, {label}", "ms": 1000 * float(np.median(switches))}]
    rows.append({"case": f"class change {label}, 3D view", "ms": _timed(select, classes, repeat)})
    widget.show_mask.value = True
    QApplication.processEvents()
    rows.append(
        {"case": f"class change {label}, 3D view + mask", "ms": _timed(select, classes, repeat)}
    )
    viewer.dims.ndisplay = 2
    for row in rows:
        row.update(overlay_bytes=volume, full_size_bytes=full)
    return rows


def _run(widget) -> None:
    from qtpy.QtWidgets import QApplication

    widget.run()
    while widget.busy:
        QApplication.processEvents()
        time.sleep(0.01)


def _timed(set_value, values: list, repeat: int) -> float:
    from qtpy.QtWidgets import QApplication

    times = []
    for k in range(repeat):
        start = time.perf_counter()
        set_value(values[k % len(values)])
        QApplication.processEvents()  # napari reads (computes) the displayed plane here
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _change_rows(widget, viewer, label: str, shape: tuple, repeat: int) -> list[dict]:
    from qtpy.QtWidgets import QApplication

    classes = [i for i, _, _ in _shown(widget).top(10)][1:]
    cam = viewer.layers["big CAM"]
    held = cam.data.nbytes if isinstance(cam.data, np.ndarray) else 0  # lazy: nothing held
    full = int(np.prod(shape[:3] if len(shape) == 3 and shape[-1] != 3 else shape[:2])) * 4
    rows = []

    def select(c):
        widget.class_select.value = c

    def threshold(t):
        widget.threshold.value = t

    rows.append(
        {
            "case": f"class change {label}",
            "ms": _timed(select, classes, repeat),
            "overlay_bytes": held,
            "full_size_bytes": full,
        }
    )
    widget.show_box.value = widget.show_mask.value = True
    QApplication.processEvents()
    thresholds = [0.3 + 0.05 * k for k in range(8)]
    rows.append(
        {
            "case": f"threshold change {label} (box + mask)",
            "ms": _timed(threshold, thresholds, repeat),
            "overlay_bytes": held,
            "full_size_bytes": full,
        }
    )
    rows.append(
        {
            "case": f"class change {label} + box + mask",
            "ms": _timed(select, classes, repeat),
            "overlay_bytes": held,
            "full_size_bytes": full,
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--side", type=int, default=8192)
    parser.add_argument("--engine-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="only the GPU rows")
    parser.add_argument("--planes", type=int, default=64, help="planes of the stack row")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--case-device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(engine_case(args.case, args.side, args.repeat, args.case_device)))
        return

    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"numpy {np.__version__}; medians of {args.repeat}"
    )
    if args.gpu_only:
        print("\n| GPU case | ours | baseline | ratio |\n|---|---|---|---|")
        for row in gpu_rows(4 * args.planes, args.repeat):
            print(
                f"| {row['case']} | {row['ours']:.1f} {row['unit']} | {row['base']:.1f} "
                f"{row['unit']} | {row['ours'] / row['base']:.2f}× |"
            )
        return
    print("\n| engine case | run | same run on 256² | ratio | extra peak memory |")
    print("|---|---|---|---|---|")
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    for kind, device in [(kind, device) for device in devices for kind in ("rgb_u8", "grey_u16")]:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                kind,
                "--case-device",
                device,
                "--side",
                str(args.side),
                "--repeat",
                str(args.repeat),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {row['case']} | {row['run_ms']:.0f} ms | {row['shrunk_ms']:.0f} ms | "
            f"{row['ratio']:.2f}× | {row['extra_bytes'] / 2**20:.0f} MiB = "
            f"{row['memory_ratio']:.3f}× the image |"
        )
    print("\n| stack / single case | ours | baseline | ratio |")
    print("|---|---|---|---|")
    gpu = gpu_rows(4 * args.planes, args.repeat) if torch.cuda.is_available() else []
    for row in stack_rows(args.planes, 512, max(1, args.repeat // 2)) + gpu:
        print(
            f"| {row['case']} | {row['ours']:.1f} {row['unit']} | {row['base']:.1f} "
            f"{row['unit']} | {row['ours'] / row['base']:.2f}× |"
        )
    if args.engine_only:
        return
    print("\n| widget case | time | overlay held (0: lazy) | full-size float32 map |")
    print("|---|---|---|---|")
    for row in widget_rows([1024, 4096, 6000], args.planes, args.repeat):
        print(
            f"| {row['case']} | {row['ms']:.1f} ms | {row['overlay_bytes'] / 2**20:.1f} MiB | "
            f"{row['full_size_bytes'] / 2**20:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
