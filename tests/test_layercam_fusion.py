"""LayerCAM fused over several layers (``layers=[…]``) equals pytorch-grad-cam's LayerCAM with
those ``target_layers``, compared at the split's grid; it reaches every path (a stack, a switch
of a finished result, the command line); bad layers are errors naming them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from _cli import gapcam, make_images
from napari_gapcam import from_module, load_model
from napari_gapcam.engine.preprocess import to_input_tensor
from napari_gapcam.engine.words import ParameterError
from napari_gapcam.models.layers import LayerError

SIZE = 96
IMAGES = np.random.default_rng(7).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
LAYERS = ["layer2", "layer3", "layer4"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(torchvision's resnet18, random weights; the model fused at layer2, layer3, layer4)."""
    torch.manual_seed(3)
    network = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path_factory.mktemp("fusion") / "resnet18.pth"
    torch.save(network.state_dict(), path)
    model = load_model("resnet18", path, "cpu", method="layercam", layers=LAYERS)
    return network, model


def pgc_layercam(network, names, classes, grid):
    """pytorch-grad-cam's LayerCAM over ``names`` of both images (class ``classes[i]`` each),
    each layer's map resized to ``grid`` (h, w) instead of the input (its
    ``scale_cam_image``, the same bilinear resize to another size)."""
    import pytorch_grad_cam
    from pytorch_grad_cam import base_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    scale = base_cam.scale_cam_image
    layers = [network.get_submodule(name) for name in names]
    tensor = torch.cat([to_input_tensor(image, input_size=SIZE) for image in IMAGES])
    targets = [ClassifierOutputTarget(c) for c in classes]
    with pytest.MonkeyPatch.context() as patch:
        resized = lambda cam, target_size=None: scale(cam, grid[::-1] if target_size else None)  # noqa: E731
        patch.setattr(base_cam, "scale_cam_image", resized)
        with pytorch_grad_cam.LayerCAM(network, target_layers=layers) as reference:
            return reference(tensor, targets=targets)


def normalised(raw: np.ndarray) -> np.ndarray:
    return (raw - raw.min()) / (raw.max() - raw.min() + 1e-7)


def differences(network, model, results, names):
    """The largest difference to pytorch-grad-cam of each of ``results`` (the same images):
    image 0's top class, image 1's last (one batched call of pytorch-grad-cam)."""
    grid = model.map_size((SIZE, SIZE))
    logits = [results[0][i].logits for i in range(len(IMAGES))]
    classes = [int(np.argmax(logits[0])), int(np.argmin(logits[1]))]
    theirs = pgc_layercam(network, names, classes, grid)
    worst = []
    for result in results:
        ours = [normalised(result[i].raw_cam(c)) for i, c in enumerate(classes)]
        assert all(mine.shape == grid for mine in ours) and theirs.shape[1:] == grid
        gaps = [np.abs(mine - ref).max() for mine, ref in zip(ours, theirs, strict=True)]
        worst.append(float(max(gaps)))
    return worst


def test_fused_layercam_equals_pytorch_grad_cam_s_at_the_earliest_layer_s_grid(pair):
    """layer2's grid (12² at 96²): float32 maps agree to 1e-4 (measured 7e-7); the default
    half-precision maps within 0.02 (measured 0.01). pytorch-grad-cam at the input size is not
    the same map (each layer resized 3² → 96² directly, ours 3² → 12² → 96²: 0.15 apart)."""
    network, model = pair
    assert model.layer == "layer2" and model.method == "layercam"
    assert model.method_object.layers == tuple(LAYERS)
    assert model.method_label == "LayerCAM (layer2 + layer3 + layer4)"
    exact = model.run_batch(IMAGES, input_size=SIZE, features_dtype=torch.float32)
    half = model.run_batch(IMAGES, input_size=SIZE)
    worst_exact, worst_half = differences(network, model, [exact, half], LAYERS)
    assert worst_exact < 1e-4 and worst_half < 0.02, (worst_exact, worst_half)
    one = model.run(IMAGES[1], input_size=SIZE)  # a stack gives each image's own map
    c = int(np.argmax(one.logits))
    np.testing.assert_allclose(exact[1].raw_cam(c), one.raw_cam(c), atol=1e-5)


