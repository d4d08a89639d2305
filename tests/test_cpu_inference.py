"""inference_copy against a plain model of the same dtype, on both sides of its probe."""

from __future__ import annotations

import pytest
import torch

from dlnotes import cpu_inference, fastpath
from dlnotes.cpu_inference import (
    PACKED,
    PackedLinear,
    inference_copy,
    is_prepacked,
    packed_linear_available,
)
from dlnotes.errors import InputError
from dlnotes.generate import generate

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [torch.float32, torch.bfloat16]
# bfloat16 logits of the packed and the plain path differ by their rounding; float32 by
# summation order only.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 1e-2}


@pytest.fixture
def model(hf_pair) -> torch.nn.Module:
    _, ours = hf_pair(2, 4, 32, 40, 101, init_range=0.3)
    return ours


def _check_against_plain(model: torch.nn.Module, fast: torch.nn.Module, dtype) -> None:
    assert model.wte.weight.dtype == torch.float32  # the original is left as it is
    low = model.to(dtype)
    idx = torch.randint(0, 101, (2, 10))
    with torch.no_grad():
        tol = TOLERANCE[dtype]
        torch.testing.assert_close(fast(idx), low(idx), atol=tol, rtol=tol)
    assert torch.equal(generate(fast, idx, 20), generate(low, idx, 20))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_path_equals_a_plain_model(model, dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepacking changes the memory layout, not the arithmetic (where this CPU has it)."""
    monkeypatch.delitem(fastpath.RESULTS, PACKED[dtype], raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    if not packed_linear_available(dtype):
        pytest.skip(f"this CPU has no oneDNN {dtype} linear kernels (the fallback is tested)")
    fast = inference_copy(model, dtype)
    assert not any(isinstance(m, torch.nn.Linear) for m in fast.modules())
    assert sum(isinstance(m, PackedLinear) for m in fast.modules()) == 2 * 4 + 1
    _check_against_plain(model, fast, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_is_a_plain_copy(model, dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fastpath.RESULTS, PACKED[dtype], False)
    fast = inference_copy(model, dtype)
    assert not is_prepacked(fast)
    assert all(p.dtype == dtype and not p.requires_grad for p in fast.parameters())
    _check_against_plain(model, fast, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_failing_probe_falls_back(model, dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an AVX2-only CPU does for bfloat16: the private op raises, the probe says no."""

    def refuse(*args: object) -> None:
        raise RuntimeError("mkldnn_reorder_linear_weight: bf16 path needs the cpu support ...")

    monkeypatch.delitem(fastpath.RESULTS, PACKED[dtype], raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    monkeypatch.setattr(cpu_inference, "_pack", refuse)
    assert not packed_linear_available(dtype)
    fast = inference_copy(model, dtype)
    assert not is_prepacked(fast)
    _check_against_plain(model, fast, dtype)


def test_a_wrong_probe_answer_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that runs but computes something else fails the probe's comparison."""
    monkeypatch.delitem(fastpath.RESULTS, PACKED[torch.float32], raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    monkeypatch.setattr(cpu_inference, "_pack", lambda w: w)
    monkeypatch.setattr(cpu_inference, "_packed_linear", lambda x, w, b: x @ w.T)  # no bias
    assert not packed_linear_available(torch.float32)


def test_bad_dtype_is_refused(model) -> None:
    with pytest.raises(InputError, match="floating-point"):
        inference_copy(model, torch.int8)
    assert not packed_linear_available(torch.float16)


def test_generic_cpu_switch_skips_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = []
    monkeypatch.setattr(fastpath, "GENERIC_CPU", True)
    monkeypatch.delitem(fastpath.RESULTS, "x", raising=False)
    assert not fastpath.available("x", lambda: ran.append(1))
    assert ran == []
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    monkeypatch.delitem(fastpath.RESULTS, "y", raising=False)
    assert fastpath.available("y", lambda: ran.append(1)) and ran == [1]
    assert fastpath.available("y", lambda: ran.append(1)) and ran == [1]  # probed once
