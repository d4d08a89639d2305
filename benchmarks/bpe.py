"""Our byte-level BPE (pure Python) against tiktoken (Rust): encoding and training speed.

    python benchmarks/bpe.py            full run (a few seconds)
    python benchmarks/bpe.py --quick    fewer repeats (also with DLNOTES_SMOKE=1)

Encodes the-verdict and the 1,100 instruction entries (joined into one text) with
`GPT2Tokenizer` and with ``tiktoken.get_encoding("gpt2")``, after checking that the
ids are equal. "cold" starts from an empty pre-token cache, "warm" reuses it.
Times are medians; the ratio is ours / tiktoken (lower is better). Then times
`BPETokenizer.train` for 1,000 merges on the-verdict.
Targets: warm encode within 5x of tiktoken; 1,000 merges in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from dlnotes import data, env
from dlnotes.bpe import BPETokenizer
from dlnotes.gpt2_tokenizer import GPT2Tokenizer, tiktoken_gpt2


def median_seconds(step: Callable[[], object], repeat: int, before: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--merges", type=int, default=1_000)
    args = parser.parse_args()
    quick = args.quick or env.SMOKE
    repeat = 3 if quick else 15

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

    print(f"{'text':<14}{'chars':>9}{'tokens':>8}{'tiktoken':>11}{'ours cold':>12}"
          f"{'ratio':>7}{'ours warm':>12}{'ratio':>7}")  # fmt: skip
    for name, text in texts.items():
        ids = reference.encode(text)
        if ours.encode(text) != ids:
            raise SystemExit(f"ids differ from tiktoken on {name}")
        t_ref = median_seconds(lambda t=text: reference.encode(t), repeat, lambda: None)
        t_cold = median_seconds(lambda t=text: ours.encode(t), repeat, ours.clear_cache)
        t_warm = median_seconds(lambda t=text: ours.encode(t), repeat, lambda: None)
        print(f"{name:<14}{len(text):>9,}{len(ids):>8,}{t_ref * 1e3:>9.2f}ms"
              f"{t_cold * 1e3:>10.2f}ms{t_cold / t_ref:>6.1f}x"
              f"{t_warm * 1e3:>10.2f}ms{t_warm / t_ref:>6.1f}x")  # fmt: skip

    vocab_size = 256 + args.merges
    t_train = median_seconds(
        lambda: BPETokenizer.train(verdict, vocab_size), 1 if quick else 3, lambda: None
    )
    target = "under" if t_train < 2.0 else "OVER"
    print(f"train {args.merges:,} merges on the-verdict: {t_train:.2f} s ({target} the 2 s target)")
    print(f"cpu cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
