"""The speed paths compute what the plain ones do: same losses, gradients and logits.

Row-block cross-entropy against `F.cross_entropy` with autograd, dropout skipped only
where it is the identity, and `train(compile=...)` and `generate(compile=...)` on either
branch of the compiler's probe, and on a compiled step that fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlnotes import fastpath, losses, roofline
from dlnotes import generate as gen_module
from dlnotes.errors import InputError
from dlnotes.fastpath import compile_works, compiled
from dlnotes.generate import generate
from dlnotes.gpt import GPT, GPTConfig, dropout
from dlnotes.llama import Llama, LlamaConfig
from dlnotes.losses import next_token_loss
from dlnotes.train import make_optimizer, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [losses.ROWS + 1, 5 * losses.ROWS + 3])
def test_row_block_loss_and_gradient_equal_cross_entropy(dtype, rows):
    gen = torch.Generator().manual_seed(0)
    base = (torch.randn(rows, 300, generator=gen) * 4).to(dtype)
    targets = torch.randint(0, 300, (rows,), generator=gen)
    targets[[0, rows - 1]] = losses.IGNORE  # padding, skipped by both
    ours, plain = base.clone().requires_grad_(), base.clone().requires_grad_()
    got = next_token_loss(ours, targets)
    want = F.cross_entropy(plain.float(), targets, ignore_index=-100)
    (got * 3.0).backward()  # an upstream gradient other than 1
    (want * 3.0).backward()
    assert got.dtype == torch.float32 and ours.grad.dtype == dtype
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.grad, plain.grad, rtol=1e-5, atol=1e-7)
    assert ours.grad[0].abs().sum() == 0  # an ignored row gets no gradient


def test_row_block_loss_of_only_padding_is_nan_like_cross_entropy():
    logits = torch.randn(3 * losses.ROWS, 10)
    targets = torch.full((3 * losses.ROWS,), losses.IGNORE)
    assert next_token_loss(logits, targets).isnan()
    assert F.cross_entropy(logits, targets).isnan()


def test_model_loss_equals_the_plain_loss_of_its_logits():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=500, context_length=16))
    x, y = torch.randint(0, 500, (2, 3, 16))
    got = losses.batch_loss(model, x, y)
    got.backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    want = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    want.backward()
    torch.testing.assert_close(got, want)
    for a, b in zip(ours, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


class Counting(nn.Dropout):
    """A dropout module that counts its calls."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Counting.calls += 1
        return super().forward(x)


def test_dropout_is_skipped_only_where_it_is_the_identity():
    x = torch.randn(4, 8)
    for p, training, called in ((0.0, True, False), (0.5, False, False), (0.5, True, True)):
        Counting.calls = 0
        module = Counting(p).train(training)
        out = dropout(module, x)
        assert (Counting.calls == 1) is called
        if not called:
            assert out is x


def test_swapped_in_dropout_rates_count_in_a_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(drop_rate=0.0)).train()
    idx = torch.randint(0, 1000, (1, 8))
    clean = model.eval()(idx)
    model.train()
    torch.testing.assert_close(model(idx), clean)  # p = 0 in training: the same function
    model.h[0].drop = nn.Dropout(0.5)  # as ch04's exercise sets rates after construction
    assert not torch.allclose(model(idx), clean)


def byte_batches() -> DataLoader:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (8, 17), generator=gen)
    return DataLoader(TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=2)


def run(compile: bool, drop_rate: float = 0.0) -> list[float]:
    torch.manual_seed(3)
    model = GPT(GPTConfig.tiny(vocab_size=256, context_length=16, drop_rate=drop_rate))
    opt = make_optimizer(model, lr=1e-2)
    loader = byte_batches()
    hist = train(model, loader, loader, opt, max_steps=3, amp=None, progress=False,
                 eval_every=10, eval_batches=1, compile=compile)  # fmt: skip
    return hist.step_loss


def test_compile_falls_back_to_the_model_where_no_compiler_works(monkeypatch):
    monkeypatch.setitem(fastpath.RESULTS, "torch_compile_cpu", False)
    model = GPT(GPTConfig.tiny())
    assert compiled(model) is model
    assert run(compile=True) == run(compile=False)  # the same eager steps


def test_compiled_training_steps_give_the_eager_losses(monkeypatch):
    if not compile_works(torch.device("cpu")):
        pytest.skip("torch.compile does not build on this machine")
    monkeypatch.setitem(fastpath.RESULTS, "torch_compile_cpu", True)
    model = GPT(GPTConfig.tiny())
    assert compiled(model) is not model
    assert run(compile=True) == pytest.approx(run(compile=False), rel=1e-4)


