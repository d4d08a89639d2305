"""What the machine allows: measured bounds that the benchmarks compare their speed with.

Speeds on shared, noisy machines mean little alone; a fraction of what the same
machine does at its limit, measured in the same run, travels between machines.

* Decoding one token at batch size 1 reads every weight once and does ~2 FLOPs with
  each, so it is bound by memory: ``weight bytes per token / read bandwidth``.
* A training step is bound by its matrix products: each one of the step is timed
  alone, at its real shape and dtype, and their times are added up. Its optimizer
  step is bound by memory (AdamW reads and writes 28 bytes per parameter) and adds
  its own time (its step timed alone too) after them.

Used by ``benchmarks/generate.py``, ``benchmarks/pretrain.py`` and ``benchmarks/llama.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import torch
from torch import nn


def best_time(
    fn: Callable[[], object], repeats: int = 5, device: torch.device | None = None
) -> float:
    """The best wall time of `fn` over `repeats` runs after one warm-up (seconds)."""

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def best_seconds(
    runs: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
) -> dict[str, float]:
    """Best wall time of each of `runs` over `repeats` rounds (after one warm-up round).

    The runs take turns, so a busy spell on a shared machine slows all of them rather
    than one, and their ratios stay meaningful."""
    best = {name: float("inf") for name in runs}
    for run in runs.values() if warm_up else ():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def read_bandwidth(
    nbytes: int = 1 << 29, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> float:
    """Bytes per second the device reads a large tensor at (a sum over 512 MiB by default:
    larger than any cache, like a model's weights)."""
    device = torch.device(device)
    x = torch.ones(
        nbytes // torch.tensor([], dtype=dtype).element_size(), dtype=dtype, device=device
    )
    seconds = best_time(lambda: x.sum(), repeats=5, device=device)
    return x.numel() * x.element_size() / seconds


def optimizer_seconds(model: nn.Module, fused: bool = True, repeats: int = 3) -> float:
    """Seconds one AdamW step over the model's trainable parameters takes alone (fused
    where the device runs it): a step does ~15 FLOPs per parameter but moves 28 bytes
    of state, so it is bound by memory and adds its own time after the matrix products.
    Timed on one flat tensor of as many parameters (its traffic is the same)."""
    trainable = {id(p): p for p in model.parameters() if p.requires_grad}
    like = next(iter(trainable.values()))
    n = sum(p.numel() for p in trainable.values())
    param = torch.zeros(n, device=like.device, requires_grad=True)
    param.grad = torch.full_like(param, 1e-3)
    opt = torch.optim.AdamW([param], lr=1e-4, weight_decay=0.1, fused=fused or None)
    return best_time(opt.step, repeats=repeats, device=like.device)


def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights one decoding step reads: every parameter once, except embedding
    tables, of which only one row per token is read (a tied head reads its matrix once).
    For an inference copy whose weights are not parameters (`dlnotes.cpu_inference`),
    pass its plain twin of the same dtype."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    heads = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    total, seen = 0, set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in embeddings and id(p) not in heads:
            total += p.shape[-1] * p.element_size()
        else:
            total += p.numel() * p.element_size()
    return total


def decode_bound(model: nn.Module, bandwidth: float) -> float:
    """Tokens per second a batch-1 decoding step cannot beat at `bandwidth` bytes/s."""
    return bandwidth / weight_bytes_per_token(model)


def linear_seconds(model: nn.Module, repeats: int = 5) -> float:
    """Seconds the model's linear layers alone take on one row each, as in one batch-1
    decoding step: its matrix-vector products without anything between them.

    Any module with ``in_features`` counts (`dlnotes.cpu_inference`'s packed layers too).
    """
    layers = [m for m in model.modules() if hasattr(m, "in_features")]
    like = next(p for p in [*model.parameters(), *model.buffers()] if p.is_floating_point())
    inputs = {
        m.in_features: torch.randn(1, 1, m.in_features, dtype=like.dtype, device=like.device)
        for m in layers
    }

    @torch.inference_mode()
    def products() -> None:
        for m in layers:
            m(inputs[m.in_features])

    return best_time(products, repeats=repeats, device=like.device)


def training_matmuls(model: nn.Module, batch: int, context: int) -> Counter[tuple[int, ...]]:
    """The (batch, m, k, n) matrix products of one forward and backward pass of a GPT-like
    model at `batch` x `context` tokens, counted: each trainable linear layer's forward
    product and its two backward ones (input and weight gradients), and attention's two
    batched products per layer (scores, weighted values) with two backward ones each."""
    rows = batch * context
    shapes: Counter[tuple[int, ...]] = Counter()
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.weight.requires_grad:
            k, n = m.in_features, m.out_features
            shapes[(1, rows, k, n)] += 1  # y = x W^T
            shapes[(1, rows, n, k)] += 1  # dx = dy W
            shapes[(1, n, rows, k)] += 1  # dW = dy^T x
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        heads, head = cfg.n_heads, cfg.emb_dim // cfg.n_heads
        for shape in (
            (batch * heads, context, head, context),
            (batch * heads, context, context, head),
        ):
            shapes[shape] += 3 * cfg.n_layers
    return shapes


def flops(shapes: Counter[tuple[int, ...]]) -> int:
    """Floating-point operations of the products in `shapes` (2 per multiply-add)."""
    return sum(2 * b * m * k * n * count for (b, m, k, n), count in shapes.items())


def matmul_seconds(
    shapes: Counter[tuple[int, ...]],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 10,
) -> float:
    """Seconds the products in `shapes` take when each runs alone at its shape (best of
    `repeats`)."""
    device = torch.device(device)
    total = 0.0
    for (bt, m, k, n), count in shapes.items():
        if bt == 1:
            # One product is a plain `mm`, as a linear layer runs it (a batch of one through
            # `bmm` can take a slower kernel). The kernel, and so the speed, can depend on
            # whether the right factor is stored as (k, n) or transposed (as a weight, or
            # attention's keys, are): the faster layout counts, as what the machine can
            # do at that shape.
            a = torch.randn(m, k, device=device, dtype=dtype)
            right = torch.randn(k, n, device=device, dtype=dtype)
            weight = torch.randn(n, k, device=device, dtype=dtype)
            runs = [lambda a=a, b=right: torch.mm(a, b), lambda a=a, w=weight: torch.mm(a, w.t())]
        else:
            a = torch.randn(bt, m, k, device=device, dtype=dtype)
            right = torch.randn(bt, k, n, device=device, dtype=dtype)
            keys = torch.randn(bt, n, k, device=device, dtype=dtype)  # as q @ k^T reads k
            runs = [
                lambda a=a, b=right: torch.bmm(a, b),
                lambda a=a, t=keys: torch.bmm(a, t.transpose(1, 2)),
            ]
        # Many repeats: a product of a millisecond is easily caught by another process.
        total += count * min(best_time(run, repeats, device) for run in runs)
    return total


def compiled_runs(
    models: dict[str, nn.Module], prompt: torch.Tensor, n: int
) -> dict[str, Callable[[], torch.Tensor]]:
    """For each named model, a run of ``generate(model, prompt, n, compile=True)``, built
    first (a two-token call whose compile time is printed, so no timed run pays it);
    none, with a line saying so, where `torch.compile` does not work here."""
    from dlnotes.fastpath import compile_works
    from dlnotes.generate import generate

    if not compile_works(torch.device("cpu")):
        print("compile: torch.compile does not build here; the compiled variants are left out")
        return {}
    runs = {}
    for name, model in models.items():
        start = time.perf_counter()
        generate(model, prompt, 2, compile=True)
        took = time.perf_counter() - start
        print(f"compile: {name}'s one-token step built in {took:.1f} s (once per process)")
        runs[name] = lambda m=model: generate(m, prompt, n, compile=True)
    return runs


def fraction_line(achieved: float, bound: float) -> str:
    """The one line each benchmark prints: how close a measured rate is to its bound."""
    return f"roofline fraction: {achieved / bound:.2f}"
