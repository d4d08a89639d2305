"""One epoch of FizzBuzz training: the pure-Python `dlnotes.scratch` library vs PyTorch.

    python benchmarks/grus.py               5 timed epochs each (about 10 s)
    python benchmarks/grus.py --quick       1 timed epoch each (also with DLNOTES_SMOKE=1)
    python benchmarks/grus.py --train 150   then train ours for 150 epochs, report 1-100

The network of Grus's ch. 19: Linear(10, 25), Tanh, Linear(25, 4), softmax
cross-entropy, momentum, one step per example over the 923 numbers 101..1023. PyTorch
runs the same algorithm (float64, batch size 1) and, for scale, the whole epoch as one
batch (a different algorithm: one step instead of 923). Both networks start from the
same weights and are checked to take the same steps before timing. The epochs take
turns, so a busy machine slows all alike; the table shows the median time and the
ratio to ours. Pure Python is expected to be far slower than vectorised PyTorch; the
book's own code takes about 0.2-0.3 s per such epoch, and ours should be no slower.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from dlnotes import env
from dlnotes.scratch import fizzbuzz as fb
from dlnotes.scratch.layers import Linear, Sequential, Tanh
from dlnotes.scratch.losses import SoftmaxCrossEntropy
from dlnotes.scratch.optim import Momentum
from dlnotes.scratch.train import evaluate, train_epoch

LR, MOMENTUM = 0.01, 0.9


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed epoch each")
    parser.add_argument("--repeat", type=int, default=None, help="timed epochs per variant")
    parser.add_argument("--train", type=int, default=0, help="then train ours this many epochs")
    return parser.parse_args()


def torch_twin(model: Sequential) -> nn.Sequential:
    twin = nn.Sequential(nn.Linear(10, 25), nn.Tanh(), nn.Linear(25, 4)).double()
    twin.load_state_dict(
        {k: torch.tensor(v, dtype=torch.float64) for k, v in model.state_dict().items()}
    )
    return twin


def torch_epoch(
    twin: nn.Module, optimizer: torch.optim.Optimizer, xs: torch.Tensor, ys: torch.Tensor
) -> Callable[[], None]:
    def per_sample() -> None:
        for x, y in zip(xs, ys, strict=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(twin(x), y, reduction="sum").backward()
            optimizer.step()

    return per_sample


def main() -> None:
    args = parse_args()
    quick = args.quick or env.SMOKE
    repeat = args.repeat or (1 if quick else 5)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    xs, ys = fb.dataset(fb.TRAIN_RANGE)
    xt, yt = torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)

    random.seed(0)
    ours = Sequential(Linear(10, 25, init="uniform"), Tanh(), Linear(25, 4, init="uniform"))
    ours_opt, loss = Momentum(ours, lr=LR, momentum=MOMENTUM), SoftmaxCrossEntropy()
    twin = torch_twin(ours)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)
    batched = torch_twin(ours)
    batched_opt = torch.optim.SGD(batched.parameters(), lr=LR, momentum=MOMENTUM)

    def whole_batch() -> None:
        batched_opt.zero_grad()
        nn.functional.cross_entropy(batched(xt), yt, reduction="sum").backward()
        batched_opt.step()

    epochs = {
        "dlnotes.scratch (pure Python)": lambda: train_epoch(ours, loss, ours_opt, xs, ys),
        "torch, batch size 1": torch_epoch(twin, twin_opt, xt, yt),
        "torch, one batch of 923": whole_batch,
    }
    times: dict[str, list[float]] = {name: [] for name in epochs}
    for _ in range(repeat):
        for name, run in epochs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        drift = max(
            (torch.tensor(v, dtype=torch.float64) - twin.state_dict()[k]).abs().max().item()
            for k, v in ours.state_dict().items()
        )
        assert drift < 1e-9, f"ours and torch (batch size 1) diverged by {drift}"

    print(
        f"one FizzBuzz epoch (923 examples, 10-25-4), median of {repeat}, torch {torch.__version__}"
    )
    base = statistics.median(times["dlnotes.scratch (pure Python)"])
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"  {name:32s} {median * 1e3:9.1f} ms   x{median / base:7.3f} of ours")
    print("  (the book's pure-Python code: about 200-300 ms per epoch on the development machines)")

    if args.train:
        for _ in range(args.train - repeat):
            train_epoch(ours, loss, ours_opt, xs, ys)
        _, accuracy = evaluate(ours, loss, *fb.dataset(fb.TEST_RANGE))
        print(f"after {max(args.train, repeat)} epochs: {accuracy:.0%} right on 1-100")


if __name__ == "__main__":
    main()
