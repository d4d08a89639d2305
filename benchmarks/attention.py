"""Forward + backward time of causal multi-head attention: ours (plain, SDPA) vs PyTorch's.

    python benchmarks/attention.py            GPT-2 small sizes: d=768, 12 heads, batch 8, seq 256
    python benchmarks/attention.py --quick    a few seconds (also with DLNOTES_SMOKE=1)

All three modules get the same weights and are checked to give the same output
before timing. Each case is warmed up, then timed `--repeat` times, taking turns; the table shows
the median and each time as a ratio to `torch.nn.MultiheadAttention` (lower is
faster). Target: the SDPA path no slower than nn.MultiheadAttention.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dlnotes import env
from dlnotes.attention import MultiHeadAttention


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: env.device())")
    return parser.parse_args()


def time_interleaved(
    steps: dict[str, Callable[[], None]], dev: torch.device, warmup: int, repeat: int
) -> dict[str, float]:
    """Median seconds per step; the steps take turns so that a busy machine slows all alike."""

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(warmup + repeat):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    args = parse_args()
    quick = args.quick or env.SMOKE
    dev = env.device(args.device)
    d_model, heads, context = 768, 12, 1024  # GPT-2 small
    batch = args.batch or (2 if quick else 8)
    seq = args.seq or (64 if quick else 256)
    repeat = args.repeat or (3 if quick else 10)
    env.seed_everything(123)

    ref = nn.MultiheadAttention(d_model, heads, bias=True, batch_first=True).to(dev)
    ours = {
        name: MultiHeadAttention(d_model, d_model, context, 0.0, heads, True, use_sdpa=sdpa)
        for name, sdpa in (("ours plain", False), ("ours SDPA", True))
    }
    for mha in ours.values():
        with torch.no_grad():  # same weights as the reference: in_proj rows are q, k, v
            mha.qkv.weight.copy_(ref.in_proj_weight)
            mha.qkv.bias.copy_(ref.in_proj_bias)
            mha.out_proj.load_state_dict(ref.out_proj.state_dict())
        mha.to(dev)

    x = torch.randn(batch, seq, d_model, device=dev)
    mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=dev), 1)
    forwards: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "nn.MultiheadAttention": lambda t: ref(
            t, t, t, attn_mask=mask, is_causal=True, need_weights=False
        )[0],
        **{name: mha for name, mha in ours.items()},
    }
    with torch.no_grad():
        expected = forwards["nn.MultiheadAttention"](x)
        for name, f in forwards.items():
            gap = (f(x) - expected).abs().max().item()
            assert gap < 1e-4, f"{name} differs from nn.MultiheadAttention by {gap:.2e}"

    def step(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            inp = x.detach().requires_grad_()
            f(inp).square().mean().backward()

        return run

    print(env.banner(dev), f"| threads {torch.get_num_threads()}")
    print(f"forward+backward, d={d_model}, heads={heads}, batch={batch}, seq={seq}, {repeat} runs")
    times = time_interleaved({name: step(f) for name, f in forwards.items()}, dev, 2, repeat)
    base = times["nn.MultiheadAttention"]
    print(f"{'module':<24}{'median ms':>12}{'vs nn.MHA':>12}")
    for name, seconds in times.items():
        print(f"{name:<24}{seconds * 1e3:>12.1f}{seconds / base:>11.2f}x")
    verdict = "met" if times["ours SDPA"] <= base * 1.05 else "NOT met"
    print(f"target (SDPA path no slower than nn.MultiheadAttention, 5% noise): {verdict}")


if __name__ == "__main__":
    main()
