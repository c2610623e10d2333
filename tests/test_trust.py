"""Trust: no weights file runs code, torchvision's hashes, and the checkpoint layouts users have
(each loaded and compared with the original network's own logits)."""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from napari_gapcam import UnsupportedModelError, WeightsError, from_module, load_model
from napari_gapcam.engine.preprocess import to_input_tensor
from napari_gapcam.models import cached_weights_path

IMAGE = np.random.default_rng(11).integers(0, 256, (64, 80, 3), dtype=np.uint8)
SIZE = 64
SKIP_HASH_ENV = "NAPARI_GAPCAM_SKIP_HASH_CHECK"
MARKER = "gapcam-pwned"


class Trap:
    """Unpickling this writes a marker file: proof that a load ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def booby_trapped(path: Path, state_dict: dict) -> Path:
    """A real state dict plus an object that runs code when unpickled."""
    marker = path.parent / MARKER
    torch.save({**state_dict, "trap": Trap(marker)}, path)
    return marker


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(4)
    return torchvision.models.resnet18(num_classes=3).eval()


def own_logits(network: torch.nn.Module, model) -> np.ndarray:
    tensor = to_input_tensor(IMAGE, input_size=SIZE, mean=model.config.mean, std=model.config.std)
    with torch.no_grad():
        return network(tensor)[0].numpy()


def assert_same_network(model, network: torch.nn.Module) -> None:
    got = model.run(IMAGE, input_size=SIZE).logits
    np.testing.assert_allclose(got, own_logits(network, model), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ no code runs
def test_a_booby_trapped_hub_cache_file_neither_runs_nor_loads(
    empty_torch_home, random_resnet50_state
):
    """The file the docs (Install) tell offline users to copy: refused before anything is built."""
    path = cached_weights_path("resnet50", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    marker = booby_trapped(path, random_resnet50_state)
    with pytest.raises(WeightsError) as caught:  # with the hash check skipped (conftest)
        load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")
    message = str(caught.value)
    assert str(path) in message and "refused" in message and "could run code" in message
    assert "state_dict()" in message  # the way out
    assert not marker.exists()
    os.environ.pop(SKIP_HASH_ENV)  # monkeypatch restores it; now the hash refuses it first
    with pytest.raises(WeightsError, match="SHA-256 begins .* torchvision publishes 0676ba61"):
        load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")
    assert not marker.exists()


def test_a_booby_trapped_weights_file_neither_runs_nor_loads(tmp_path, resnet18):
    for name in ("weights.pth", "train.ckpt"):
        path = tmp_path / name
        marker = booby_trapped(path, {"state_dict": resnet18.state_dict()})
        with pytest.raises(WeightsError, match=f"{name} was refused.*could run code"):
            load_model("resnet18", weights=path, device="cpu")
        assert not marker.exists()


def test_a_legacy_format_trap_is_refused_and_a_text_file_is_not_called_one(tmp_path, resnet18):
    legacy = tmp_path / "old.pth"
    marker = tmp_path / MARKER
    state = {**resnet18.state_dict(), "trap": Trap(marker)}
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="old.pth was refused.*could run code"):
        load_model("resnet18", weights=legacy, device="cpu")
    assert not marker.exists()
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(WeightsError) as caught:
        load_model("resnet18", weights=text, device="cpu")
    message = str(caught.value)
    assert "not a readable PyTorch checkpoint" in message and "refused" not in message
    assert "weights_only` set to `False" not in message  # torch's advice to unpickle unsafely


def test_a_whole_pickled_model_is_refused_with_the_way_out(tmp_path, resnet18):
    path = tmp_path / "model.pt"
    torch.save(resnet18, path)
    with pytest.raises(WeightsError, match="whole pickled model.*ResNet.*state_dict"):
        load_model("resnet18", weights=path, device="cpu")


# ------------------------------------------------------------------ torchvision's hashes
def test_the_hash_in_a_cached_file_name_is_checked(empty_torch_home, monkeypatch, resnet18):
    from napari_gapcam.models.weights import check_hash

    monkeypatch.delenv(SKIP_HASH_ENV)
    path = empty_torch_home / "resnet18-weights.pth"
    torch.save(resnet18.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good = path.rename(empty_torch_home / f"resnet18-{digest[:8]}.pth")
    check_hash(good)  # the name's prefix matches: accepted
    bad = good.rename(empty_torch_home / "resnet18-00000000.pth")
    with pytest.raises(WeightsError, match=r"resnet18-00000000\.pth was refused.*delete it"):
        check_hash(bad)
    monkeypatch.setenv(SKIP_HASH_ENV, "1")
    check_hash(bad)  # the documented way out for a file one made oneself


def test_named_weights_are_downloaded_with_the_hash_check(empty_torch_home, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(WeightsError, match="(?s)could not be downloaded.*random init.*demo"):
        load_model("resnet50", weights="IMAGENET1K_V1", device="cpu")
    assert calls == [(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url, "0676ba61")]


# ------------------------------------------------------------------ layouts users have
def _layouts(state: dict) -> dict:
    prefixed = {
        prefix: {f"{prefix}{k}": v for k, v in state.items()}
        for prefix in ("module.", "_orig_mod.", "model.", "backbone.", "model.module.")
    }
    lightning = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {**prefixed["model."], "criterion.pos_weight": torch.ones(3)},
        "optimizer_states": [{"state": {0: {"momentum_buffer": torch.zeros(2)}}}],
        "hyper_parameters": {"lr": 0.01, "num_classes": 3},
        "callbacks": {"ModelCheckpoint{'monitor': 'val'}": {"best_model_score": torch.tensor(1)}},
    }
    args = argparse.Namespace(model="resnet18", lr=0.1, output=pathlib.PosixPath("/runs"))
    return {
        "plain": state,
        **{f"prefix {p!r}": sd for p, sd in prefixed.items()},
        "{'state_dict': sd}": {"state_dict": state},
        "{'model': sd} (torchvision's references)": {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "epoch": 89,
            "args": args,
        },
        "{'model_state_dict': sd}": {"model_state_dict": state, "epoch": 1, "loss": 0.3},
        "Lightning .ckpt": lightning,
        "timm train.py": {
            "epoch": 9,
            "arch": "resnet18",
            "state_dict": state,
            "state_dict_ema": {k: torch.zeros_like(v) for k, v in state.items()},
            "optimizer": {"state": {}},
            "version": 2,
            "args": args,
            "metric": np.float64(71.5),
        },
    }


@pytest.mark.parametrize("layout", list(_layouts({})))
def test_checkpoint_layouts_load_the_original_network(tmp_path, resnet18, layout):
    checkpoint = _layouts(resnet18.state_dict())[layout]
    path = tmp_path / ("last.ckpt" if "Lightning" in layout else "weights.pth")
    torch.save(checkpoint, path)
    model = load_model("resnet18", weights=path, device="cpu")
    assert len(model.class_names) == 3
    assert_same_network(model, resnet18)


def test_a_timm_training_checkpoint_loads_as_timm(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    network = timm.create_model("resnet18", pretrained=False, num_classes=4).eval()
    args = argparse.Namespace(model="resnet18", lr=0.1)
    path = tmp_path / "model_best.pth.tar"
    checkpoint = {"epoch": 3, "arch": "resnet18", "state_dict": network.state_dict()}
    torch.save({**checkpoint, "args": args}, path)
    model = load_model("timm:resnet18", weights=path, device="cpu")  # Namespace allowed
    assert_same_network(model, network)
    torch.save(checkpoint, path)  # without args: the recorded arch names timm's resnet18
    assert_same_network(load_model("timm:resnet18", weights=path, device="cpu"), network)
    checkpoint["arch"] = "resnet34"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match="saved from 'resnet34'.*Choose 'timm:resnet34'"):
        load_model("timm:resnet18", weights=path, device="cpu")


def test_safetensors_with_hugging_face_label_names(tmp_path, resnet18):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18.state_dict().items()}, str(path))
    (tmp_path / "config.json").write_text('{"label_names": ["cell", "debris", "empty"]}')
    model = load_model("resnet18", weights=path, device="cpu")
    assert model.class_names == ["cell", "debris", "empty"]
    assert_same_network(model, resnet18)


def test_a_file_that_fits_nothing_lists_its_keys_and_the_expected_ones(tmp_path, resnet18):
    path = tmp_path / "encoder.pth"
    torch.save({f"enc.stem{i}.weight": torch.zeros(3, 3) for i in range(5)}, path)
    with pytest.raises(WeightsError) as caught:
        load_model("resnet18", weights=path, device="cpu")
    message = str(caught.value)
    assert "enc.stem0.weight" in message and "conv1.weight" in message


def test_square_is_a_checkpoint_setting(tmp_path, resnet18):
    path = tmp_path / "squashed.pth"
    torch.save({"state_dict": resnet18.state_dict(), "square": True}, path)
    model = load_model("resnet18", weights=path, device="cpu")
    assert model.config.square
    assert model.run(IMAGE, input_size=SIZE).input_shape == (SIZE, SIZE)
    assert model.run(IMAGE, input_size=SIZE, square=False).input_shape == (SIZE, 80)
    assert tuple(model.run_batch(IMAGE[None], input_size=SIZE)[0].input_shape) == (SIZE, SIZE)


# ------------------------------------------------------------------ from_module, odd models
class ResNet(torch.nn.Module):  # a tutorial's own ResNet: torchvision's class name, not its class
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_a_foreign_class_with_a_torchvision_name_says_what_to_pass():
    with pytest.raises(UnsupportedModelError, match="test_trust.ResNet.*features=.*classifier="):
        from_module(ResNet())
    net = ResNet()
    model = from_module(net, features=net.conv, classifier=net.fc)
    assert model.method == "cam"


def test_a_subclass_of_torchvisions_resnet_is_split_as_a_resnet():
    class MyResNet(torchvision.models.ResNet):
        pass

    torch.manual_seed(0)
    network = MyResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=4).eval()
    model = from_module(network)
    assert model.method == "cam" and len(model.class_names) == 4
    assert_same_network(model, network)


def test_efficientnet_pytorch_with_its_extract_features_method():
    """The popular efficientnet_pytorch package: a bound method as features=."""
    efficientnet = pytest.importorskip("efficientnet_pytorch")
    torch.manual_seed(0)
    network = efficientnet.EfficientNet.from_name("efficientnet-b0", num_classes=5).eval()
    with pytest.raises(UnsupportedModelError, match="efficientnet_pytorch.*EfficientNet"):
        from_module(network)
    model = from_module(network, features=network.extract_features, classifier=network._fc)
    assert model.method == "cam" and len(model.class_names) == 5
    tensor = to_input_tensor(IMAGE, input_size=SIZE, mean=model.config.mean, std=model.config.std)
    with torch.no_grad():
        expected = network(tensor)[0].numpy()  # its forward: features, GAP, dropout, _fc
    np.testing.assert_allclose(
        model.run(IMAGE, input_size=SIZE).logits, expected, rtol=1e-4, atol=1e-5
    )


def test_any_callable_is_a_feature_extractor():
    torch.manual_seed(0)
    conv, fc = torch.nn.Conv2d(3, 6, 3, stride=8), torch.nn.Linear(6, 2)
    model = from_module(torch.nn.Sequential(conv, fc), features=lambda x: conv(x), classifier=fc)
    result = model.run(IMAGE, input_size=SIZE)
    assert result.features.shape[0] == 6 and result.logits.shape == (2,)


def test_nested_lists_and_array_likes_are_images(resnet50):
    grey = [[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]]
    result = resnet50.run(grey)
    assert result.image_shape == (2, 3)
    expected = resnet50.run(np.asarray(grey)).logits
    np.testing.assert_array_equal(result.logits, expected)
    batch = resnet50.run_batch([grey, grey])
    np.testing.assert_allclose(batch[1].logits, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="Expected an image array"):
        resnet50.run({"not": "an image"})


def test_timm_models_of_one_input_size_run_square_by_default():
    pytest.importorskip("timm")
    model = load_model("timm:swin_tiny_patch4_window7_224", weights=None, device="cpu")
    assert model.config.square and model.config.fixed_size
    wide = np.zeros((100, 300, 3), np.uint8)
    assert model.run(wide).input_shape == (224, 224)
    with pytest.raises(ValueError, match=r"only 224×224 inputs.*square=True"):
        model.run(wide, input_size=448)


def test_densenet_files_with_torchvisions_old_key_names(tmp_path):
    """torchvision's densenet files say ``norm.1``; its own loader renames them, and so do we."""
    torch.manual_seed(0)
    network = torchvision.models.densenet121(num_classes=3).eval()
    old = {  # files from before num_batches_tracked existed
        k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v
        for k, v in network.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert any(".norm.1." in k for k in old)
    path = tmp_path / "densenet121-old.pth"
    torch.save(old, path)
    assert_same_network(load_model("densenet121", weights=path, device="cpu"), network)


def test_a_prefix_is_removed_from_the_module_versions_too(resnet18):
    """Layers that changed layout between versions read old files by ``_metadata``."""
    from napari_gapcam.models.fitting import strip_prefix

    state = resnet18.state_dict()
    wrapped = torch.nn.Module()
    wrapped.model = resnet18
    stripped, prefix, _ = strip_prefix(wrapped.state_dict(), state.keys())
    assert prefix == "model." and list(stripped) == list(state)
    assert stripped._metadata == state._metadata
