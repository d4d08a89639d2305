"""GGUF block formats: our dequantization equals llama.cpp's reference (`gguf.quants`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlnotes import quant
from dlnotes.errors import DataError, InputError

gguf = pytest.importorskip("gguf")
T = gguf.GGMLQuantizationType

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_blocks(weights: np.ndarray, qtype: int) -> np.ndarray:
    """llama.cpp's Python quantizer: (rows, cols) float32 -> (rows, bytes) uint8."""
    return gguf.quants.quantize(weights, qtype)


@pytest.mark.parametrize("qtype", [T.F32, T.F16, T.Q8_0, T.Q4_1])
def test_synthetic_tensor_of_each_type_equals_gguf(qtype: int) -> None:
    rng = np.random.default_rng(0)
    weights = (rng.standard_normal((6, 96)) * rng.uniform(0.01, 3, (6, 1))).astype(np.float32)
    weights[0, :32] = 0.0  # an all-zero block: scale 0
    raw = reference_blocks(weights, qtype)
    ours = quant.dequantize(raw, qtype, weights.shape)
    ref = gguf.quants.dequantize(raw, qtype)
    assert ours.dtype == torch.float32 and ours.shape == weights.shape
    np.testing.assert_array_equal(ours.numpy(), ref)


def test_every_tensor_of_the_smollm2_file_equals_gguf(smollm2_gguf) -> None:
    reader = gguf.GGUFReader(smollm2_gguf)
    seen = set()
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        ours = quant.dequantize(t.data, t.tensor_type, shape).numpy()
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
        assert np.array_equal(ours, ref), t.name
        seen.add(t.tensor_type.name)
    assert seen == {"F32", "Q8_0", "Q4_1"}


def test_block_layout_by_hand() -> None:
    # Q4_1: d = 0.5, m = -1, nibbles j and j + 16 share byte j (low, high).
    d, m = np.float16(0.5).tobytes(), np.float16(-1.0).tobytes()
    q = np.arange(32) % 16
    packed = (q[:16] | (q[16:] << 4)).astype(np.uint8).tobytes()
    block = np.frombuffer(d + m + packed, np.uint8)[None]
    got = quant.dequantize(block, T.Q4_1, (1, 32))
    torch.testing.assert_close(got[0], torch.tensor(0.5 * q - 1.0, dtype=torch.float32))
    # Q8_0: d = 0.25 and signed bytes.
    qs = np.arange(-16, 16, dtype=np.int8)
    block = np.frombuffer(np.float16(0.25).tobytes() + qs.tobytes(), np.uint8)[None]
    got = quant.dequantize(block, T.Q8_0, (1, 32))
    torch.testing.assert_close(got[0], torch.tensor(0.25 * qs, dtype=torch.float32))


def test_formats_bits_per_weight() -> None:
    assert quant.FORMATS[T.Q8_0].block_bytes == gguf.GGML_QUANT_SIZES[T.Q8_0][1] == 34
    assert quant.FORMATS[T.Q4_1].block_bytes == gguf.GGML_QUANT_SIZES[T.Q4_1][1] == 20
    assert quant.FORMATS[T.Q8_0].bits_per_weight == 8.5
    assert quant.FORMATS[T.Q4_1].bits_per_weight == 5.0


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_1])
def test_our_quantizer_writes_ggml_s_bytes(qtype: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 64) * torch.rand(4, 1)
    w[1, :32] = 0.0
    quantize = quant.quantize_q8_0 if qtype == T.Q8_0 else quant.quantize_q4_1
    blocks = quantize(w)
    assert blocks.shape == (8, quant.FORMATS[qtype].block_bytes) and blocks.dtype == torch.uint8
    ref = reference_blocks(w.numpy(), qtype).reshape(8, -1)
    np.testing.assert_array_equal(blocks.numpy(), ref)
    # and the error is at most half a step (plus float16 rounding of the scale)
    back = quant.dequantize(blocks, qtype, (4, 64)).reshape(-1, 32)
    rows = w.reshape(-1, 32)
    step = rows.abs().amax(1) / 127 if qtype == T.Q8_0 else (rows.amax(1) - rows.amin(1)) / 15
    assert torch.all((back - rows).abs().amax(1) <= 0.57 * step + rows.abs().amax(1) / 2048)


def test_unsupported_type_and_wrong_size_are_data_errors() -> None:
    raw = reference_blocks(np.zeros((2, 32), np.float32), T.Q4_0)
    with pytest.raises(DataError, match="unsupported GGUF tensor type Q4_0"):
        quant.dequantize(raw, T.Q4_0, (2, 32))
    raw = reference_blocks(np.zeros((2, 32), np.float32), T.Q8_0)
    with pytest.raises(DataError, match="truncated or corrupted"):
        quant.dequantize(raw[:, :-1], T.Q8_0, (2, 32))
    with pytest.raises(InputError, match="multiple of 32"):
        quant.quantize_q8_0(torch.ones(3, 20))
