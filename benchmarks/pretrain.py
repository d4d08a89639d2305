"""Tokens per second of `dlnotes.train.train` against the book's plain training loop.

Both train the same model (the book's 124M GPT, context 256, batch 2, AdamW 4e-4,
weight decay 0.1, from the same initial weights) on the same batches of *The Verdict*:

* plain, as the book's ``train_model_simple`` does it: eager float32, attention with
  an explicit mask, the default (for-each) AdamW, and ``loss.item()`` every step;
* ours: `train` with its defaults (bf16 autocast where the CPU/GPU has it, fused
  AdamW, SDPA attention, row-block cross-entropy, dropout skipped where it is the
  identity, losses kept on the device), optionally with ``compile=True``; with
  ``--levers`` also with one speed path turned off at a time.

The first step of each is a warm-up and not timed. Prints both loss curves, the
tokens/s and the ratio, and the bound the same machine sets: every matrix product of a
step timed alone at its real shape and dtype (`dlnotes.roofline`), added up, plus the
AdamW step timed alone over as many parameters (bound by memory), as tokens/s;
``roofline fraction`` is our fastest variant over that bound.

    python benchmarks/pretrain.py            # 30 timed steps each (several minutes on CPU)
    python benchmarks/pretrain.py --quick    # tiny model, a few steps (also DLNOTES_SMOKE=1)
    python benchmarks/pretrain.py --compile  # also train(compile=True)
    python benchmarks/pretrain.py --levers --rounds 2 --steps 8  # lever by lever
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from dlnotes import data, env, losses, roofline
from dlnotes.gpt import GPT, GPTConfig
from dlnotes.loader import create_dataloader
from dlnotes.losses import amp_dtype, batch_loss
from dlnotes.train import fused_adamw_works, make_optimizer, train


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
    cfg: GPTConfig, device: torch.device, steps: int, compiled: bool = False, **lever: object
) -> tuple[float, list[float]]:
    """`train` with its defaults; a `lever` turns one speed path off: ``amp=None`` (float32
    throughout), ``rows=0`` (the plain cross-entropy instead of the row-block one)."""
    model = fresh_model(cfg, device, sdpa=True)
    opt = make_optimizer(model, lr=4e-4, weight_decay=0.1)
    loader = batches(cfg)
    epochs = -(-(steps + 1) // len(loader))
    marks: list[float] = []

    def clock(epoch: int, history: object) -> None:
        marks.append(time.perf_counter())  # after step 1 and its evaluation: timing starts

    rows = losses.ROWS
    if lever.get("rows") == 0:
        losses.ROWS = 1 << 62  # every batch is "small": F.cross_entropy on all logits
    try:
        hist = train(model, loader, loader, opt, epochs=epochs, max_steps=steps + 1,
                     eval_every=10**9, eval_batches=1, on_eval=clock, progress=False,
                     amp=lever.get("amp", "auto"), compile=compiled)  # fmt: skip
    finally:
        losses.ROWS = rows
    return time.perf_counter() - marks[0], hist.step_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few steps")
    parser.add_argument("--steps", type=int, help="timed steps per variant (default 30)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our steps too")
    parser.add_argument("--levers", action="store_true", help="each speed path off alone too")
    parser.add_argument("--rounds", type=int, default=1, help="runs per variant (best counts)")
    args = parser.parse_args()
    quick = args.quick or env.SMOKE
    cfg = GPTConfig.tiny(context_length=256) if quick else GPTConfig.book()
    steps = args.steps or (4 if quick else 30)
    device = env.device()
    print(env.banner(device), f"| threads {torch.get_num_threads()} | {steps} timed steps")

    tokens = steps * 2 * cfg.context_length
    variants = {
        "plain (book)": lambda: plain(cfg, device, steps),
        "ours": lambda: ours(cfg, device, steps),
    }
    if args.levers:  # each speed path turned off alone, to measure what it gains
        variants["ours, plain CE"] = lambda: ours(cfg, device, steps, rows=0)
        variants["ours, float32"] = lambda: ours(cfg, device, steps, amp=None)
    if args.compile:
        variants["ours + compile"] = lambda: ours(cfg, device, steps, compiled=True)
    results: dict[str, tuple[float, list[float]]] = {}
    for _ in range(args.rounds):  # variants take turns; the best round of each counts
        for name, run in variants.items():
            seconds, curve = run()
            if name not in results or seconds < results[name][0]:
                results[name] = (seconds, curve)
    base = tokens / results["plain (book)"][0]
    for name, (seconds, curve) in results.items():
        rate = tokens / seconds
        tail = statistics.mean(curve[-5:])
        print(f"{name:>15}: {rate:8.1f} tokens/s  x{rate / base:4.2f}  last-5 mean loss {tail:.3f}")
    model = fresh_model(cfg, device, True)
    shapes = roofline.training_matmuls(model, 2, cfg.context_length)
    dtype = amp_dtype(device) or torch.float32
    matmul_s = roofline.matmul_seconds(shapes, device, dtype)
    adamw_s = roofline.optimizer_seconds(model, fused=fused_adamw_works(device))
    gflop = roofline.flops(shapes) / 1e9
    step_tokens = 2 * cfg.context_length
    print(
        f"bound: the step's matrix products alone, {gflop:.0f} GFLOP in {matmul_s:.2f} s "
        f"({gflop / matmul_s:.0f} GFLOP/s, {dtype}) = {step_tokens / matmul_s:.1f} tokens/s; "
        f"with the AdamW step alone (+{adamw_s:.2f} s) = "
        f"{step_tokens / (matmul_s + adamw_s):.1f} tokens/s"
    )
    best = max(results, key=lambda name: tokens / results[name][0])
    achieved = tokens / results[best][0]
    print(f"fraction of the matrix products' bound alone: {achieved * matmul_s / step_tokens:.2f}")
    print(roofline.fraction_line(achieved, step_tokens / (matmul_s + adamw_s)) + f" ({best})")
    print("loss per step:")
    for name, (_, curve) in results.items():
        print(f"{name:>15}: " + " ".join(f"{v:.2f}" for v in curve))


if __name__ == "__main__":
    main()
