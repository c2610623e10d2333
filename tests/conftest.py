"""Shared fixtures: no test downloads anything; named weights come from a temporary TORCH_HOME."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest

V1_FILE = "resnet50-0676ba61.pth"  # torchvision's file name for ResNet50_Weights.IMAGENET1K_V1
# Random state dicts stand in for torchvision's files, so they cannot match the SHA-256 prefix
# in the file name: the fixtures that place them skip that one check (test_trust.py tests it).
SKIP_HASH_ENV = "NAPARI_GAPCAM_SKIP_HASH_CHECK"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails at once, as on an offline machine."""
    import torch.hub

    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(f"offline test: refusing to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


@pytest.fixture(scope="session")
def random_resnet50_state() -> dict:
    """A random-init ResNet-50 state dict (stands in for the ImageNet weights)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet50().state_dict()


@pytest.fixture(scope="session")
def _session_torch_home(tmp_path_factory: pytest.TempPathFactory, random_resnet50_state) -> Path:
    import torch

    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(random_resnet50_state, checkpoints / V1_FILE)
    return home


@pytest.fixture
def torch_home(_session_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME holding a random ResNet-50 state dict under torchvision's V1 file name."""
    monkeypatch.setenv("TORCH_HOME", os.fspath(_session_torch_home))
    monkeypatch.setenv(SKIP_HASH_ENV, "1")
    return _session_torch_home


@pytest.fixture
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TORCH_HOME with no cached weights (files a test puts there skip the hash check)."""
    monkeypatch.setenv("TORCH_HOME", os.fspath(tmp_path))
    monkeypatch.setenv(SKIP_HASH_ENV, "1")
    return tmp_path


@pytest.fixture(scope="session")
def resnet50():
    """A random-init ResNet-50 on the CPU, shared by the engine tests."""
    import torch

    from napari_gapcam import load_model

    torch.manual_seed(0)
    return load_model("resnet50", weights=None, device="cpu")


class ChunkReads(list):
    """The chunk locations a lazy array's reads touched, in order (one entry per chunk read)."""

    def counted(self, array, axis: int | None = 0):
        """``array`` (dask) whose every chunk read is recorded: its location on ``axis``, or
        the whole location tuple with ``axis=None``."""

        def count(block, block_info=None):
            location = block_info[0]["chunk-location"]
            self.append(tuple(location) if axis is None else location[axis])
            return block

        return array.map_blocks(count, dtype=array.dtype)


@pytest.fixture
def chunk_reads() -> ChunkReads:
    """Records which chunks of a dask array are read: proof that a run read only one plane,
    one pyramid level, or each chunk a bounded number of times."""
    pytest.importorskip("dask.array")
    return ChunkReads()


@pytest.fixture(scope="session")
def resnet18():
    """A random-init ResNet-18 (1000 classes) on the CPU."""
    import torch

    from napari_gapcam import load_model

    torch.manual_seed(3)
    return load_model("resnet18", weights=None, device="cpu")


@pytest.fixture
def viewer(make_napari_viewer, torch_home):
    """A napari viewer (under Xvfb) with the random ResNet-50 as its cached ImageNet weights."""
    return make_napari_viewer()


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init 3-class resnet18 state dict saved as ``tiny.pt``: the CLI tests' model."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_state(weights: Path) -> dict:
    """The state dict in :func:`weights` (a 3-class resnet18)."""
    import torch

    return torch.load(weights, weights_only=True)


@pytest.fixture(scope="session")
def tiny_model(weights: Path):
    """:func:`weights` loaded on the CPU: what the CLI's maps are compared with."""
    from napari_gapcam import load_model

    return load_model("resnet18", weights=weights, device="cpu")


@pytest.fixture(scope="session")
def demo():
    """The bundled demo model (resnet18 trained on synthetic shapes) on the CPU."""
    import napari_gapcam
    from napari_gapcam.models import DEMO_WEIGHTS

    return napari_gapcam.load_model("resnet18", weights=DEMO_WEIGHTS, device="cpu")
