"""llama.cpp's block quantization formats, dequantized with whole-tensor torch operations.

A GGUF file (llama.cpp's container, read with the `gguf` package) stores each weight
matrix row by row, every row cut into blocks of 32 consecutive weights. A block keeps
a few float16 numbers that set its scale and 32 small integers:

* ``Q8_0`` — 34 bytes: a float16 scale ``d`` and 32 signed bytes ``q``;
  ``w = d * q`` (8.5 bits per weight).
* ``Q4_1`` — 20 bytes: float16 ``d`` and ``m`` (the block's minimum) and 16 bytes
  holding 32 four-bit ``q`` in 0..15, the low nibbles for weights 0..15 and the high
  nibbles for weights 16..31; ``w = d * q + m`` (5 bits per weight).
* ``F32`` / ``F16`` — plain floats, passed through.

The formats follow ggml's ``block_q8_0`` / ``block_q4_1``
(https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-common.h); the
reference decoder is ``gguf.quants.dequantize``, which the tests match bit for bit.
Each format is decoded for all blocks of a tensor at once (a few vectorised torch
operations on a (blocks, bytes) view), so a 100 MB file dequantizes in well under a
second. ``quantize_q8_0`` / ``quantize_q4_1`` go the other way, for experiments.

Leaves out: the other ggml types (Q4_0, Q5_x, the K-quants, I-quants), which raise a
`DataError` naming the type.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dlnotes.errors import DataError, InputError

BLOCK = 32  # weights per block in every block format here


@dataclass(frozen=True)
class Format:
    """One ggml tensor type: its name, weights per block and bytes per block."""

    name: str
    block_size: int
    block_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.block_bytes / self.block_size


# Keyed by ggml's type number (gguf.GGMLQuantizationType), so this module needs no gguf import.
FORMATS: dict[int, Format] = {
    0: Format("F32", 1, 4),
    1: Format("F16", 1, 2),
    3: Format("Q4_1", BLOCK, 4 + BLOCK // 2),
    8: Format("Q8_0", BLOCK, 2 + BLOCK),
}


def format_of(ggml_type: int) -> Format:
    """The `Format` of a ggml type number; `DataError` for a type this module cannot decode."""
    fmt = FORMATS.get(int(ggml_type))
    if fmt is None:
        try:
            import gguf

            name = gguf.GGMLQuantizationType(int(ggml_type)).name
        except (ImportError, ValueError):
            name = f"type {int(ggml_type)}"
        known = ", ".join(f.name for f in FORMATS.values())
        raise DataError(f"unsupported GGUF tensor type {name}; this loader reads {known}")
    return fmt


def _f16(raw: Tensor) -> Tensor:
    """(..., 2) bytes -> (..., 1) float32 from the little-endian float16 they hold."""
    return raw.contiguous().view(torch.float16).float()


def dequantize_q8_0(blocks: Tensor) -> Tensor:
    """(n, 34) uint8 Q8_0 blocks -> (n, 32) float32 weights ``d * q``."""
    d = _f16(blocks[:, :2])  # (n, 1)
    q = blocks[:, 2:].contiguous().view(torch.int8).float()  # (n, 32)
    return q * d


def dequantize_q4_1(blocks: Tensor) -> Tensor:
    """(n, 20) uint8 Q4_1 blocks -> (n, 32) float32 weights ``d * q + m``."""
    d, m = _f16(blocks[:, :2]), _f16(blocks[:, 2:4])  # (n, 1) each
    packed = blocks[:, 4:]  # (n, 16): weight j in the low nibble, weight j + 16 in the high one
    q = torch.cat([packed & 0x0F, packed >> 4], dim=1).float()  # (n, 32)
    return torch.addcmul(m, q, d)  # d * q is exact in float32, so one rounding, as in numpy


def dequantize(raw: np.ndarray | Tensor, ggml_type: int, shape: tuple[int, ...]) -> Tensor:
    """A tensor's bytes (or its float array, for F32/F16) -> float32 tensor of `shape`.

    `shape` is in PyTorch order (rows last-but-one, the row length last), i.e. the
    reverse of GGUF's listing. The bytes may be a read-only memory map: they are not
    written.
    """
    fmt = format_of(ggml_type)
    numel = int(np.prod(shape))
    array = raw if isinstance(raw, Tensor) else _as_tensor(raw)
    data = array.reshape(-1).view(torch.uint8)
    expected = numel // fmt.block_size * fmt.block_bytes
    if numel % fmt.block_size or data.numel() != expected:
        raise DataError(
            f"a {fmt.name} tensor of shape {tuple(shape)} needs {expected:,} bytes, "
            f"the file holds {data.numel():,} (truncated or corrupted file?)"
        )
    if fmt.name == "F32":
        out = data.view(torch.float32).clone()
    elif fmt.name == "F16":
        out = data.view(torch.float16).float()
    else:
        blocks = data.view(-1, fmt.block_bytes)
        out = (dequantize_q8_0 if fmt.name == "Q8_0" else dequantize_q4_1)(blocks)
    return out.reshape(shape)


def _as_tensor(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory. A read-only memory map (GGUFReader's default
    mode) is wrapped as it is: torch warns that it may not be written, and nothing here
    writes to it."""
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _blocks_of(weights: Tensor) -> Tensor:
    weights = weights.detach().float()
    if weights.numel() == 0 or weights.shape[-1] % BLOCK:
        raise InputError(
            f"block quantization needs rows whose length is a multiple of {BLOCK}, "
            f"got shape {tuple(weights.shape)}"
        )
    return weights.reshape(-1, BLOCK)


def quantize_q8_0(weights: Tensor) -> Tensor:
    """Float weights (rows a multiple of 32 long) -> (n, 34) Q8_0 blocks, rounded as ggml
    does: ``d = max|w| / 127``, ``q = round(w / d)`` (halves away from zero)."""
    w = _blocks_of(weights)
    d = w.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d > 0, 1 / d, torch.zeros_like(d))
    scaled = w * inv
    a = scaled.abs()  # round half away from zero, written as ggml writes it
    q = (torch.sign(scaled) * (a.floor() + (2 * (a - a.floor())).floor())).to(torch.int8)
    d16 = d.to(torch.float16).view(torch.uint8).reshape(-1, 2)
    return torch.cat([d16, q.view(torch.uint8)], dim=1)


def quantize_q4_1(weights: Tensor) -> Tensor:
    """Float weights (rows a multiple of 32 long) -> (n, 20) Q4_1 blocks:
    ``m = min w``, ``d = (max w - m) / 15``, ``q = round((w - m) / d)``, as ggml does."""
    w = _blocks_of(weights)
    lo, hi = w.amin(dim=1, keepdim=True), w.amax(dim=1, keepdim=True)
    d = (hi - lo) / 15
    inv = torch.where(d > 0, 1 / d, torch.zeros_like(d))
    q = torch.trunc((w - lo) * inv + 0.5).clamp(0, 15).to(torch.uint8)
    packed = q[:, : BLOCK // 2] | (q[:, BLOCK // 2 :] << 4)
    halves = [t.to(torch.float16).view(torch.uint8).reshape(-1, 2) for t in (d, lo)]
    return torch.cat([*halves, packed], dim=1)
