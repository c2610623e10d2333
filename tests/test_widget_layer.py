"""The dock's *layer* box: the chosen architecture's stages, in order, reaching the model."""

from __future__ import annotations

import numpy as np

from _widgets import combo_items, make_widget
from napari_gapcam._napari.widget import DEMO_MODEL


def test_the_layer_box_offers_the_model_s_stages_and_reaches_the_model(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, arch="resnet18")
    layer = widget.models.layer
    resnet = ["layer1", "layer2", "layer3", "layer4"]
    assert combo_items(layer) == ["last maps (default)", *resnet]
    assert widget.models.spec().layer is None  # the default: the last maps
    layer.value = "layer3"
    spec = widget.models.spec()
    assert spec.layer == "layer3"
    model = spec.load()
    assert model.layer == "layer3" and model.method == "gradcam"
    widget.arch.value = "convnext_tiny"  # no such stage: back to the last maps
    assert combo_items(layer) == ["last maps (default)", *(f"features.{i}" for i in (1, 3, 5, 7))]
    assert layer.value == "" and widget.models.spec().layer is None
    widget.arch.value = "efficientnet_b0"  # stages shared with convnext's: still in order
    assert combo_items(layer)[1:] == [f"features.{i}" for i in range(9)]
    layer.value = "features.3"
    widget.arch.value = "efficientnet_b1"  # the same stage exists: kept
    assert layer.value == "features.3"
    widget.arch.value = DEMO_MODEL
    assert combo_items(layer) == ["last maps (default)", *resnet]
    viewer.add_image(np.zeros((8, 8)))  # napari resets every choice
    assert combo_items(layer) == ["last maps (default)", *resnet]
    widget.models.use_model(model)
    assert combo_items(layer) == ["as handed over (layer3)"]
