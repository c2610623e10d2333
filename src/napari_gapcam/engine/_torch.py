"""``import torch`` behind the Triton guard: every engine module imports torch from here."""

from __future__ import annotations

from ._torch_guard import block_triton_if_llvm_loaded

block_triton_if_llvm_loaded()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

__all__ = ["F", "nn", "torch"]
