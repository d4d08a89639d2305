"""Chapter 18's networks: perceptrons, and sigmoid nets written as plain weight lists.

Follows Grus, *Data Science from Scratch* 2e, ch. 18. A neuron is a list of
weights whose *last* entry is its bias (its input gets a constant 1 appended); a
layer is a list of neurons; a network is a list of layers. Every neuron applies
the sigmoid. Ch. 19's `layers` replace all of this with `Linear` + `Sigmoid`.

`sqerror_gradients` backpropagates the sum of squared errors
SSE = sum_k (o_k - t_k)**2. The book's version returns the gradient of *half* the
SSE (no factor 2) while calling it the squared error's, so its learning rate 1.0
takes the steps our learning rate 0.5 takes. Leaves out everything but sigmoid
units and squared error.

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/neural_networks.py
"""

from __future__ import annotations

import itertools
import random

from dlnotes.errors import InputError
from dlnotes.scratch.functional import sigmoid
from dlnotes.scratch.tensor import dot

Network = list[list[list[float]]]  # layer -> neuron -> weights (bias last)


def step_function(x: float) -> float:
    """1.0 for x >= 0, else 0.0 (the perceptron's "fires" rule)."""
    return 1.0 if x >= 0 else 0.0


def perceptron_output(weights: list[float], bias: float, x: list[float]) -> float:
    """1.0 if the perceptron fires on x, else 0.0.

    >>> perceptron_output([2.0, 2.0], -3.0, [1.0, 1.0])  # an AND gate
    1.0
    """
    return step_function(dot(weights, x) + bias)


def neuron_output(weights: list[float], inputs: list[float]) -> float:
    """sigmoid(weights . inputs), where `inputs` already ends with the constant 1."""
    return sigmoid(dot(weights, inputs))


def feed_forward(network: Network, x: list[float]) -> list[list[float]]:
    """The outputs of every layer (the last one is the network's output).

    >>> xor = [[[20.0, 20.0, -30.0], [20.0, 20.0, -10.0]], [[-60.0, 60.0, -30.0]]]
    >>> [round(feed_forward(xor, x)[-1][0]) for x in ([0, 0], [0, 1], [1, 0], [1, 1])]
    [0, 1, 1, 0]
    """
    outputs = []
    for layer in network:
        with_bias = [*x, 1.0]
        x = [neuron_output(neuron, with_bias) for neuron in layer]
        outputs.append(x)
    return outputs


def sqerror_gradients(network: Network, x: list[float], target: list[float]) -> Network:
    """d SSE / d weights for one sample, shaped like `network` (SSE = sum (o - t)**2).

    delta_k = dSSE/d(pre-activation of neuron k); for an output neuron it is
    2 (o_k - t_k) o_k (1 - o_k). A neuron's weight gradient is its delta times its
    inputs (with the 1 for the bias). A hidden neuron i gets the deltas of the layer
    above through the weights that leave it: delta_i = h_i (1 - h_i) sum_k delta_k w_ki.
    """
    outputs = feed_forward(network, x)
    if len(target) != len(outputs[-1]):
        raise InputError(
            f"target has {len(target)} entries but the network has {len(outputs[-1])} outputs"
        )
    inputs = [x, *outputs[:-1]]
    deltas = [2.0 * (o - t) * o * (1.0 - o) for o, t in zip(outputs[-1], target, strict=True)]
    gradients: Network = []
    for depth in reversed(range(len(network))):
        with_bias = [*inputs[depth], 1.0]
        gradients.append([[d * v for v in with_bias] for d in deltas])
        if depth:
            layer, below = network[depth], inputs[depth]
            deltas = [
                h * (1.0 - h) * sum(d * neuron[i] for d, neuron in zip(deltas, layer, strict=True))
                for i, h in enumerate(below)
            ]
    return gradients[::-1]


def gradient_step(network: Network, gradients: Network, lr: float) -> Network:
    """A new network: every weight moved by -lr times its gradient."""
    return [
        [
            [w - lr * g for w, g in zip(neuron, grad, strict=True)]
            for neuron, grad in zip(layer, layer_grad, strict=True)
        ]
        for layer, layer_grad in zip(network, gradients, strict=True)
    ]


def random_network(sizes: list[int], rng: random.Random | None = None) -> Network:
    """Weights uniform in [0, 1) (as the book) for layer sizes, e.g. [2, 2, 1] for XOR."""
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise InputError(f"need at least two positive layer sizes, got {sizes}")
    draw = (rng or random).random
    return [
        [[draw() for _ in range(n_in + 1)] for _ in range(n_out)]
        for n_in, n_out in itertools.pairwise(sizes)
    ]
