"""The training loop learns, is reproducible, resumes exactly, and rejects bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from dlnotes import fastpath
from dlnotes.checkpoint import save_checkpoint
from dlnotes.env import seed_everything
from dlnotes.errors import CheckpointError, InputError
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.loader import ids_to_text, text_to_ids
from dlnotes.losses import loader_loss
from dlnotes.train import History, fused_adamw_works, grad_norm, make_optimizer, train

TEXT = "Every effort moves you forward, and every step counts when you learn by doing. "

pytestmark = pytest.mark.usefixtures("one_thread")


def byte_loader(text: str, T: int = 32, stride: int = 8, batch_size: int = 4, **kw) -> DataLoader:
    """Sliding windows over the text's bytes (a 256-token vocabulary keeps the model tiny)."""
    ids = torch.tensor(list(text.encode()))
    starts = range(0, len(ids) - T, stride)
    x = torch.stack([ids[i : i + T] for i in starts]) if starts else torch.zeros(0, T).long()
    y = torch.stack([ids[i + 1 : i + T + 1] for i in starts]) if starts else x
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, drop_last=True, **kw)


def tiny_model(drop_rate: float = 0.0) -> GPT:
    return GPT(GPTConfig.tiny(vocab_size=256, context_length=32, drop_rate=drop_rate))


def overfit_run() -> History:
    seed_everything(7)
    loader = byte_loader(TEXT * 2, shuffle=True)
    model = tiny_model()
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    return train(model, loader, loader, opt, epochs=15, eval_every=10, amp=None, progress=False)


def test_tiny_model_overfits_a_short_text_reproducibly():
    first, second = overfit_run(), overfit_run()
    assert first.step_loss[0] == pytest.approx(math.log(256), abs=0.5)  # untrained: ~uniform
    assert first.step_loss[-1] < 0.3 and first.train_loss[-1] < 0.3
    assert first == second  # every loss, rate and token count identical


def test_history_counts_steps_tokens_and_book_eval_points():
    seed_everything(0)
    loader = byte_loader(TEXT * 2)  # 4 batches per epoch
    model = tiny_model()
    hist = train(model, loader, loader, make_optimizer(model), epochs=3, eval_every=5, amp=None,
                 progress=False)  # fmt: skip
    assert len(hist.step_loss) == len(hist.lr) == 12
    assert hist.eval_steps == [1, 6, 11]  # the book's "Step 000000, 000005, 000010"
    assert hist.tokens_seen == [4 * 32 * s for s in hist.eval_steps]


def test_clipping_limits_the_update():
    seed_everything(3)
    loader = byte_loader(TEXT * 2)
    model = tiny_model()
    before = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    hist = train(model, loader, loader, sgd, max_steps=1, grad_clip=1e-3, amp=None, progress=False)
    step = torch.nn.utils.parameters_to_vector(model.parameters()).detach() - before
    # Plain SGD moves by lr x gradient, so the step has exactly the clipped norm.
    assert hist.grad_norm[0] > 1e-3
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_bf16_autocast_stays_in_the_float32_loss_band():
    losses = {}
    for amp in (None, torch.bfloat16):
        seed_everything(5)
        loader = byte_loader(TEXT * 2)
        model = tiny_model()
        opt = make_optimizer(model, lr=1e-2, weight_decay=0.0)
        hist = train(model, loader, loader, opt, epochs=8, eval_every=31, amp=amp, progress=False)
        losses[amp] = hist.train_loss[-1]
    assert losses[torch.bfloat16] == pytest.approx(losses[None], abs=0.15)


@pytest.mark.parametrize("works", [True, False])
def test_make_optimizer_follows_the_fused_adamw_probe(works, monkeypatch):
    monkeypatch.setitem(fastpath.RESULTS, "fused_adamw_cpu", works)
    opt = make_optimizer(tiny_model(), lr=4e-4, weight_decay=0.1)
    group = opt.param_groups[0]
    assert bool(group["fused"]) is works and group["lr"] == 4e-4 and group["weight_decay"] == 0.1


def test_fused_adamw_probe_is_off_on_the_generic_cpu(monkeypatch):
    monkeypatch.delitem(fastpath.RESULTS, "fused_adamw_cpu", raising=False)
    monkeypatch.setattr(fastpath, "GENERIC_CPU", True)
    assert not fused_adamw_works(torch.device("cpu"))
    assert not make_optimizer(tiny_model()).param_groups[0]["fused"]


def test_fused_and_plain_adamw_take_the_same_step(monkeypatch):
    monkeypatch.delitem(fastpath.RESULTS, "fused_adamw_cpu", raising=False)
    if not fused_adamw_works(torch.device("cpu")):
        pytest.skip("this PyTorch has no fused AdamW for the CPU")
    models = [tiny_model(), tiny_model()]
    models[1].load_state_dict(models[0].state_dict())
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    for model, fused in zip(models, (True, False), strict=True):
        opt = make_optimizer(model, lr=1e-2, fused=fused)
        for _ in range(3):
            opt.zero_grad()
            model(ids).logsumexp(-1).mean().backward()
            opt.step()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_text_ids_round_trip_matches_tiktoken(data_file):
    import tiktoken

    text = data_file("the-verdict").read_text(encoding="utf-8")[:300]
    ids = text_to_ids(text)
    assert ids.shape[0] == 1 and ids[0].tolist() == tiktoken.get_encoding("gpt2").encode(text)
    assert ids_to_text(ids) == ids_to_text(ids[0].tolist()) == text


