"""Every chapter script pairs with a notebook under notebooks/<folder>/ and round-trips.

The scripts are found when the tests run, so scripts added later are covered. The
round trip uses jupytext's own command line (`jupytext --sync`, as `nox -s sync`
does) on a copy of the repository layout in tmp_path: py -> ipynb -> py must give
back the script byte for byte, and an edit made in the notebook must flow back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from jupytext.cli import jupytext as jupytext_cli
from jupytext.config import load_jupytext_config
from jupytext.paired_paths import paired_paths

from dlnotes.check import FOLDERS, discover

ROOT = Path(__file__).resolve().parents[1]


def scripts() -> list[Path]:
    return discover(ROOT)


def script_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def sync(cwd: Path, paths: list[Path]) -> None:
    """Run ``jupytext --sync`` from `cwd`, as the command line would."""
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        assert jupytext_cli(["--quiet", "--sync", *map(str, paths)]) == 0
    finally:
        os.chdir(previous)


def copy_layout(dest: Path, files: list[Path]) -> list[Path]:
    """pyproject.toml (the pairing config) and `files`, at the same relative paths."""
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    copies = []
    for src in files:
        copy = dest / src.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, copy)
        copies.append(copy)
    return copies


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_script_folder_has_scripts(folder: str) -> None:
    found = sorted((ROOT / folder).glob("*.py"))
    assert found, f"{folder}/ has no *.py scripts"


def test_jupytext_pairs_exactly_the_script_folders() -> None:
    """pyproject's pairing formats name the same folders as `dlnotes.check.FOLDERS`."""
    formats = load_jupytext_config(str(scripts()[0])).formats
    paired = sorted(pair.split("///")[0] for pair in formats)
    assert paired == sorted(FOLDERS), formats


@pytest.mark.parametrize("script", scripts(), ids=script_id)
def test_config_pairs_script_with_a_notebook_under_notebooks(script: Path) -> None:
    config = load_jupytext_config(str(script))
    assert config is not None, "no [tool.jupytext] configuration found"
    formats = config.default_formats(str(script))
    paired = {Path(path) for path, _ in paired_paths(str(script), "py:percent", formats)}
    notebook = ROOT / "notebooks" / script.parent.name / f"{script.stem}.ipynb"
    assert paired == {script, notebook}


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, tuple[str, Path]]:
    """Sync copies of all scripts to notebooks, delete the copies, sync back from the notebooks.

    Returns, per original script, the regenerated text and the notebook's path.
    """
    work = tmp_path_factory.mktemp("layout")
    originals = scripts()
    copies = copy_layout(work, originals)
    sync(work, copies)
    notebooks = [work / "notebooks" / c.parent.name / f"{c.stem}.ipynb" for c in copies]
    for copy in copies:
        copy.unlink()
    sync(work, [n for n in notebooks if n.is_file()])
    return {
        original: (copy.read_text() if copy.is_file() else "", notebook)
        for original, copy, notebook in zip(originals, copies, notebooks, strict=True)
    }


@pytest.mark.parametrize("script", scripts(), ids=script_id)
def test_script_round_trips_through_its_notebook_unchanged(script: Path, round_trip) -> None:
    regenerated, notebook = round_trip[script]
    assert notebook.is_file(), f"jupytext --sync did not write {notebook.name}"
    cells = json.loads(notebook.read_text())["cells"]
    assert len(cells) > 1 and cells[0]["cell_type"] == "markdown"
    original = script.read_text()
    assert not original.startswith("# ---"), "no per-file jupytext header: pairing is in pyproject"
    assert regenerated == original


def test_an_edit_in_the_notebook_flows_back_to_the_script(tmp_path: Path) -> None:
    if not scripts():
        pytest.skip("no scripts yet")
    (copy,) = copy_layout(tmp_path, scripts()[:1])
    sync(tmp_path, [copy])
    notebook = tmp_path / "notebooks" / copy.parent.name / f"{copy.stem}.ipynb"
    nb = json.loads(notebook.read_text())
    nb["cells"][0]["source"] = ["# An edited title\n", "\n", "Written in the notebook."]
    notebook.write_text(json.dumps(nb))
    later = copy.stat().st_mtime + 10  # sync takes the newer file as the source
    os.utime(notebook, (later, later))
    sync(tmp_path, [notebook])
    assert copy.read_text().startswith(
        "# %% [markdown]\n# # An edited title\n#\n# Written in the notebook.\n"
    )
