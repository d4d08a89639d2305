"""Appendix A's toy classification problem: data, a small MLP, a training epoch, accuracy.

Follows appendix A of Sebastian Raschka, *Build a Large Language Model (From
Scratch)* (https://github.com/rasbt/LLMs-from-scratch/tree/main/appendix-A): five
2-d training points and two test points in two classes, a three-layer perceptron,
plain SGD with cross-entropy. `raschka/rk_ch01_and_appa-overview_and_setup.py`
walks through it and `dlnotes.ddp` trains the same model with
`DistributedDataParallel`.

Left out: logging inside the loop (the library returns losses; scripts print them)
and checkpointing (a `state_dict` is saved by the script that needs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from dlnotes.errors import InputError


def toy_data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The book's toy problem: ``X_train (5, 2), y_train (5,), X_test (2, 2), y_test (2,)``.

    Class 0 lies up and to the left, class 1 down and to the right.

    >>> X_train, y_train, X_test, y_test = toy_data()
    >>> tuple(X_train.shape), y_train.tolist(), y_test.tolist()
    ((5, 2), [0, 0, 0, 1, 1], [0, 1])
    """
    X_train = torch.tensor([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]])
    y_train = torch.tensor([0, 0, 0, 1, 1])
    X_test = torch.tensor([[-0.8, 2.8], [2.6, -1.6]])
    y_test = torch.tensor([0, 1])
    return X_train, y_train, X_test, y_test


class ToyDataset(Dataset):
    """Pairs ``(features[i], labels[i])``, the minimal map-style `Dataset`.

    >>> ds = ToyDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
    >>> len(ds), ds[1][1].item()
    (3, 1)
    """

    def __init__(self, features: Tensor, labels: Tensor) -> None:
        if len(features) != len(labels):
            raise InputError(
                f"ToyDataset needs one label per example: got {len(features)} feature rows "
                f"and {len(labels)} labels"
            )
        self.features = features
        self.labels = labels

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.features[index], self.labels[index]

    def __len__(self) -> int:
        return len(self.labels)


class MLP(nn.Module):
    """A multilayer perceptron: Linear → ReLU for each hidden size, then a Linear to logits.

    The book's appendix-A network is ``MLP(50, 3)`` (hidden sizes 30 and 20,
    2,213 parameters); the toy problem uses ``MLP(2, 2)``.

    >>> count_parameters(MLP(50, 3))
    2213
    """

    def __init__(self, num_inputs: int, num_outputs: int, hidden: Sequence[int] = (30, 20)) -> None:
        super().__init__()
        sizes = [num_inputs, *hidden, num_outputs]
        if any(not isinstance(s, int) or s < 1 for s in sizes):
            raise InputError(
                f"MLP layer sizes must be positive integers: got inputs={num_inputs}, "
                f"hidden={tuple(hidden)}, outputs={num_outputs}"
            )
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-2], sizes[-1]))  # logits: no activation
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:  # (B, num_inputs) -> (B, num_outputs)
        return self.layers(x)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` by default).

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def train_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device | str = "cpu",
) -> list[float]:
    """One pass of SGD with cross-entropy over `loader`; returns each batch's loss."""
    model.train()
    losses = []
    for features, labels in loader:
        features, labels = features.to(device), labels.to(device)
        loss = F.cross_entropy(model(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str = "cpu",
) -> float:
    """Fraction of examples in `loader` whose arg-max logit is the label.

    >>> model = MLP(2, 2)
    >>> loader = [(torch.zeros(4, 2), model(torch.zeros(4, 2)).argmax(dim=1))]
    >>> accuracy(model, loader)
    1.0
    """
    model.eval()
    correct = total = 0
    for features, labels in loader:
        predictions = model(features.to(device)).argmax(dim=1)
        correct += (predictions == labels.to(device)).sum().item()
        total += len(labels)
    if total == 0:
        raise InputError("accuracy() got an empty loader: nothing to score")
    return correct / total
