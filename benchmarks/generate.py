"""Generation speed at GPT-2 124M shapes: ours uncached / cached / bfloat16 vs Hugging Face.

Random weights (no download): a `transformers.GPT2LMHeadModel` is built from GPT-2's
124M config and its weights are converted into `dlnotes.gpt.GPT`, so both models
compute the same function. Batch 1, greedy, a fixed number of new tokens (no eos).
float32 and bfloat16 each two ways: the plain model (``model.to(torch.bfloat16)``) and
`dlnotes.cpu_inference.inference_copy` (weights prepacked for oneDNN where the CPU runs
it in that dtype, else the plain model). Random weights are not a language model, so
bfloat16 ids may part from float32 ones after a near tie; the float32 ones must equal
HF's. Where `torch.compile` works, the plain float32 and bfloat16 models also run with
``generate(..., compile=True)`` (the compile time is printed apart, not timed).

    python benchmarks/generate.py            # 200 new tokens
    python benchmarks/generate.py --quick    # 30 new tokens (also with DLNOTES_SMOKE=1)

Targets: ours cached >= 5x ours uncached, >= 1.0x HF cached; bfloat16 >= 1.5x HF; and
against the memory-bandwidth bound (`dlnotes.roofline`: weight bytes per token over the
measured read bandwidth) a roofline fraction >= 0.8. Each bound line also gives the
rate of the model's linear layers run alone on one row (`roofline.linear_seconds`):
the gap between that and the bound is the matrix-vector kernels', the gap between
it and the step is everything else in a step.
"""

from __future__ import annotations

import argparse
import copy

import torch
import transformers

from dlnotes import env, roofline
from dlnotes.cpu_inference import inference_copy
from dlnotes.generate import generate
from dlnotes.gpt2_weights import config_from_hf, convert_hf_state_dict, model_from_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 new tokens instead of 200")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cached variant")
    args = parser.parse_args()
    n = args.tokens or (30 if args.quick or env.SMOKE else 200)

    env.seed_everything(123)
    config = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    cfg = config_from_hf(config.to_dict())
    ours = model_from_state_dict(convert_hf_state_dict(hf.state_dict(), cfg), cfg).eval()
    ours_bf16 = copy.deepcopy(ours).to(torch.bfloat16)
    ours_packed32 = inference_copy(ours, torch.float32)
    ours_packed = inference_copy(ours, torch.bfloat16)
    prompt = torch.tensor([[15496, 11, 314, 716]])  # "Hello, I am"
    print(
        f"GPT-2 124M shapes (random weights), batch 1, {n} new tokens; torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {torch.get_num_threads()} threads"
    )

    def hf_generate() -> torch.Tensor:
        with torch.inference_mode():
            return hf.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=n,
                min_new_tokens=n,
                pad_token_id=config.eos_token_id,
            )

    runs = {
        "HF generate, cached": hf_generate,
        "ours cached": lambda: generate(ours, prompt, n),
        "ours cached, f32 inference_copy": lambda: generate(ours_packed32, prompt, n),
        "ours cached, bf16 .to()": lambda: generate(ours_bf16, prompt, n),
        "ours cached, bf16 inference_copy": lambda: generate(ours_packed, prompt, n),
    }
    # A prepacked copy runs private oneDNN ops the compiler cannot lower: not compiled.
    plain = {"ours cached": ours, "ours cached, bf16 .to()": ours_bf16}
    for name, run in roofline.compiled_runs(plain, prompt, n).items():
        runs[f"{name}, compiled"] = run
    seconds = roofline.best_seconds(runs, args.repeats)
    # Each uncached step re-encodes the whole sequence: the slow one, so no warm-up run
    # (the cached runs have warmed up the same kernels) and two tries.
    uncached = {"ours uncached": lambda: generate(ours, prompt, n, use_cache=False)}
    seconds.update(roofline.best_seconds(uncached, 2, warm_up=False))

    rates = {name: n / s for name, s in seconds.items()}
    hf_rate, uncached = rates["HF generate, cached"], rates["ours uncached"]
    print(f"{'variant':<44}{'tokens/s':>9}{'vs HF':>8}{'vs uncached':>13}")
    for name, rate in rates.items():
        print(f"{name:<44}{rate:>9.1f}{rate / hf_rate:>7.2f}x{rate / uncached:>12.2f}x")
    bandwidth = roofline.read_bandwidth()
    twins = {  # the plain model of the same weight bytes per token
        "ours cached": (ours, ours),
        "ours cached, f32 inference_copy": (ours_packed32, ours),
        "ours cached, bf16 .to()": (ours_bf16, ours_bf16),
        "ours cached, bf16 inference_copy": (ours_packed, ours_bf16),
    }
    for name in [name for name in rates if name.endswith(", compiled")]:
        twins[name] = twins[name.removesuffix(", compiled")]
    for name, (model, like) in twins.items():
        bound = roofline.decode_bound(like, bandwidth)
        products = 1 / roofline.linear_seconds(model)
        print(
            f"bound for {name}: {roofline.weight_bytes_per_token(like) / 1e6:.0f} MB of weights "
            f"per token at {bandwidth / 1e9:.1f} GB/s = {bound:.1f} tokens/s "
            f"(its linear layers alone: {products:.1f}); "
            + roofline.fraction_line(rates[name], bound)
        )
    reference = hf_generate()
    same = {name: torch.equal(runs[name](), reference) for name in list(runs)[1:]}
    print("same ids as HF:", ", ".join(f"{name}: {ok}" for name, ok in same.items()))


if __name__ == "__main__":
    main()
