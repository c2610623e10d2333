"""Keep torch from importing Triton next to Mesa's software OpenGL (llvmpipe).

Mesa's llvmpipe (napari on a machine with no GPU driver: VMs, remote desktops, Xvfb) loads the
system libLLVM; Triton bundles its own LLVM, and importing it after the former crashes the
process (segmentation fault; seen with torch 2.14 / triton and Mesa 22, libLLVM-15). Triton
serves only ``torch.compile`` GPU kernels, which this plugin does not use, so in that one
situation we make ``import triton`` fail cleanly and torch carries on without it.
"""

from __future__ import annotations

import sys


def _system_llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:  # not Linux
        return False


def block_triton_if_llvm_loaded() -> None:
    """Call before the first ``import torch``; does nothing when it is not needed."""
    if "triton" not in sys.modules and _system_llvm_loaded():
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton → ImportError
