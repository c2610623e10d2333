"""``import torch`` behind the Triton guard: every engine and models module imports torch here.

torchvision is imported here too: its import pulls in ``torch._dynamo``, which looks for Triton,
and that must happen behind the guard as well. Imported later (after napari has loaded Mesa's
LLVM, with torch already imported by this module), it would crash the process.
"""

from __future__ import annotations

from ._torch_guard import block_triton_if_llvm_loaded

block_triton_if_llvm_loaded()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402, F401  (see the docstring)
from torch import nn  # noqa: E402

__all__ = ["F", "nn", "torch"]
