"""The widget's input size before a model is loaded: the architecture's own default."""

from __future__ import annotations

import numpy as np
import pytest

from _widgets import make_widget
from napari_gapcam.models.loading import default_input_size


def test_default_input_size_without_building_a_network():
    assert default_input_size("resnet50") == 224
    assert default_input_size("inception_v3") == 299  # torchvision's crop for its weights
    assert default_input_size("efficientnet_b3", "IMAGENET1K_V1") == 300
    assert default_input_size("resnet18", "/some/checkpoint.pt") == 224
    pytest.importorskip("timm")
    assert default_input_size("timm:inception_v3") == 299


def test_the_widget_picks_a_pyramid_level_for_the_model_s_input_size(make_napari_viewer):
    viewer = make_napari_viewer()
    from napari_gapcam._napari.session import RunRequest

    widget = make_widget(viewer, arch="inception_v3")
    assert widget.session.input_size_for(RunRequest(None, widget.models.spec())) == 299
    widget.arch.value = "resnet18"
    assert widget.session.input_size_for(RunRequest(None, widget.models.spec())) == 224


def test_cancel_checks_only_the_model_s_modules_and_leaves_no_hook(resnet50):
    """Cancel's pre-hooks sit on the run's model alone: another model in the same thread (a
    notebook's) runs on, and nothing is left behind after the run."""
    import torch

    from napari_gapcam._napari.run import Cancelled, CancelToken

    other = torch.nn.Conv2d(3, 4, 3)
    token = CancelToken()
    token.set()
    with token.watching(resnet50):
        other(torch.zeros(1, 3, 8, 8))  # not the run's model: untouched
        with pytest.raises(Cancelled):
            resnet50.run(np.zeros((64, 64), np.float32))
    modules = [*resnet50._folded().modules(), *resnet50.head.modules()]
    assert not any(m._forward_pre_hooks for m in modules)
    resnet50.run(np.zeros((64, 64), np.float32))  # runs again once the run is over
