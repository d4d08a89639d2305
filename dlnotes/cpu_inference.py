"""A frozen copy of a model for fast generation on the CPU (and plain on other devices).

At batch size 1 a generation step reads every weight once and does two flops with
each, so its speed is set by how fast the matrix-vector products stream the weights
from memory. PyTorch's public path, ``F.linear``, hands the product to the BLAS
library of the build; on some CPUs that library's matrix-vector kernel reaches well
under the memory's speed (MKL's on AMD EPYC: about half, measured by
``benchmarks/llama.py``), and for bfloat16 oneDNN re-lays each weight out at every
call. `inference_copy` hands oneDNN every weight prepacked once, through two private
operators, which stream at the memory's speed for one row and stay fast for a prompt.

Those operators can raise (bfloat16 needs AVX512-BF16, AMX or AVX-NE-CONVERT; an
Apple CPU has no oneDNN), so a probe (`dlnotes.fastpath`) runs them once per dtype on
a tiny layer first; where it fails, or under ``DLNOTES_GENERIC_CPU=1``, the copy is a
plain ``model.to(dtype)``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes import fastpath
from dlnotes.errors import InputError

PACKED = {
    torch.float32: "onednn_packed_float32_linear",
    torch.bfloat16: "onednn_packed_bfloat16_linear",
}


def _pack(weight: Tensor) -> Tensor:
    # (out, in) -> oneDNN's blocked layout, tuned for one row of input at a time.
    return torch.ops.mkldnn._reorder_linear_weight(weight, 1)


def _packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _probe(dtype: torch.dtype) -> None:
    """Run the packed path on a tiny layer and compare it with `F.linear` (raises if not)."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 32, generator=gen).to(dtype)
    bias = torch.randn(16, generator=gen).to(dtype)
    for rows in (1, 3):  # one decoding step, and a prompt
        x = torch.randn(rows, 32, generator=gen).to(dtype)
        got = _packed_linear(x, _pack(weight), bias)
        torch.testing.assert_close(got, F.linear(x, weight, bias), atol=0.1, rtol=0.05)


def packed_linear_available(dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether this CPU and PyTorch build run oneDNN's prepacked linear layers in `dtype`."""
    if dtype not in PACKED or not torch.backends.mkldnn.is_available():
        return False
    return fastpath.available(PACKED[dtype], lambda: _probe(dtype))


class PackedLinear(nn.Module):
    """A frozen `nn.Linear` for CPU inference, its weight prepacked by oneDNN in `dtype`."""

    def __init__(self, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = _pack(linear.weight.detach().to("cpu", dtype))
        bias = linear.bias
        self.bias = None if bias is None else bias.detach().to("cpu", dtype)

    def forward(self, x: Tensor) -> Tensor:
        return _packed_linear(x, self.packed, self.bias)


def is_prepacked(model: nn.Module) -> bool:
    """Whether `inference_copy` took the fast path for `model` (it holds `PackedLinear`s)."""
    return any(isinstance(m, PackedLinear) for m in model.modules())


def inference_copy(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """An inference-only copy of `model` in `dtype` (the original is left as it is).

    On the CPU, where the probe for `dtype` passes, every `nn.Linear` becomes a
    `PackedLinear`; elsewhere the copy is ``model.to(dtype)``. Use it with
    `dlnotes.generate.generate`/`stream`; it has no gradients.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    device = next(model.parameters()).device
    fast = copy.deepcopy(model).to(dtype).eval().requires_grad_(False)
    if device.type != "cpu" or not packed_linear_available(dtype):
        return fast
    linears = [(n, m) for n, m in fast.named_modules() if isinstance(m, nn.Linear)]
    for name, linear in linears:
        owner, _, attr = name.rpartition(".")
        setattr(fast.get_submodule(owner), attr, PackedLinear(linear, dtype))
    return fast
