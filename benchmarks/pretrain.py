"""Tokens per second of `dlnotes.train.train` against the book's plain training loop.

Both train the same model (the book's 124M GPT, context 256, batch 2, AdamW 4e-4,
weight decay 0.1, from the same initial weights) on the same batches of *The Verdict*:

* plain, as the book's ``train_model_simple`` does it: eager float32, attention with
  an explicit mask, the default (for-each) AdamW, and ``loss.item()`` every step;
* ours: `train` with its defaults (bf16 autocast where the CPU/GPU has it, fused
  AdamW, SDPA attention, losses kept on the device), optionally `torch.compile`d.

The first step of each is a warm-up and not timed. Prints both loss curves, the
tokens/s and the ratio, and the bound the same machine sets: every matrix product of a
step timed alone at its real shape and dtype (`dlnotes.roofline`), added up, as tokens/s;
``roofline fraction`` is ours over that bound.

    python benchmarks/pretrain.py            # 30 timed steps each (several minutes on CPU)
    python benchmarks/pretrain.py --quick    # tiny model, a few steps (also DLNOTES_SMOKE=1)
    python benchmarks/pretrain.py --compile  # also torch.compile our model
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from dlnotes import data, env, roofline
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.loader import create_dataloader
from dlnotes.losses import amp_dtype, batch_loss
from dlnotes.train import make_optimizer, train


def batches(cfg: GPTConfig) -> torch.utils.data.DataLoader:
    text = data.fetch("the-verdict").read_text(encoding="utf-8")
    n = cfg.context_length
    return create_dataloader(text, batch_size=2, max_length=n, stride=n, shuffle=False)


def fresh_model(cfg: GPTConfig, device: torch.device, sdpa: bool) -> GPT:
    torch.manual_seed(123)
    model = GPT(cfg).to(device)
    for block in model.h:
        block.attn.use_sdpa = sdpa
    return model


def plain(cfg: GPTConfig, device: torch.device, steps: int) -> tuple[float, list[float]]:
    """The book's loop; returns (seconds for the timed steps, every step's loss)."""
    model = fresh_model(cfg, device, sdpa=False).train()
    opt = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    losses, start = [], 0.0
    for i, (x, y) in enumerate(itertools.islice(itertools.cycle(batches(cfg)), steps + 1)):
        if i == 1:
            start = time.perf_counter()  # step 0 was the warm-up
        opt.zero_grad()
        loss = batch_loss(model, x.to(device), y.to(device))
        loss.backward()
        opt.step()
        losses.append(loss.item())  # the sync every step
    return time.perf_counter() - start, losses


def ours(
    cfg: GPTConfig, device: torch.device, steps: int, compiled: bool
) -> tuple[float, list[float]]:
    model = fresh_model(cfg, device, sdpa=True)
    run = torch.compile(model) if compiled else model
    opt = make_optimizer(model, lr=4e-4, weight_decay=0.1)
    loader = batches(cfg)
    epochs = -(-(steps + 1) // len(loader))
    marks: list[float] = []

    def clock(epoch: int, history: object) -> None:
        marks.append(time.perf_counter())  # after step 1 and its evaluation: timing starts

    hist = train(run, loader, loader, opt, epochs=epochs, max_steps=steps + 1,
                 eval_every=10**9, eval_batches=1, on_eval=clock, progress=False)  # fmt: skip
    return time.perf_counter() - marks[0], hist.step_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 30)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model too")
    args = parser.parse_args()
    quick = args.quick or env.SMOKE
    cfg = GPTConfig.tiny(context_length=256) if quick else GPTConfig.book()
    steps = args.steps or (4 if quick else 30)
    device = env.device()
    print(env.banner(device), f"| threads {torch.get_num_threads()} | {steps} timed steps")

    tokens = steps * 2 * cfg.context_length
    results = {"plain (book)": plain(cfg, device, steps)}
    results["ours"] = ours(cfg, device, steps, compiled=False)
    if args.compile:
        results["ours + compile"] = ours(cfg, device, steps, compiled=True)
    base = tokens / results["plain (book)"][0]
    for name, (seconds, losses) in results.items():
        rate = tokens / seconds
        tail = statistics.mean(losses[-5:])
        print(f"{name:>15}: {rate:8.1f} tokens/s  x{rate / base:4.2f}  last-5 mean loss {tail:.3f}")
    shapes = roofline.training_matmuls(fresh_model(cfg, device, True), 2, cfg.context_length)
    dtype = amp_dtype(device) or torch.float32
    bound_s = roofline.matmul_seconds(shapes, device, dtype)
    bound = 2 * cfg.context_length / bound_s
    gflop = roofline.flops(shapes) / 1e9
    print(
        f"bound: the step's matrix products alone, {gflop:.0f} GFLOP in {bound_s:.2f} s "
        f"({gflop / bound_s:.0f} GFLOP/s, {dtype}) = {bound:.1f} tokens/s"
    )
    print(roofline.fraction_line(tokens / results["ours"][0], bound))
    print("loss per step:")
    for name, (_, losses) in results.items():
        print(f"{name:>15}: " + " ".join(f"{v:.2f}" for v in losses))


if __name__ == "__main__":
    main()