def test_with_method_on_a_split_at_or_before_the_earliest_layer(pair):
    """A model split at layer2 switches to the fusion with no reload; a finished result too
    (no forward pass); layers after the split alone are fused at the split's grid."""
    network, fused = pair
    model = from_module(network, layer="layer2")
    switched = model.with_method("layercam", layers="layer2,layer3,layer4")
    assert switched.features is model.features and switched.layer == "layer2"
    result = model.run_batch(IMAGES, input_size=SIZE, features_dtype=torch.float32)
    again = result.with_method("layercam", layers=LAYERS)
    reference = fused.run_batch(IMAGES, input_size=SIZE, features_dtype=torch.float32)
    for i in range(len(IMAGES)):
        c = int(np.argmax(result[i].logits))
        np.testing.assert_allclose(again[i].raw_cam(c), reference[i].raw_cam(c), atol=1e-5)
    c = int(np.argmax(result[0].logits))
    one = switched.run(IMAGES[0], input_size=SIZE).raw_cam(c)
    np.testing.assert_allclose(one, reference[0].raw_cam(c), atol=1e-5)
    later = result.with_method("layercam", layers=["layer3", "layer4"])
    assert not later.network.method_object.taps.own
    assert differences(network, model, [later], ["layer3", "layer4"])[0] < 1e-4


def test_the_head_gives_a_tapped_layer_s_output_as_it_was_before_an_in_place_relu():
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2),
        torch.nn.ReLU(inplace=True), torch.nn.Conv2d(8, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 4),
    ).eval()  # fmt: skip
    model = from_module(network, layer="1", method="layercam")
    taps = model.taps(["1", "2"])
    assert taps.layers == ("1", "2") and taps.own
    seen = []
    network[2].register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, second = taps.head(model.features(x))
        torch.testing.assert_close(logits, network(x))
    assert (seen[0] < 0).any() and torch.equal(second, seen[0])  # not ReLU'd in place
    maps = model.with_method("layercam", layers=["1", "2"]).run(x[0].permute(1, 2, 0).numpy())
    assert np.isfinite(maps.raw_cam(0)).all()


def test_bad_layers_are_errors_naming_them(pair):
    _, fused = pair
    with pytest.raises(ParameterError, match="method='gradcam'.*'layers'.*method='layercam'"):
        fused.with_method("gradcam", layers=LAYERS)
    with pytest.raises(LayerError, match="layer9 is not a module.*layer1, layer2, layer3, layer4"):
        load_model("resnet18", None, "cpu", method="layercam", layers=["layer3", "layer9"])
    with pytest.raises(LayerError, match="layer1 runs before the split.*layer2's output"):
        fused.with_method("layercam", layers=["layer1", "layer4"])
    with pytest.raises(LayerError, match="layer3 holds the split's layer"):
        from_module(torchvision.models.resnet18(), layer="layer3.1").taps(["layer3"])
    with pytest.raises(ParameterError, match="distinct"):
        fused.with_method("layercam", layers=["layer3", "layer3"])
    last = load_model("resnet18", None, "cpu")  # the family's split: no named layer
    with pytest.raises(ParameterError, match="split at a named layer"):
        last.with_method("layercam", layers=["layer4"])
    with pytest.raises(ValueError, match="Tiles need.*LayerCAM \\(layer2"):
        fused.run_tiled(np.zeros((300, 300, 3), np.uint8))
    assert fused.with_method("layercam").method_info.tiles  # one layer's LayerCAM stitches


def test_every_family_taps_later_stages_on_the_meta_device():
    """Traced only (Swin's stages give N×h×w×K: the method permutes them)."""
    from napari_gapcam.models.families import FAMILIES, _skeleton, architectures, family_of
    from napari_gapcam.models.taps import Tapper

    for family in FAMILIES:
        arch = next(a for a in architectures() if family_of(a) is family)
        network = _skeleton(arch)
        stages = family.stages_of(network)
        middle = len(stages) // 2
        taps = Tapper(network, stages[middle], arch, stages, nhwc=family.nhwc)(stages[middle:])
        assert taps.layers == stages[middle:] and taps.own, arch
        assert taps.head.graph.output_node().args[0][1:] != (), arch


def test_predict_layers_fuses_and_a_bad_name_exits_2(tmp_path, weights, capsys):
    make_images(tmp_path / "in", count=1)
    args = ["predict", tmp_path / "in", "--model", "resnet18", "--weights", weights]
    args += ["--input-size", 64, "--device", "cpu", "--out", tmp_path / "out"]
    assert gapcam(*args, "--method", "layercam", "--layers", "layer3,layer9") == 2
    err = capsys.readouterr().err
    assert "--layers layer3,layer9: layer9 is not a module" in err and "layer1, layer2" in err
    assert gapcam(*args, "--method", "gradcam", "--layers", "layer3,layer4") == 2
    err = capsys.readouterr().err
    assert "--method gradcam takes no parameters" in err and "--method layercam" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert gapcam(*args, "--method", "layercam", "--layers", "layer3,layer4") == 0
    record = (tmp_path / "out" / "results.jsonl").read_text()
    assert '"layers": ["layer3", "layer4"]' in record
