"""Shared test set-up: offline data from ../shared/data when present, seeds, helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SHARED = ROOT.parent / "shared" / "data"

# Tests run offline: use the shared copy of the data sets unless told otherwise.
if "DLNOTES_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["DLNOTES_DATA_DIR"] = str(_SHARED)
if "TIKTOKEN_CACHE_DIR" not in os.environ and (_SHARED / "tiktoken_cache").is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED / "tiktoken_cache")


@pytest.fixture
def data_file() -> Callable[[str], Path]:
    """`data_file("the-verdict")` -> local path; skips the test if it cannot be had."""
    from dlnotes.data import fetch
    from dlnotes.errors import DataError

    def get(name: str) -> Path:
        try:
            return fetch(name)
        except DataError as exc:
            pytest.skip(f"data not available offline: {exc}")

    return get


@pytest.fixture(autouse=True)
def _seeded() -> None:
    from dlnotes.env import seed_everything

    seed_everything(1234)
