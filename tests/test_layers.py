"""Any layer: a network split at a named module gives the network's own logits; Grad-CAM and
its family there equal pytorch-grad-cam's on that module; the CAM is refused where it is not
exact; unknown layers are errors listing the stages (the CLI's exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from _cli import gapcam, make_images
from napari_gapcam import from_module, load_model
from napari_gapcam.engine.preprocess import to_input_tensor
from napari_gapcam.models.families import arch_stages
from napari_gapcam.models.layers import LayerError
from napari_gapcam.models.spec import ModelSpec

IMAGE = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
SIZE = 64
CASES = {"resnet18": "layer3", "densenet121": "features.denseblock3"}
REFERENCES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
              "hirescam": "HiResCAM", "layercam": "LayerCAM", "eigencam": "EigenCAM"}  # fmt: skip


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    """(torchvision's network, the model loaded from its state dict at the case's layer)."""
    arch = request.param
    torch.manual_seed(1)
    network = torchvision.models.get_model(arch, weights=None).eval()
    path = tmp_path_factory.mktemp(arch) / f"{arch}.pth"
    torch.save(network.state_dict(), path)
    return network, load_model(arch, weights=path, device="cpu", layer=CASES[arch])


def input_tensor(model) -> torch.Tensor:
    return to_input_tensor(IMAGE, input_size=SIZE, mean=model.config.mean, std=model.config.std)


def test_the_head_after_a_mid_layer_gives_the_network_s_logits(pair):
    network, model = pair
    tensor = input_tensor(model)
    with torch.no_grad():
        expected = network(tensor)[0].numpy()
        split = model.head(model.features(tensor))[0].numpy()
    np.testing.assert_allclose(split, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.run(IMAGE, input_size=SIZE).logits, expected, atol=1e-4)
    assert model.layer == CASES[model.arch] and model.layer in model.stages
    assert model.method == "gradcam" and model.fc is None  # auto: the CAM is not exact here


def test_every_head_method_at_the_layer_equals_pytorch_grad_cam_s(pair, monkeypatch):
    """Grad-CAM and the methods of its family at the layer (``with_method``: no reload) against
    pytorch-grad-cam on that module, at the feature grid: its min-max scaling kept, its resize to
    the input left out (NOTES: ``scale_cam_image`` with ``target_size=None``). Ablation-CAM agrees
    too (3.7e-6 on resnet18's layer3) but takes pytorch-grad-cam 10 s here: left out."""
    import pytorch_grad_cam as anchors
    from pytorch_grad_cam import base_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    network, model = pair
    scale = base_cam.scale_cam_image
    monkeypatch.setattr(base_cam, "scale_cam_image", lambda cam, target_size=None: scale(cam))
    tensor, target = input_tensor(model), [network.get_submodule(model.layer)]
    names = list(REFERENCES) if model.arch == "resnet18" else ["gradcam"]  # 2 CPU cores
    for name in names:
        switched = model.with_method(name)
        assert switched.layer == model.layer
        result = switched.run(IMAGE, input_size=SIZE)
        with getattr(anchors, REFERENCES[name])(network, target_layers=target) as reference:
            for c in (int(np.argmax(result.logits)), 7)[: 2 if name == "gradcam" else 1]:
                theirs = reference(tensor, targets=[ClassifierOutputTarget(c)])[0]
                ours = result.raw_cam(c)
                ours = (ours - ours.min()) / (ours.max() - ours.min() + 1e-7)
                assert ours.shape == theirs.shape
                assert np.abs(ours - theirs).max() < 0.02, (name, c)


def test_the_cam_is_refused_at_a_mid_layer_and_kept_at_the_last_maps():
    with pytest.raises(ValueError, match="global average pooling and one dense layer"):
        load_model("resnet18", weights=None, device="cpu", layer="layer3", method="cam")
    last = load_model("resnet18", weights=None, device="cpu", layer="layer4")
    assert last.method == "cam" and last.fc is not None  # layer4 → GAP → fc: still exact
    default = load_model("resnet18", weights=None, device="cpu")
    assert default.layer is None and default.stages == ("layer1", "layer2", "layer3", "layer4")


def test_unknown_layers_and_layers_that_are_no_cut_are_errors_listing_the_stages():
    with pytest.raises(LayerError, match="layer9.*layer1, layer2, layer3, layer4"):
        load_model("resnet18", weights=None, device="cpu", layer="layer9")
    with pytest.raises(LayerError, match="computed before layer3.0.bn1"):  # a skip around it
        load_model("resnet18", weights=None, device="cpu", layer="layer3.0.bn1")
    assert arch_stages("densenet121")[-1] == "features.denseblock4"
    assert arch_stages("convnext_tiny") == tuple(f"features.{i}" for i in (1, 3, 5, 7))


def test_from_module_and_the_spec_carry_the_layer():
    torch.manual_seed(0)
    network = torchvision.models.resnet18().eval()
    model = from_module(network, layer="layer2")
    tensor = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.features(tensor)), network(tensor))
    assert model.layer == "layer2" and model.method == "gradcam"
    custom = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(inplace=True), torch.nn.Conv2d(8, 8, 3, stride=2),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4),
    )  # fmt: skip
    at = from_module(custom.eval(), layer="2")
    assert at.stages[:3] == ("0", "1", "2") and at.method == "cam"  # GAP + dense after "2"
    assert from_module(custom, layer="1").method == "gradcam"
    first = from_module(custom, layer="0")  # its head starts with an in-place ReLU
    with torch.no_grad():
        maps = first.features(tensor)
        kept = maps.clone()
        torch.testing.assert_close(first.head(maps), custom(tensor))
    assert torch.equal(maps, kept) and (kept < 0).any()  # the maps are not overwritten
    spec = ModelSpec("resnet18", None, "cpu", seed=3, layer="layer3")
    assert spec.load().layer == "layer3" and spec != ModelSpec("resnet18", None, "cpu", seed=3)


