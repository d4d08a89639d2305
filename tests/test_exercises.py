"""Every chapter script ends with exercises whose solutions check themselves.

The scripts are found when the tests run (`dlnotes.check.discover`, the list that
``nox -s check`` smoke-runs), so scripts added later are covered. Each is parsed with
jupytext, as the notebooks are made. A script passes when

* a markdown cell holds the heading ``## Exercises`` and no level-1 or level-2 heading
  follows it (the exercises end the script);
* at least two code cells after that heading are tagged ``solution``
  (``# %% tags=["solution"]``), none before it;
* every solution cell parses and contains an assertion: an ``assert`` statement or a call
  to an ``assert...`` function (``np.testing.assert_allclose``,
  ``torch.testing.assert_close``). A comment or a string that mentions "assert" does not
  count.

Smoke-running the scripts (``nox -s check``) then runs every solution.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import jupytext
import pytest

from dlnotes.check import discover
from dlnotes.env import repo_root

ROOT = repo_root()
MIN_SOLUTIONS = 2
EXERCISES = re.compile(r"^##\s+Exercises\s*$")
TOP_HEADING = re.compile(r"^#{1,2}\s")


def _calls_an_assert(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name.startswith("assert")


def asserts(source: str) -> bool:
    """Whether the code `source` contains an assert statement or an ``assert...(...)`` call."""
    tree = ast.parse(source)
    return any(isinstance(n, ast.Assert) or _calls_an_assert(n) for n in ast.walk(tree))


def exercise_problems(text: str) -> list[str]:
    """What keeps the percent-format script `text` from meeting the rules above (empty: none)."""
    cells = jupytext.reads(text, fmt="py:percent").cells
    heading = next(
        (
            i
            for i, cell in enumerate(cells)
            if cell.cell_type == "markdown"
            and any(EXERCISES.match(line.strip()) for line in cell.source.splitlines())
        ),
        None,
    )
    solutions = [
        i
        for i, cell in enumerate(cells)
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", [])
    ]
    if heading is None:
        return ["no markdown cell with the heading '## Exercises'"]
    problems = []
    later_headings = [
        line.strip()
        for cell in cells[heading + 1 :]
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if TOP_HEADING.match(line.strip())
    ]
    if later_headings:
        problems.append(f"the exercises must end the script, but {later_headings[0]!r} follows")
    if early := [i for i in solutions if i < heading]:
        problems.append(f"{len(early)} solution cell(s) before the '## Exercises' heading")
    after = [i for i in solutions if i > heading]
    if len(after) < MIN_SOLUTIONS:
        problems.append(
            f"{len(after)} solution cell(s) after '## Exercises'; at least {MIN_SOLUTIONS} needed"
        )
    for number, i in enumerate(after, start=1):
        source = cells[i].source
        first = source.strip().splitlines()[0] if source.strip() else "(empty)"
        try:
            checked = asserts(source)
        except SyntaxError as exc:
            problems.append(f"solution {number} ({first!r}) does not parse: {exc.msg}")
            continue
        if not checked:
            problems.append(f"solution {number} ({first!r}) asserts nothing")
    return problems


def script_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("script", discover(ROOT), ids=script_id)
def test_script_ends_with_exercises_whose_solutions_assert(script: Path) -> None:
    problems = exercise_problems(script.read_text(encoding="utf-8"))
    assert not problems, f"{script_id(script)}: " + "; ".join(problems)


def test_every_script_folder_is_searched() -> None:
    found = {p.parent.name for p in discover(ROOT)}
    assert found == {"math_notes", "grus", "raschka"}


# The checker itself, on small scripts that pass and fail for one reason each.

GOOD = textwrap.dedent(
    """\
    # %% [markdown]
    # # A chapter

    # %%
    x = 2

    # %% [markdown]
    # ## Exercises
    #
    # **1.** Square x.

    # %% tags=["solution"]
    assert x**2 == 4

    # %% [markdown]
    # ### 2. A close call

    # %% tags=["solution"]
    import numpy as np

    np.testing.assert_allclose(np.sqrt(2.0) ** 2, 2.0)
    """
)


def test_a_script_with_two_asserting_solutions_passes() -> None:
    assert exercise_problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.replace("## Exercises", "## Practice"), "no markdown cell"),
        (lambda s: s.replace("assert x**2 == 4", "# assert x**2 == 4\ny = 'assert'"), "nothing"),
        (lambda s: s.replace("assert x**2 == 4", "assert x ==="), "does not parse"),
        (lambda s: s.replace('# %% tags=["solution"]\nimport', "# %%\nimport"), "1 solution"),
        (lambda s: s + "\n# %% [markdown]\n# ## Summary\n", "must end the script"),
        (
            lambda s: s.replace("# %%\nx = 2", '# %% tags=["solution"]\nassert True'),
            "before the '## Exercises'",
        ),
    ],
    ids=["no-heading", "no-assert", "syntax-error", "one-solution", "summary-after", "early"],
)
def test_the_checker_names_what_is_missing(change, problem: str) -> None:
    problems = exercise_problems(change(GOOD))
    assert len(problems) == 1 and problem in problems[0], problems
