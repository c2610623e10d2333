"""``load_model(..., method=NAME, **options)``: the method's options as ``model.with_method(NAME,
**options)`` takes them (the same method, the same maps, the same refusals, where a name no
method takes is also said to be none of load_model's own), checked before any weights are read."""

from __future__ import annotations

import numpy as np
import pytest

from napari_gapcam import load_model
from napari_gapcam.engine.methods import METHODS
from napari_gapcam.engine.words import ParameterError

IMAGE = np.random.default_rng(0).integers(0, 256, (64, 80, 3), np.uint8)


@pytest.fixture(scope="module")
def plain(weights):
    """The tiny resnet18 under its default method: ``with_method`` gives the expected."""
    return load_model("resnet18", weights, "cpu")


def refusal(call) -> str:
    with pytest.raises(ValueError) as caught:
        call()
    return str(caught.value)


def test_score_cam_s_options_give_what_with_method_gives(weights, plain):
    options = {"max_channels": 8, "batch_size": 3}
    loaded = load_model("resnet18", weights, "cpu", method="scorecam", **options)
    switched = plain.with_method("scorecam", **options)
    assert loaded.method == switched.method == "scorecam"
    for name, value in options.items():
        assert getattr(loaded.method_object, name) == getattr(switched.method_object, name) == value
    ours, theirs = (m.run(IMAGE, input_size=64) for m in (loaded, switched))
    np.testing.assert_allclose(ours.raw_cam(1), theirs.raw_cam(1), rtol=1e-5, atol=1e-6)
    assert loaded.method_object.passes(2) == 16  # 8 channels an image, not 512


def test_ablation_cam_s_batch_size_and_layercam_s_layers(weights, plain):
    loaded = load_model("resnet18", weights, "cpu", method="ablationcam", batch_size=5)
    switched = plain.with_method("ablationcam", batch_size=5)
    assert loaded.method_object.batch_size == switched.method_object.batch_size == 5
    fused = load_model("resnet18", weights, "cpu", method="layercam", layers=["layer3", "layer4"])
    assert list(fused.method_object.taps.layers) == ["layer3", "layer4"]  # one of the options


@pytest.mark.parametrize(
    ("method", "options", "said"),
    [
        ("scorecam", {"max_chanels": 8},
         "method='scorecam' has no option 'max_chanels': its options are max_channels, "
         "batch_size, precision."),
        ("ablationcam", {"ratio": 0.5},
         "method='ablationcam' has no option 'ratio': its options are batch_size."),
        ("gradcam", {"max_channels": 8},
         "method='gradcam' takes no parameters; got 'max_channels'. max_channels= is Score-CAM's: "
         "method='scorecam'."),
        ("scorecam", {"layers": ["layer4"]},
         "method='scorecam' has no option 'layers': its options are max_channels, batch_size, "
         "precision. layers= is LayerCAM's: method='layercam'."),
    ],
)  # fmt: skip
def test_an_option_the_method_does_not_take_is_refused_as_with_method_refuses_it(
    weights, plain, method, options, said
):
    assert refusal(lambda: plain.with_method(method, **options)) == said
    loaded = refusal(lambda: load_model("resnet18", weights, "cpu", method=method, **options))
    (option,) = options
    typo = not any(option in row.options for row in METHODS.values())  # no method's option
    own = "name, weights, device, class_names, method, layer, layers"
    assert loaded == said + (f" {option!r} is no method's option, nor load_model's ({own})." * typo)


def test_a_bad_value_is_refused_as_with_method_refuses_it(weights, plain):
    loaded = refusal(
        lambda: load_model("resnet18", weights, "cpu", method="scorecam", max_channels=0)
    )
    assert loaded == refusal(lambda: plain.with_method("scorecam", max_channels=0))
    assert "max_channels is a whole number ≥ 1" in loaded


def test_the_options_are_checked_before_any_weights_are_read(tmp_path):
    missing = tmp_path / "missing.pt"
    with pytest.raises(ParameterError, match="has no option 'max_chanels'"):
        load_model("resnet18", missing, "cpu", method="scorecam", max_chanels=8)
    with pytest.raises(ParameterError) as caught:
        load_model("resnet18", missing, "cpu", max_channels=8)  # "auto": CAM or Grad-CAM
    assert str(caught.value) == (
        "method='auto' takes no parameters; got 'max_channels'. max_channels= is Score-CAM's: "
        "method='scorecam'."
    )


def test_a_misspelt_parameter_of_load_model_is_said_to_be_no_option(tmp_path):
    with pytest.raises(ValueError) as caught:
        load_model("resnet18", weight=tmp_path / "x.pt", device="cpu")
    assert str(caught.value) == (
        "method='auto' takes no parameters; got 'weight'. 'weight' is no method's option, nor "
        "load_model's (name, weights, device, class_names, method, layer, layers)."
    )


def test_from_module_takes_the_method_s_options_as_load_model_does(weights, plain):
    """Before, from_module had no method options: a network built in Python could not run
    Score-CAM on fewer channels, nor LayerCAM fused over stages."""
    import torch
    import torchvision

    from napari_gapcam import from_module

    network = torchvision.models.resnet18(num_classes=3)
    network.load_state_dict(torch.load(weights, weights_only=True))
    options = {"max_channels": 8, "batch_size": 3}
    built = from_module(network, method="scorecam", **options)
    switched = plain.with_method("scorecam", **options)
    assert built.method_object.max_channels == 8 and built.method_object.batch_size == 3
    ours, theirs = (m.run(IMAGE, input_size=64) for m in (built, switched))
    np.testing.assert_allclose(ours.raw_cam(1), theirs.raw_cam(1), rtol=1e-4, atol=1e-5)
    fused = from_module(network, method="layercam", layers="layer3,layer4")
    assert list(fused.method_object.taps.layers) == ["layer3", "layer4"]
    loaded = load_model("resnet18", weights, "cpu", method="layercam", layers="layer3,layer4")
    np.testing.assert_allclose(
        fused.run(IMAGE, input_size=64).raw_cam(2),
        loaded.run(IMAGE, input_size=64).raw_cam(2),
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError) as caught:
        from_module(network, method="scorecam", max_chanels=8)
    assert "has no option 'max_chanels'" in str(caught.value)
    with pytest.raises(ValueError, match="not with features= and classifier="):
        from_module(network, features=network.layer4, classifier=network.fc, method="layercam",
                    layers="layer4")  # fmt: skip
