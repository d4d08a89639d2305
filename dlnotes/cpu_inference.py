"""A bfloat16 copy of a model for fast generation, on any CPU (and any device).

At batch size 1 a generation step reads every weight once and does little arithmetic
with it, so its speed is set by memory: bfloat16 halves the bytes of float32. The
public path, ``model.to(torch.bfloat16)``, works everywhere. On CPUs where oneDNN has
bfloat16 kernels (AVX512-BF16, AMX, AVX-NE-CONVERT) it re-lays each weight out at
every call; there `cpu_bfloat16` hands oneDNN the weights prepacked once, through
two private operators. Those operators raise on other CPUs (AVX2 only, Apple arm64),
so a probe (`dlnotes.fastpath`) runs them once on a tiny layer first; where it fails,
or under ``DLNOTES_GENERIC_CPU=1``, the copy is plain bfloat16.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlnotes import fastpath

PACKED = "onednn_packed_bf16_linear"


def _pack(weight: Tensor) -> Tensor:
    # (out, in) -> oneDNN's blocked layout, tuned for one row of input at a time.
    return torch.ops.mkldnn._reorder_linear_weight(weight, 1)


def _packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _probe() -> None:
    """Run the packed path on a tiny layer and compare it with `F.linear` (raises if not)."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(16, 32, generator=gen).bfloat16()
    bias = torch.randn(16, generator=gen).bfloat16()
    x = torch.randn(1, 32, generator=gen).bfloat16()
    got = _packed_linear(x, _pack(weight), bias)
    torch.testing.assert_close(got, F.linear(x, weight, bias), atol=0.1, rtol=0.05)


def packed_linear_available() -> bool:
    """Whether this CPU and PyTorch build run oneDNN's prepacked bfloat16 linear layers."""
    return torch.backends.mkldnn.is_available() and fastpath.available(PACKED, _probe)


class PackedLinear(nn.Module):
    """A frozen `nn.Linear` for CPU inference, its bfloat16 weight prepacked by oneDNN."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = _pack(linear.weight.detach().to("cpu", torch.bfloat16))
        bias = linear.bias
        self.bias = None if bias is None else bias.detach().to("cpu", torch.bfloat16)

    def forward(self, x: Tensor) -> Tensor:
        return _packed_linear(x, self.packed, self.bias)


def cpu_bfloat16(model: nn.Module) -> nn.Module:
    """An inference-only bfloat16 copy of `model` (the original is left as it is).

    On the CPU, where the probe passes, every `nn.Linear` becomes a `PackedLinear`;
    elsewhere the copy is ``model.to(torch.bfloat16)``. Use it with
    `dlnotes.generate.generate`/`stream`; it has no gradients.
    """
    device = next(model.parameters()).device
    fast = copy.deepcopy(model).to(torch.bfloat16).eval().requires_grad_(False)
    if device.type != "cpu" or not packed_linear_available():
        return fast
    linears = [(n, m) for n, m in fast.named_modules() if isinstance(m, nn.Linear)]
    for name, linear in linears:
        owner, _, attr = name.rpartition(".")
        setattr(fast.get_submodule(owner), attr, PackedLinear(linear))
    return fast
