"""The FizzBuzz task as a classification problem (Grus, *Data Science from Scratch* 2e, ch. 18).

A number n becomes its 10 lowest binary digits (least significant first) and one
of four classes: n itself, "fizz" (divisible by 3), "buzz" (by 5), "fizzbuzz"
(by 15). The book trains on 101..1023 and tests on 1..100, numbers the network
never saw. Leaves out other encodings (one-hot of the digits, etc.).

Reference code: https://github.com/joelgrus/data-science-from-scratch/blob/master/scratch/neural_networks.py
"""

from __future__ import annotations

from dlnotes.errors import InputError
from dlnotes.scratch.tensor import one_hot

BITS = 10
LABELS = ("number", "fizz", "buzz", "fizzbuzz")
TRAIN_RANGE = range(101, 1 << BITS)
TEST_RANGE = range(1, 101)


def binary_encode(n: int, bits: int = BITS) -> list[float]:
    """The `bits` lowest binary digits of n, least significant first.

    >>> binary_encode(10)
    [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    if not 0 <= n < 1 << bits:
        raise InputError(f"{n} does not fit in {bits} bits (0..{(1 << bits) - 1})")
    return [float(n >> i & 1) for i in range(bits)]


def fizzbuzz_class(n: int) -> int:
    """0 (the number), 1 (fizz), 2 (buzz) or 3 (fizzbuzz).

    >>> [fizzbuzz_class(n) for n in (2, 6, 10, 30)]
    [0, 1, 2, 3]
    """
    if n % 15 == 0:
        return 3
    if n % 5 == 0:
        return 2
    return 1 if n % 3 == 0 else 0


def fizz_buzz_encode(n: int) -> list[float]:
    """The class of n one-hot encoded, e.g. [0, 1, 0, 0] for 6 (fizz)."""
    return one_hot(fizzbuzz_class(n), len(LABELS))


def say(n: int, k: int) -> str:
    """What FizzBuzz says for n in class k.

    >>> say(7, 0), say(9, 1)
    ('7', 'fizz')
    """
    return str(n) if k == 0 else LABELS[k]


def dataset(numbers: range) -> tuple[list[list[float]], list[list[float]]]:
    """(binary inputs, one-hot targets) for `numbers`."""
    return [binary_encode(n) for n in numbers], [fizz_buzz_encode(n) for n in numbers]