def test_text_too_short_for_one_batch():
    short = byte_loader("too short")  # 9 bytes: not one window of 32
    good = byte_loader(TEXT * 2)
    model = tiny_model()
    with pytest.raises(InputError, match="training loader has no batches"):
        train(model, short, good, make_optimizer(model), progress=False)
    with pytest.raises(InputError, match="validation loader has no batches"):
        train(model, good, short, make_optimizer(model), progress=False)
    with pytest.raises(InputError, match="too short"):
        loader_loss(model, short)
    with pytest.raises(InputError, match="eval_every"):
        train(model, good, good, make_optimizer(model), eval_every=0, progress=False)


def test_resume_with_other_data_is_refused(tmp_path):
    model = tiny_model()
    loader = byte_loader(TEXT * 2)
    path = tmp_path / "run.pt"
    train(model, loader, loader, make_optimizer(model), max_steps=2, checkpoint=path,
          amp=None, progress=False)  # fmt: skip
    longer = byte_loader(TEXT * 4)
    with pytest.raises(CheckpointError, match="4 batches per epoch, this training loader has"):
        train(model, longer, longer, make_optimizer(model), checkpoint=path, progress=False)


def test_resume_of_a_checkpoint_with_an_older_random_state_is_refused(tmp_path):
    """A loader state without the global generators (as an older dlnotes saved it) is
    refused by name before anything is restored, not with a KeyError from inside."""
    model = tiny_model()
    loader = byte_loader(TEXT * 2)
    path, opt = tmp_path / "run.pt", make_optimizer(model)
    train(model, loader, loader, opt, max_steps=2, checkpoint=path, amp=None, progress=False)
    extra = torch.load(path, weights_only=True)["extra"]
    save_checkpoint(path, model, opt, step=2, extra={**extra, "loader_rng": {"generators": []}})
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(CheckpointError, match="not one that rng_state wrote"):
        train(model, loader, loader, make_optimizer(model), checkpoint=path, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# One run of a small but complete setup (shuffling, dropout, warmup + cosine, clipping),
# in a fresh interpreter: python run.py <mode> <folder>.
WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from dlnotes.env import seed_everything
    from dlnotes.gpt import GPT, GPTConfig
    from dlnotes.schedule import warmup_cosine
    from dlnotes.train import make_optimizer, train

    mode, folder = sys.argv[1], Path(sys.argv[2])
    seed_everything(11)
    ids = torch.tensor(list((TEXT * 3).encode()))
    x = torch.stack([ids[i : i + 32] for i in range(0, len(ids) - 33, 10)])
    y = torch.stack([ids[i + 1 : i + 33] for i in range(0, len(ids) - 33, 10)])
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, drop_last=True)
    assert len(loader) == 5
    model = GPT(GPTConfig.tiny(vocab_size=256, context_length=32, drop_rate=0.2))
    opt = make_optimizer(model, lr=5e-3)
    sched = warmup_cosine(opt, total_steps=14, warmup_steps=3, initial_lr=1e-4, min_lr=1e-4)

    def crash(epoch, history):  # a simulated Ctrl-C two steps after the checkpoint at 7
        if mode == "first" and history.eval_steps[-1] >= 9:
            raise KeyboardInterrupt

    checkpoint = None if mode == "straight" else folder / "run.pt"
    try:
        hist = train(model, loader, loader, opt, epochs=3, max_steps=14, eval_every=2,
                     eval_batches=2, scheduler=sched, grad_clip=0.5, amp=None,
                     checkpoint=checkpoint, checkpoint_every=7, on_eval=crash, progress=False)
    except KeyboardInterrupt:
        sys.exit(0)
    (folder / f"{mode}.json").write_text(json.dumps(hist.as_dict()))
    torch.save(model.state_dict(), folder / f"{mode}.weights")
    """
)


def _worker(mode: str, folder) -> subprocess.Popen:
    script = folder / "run.py"
    script.write_text(f"TEXT = {TEXT!r}\n" + WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), mode, str(folder)], env=env)


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight, first = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir()
    first.mkdir()
    procs = [_worker("straight", straight), _worker("first", first)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert not (first / "first.json").exists()  # it really was interrupted
    assert _worker("second", first).wait(timeout=120) == 0

    a = json.loads((straight / "straight.json").read_text())
    b = json.loads((first / "second.json").read_text())
    assert len(a["step_loss"]) == 14 and a["eval_steps"][-1] == 13
    assert a == b  # every step loss, evaluation, learning rate and gradient norm
    wa, wb = torch.load(straight / "straight.weights"), torch.load(first / "second.weights")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(p.name for p in first.iterdir()) == [
        "run.pt", "run.py", "second.json", "second.weights"
    ]  # fmt: skip


def test_grad_norm_is_the_float64_norm_of_all_gradients() -> None:
    params = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 1000, 7)]
    for p in params:
        p.grad = torch.randn_like(p) * 1e3
    frozen = torch.nn.Parameter(torch.zeros(4))  # no gradient: left out
    expected = torch.cat([p.grad.double() for p in params]).norm().item()
    assert grad_norm([*params, frozen]) == pytest.approx(expected, rel=1e-12)
    assert grad_norm([frozen]) == 0.0
