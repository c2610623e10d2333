"""The widget's tiled run: time to the first tiles in view, and the UI thread's cost per batch.

    xvfb-run -a -s '-screen 0 1280x1024x24' .venv/bin/python benchmarks/widget_tiles.py

A shown viewer, the bundled demo model (resnet18) on the CPU, ``resolution = native pixels
(tiles)`` over a lazily generated grey image of ``--size``² (dask, never held whole), zoomed in
on its bottom-right corner. *First tiles in view*: from Run until the overlay holds the map
under the canvas centre (the first batch shown); *all tiles*: until the run ends; *UI per
batch*: the widget's handler time for a batch (the overlay update on the UI thread: the grid
is 1/stride² of the image, so it grows with the image, but 1000× slower than the image).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _spin(until, timeout: float = 900.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not until():
        QApplication.processEvents()
        if time.perf_counter() > end:
            raise TimeoutError("the widget did not finish")
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[2048, 4096])
    args = parser.parse_args()

    import dask.array as da
    import napari

    from napari_gapcam._napari.widget import DEMO, DEMO_MODEL, TILES, GapCamWidget

    print("| image | tiles | first tiles in view | all tiles | UI per batch (median, max) |")
    print("|---|---|---|---|---|")
    for size in args.size:
        viewer = napari.Viewer(show=True)
        lazy = da.random.default_rng(0).integers(0, 255, (size, size), dtype=np.uint8, chunks=512)
        viewer.add_image(lazy, name="slide", contrast_limits=(0, 255))
        viewer.scene.camera.center = (0, size * 0.8, size * 0.8)
        viewer.scene.camera.zoom = 2.0
        widget = GapCamWidget(viewer)
        viewer.window.add_dock_widget(widget)
        widget.arch.value, widget.weights.value = DEMO_MODEL, DEMO
        widget.device.value, widget.mode.value = "cpu", TILES
        handler, inner = [], widget._show_tiles

        def timed(first, inner=inner, handler=handler):
            start = time.perf_counter()
            inner(first)
            handler.append(time.perf_counter() - start)

        widget._show_tiles = timed
        start = time.perf_counter()
        widget.run()
        _spin(lambda handler=handler: handler)
        first = time.perf_counter() - start
        _spin(lambda widget=widget: not widget.busy)
        total = time.perf_counter() - start
        tiles = widget._shown.total
        ui = np.array(handler) * 1000
        print(
            f"| {size}² | {tiles} | {first:.2f} s | {total:.1f} s | "
            f"{np.median(ui):.0f} ms, {ui.max():.0f} ms |"
        )
        viewer.close()


if __name__ == "__main__":
    main()
