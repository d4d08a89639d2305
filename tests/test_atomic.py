"""Atomic writes: an interrupted write leaves the old file and no temporary behind."""

from __future__ import annotations

import functools
import json
import stat
from pathlib import Path

import pytest

from dlnotes.atomic import atomic_write, write_json
from dlnotes.bpe import BPETokenizer
from dlnotes.scratch.layers import Linear, save_weights


class Interrupted(Exception):
    pass


def test_interrupted_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(Interrupted), atomic_write(target, "w") as fh:
        fh.write("half of the new")
        raise Interrupted
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_written_file_replaces_the_old_one_with_a_normal_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) & 0o044  # readable by others, unlike mkstemp's 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


@pytest.mark.parametrize("save", ["bpe", "scratch", "json"])
def test_library_saves_go_through_atomic_write(
    save: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "saved.json"
    target.write_text('"previous"')
    if save == "bpe":
        call = BPETokenizer.train("aaab aab", vocab_size=258).save
    elif save == "json":  # saved responses (ch07) and saved scores
        call = functools.partial(write_json, obj={"a": 1})
    else:
        call = functools.partial(save_weights, Linear(2, 3))
    # A failure while the JSON is being written must not clobber the previous file.
    monkeypatch.setattr(json, "dump", lambda *a, **k: (_ for _ in ()).throw(Interrupted()))
    with pytest.raises(Interrupted):
        call(target)
    assert target.read_text() == '"previous"'
    assert [p.name for p in tmp_path.iterdir()] == ["saved.json"]


def test_stale_temporary_files_are_removed_on_the_next_write(tmp_path: Path) -> None:
    # A killed save leaves its temporary file; the next write to the folder removes it
    # once it has not changed for an hour (a younger one may be another writer's).
    import os
    import time

    stale = tmp_path / ".run.pt.ab12cd_3.tmp"
    fresh = tmp_path / ".run.pt.zz99yy88.tmp"
    unrelated = tmp_path / ".hidden.tmp"
    for path in (stale, fresh, unrelated):
        path.write_bytes(b"x")
    old = time.time() - 2 * 3600
    for path in (stale, unrelated):
        os.utime(path, (old, old))
    with atomic_write(tmp_path / "other.bin") as fh:
        fh.write(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hidden.tmp",
        ".run.pt.zz99yy88.tmp",
        "other.bin",
    ]


def test_verify_refuses_the_new_file_and_keeps_the_old(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    seen: list[bytes] = []

    def verify(tmp: Path) -> None:
        seen.append(tmp.read_bytes())  # the whole new content is there to check
        raise Interrupted

    with pytest.raises(Interrupted), atomic_write(target, verify=verify) as fh:
        fh.write(b"new content")
    assert seen == [b"new content"]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
