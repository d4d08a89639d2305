"""Our byte-level BPE (pure Python) against tiktoken (Rust): encoding and training speed.

    python benchmarks/bpe.py            full run (a few seconds)
    python benchmarks/bpe.py --quick    fewer repeats (also with DLNOTES_SMOKE=1)

Encodes the-verdict and the 1,100 instruction entries (joined into one text) with
`GPT2Tokenizer` and with ``tiktoken.get_encoding("gpt2")``, after checking that the
ids are equal. "cold" starts from an empty pre-token cache (a chunk that is one token
is still found in the vocabulary, as tiktoken does), "warm" reuses it. In each of
three rounds the three are run ten times in a row; each keeps its best CPU time (of
this thread: tiktoken encodes in the calling thread too), the least disturbed on a
machine shared with other work, and the ratio is ours / tiktoken (lower is better).
Then times `BPETokenizer.train` for 1,000 merges on the-verdict.
Targets: cold encode within 2x of tiktoken, warm within 5x; 1,000 merges in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from dlnotes import data, env
from dlnotes.bpe import BPETokenizer
from dlnotes.gpt2_tokenizer import GPT2Tokenizer, tiktoken_gpt2

COLUMNS = (
    ("text", 14),
    ("chars", 9),
    ("tokens", 8),
    ("tiktoken", 11),
    ("ours cold", 12),
    ("ratio", 7),
    ("ours warm", 12),
    ("ratio", 7),
)


def row(cells: list[str]) -> str:
    """The cells in `COLUMNS`' widths, the first left-aligned."""
    first, *rest = zip(cells, COLUMNS, strict=True)
    return f"{first[0]:<{first[1][1]}}" + "".join(f"{cell:>{width}}" for cell, (_, width) in rest)


def nothing() -> None:
    """No preparation before a step."""


def seconds(step: Callable[[], object], before: Callable[[], None] = nothing) -> float:
    """CPU time of this thread for `step`: time the machine gives other programs is left out."""
    before()
    start = time.thread_time()
    step()
    return time.thread_time() - start


def best_seconds(
    steps: dict[str, tuple[Callable[[], object], Callable[[], None]]], repeat: int, rounds: int = 3
) -> dict[str, float]:
    """Each step's best time: `rounds` rounds, each running every step `repeat` times in a row."""
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, (step, before) in steps.items():
            best[name] = min(best[name], *(seconds(step, before) for _ in range(repeat)))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--merges", type=int, default=1_000)
    args = parser.parse_args()
    quick = args.quick or env.SMOKE
    repeat = 3 if quick else 10

    start = time.perf_counter()
    ours = GPT2Tokenizer.pretrained()
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = tiktoken_gpt2()
    load_ref = time.perf_counter() - start
    print(f"load: ours {load_ours * 1e3:.0f} ms, tiktoken {load_ref * 1e3:.0f} ms")

    verdict = data.fetch("the-verdict").read_text(encoding="utf-8")
    entries = json.loads(data.fetch("instruction-data").read_text(encoding="utf-8"))
    instructions = "\n\n".join(e[k] for e in entries for k in ("instruction", "input", "output"))
    texts = {"the-verdict": verdict, "instructions": instructions}

    print(row([name for name, _ in COLUMNS]))
    worst_cold = 0.0
    for name, text in texts.items():
        ids = reference.encode(text)
        if ours.encode(text) != ids:
            raise SystemExit(f"ids differ from tiktoken on {name}")
        best = best_seconds(
            {
                "tiktoken": (lambda t=text: reference.encode(t), nothing),
                "cold": (lambda t=text: ours.encode(t), ours.clear_cache),
                "warm": (lambda t=text: ours.encode(t), nothing),
            },
            repeat,
        )
        t_ref, t_cold, t_warm = best["tiktoken"], best["cold"], best["warm"]
        worst_cold = max(worst_cold, t_cold / t_ref)
        cells = [name, f"{len(text):,}", f"{len(ids):,}", f"{t_ref * 1e3:.2f}ms"]
        cells += [f"{t_cold * 1e3:.2f}ms", f"{t_cold / t_ref:.1f}x"]
        cells += [f"{t_warm * 1e3:.2f}ms", f"{t_warm / t_ref:.1f}x"]
        print(row(cells))
    verdict_of = "within" if worst_cold <= 2.0 else "OVER"
    print(f"cold encode: at most {worst_cold:.2f}x tiktoken ({verdict_of} the 2x target)")

    vocab_size = 256 + args.merges
    t_train = min(
        seconds(lambda: BPETokenizer.train(verdict, vocab_size)) for _ in range(1 if quick else 3)
    )
    target = "under" if t_train < 2.0 else "OVER"
    print(f"train {args.merges:,} merges on the-verdict: {t_train:.2f} s ({target} the 2 s target)")
    print(f"cpu cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