def test_compile_must_be_a_flag():
    with pytest.raises(InputError, match="compile must be True or False"):
        run(compile="yes")  # type: ignore[arg-type]


def test_optimizer_time_is_one_adamw_step_over_the_trainable_parameters(monkeypatch):
    model = GPT(GPTConfig.tiny(tie_weights=True))
    model.wpe.requires_grad_(False)  # frozen: AdamW does not touch it
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in model.parameters())
    stepped: list[torch.Tensor] = []

    def once(fn, repeats, device):
        fn()
        stepped.extend(fn.__self__.param_groups[0]["params"])
        return 0.25

    monkeypatch.setattr(roofline, "best_time", once)
    assert roofline.optimizer_seconds(model, fused=False) == 0.25
    (param,) = stepped
    assert param.numel() == trainable and param.abs().sum() > 0  # one real step was taken


def test_linear_seconds_runs_every_linear_layer_on_one_row(monkeypatch):
    model = GPT(GPTConfig.tiny())
    seen: list[tuple[int, ...]] = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    monkeypatch.setattr(roofline, "best_time", lambda fn, repeats, device: (fn(), 0.5)[1])
    assert roofline.linear_seconds(model) == 0.5
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert seen == [(1, 1, m.in_features) for m in layers]


def decoders() -> list[nn.Module]:
    torch.manual_seed(5)
    return [GPT(GPTConfig.tiny()).eval(), Llama(LlamaConfig.tiny()).eval()]


PROMPT = torch.tensor([[11, 400, 7, 99], [3, 3, 980, 12]])


def test_compiled_decoding_gives_the_eager_ids(monkeypatch):
    if not compile_works(torch.device("cpu")):
        pytest.skip("torch.compile does not build on this machine")
    monkeypatch.setitem(fastpath.RESULTS, "torch_compile_cpu", True)
    for model in decoders():
        eager = generate(model, PROMPT, 12)
        assert torch.equal(generate(model, PROMPT, 12, compile=True), eager)
        # the end token and a context that fills up (re-encoded eagerly) on the same path
        eos = int(eager[0, 6])
        assert torch.equal(
            generate(model, PROMPT, 12, eos_id=eos, compile=True),
            generate(model, PROMPT, 12, eos_id=eos),
        )
        long = model.cfg.context_length + 3 - PROMPT.shape[1]
        assert torch.equal(
            generate(model, PROMPT, long, compile=True), generate(model, PROMPT, long)
        )
        assert model not in gen_module._NOT_COMPILING  # the compiled steps ran, no fallback


def test_compiled_decoding_falls_back_where_no_compiler_works(monkeypatch):
    monkeypatch.setitem(fastpath.RESULTS, "torch_compile_cpu", False)

    def no_compiler(*args, **kwargs):
        raise AssertionError("torch.compile must not be called when the probe failed")

    monkeypatch.setattr(torch, "compile", no_compiler)
    for model in decoders():
        assert compiled(model, dynamic=True) is model
        assert torch.equal(generate(model, PROMPT, 8, compile=True), generate(model, PROMPT, 8))


def test_a_failing_compiled_step_decodes_eagerly_with_one_warning(monkeypatch):
    calls = []

    def broken_compiler(model, dynamic=None):
        def step(idx, cache, last_only=False):
            calls.append(idx.shape)
            cache[0].pos += 1  # fails half-way: the fallback must rewind the cache
            raise RuntimeError("no C++ compiler for this graph\nmore lines")

        return step

    monkeypatch.setattr(gen_module, "compiled", broken_compiler)
    for model in decoders():
        calls.clear()
        with pytest.warns(UserWarning, match=r"compiled decoding failed \(RuntimeError: no C\+\+ "
                          r"compiler for this graph\); decoding without compiling"):  # fmt: skip
            got = generate(model, PROMPT, 8, compile=True)
        assert torch.equal(got, generate(model, PROMPT, 8))
        assert len(calls) == 1  # tried once, then eager for the rest of the run
        assert torch.equal(generate(model, PROMPT, 8, compile=True), got)
        assert len(calls) == 1  # and not tried again for this model


def test_generate_compile_must_be_a_flag():
    with pytest.raises(InputError, match="compile must be True or False, got 'yes'"):
        generate(decoders()[0], PROMPT, 2, compile="yes")  # type: ignore[arg-type]
