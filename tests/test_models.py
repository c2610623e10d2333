"""Models: named weights through torchvision's API (offline), checkpoints, class names, devices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from napari_gapcam import ARCHITECTURES, WeightsError, load_model
from napari_gapcam.models import cached_weights_path, named_weights, resolve_device

V1_FILE = "resnet50-0676ba61.pth"


def test_named_weights_load_from_torch_home(torch_home, random_resnet50_state):
    model = load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")
    assert torch.equal(model.fc.weight.detach(), random_resnet50_state["fc.weight"])
    conv1 = model.features[0].weight.detach()
    assert torch.equal(conv1, random_resnet50_state["conv1.weight"])
    categories = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert model.class_names == categories and model.weights == "IMAGENET1K_V1"
    assert cached_weights_path("resnet50", "IMAGENET1K_V1") == (
        torch_home / "hub" / "checkpoints" / V1_FILE
    )


def test_missing_named_weights_offline_is_a_clear_error(empty_torch_home):
    with pytest.raises(WeightsError) as caught:
        load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")
    message = str(caught.value)
    assert V1_FILE in message
    assert str(empty_torch_home / "hub" / "checkpoints") in message
    assert "weights='path/to/file.pth'" in message and "TORCH_HOME" in message


def test_corrupt_cached_weights_are_a_clear_error(empty_torch_home):
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / V1_FILE).write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="could not be read.*Delete it"):
        load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")


def test_wrong_state_dict_in_cache_is_a_clear_error(empty_torch_home):
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), checkpoints / V1_FILE)
    with pytest.raises(WeightsError, match="do not fit resnet50.*looks like a resnet18"):
        load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")


def test_unknown_weights_name():
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        load_model("resnet50", weights="IMAGENET_V9", device="cpu")


def test_named_weights_for_every_architecture():
    for arch in ARCHITECTURES:
        names = named_weights(arch)
        assert names, arch
        assert cached_weights_path(arch, names[0]).suffix == ".pth"
    assert named_weights("resnet50")[:2] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]


def test_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown architecture 'resnet9'.*'resnet18'"):
        load_model("resnet9", weights=None)


# ------------------------------------------------------------------- checkpoints
def test_plain_state_dict_file(tmp_path, tiny_state):
    path = tmp_path / "cells.pth"
    torch.save(tiny_state, path)
    model = load_model("resnet18", weights=path, device="cpu")
    assert model.class_names == ["class 0", "class 1", "class 2"]
    assert model.input_size == 224 and model.box_threshold == 0.2
    assert torch.equal(model.fc.weight.detach(), tiny_state["fc.weight"])
    result = model.run(np.zeros((64, 80, 3), np.uint8))
    assert result.probabilities.shape == (3,)


def test_checkpoint_dict_with_names_arch_and_input_size(tmp_path, tiny_state):
    path = tmp_path / "cells.pt"
    half = {k: v.half() if v.is_floating_point() else v for k, v in tiny_state.items()}
    names = ["mitotic", "interphase", "apoptotic"]
    checkpoint = {"state_dict": half, "class_names": names, "arch": "resnet18", "input_size": 96}
    torch.save({**checkpoint, "box_threshold": 0.45}, path)
    model = load_model("resnet18", weights=str(path), device="cpu")
    assert model.class_names == names and model.input_size == 96
    assert model.box_threshold == 0.45
    result = model.run(np.zeros((96, 192, 3), np.uint8))  # 96 → 3×6 maps
    assert tuple(result.features.shape[1:]) == (3, 6)
    assert result.topk(1)[0][1] in names


def test_data_parallel_prefix_is_stripped(tmp_path, tiny_state):
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in tiny_state.items()}, path)
    assert len(load_model("resnet18", weights=path, device="cpu").class_names) == 3


@pytest.mark.parametrize("suffix", [".json", ".txt"])
def test_sidecar_class_names(tmp_path, tiny_state, suffix):
    path = tmp_path / "cells.pt"
    torch.save(tiny_state, path)
    names = ["a", "b", "c"]
    sidecar = path.with_suffix(suffix)
    sidecar.write_text(json.dumps(names) if suffix == ".json" else "a\nb\nc\n")
    assert load_model("resnet18", weights=path, device="cpu").class_names == names


def test_class_names_argument_file_and_list(tmp_path, tiny_state):
    path = tmp_path / "cells.pt"
    torch.save(tiny_state, path)
    names_file = tmp_path / "names.txt"
    names_file.write_text("x\ny\nz\n")
    assert load_model("resnet18", path, "cpu", class_names=names_file).class_names == list("xyz")
    assert load_model("resnet18", path, "cpu", class_names=["p", "q", "r"]).class_names == list(
        "pqr"
    )


def test_class_name_count_mismatch(tmp_path, tiny_state):
    path = tmp_path / "cells.pt"
    torch.save({"state_dict": tiny_state, "class_names": ["a", "b"]}, path)
    with pytest.raises(WeightsError, match="gives 2 names.*has 3 classes"):
        load_model("resnet18", weights=path, device="cpu")


def test_architecture_mismatch_names_both_sides(tmp_path, tiny_state):
    path = tmp_path / "cells.pt"
    torch.save({"state_dict": tiny_state, "arch": "resnet18"}, path)
    with pytest.raises(WeightsError, match="saved from 'resnet18'.*asked for is 'resnet50'"):
        load_model("resnet50", weights=path, device="cpu")
    torch.save(tiny_state, path)  # no arch recorded: the shapes tell
    with pytest.raises(WeightsError, match="do not fit resnet34.*looks like a resnet18"):
        load_model("resnet34", weights=path, device="cpu")


def test_missing_keys(tmp_path, tiny_state):
    path = tmp_path / "partial.pt"
    torch.save({k: v for k, v in tiny_state.items() if "layer4" not in k}, path)
    with pytest.raises(WeightsError, match=r"missing keys \(e\.g\. layer4"):
        load_model("resnet18", weights=path, device="cpu")


def test_no_dense_layer(tmp_path, tiny_state):
    path = tmp_path / "headless.pt"
    torch.save({k: v for k, v in tiny_state.items() if not k.startswith("fc.")}, path)
    with pytest.raises(WeightsError, match="no dense layer 'fc.weight'"):
        load_model("resnet18", weights=path, device="cpu")


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_model("resnet18", weights=text, device="cpu")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(WeightsError, match="holds a Tensor, not a state dict"):
        load_model("resnet18", weights=tensor, device="cpu")
    with pytest.raises(WeightsError, match="not found"):
        load_model("resnet18", weights=tmp_path / "nope.pt", device="cpu")


@pytest.mark.parametrize("arch", ["resnext50_32x4d", "wide_resnet50_2"])
def test_other_architectures_build_and_run(arch):
    model = load_model(arch, weights=None, device="cpu")
    result = model.run(np.zeros((64, 64, 3), np.uint8))
    assert result.features.shape[0] == 2048 and len(result.class_names) == 1000


# ------------------------------------------------------------------- devices
def test_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available here"):
            load_model("resnet18", weights=None, device="cuda")
