"""The widget's input size before a model is loaded: the architecture's own default."""

from __future__ import annotations

import pytest

from _widgets import make_widget
from napari_gapcam.loading import default_input_size


def test_default_input_size_without_building_a_network():
    assert default_input_size("resnet50") == 224
    assert default_input_size("inception_v3") == 299  # torchvision's crop for its weights
    assert default_input_size("efficientnet_b3", "IMAGENET1K_V1") == 300
    assert default_input_size("resnet18", "/some/checkpoint.pt") == 224
    pytest.importorskip("timm")
    assert default_input_size("timm:inception_v3") == 299


def test_the_widget_picks_a_pyramid_level_for_the_model_s_input_size(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, arch="inception_v3")
    assert widget._input_size_for(widget.models.spec()) == 299
    widget.arch.value = "resnet18"
    assert widget._input_size_for(widget.models.spec()) == 224