def test_a_timm_model_splits_at_its_feature_info_stages():
    pytest.importorskip("timm")
    import timm

    torch.manual_seed(0)
    network = timm.create_model("resnet18", pretrained=False).eval()
    model = from_module(network, layer="layer3")
    assert model.stages[-4:] == ("layer1", "layer2", "layer3", "layer4")
    tensor = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.features(tensor)), network(tensor))


def test_predict_layer_is_used_and_an_unknown_one_exits_2(tmp_path, weights, capsys):
    make_images(tmp_path / "in", count=1)
    args = ["predict", tmp_path / "in", "--model", "resnet18", "--weights", weights]
    args += ["--input-size", SIZE, "--device", "cpu", "--out", tmp_path / "out"]
    assert gapcam(*args, "--layer", "layer9") == 2
    err = capsys.readouterr().err
    assert "--layer layer9" in err and "layer1, layer2, layer3, layer4" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert gapcam(*args, "--layer", "layer3") == 0
    record = (tmp_path / "out" / "results.jsonl").read_text()
    assert '"layer": "layer3"' in record and '"method"' not in record.split('"settings"')[0]


def test_evaluate_with_an_unknown_layer_exits_2(tmp_path, weights, capsys):
    make_images(tmp_path / "in", count=1)
    (tmp_path / "boxes.csv").write_text("file,y0,x0,y1,x1\nimg000.png,1,2,30,40\n")
    code = gapcam(
        "evaluate", tmp_path / "in", "--true-boxes", tmp_path / "boxes.csv", "--model",
        "resnet18", "--weights", weights, "--device", "cpu", "--layer", "features.denseblock3",
        "--out", tmp_path / "e.json",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--layer features.denseblock3" in err and "layer4" in err
    assert "Traceback" not in err and not (tmp_path / "e.json").exists()


def test_every_family_splits_at_a_middle_stage_on_the_meta_device():
    """Traced, cut, nothing computed (Swin's stages give N×h×w×K: permuted around the cut)."""
    from napari_gapcam.models.families import FAMILIES, _skeleton, architectures, family_of
    from napari_gapcam.models.layers import cut_graphs

    for family in FAMILIES:
        arch = next(a for a in architectures() if family_of(a) is family)
        stages = arch_stages(arch)
        assert len(stages) >= 4, arch
        features, head = cut_graphs(_skeleton(arch), stages[len(stages) // 2], arch, stages,
                                    nhwc=family.nhwc)  # fmt: skip
        assert any(n.op == "call_module" for n in head.graph.nodes), arch
    assert arch_stages("mnasnet0_5") == tuple(f"layers.{i}" for i in (8, 9, 10, 11, 12, 13, 16))
