"""Packaging: lazy torch import, the npe2 manifest, ruff, and a crash guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_importing_the_plugin_does_not_import_torch():
    code = (
        "import sys, napari_gapcam, napari_gapcam._napari.widget\n"
        "import napari_gapcam._napari.sample_data\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = _run_python(code)
    assert done.returncode == 0, done.stderr


def test_npe2_validate():
    npe2 = Path(sys.executable).with_name("npe2")
    done = subprocess.run([str(npe2), "validate", "napari-gapcam"], capture_output=True, text=True)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr


def test_ruff_clean():
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [str(ruff), "check", "src", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under Xvfb)")
@pytest.mark.parametrize(
    "first",
    ["pass", "from napari_gapcam.models.weights import named_weights"],
    ids=["torch after the viewer", "torch before, torchvision after the viewer"],
)
def test_torch_after_software_opengl_does_not_crash(first):
    """Mesa's llvmpipe + Triton's LLVM in one process used to segfault at `import torch`, or
    at torchvision's import after the viewer when torch came before it (the docs script)."""
    code = (
        f"{first}\n"
        "import numpy as np, napari, sys\n"
        "viewer = napari.Viewer(show=True)\n"
        "viewer.add_image(np.zeros((32, 32)))\n"
        "viewer.screenshot(flash=False)\n"
        "from napari_gapcam import load_model\n"
        "load_model('resnet18', weights=None, device='cpu').run(np.zeros((64, 64)))\n"
        "viewer.close()\n"
        "print('ok')\n"
    )
    done = _run_python(code)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_wheel_ships_the_license_and_every_package(tmp_path):
    """The BSD-3-Clause text travels with the wheel (PEP 639 license files), and so do the
    four packages, the manifest and the demo model."""
    import zipfile

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = tmp_path.glob("napari_gapcam-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    licenses = [name for name in names if name.endswith("LICENSE")]
    assert licenses, names
    text = zipfile.ZipFile(wheel).read(licenses[0]).decode()
    assert "BSD 3-Clause License" in text
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    assert b"License-Expression: BSD-3-Clause" in metadata
    for path in ("napari.yaml", "data/shapes_resnet18.pt", "synthetic.py", "cli/__main__.py"):
        assert f"napari_gapcam/{path}" in names, path
    source = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src").rglob("*.py")}
    assert source <= set(names), sorted(source - set(names))
