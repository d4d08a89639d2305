"""cpu_bfloat16 against a plain bfloat16 model, on both sides of its hardware probe."""

from __future__ import annotations

import pytest
import torch

from dlnotes import cpu_inference, fastpath
from dlnotes.cpu_inference import PACKED, PackedLinear, cpu_bfloat16, packed_linear_available
from dlnotes.generate import generate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(hf_pair) -> torch.nn.Module:
    _, ours = hf_pair(2, 4, 32, 40, 101, init_range=0.3)
    return ours


def _check_against_plain_bfloat16(model: torch.nn.Module, fast: torch.nn.Module) -> None:
    assert model.wte.weight.dtype == torch.float32  # the original is left as it is
    low = model.to(torch.bfloat16)
    idx = torch.randint(0, 101, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(fast(idx), low(idx), atol=1e-2, rtol=1e-2)
    assert torch.equal(generate(fast, idx, 20), generate(low, idx, 20))


def test_fast_path_equals_a_bfloat16_model(model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepacking changes the memory layout, not the arithmetic (where this CPU has it)."""
    monkeypatch.delitem(fastpath.RESULTS, PACKED, raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    if not packed_linear_available():
        pytest.skip("this CPU has no oneDNN bfloat16 linear kernels (the fallback is tested)")
    fast = cpu_bfloat16(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in fast.modules())
    assert sum(isinstance(m, PackedLinear) for m in fast.modules()) == 2 * 4 + 1
    _check_against_plain_bfloat16(model, fast)


def test_fallback_is_a_plain_bfloat16_copy(model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fastpath.RESULTS, PACKED, False)
    fast = cpu_bfloat16(model)
    assert not any(isinstance(m, PackedLinear) for m in fast.modules())
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in fast.parameters())
    _check_against_plain_bfloat16(model, fast)


def test_a_failing_probe_falls_back(model, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an AVX2-only CPU does: the private op raises, the probe says no, no crash."""

    def refuse(*args: object) -> None:
        raise RuntimeError("mkldnn_reorder_linear_weight: bf16 path needs the cpu support ...")

    monkeypatch.delitem(fastpath.RESULTS, PACKED, raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    monkeypatch.setattr(cpu_inference, "_pack", refuse)
    assert not packed_linear_available()
    fast = cpu_bfloat16(model)
    assert not any(isinstance(m, PackedLinear) for m in fast.modules())
    _check_against_plain_bfloat16(model, fast)


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
