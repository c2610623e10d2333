"""What a widget user waits for: a class change until the next frame, and Cancel until it stops.

    xvfb-run -a -s '-screen 0 1280x1024x24' .venv/bin/python benchmarks/widget_latency.py

Class change (random ResNet-50 weights on the CPU: the weights do not change the cost), in a
shown viewer: *handler* is the time ``class_select.value = c`` takes (the widget's update of
the overlays, on the UI thread); *until drawn* runs from the change until the canvas has drawn
the next frame (napari reads the displayed plane of the lazy overlays, uploads the textures and
repaints), what the user sees. Layers: 1 MP (1000² RGB), 6000² RGB (36 MP, a 1 MP overlay) and
a 64×512² stack after an *all planes* run; each with and without box + mask.

Cancel: an *all planes* run at input 896 on 8 planes of 512², cancelled ``--cancel-after``
seconds in; the time from Cancel until the worker has stopped (napari's activity spinner off).
Medians of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _shown(widget):
    """The widget's shown result (``session.shown``; ``_shown`` before the session existed,
    so the same script measures the code before a change too)."""
    return widget.session.shown if hasattr(widget, "session") else widget._shown


def _spin(until, timeout: float = 600.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not until():
        QApplication.processEvents()
        if time.perf_counter() > end:
            raise TimeoutError("the widget did not finish")
        time.sleep(0.001)


def _settle(rounds: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.processEvents()
        time.sleep(0.005)


class Frames:
    """Times the canvas finishes drawing a frame (after napari's own draw handlers)."""

    def __init__(self, viewer) -> None:
        self.times: list[float] = []
        canvas = viewer.window._qt_viewer.canvas._scene_canvas
        canvas.events.draw.connect(self._drawn, position="last")

    def _drawn(self, _event) -> None:
        self.times.append(time.perf_counter())

    def next_after(self, start: float) -> float:
        _spin(lambda: self.times and self.times[-1] > start, timeout=30)
        return self.times[-1]


def class_change_rows(viewer, widget, frames: Frames, label: str, repeat: int) -> list[dict]:
    classes = [i for i, _, _ in _shown(widget).top(12)][1:]
    rows = []
    for extras in (False, True):
        widget.show_box.value = widget.show_mask.value = extras
        _settle()
        handler, drawn = [], []
        for k in range(repeat):
            _settle(5)
            start = time.perf_counter()
            widget.class_select.value = classes[k % len(classes)]
            handled = time.perf_counter()
            frame = frames.next_after(handled)
            handler.append(handled - start)
            drawn.append(frame - start)
        rows.append(
            {
                "case": f"{label}{' + box + mask' if extras else ''}",
                "handler": 1000 * float(np.median(handler)),
                "drawn": 1000 * float(np.median(drawn)),
            }
        )
    widget.show_box.value = widget.show_mask.value = False
    return rows


def cancel_rows(viewer, widget, repeat: int, after: float, input_size: int) -> list[dict]:
    from napari_gapcam._napari.widget import ALL

    rng = np.random.default_rng(1)
    viewer.layers.clear()
    layer = viewer.add_image(rng.integers(0, 256, (8, 512, 512), np.uint8), name="stack")
    widget.image.value = layer
    widget.arch.value = "resnet50"
    widget.weights.value = "none (random init)"
    widget.planes.value = ALL
    widget.set_input_size_text(str(input_size))
    latencies = []
    for _ in range(repeat):
        widget.run()
        start = time.perf_counter()
        _spin(lambda start=start: time.perf_counter() - start > after)
        worker = widget._worker
        if worker is None:  # the run ended before Cancel
            continue
        stopped: list[float] = []
        worker.finished.connect(lambda stopped=stopped: stopped.append(time.perf_counter()))
        cancelled = time.perf_counter()
        widget.cancel()
        _spin(lambda stopped=stopped: bool(stopped))
        latencies.append(stopped[0] - cancelled)
    widget.set_input_size_text("model default")
    return [
        {
            "case": f"Cancel, all planes at input {input_size}, {after:.0f} s in: until stopped",
            "ms": 1000 * float(np.median(latencies)),
            "max": 1000 * float(np.max(latencies)),
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--cancel-repeat", type=int, default=3)
    parser.add_argument("--cancel-after", type=float, default=3.0)
    parser.add_argument("--big", type=int, default=6000, help="side of the big RGB layer")
    parser.add_argument("--no-cancel", action="store_true")
    parser.add_argument("--cancel-only", action="store_true")
    args = parser.parse_args()

    import napari
    import torch

    from napari_gapcam._napari.widget import ALL, GapCamWidget

    torch.manual_seed(0)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}; python {platform.python_version()}, "
        f"torch {torch.__version__}, napari {napari.__version__}, numpy {np.__version__}; "
        f"medians of {args.repeat} (cancel: {args.cancel_repeat})"
    )
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 900)
    widget = GapCamWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GAP-CAM")
    widget.weights.value = "none (random init)"
    widget.device.value = "cpu"
    frames = Frames(viewer)
    rng = np.random.default_rng(0)
    cases = [
        ("1 MP RGB (1000²)", rng.integers(0, 256, (1000, 1000, 3), np.uint8), False),
        (
            f"{args.big}² RGB ({args.big**2 / 1e6:.0f} MP)",
            rng.integers(0, 256, (args.big, args.big, 3), np.uint8),
            False,
        ),
        ("64×512² stack, all planes", rng.integers(0, 256, (64, 512, 512), np.uint8), True),
    ]
    print("\n| class change | handler | until drawn |\n|---|---|---|")
    for label, image, stack in [] if args.cancel_only else cases:
        viewer.layers.clear()
        layer = viewer.add_image(image, name="big", contrast_limits=(0, 255))
        widget.image.value = layer
        widget.planes.value = ALL if stack else "current plane"
        widget.show_box.value = widget.show_mask.value = False
        widget.run()
        _spin(lambda: not widget.busy)
        _settle()
        for row in class_change_rows(viewer, widget, frames, label, args.repeat):
            print(f"| {row['case']} | {row['handler']:.1f} ms | {row['drawn']:.1f} ms |")
    if not args.no_cancel:
        print("\n| cancel | median | max |\n|---|---|---|")
        for row in cancel_rows(viewer, widget, args.cancel_repeat, args.cancel_after, 896):
            print(f"| {row['case']} | {row['ms']:.0f} ms | {row['max']:.0f} ms |")
    viewer.close()


if __name__ == "__main__":
    main()
