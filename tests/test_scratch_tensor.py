"""dlnotes.scratch.tensor and .functional: helpers, initialiser statistics, stability, purity."""

from __future__ import annotations

import ast
import math
import operator
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlnotes.errors import InputError
from dlnotes.scratch import functional as F
from dlnotes.scratch.tensor import (
    argmax,
    copy_tensor,
    dot,
    fans,
    is_1d,
    one_hot,
    random_normal,
    random_tensor,
    random_uniform,
    shape,
    tensor_apply,
    tensor_combine,
    tensor_sum,
    zeros_like,
)

SCRATCH = Path(__file__).resolve().parents[1] / "dlnotes" / "scratch"
FORBIDDEN = {"numpy", "torch", "scipy", "sklearn", "pandas"}


def test_no_module_imports_numpy_or_torch() -> None:
    found = {}
    for path in sorted(SCRATCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            if roots & FORBIDDEN:
                found[path.name] = sorted(roots & FORBIDDEN)
    assert len(list(SCRATCH.glob("*.py"))) >= 8
    assert found == {}


def test_importing_the_package_loads_neither_numpy_nor_torch() -> None:
    names = sorted(p.stem for p in SCRATCH.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        + "".join(f"import dlnotes.scratch.{n}\n" for n in names)
        + f"print(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_shape_and_reductions_on_hand_checkable_tensors() -> None:
    t = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert shape(t) == [2, 3] and shape([1.0]) == [1] and shape([[[0.0]]]) == [1, 1, 1]
    assert is_1d([1.0, 2.0]) and not is_1d(t)
    assert tensor_sum(t) == 21.0 and tensor_sum([[[1.0, 2.0]], [[3.0, 4.0]]]) == 10.0
    assert tensor_apply(lambda x: 2 * x, t) == [[2.0, 4.0, 6.0], [8.0, 10.0, 12.0]]
    assert tensor_apply(abs, [[[-1.0]], [[2.0]]]) == [[[1.0]], [[2.0]]]
    assert zeros_like([[[1.0, 2.0]]]) == [[[0.0, 0.0]]]
    assert tensor_combine(operator.sub, t, t) == zeros_like(t)
    assert dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == 32.0
    assert argmax([-1.0, 10.0, 5.0, 20.0, -3.0]) == 3 and one_hot(3, 5)[3] == 1.0


def test_copy_is_deep() -> None:
    t = [[1.0, 2.0], [3.0, 4.0]]
    c = copy_tensor(t)
    c[0][0] = 9.0
    assert t[0][0] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), min_size=1, max_size=5))
def test_combine_and_apply_match_torch(rows: list[list[float]]) -> None:
    other = [[x * 0.5 - 1.0 for x in row] for row in rows]
    ours = tensor_combine(operator.mul, rows, other)
    expected = torch.tensor(rows, dtype=torch.float64) * torch.tensor(other, dtype=torch.float64)
    assert ours == expected.tolist()
    assert tensor_sum(rows) == pytest.approx(torch.tensor(rows, dtype=torch.float64).sum().item())


@pytest.mark.parametrize(
    ("a", "b", "says"),
    [
        ([1.0, 2.0], [1.0, 2.0, 3.0], "[2] and [3]"),
        ([[1.0, 2.0]], [1.0, 2.0], "[1, 2] and [2]"),
        ([[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]], "ragged"),
    ],
)
def test_combine_rejects_mismatched_shapes(a: list, b: list, says: str) -> None:
    with pytest.raises(InputError, match=re.escape(says)):
        tensor_combine(operator.add, a, b)


def test_other_bad_input_is_named() -> None:
    with pytest.raises(InputError, match="lengths 2 and 3"):
        dot([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="index 5 is outside 0..4"):
        one_hot(5, 5)
    with pytest.raises(InputError, match="unknown init 'glorot'"):
        random_tensor(2, 2, init="glorot")
    with pytest.raises(InputError, match=r"at least 2 dimensions, got shape \[5\]"):
        random_tensor(5, init="xavier")
    with pytest.raises(InputError, match=r"non-negative ints, got \[2, -1\]"):
        random_uniform(2, -1)


def _std(t: list) -> float:
    flat = [x for row in t for x in row]
    return statistics.pstdev(flat)


def test_xavier_has_glorots_standard_deviation_not_the_books() -> None:
    rng = random.Random(0)
    w = random_tensor(200, 100, init="xavier", rng=rng)
    flat = [x for row in w for x in row]
    glorot = math.sqrt(2 / 300)  # 0.0816; the book's draw has std 2/300 = 0.0067
    assert shape(w) == [200, 100] and fans(200, 100) == (100, 200)
    assert abs(statistics.fmean(flat)) < 0.005
    assert _std(w) == pytest.approx(glorot, rel=0.03)
    # the same statistic as torch's own Glorot-normal initialiser
    t = torch.nn.init.xavier_normal_(
        torch.empty(200, 100), generator=torch.Generator().manual_seed(0)
    )
    assert _std(w) == pytest.approx(t.std().item(), rel=0.05)


def test_normal_and_uniform_draws_have_the_stated_moments() -> None:
    rng = random.Random(1)
    normal = [x for row in random_normal(100, 100, mean=3.0, std=0.5, rng=rng) for x in row]
    assert statistics.fmean(normal) == pytest.approx(3.0, abs=0.02)
    assert statistics.pstdev(normal) == pytest.approx(0.5, rel=0.03)  # std, not variance
    assert _std(random_tensor(100, 100, init="normal", rng=rng)) == pytest.approx(1.0, rel=0.03)
    uniform = [x for row in random_tensor(100, 100, init="uniform", rng=rng) for x in row]
    assert 0.0 <= min(uniform) and max(uniform) < 1.0
    assert statistics.fmean(uniform) == pytest.approx(0.5, abs=0.01)
    assert statistics.pvariance(uniform) == pytest.approx(1 / 12, rel=0.03)


def test_draws_repeat_with_the_global_seed() -> None:
    random.seed(7)
    a = random_tensor(3, 4)
    random.seed(7)
    assert random_tensor(3, 4) == a


@pytest.mark.parametrize("x", [-1000.0, -710.0, -50.0, -1e-3, 0.0, 2.5, 710.0, 1000.0])
def test_sigmoid_and_tanh_are_stable_and_match_torch(x: float) -> None:
    t = torch.tensor(x, dtype=torch.float64)
    assert F.sigmoid(x) == pytest.approx(torch.sigmoid(t).item(), rel=1e-12, abs=1e-300)
    assert F.tanh(x) == pytest.approx(torch.tanh(t).item(), rel=1e-12)


def test_softmax_and_logsumexp_survive_large_logits() -> None:
    logits = [[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -1001.0]]
    ours = F.softmax(logits)
    expected = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=-1).tolist()
    for row, ref in zip(ours, expected, strict=True):
        assert row == pytest.approx(ref, rel=1e-12, abs=1e-300)
        assert sum(row) == pytest.approx(1.0)
    for row in logits:
        ref = torch.logsumexp(torch.tensor(row, dtype=torch.float64), dim=0).item()
        assert F.logsumexp(row) == pytest.approx(ref, rel=1e-14)
