"""Next-token losses: hand-checkable values, agreement with an explicit log-softmax, eval mode."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlnotes import fastpath
from dlnotes.errors import InputError
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.losses import AMX, amp_dtype, batch_loss, evaluate, loader_loss, perplexity


def windows(n_rows: int, T: int = 16, vocab: int = 256) -> DataLoader:
    x = torch.randint(0, vocab, (n_rows, T + 1))
    return DataLoader(TensorDataset(x[:, :-1], x[:, 1:]), batch_size=2, drop_last=True)


def tiny(drop_rate: float = 0.0) -> GPT:
    return GPT(GPTConfig.tiny(vocab_size=256, context_length=16, drop_rate=drop_rate))


def test_uniform_model_loss_is_log_vocab():
    class Uniform(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.dummy + torch.zeros(*idx.shape, 50257)

    loss = loader_loss(Uniform(), windows(6))
    assert loss == pytest.approx(math.log(50257), rel=1e-6)
    assert perplexity(loss) == pytest.approx(50257, rel=1e-5)


def test_batch_loss_matches_explicit_log_softmax():
    model = tiny()
    x, y = next(iter(windows(4)))
    logp = torch.log_softmax(model(x), dim=-1)
    expected = -logp.gather(-1, y.unsqueeze(-1)).mean()
    assert batch_loss(model, x, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_loader_loss_averages_the_first_batches():
    model, loader = tiny(), windows(8)  # 4 batches
    per_batch = [batch_loss(model, x, y).item() for x, y in loader]
    assert loader_loss(model, loader) == pytest.approx(sum(per_batch) / 4, rel=1e-5)
    assert loader_loss(model, loader, num_batches=2) == pytest.approx(sum(per_batch[:2]) / 2)
    assert loader_loss(model, loader, num_batches=99) == pytest.approx(sum(per_batch) / 4)


def test_evaluate_uses_eval_mode_and_restores_training_mode():
    model = tiny(drop_rate=0.5).train()
    loader = windows(6)
    a, b = evaluate(model, loader, loader, num_batches=2), evaluate(model, loader, loader, 2)
    assert a == b and model.training  # no dropout while evaluating
    model.eval()
    evaluate(model, loader, loader)
    assert not model.training
    # a part the caller froze in eval mode stays so (model.train(True) would undo it)
    model.train()
    model.h[0].eval()
    evaluate(model, loader, loader, 1)
    modes = {name: m.training for name, m in model.named_modules()}
    assert modes[""] and not modes["h.0"] and not modes["h.0.attn"]


def test_empty_loader_is_a_clear_error():
    with pytest.raises(InputError, match="too short for one batch"):
        loader_loss(tiny(), windows(1))  # one row, batch_size 2, drop_last: no batch


def test_amp_choice():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, None) is None and amp_dtype(cpu, "bf16") is torch.bfloat16
    assert amp_dtype(cpu, torch.float16) is torch.float16
    with pytest.raises(InputError, match="'fp8'"):
        amp_dtype(cpu, "fp8")


@pytest.mark.parametrize("amx", [True, False])
def test_auto_amp_follows_the_amx_probe(amx: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fastpath.RESULTS, AMX, amx)
    assert amp_dtype(torch.device("cpu"), "auto") is (torch.bfloat16 if amx else None)


def test_amx_probe_without_amx_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(fastpath.RESULTS, AMX, raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert amp_dtype(torch.device("cpu"), "auto") is None


def test_amx_probe_runs_where_the_helper_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(fastpath.RESULTS, AMX, raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert amp_dtype(torch.device("cpu"), "auto") is None
