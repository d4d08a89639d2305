"""Run-time environment: device choice and its errors, smoke mode, seeding, repository root."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlnotes import env
from dlnotes.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_device_is_an_input_error_listing_what_is_available() -> None:
    with pytest.raises(InputError, match=r"unknown device 'tpu'.*available here: .*cpu") as info:
        env.device("tpu")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "bad",
    [
        "gpu",
        "cuda:x",
        "cuda:-1",
        "cpu:",
    ],
)
def test_malformed_device_names_are_input_errors(bad: str) -> None:
    with pytest.raises(InputError, match=f"unknown device '{bad}'"):
        env.device(bad)


@pytest.mark.parametrize("kind", ["cuda", "mps"])
def test_unavailable_device_is_an_input_error(kind: str) -> None:
    available = env.available_devices()
    if kind in available:
        pytest.skip(f"{kind} is available on this machine")
    message = rf"device '{kind}' is not available on this machine \(available here: "
    with pytest.raises(InputError, match=message + ", ".join(available)):
        env.device(kind)


def test_cuda_index_beyond_the_device_count_is_an_input_error() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    count = torch.cuda.device_count()
    with pytest.raises(InputError, match=f"this machine has {count} CUDA device"):
        env.device(f"cuda:{count}")


def test_default_device_is_the_first_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLNOTES_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else env.available_devices()[0]
    assert env.device().type == expected
    assert env.device("auto").type == expected
    assert env.available_devices()[-1] == "cpu"


def test_dlnotes_device_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLNOTES_DEVICE", " CPU ")
    assert env.device() == torch.device("cpu")
    monkeypatch.setenv("DLNOTES_DEVICE", "tpu")
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        env.device()
    assert env.device("cpu") == torch.device("cpu")  # an explicit name wins


SMOKE_PROBE = "import dlnotes.env as e; print(e.SMOKE, e.choose(full='full', smoke='smoke'))"


def run_with(code: str, variable: str, value: str | None) -> str:
    """Stdout of `code` in a fresh interpreter with `variable` set to `value` (or unset)."""
    child_env = {k: v for k, v in os.environ.items() if k != variable}
    if value is not None:
        child_env[variable] = value
    return subprocess.run(
        [sys.executable, "-c", code],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.parametrize(
    ("value", "smoke"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("No", False),
        (" off ", False),
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
    ],
)
def test_smoke_mode_is_read_from_dlnotes_smoke(value: str | None, smoke: bool) -> None:
    out = run_with(SMOKE_PROBE, "DLNOTES_SMOKE", value)
    assert out.split() == [str(smoke), "smoke" if smoke else "full"]


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_python_numpy_and_torch_reproducible() -> None:
    env.seed_everything(7)
    first = draws()
    env.seed_everything(7)
    assert draws() == first
    env.seed_everything(8)
    other = draws()
    assert all(a != b for a, b in zip(other[:2], first[:2], strict=True))
    assert other[2] != first[2]


def test_repo_root_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert env.repo_root() == ROOT
    assert (env.repo_root() / "pyproject.toml").is_file()
    out = subprocess.run(
        [sys.executable, "-c", "from dlnotes.env import repo_root; print(repo_root())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert Path(out.strip()) == ROOT


def test_banner_names_mode_device_and_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    line = env.banner(torch.device("cpu"))
    assert "\n" not in line
    assert "device: cpu" in line and torch.__version__ in line
    assert ("mode: smoke" if env.SMOKE else "mode: full") in line


def test_show_prints_the_source_of_a_library_object(capsys: pytest.CaptureFixture) -> None:
    env.show(env.choose)
    printed = capsys.readouterr().out
    assert printed.startswith("def choose(full: T, smoke: T) -> T:")
    assert "return smoke if SMOKE else full" in printed


HOOK_PROBE = """
import sys
import dlnotes.env
before = sys.excepthook
import dlnotes.gpt
print(sys.excepthook is before)
dlnotes.env.banner("cpu")
print(getattr(sys.excepthook, "_dlnotes", False))
"""


@pytest.mark.parametrize("traceback, hooked", [(None, True), ("1", False)])
def test_error_hook_only_where_a_script_asks(traceback: str | None, hooked: bool) -> None:
    """Importing the library leaves sys.excepthook alone; the banner installs the one-line
    hook, unless DLNOTES_TRACEBACK=1 asks for full tracebacks."""
    out = run_with(HOOK_PROBE, "DLNOTES_TRACEBACK", traceback)
    assert out.split() == ["True", str(hooked)]


def test_a_switch_with_an_unknown_value_is_refused() -> None:
    child_env = dict(os.environ, DLNOTES_SMOKE="maybe")
    proc = subprocess.run(
        [sys.executable, "-c", "import dlnotes.env"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "DLNOTES_SMOKE='maybe' is not a switch" in proc.stderr
