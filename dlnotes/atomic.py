"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind.

Write into a temporary file in the target's folder, optionally check it, flush it to
disk, then `os.replace` it over the target (atomic within one filesystem). On any
error the temporary file is removed and the previous target, if any, is left intact.
A process that is killed cannot remove its temporary file: the next write into that
folder removes such leftovers once they have not changed for `STALE_AFTER` seconds.
Pure Python, so the pure-Python library (`dlnotes.scratch`) can use it too.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

# An hour without a change: a live writer (a slow download, a big checkpoint) keeps
# touching its temporary file, so one this old was left by a process that died.
STALE_AFTER = 3600.0
SUFFIXES = (".tmp", ".part")
# ".<target name>.<mkstemp's 8 random characters><suffix>", as `atomic_write` names them.
_TEMPORARY = re.compile(
    r"^\..+\.[a-z0-9_]{8}(?:" + "|".join(re.escape(s) for s in SUFFIXES) + r")$"
)


def remove_stale(folder: str | Path, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove temporary files `atomic_write` left in `folder` that are `older_than` seconds.

    Returns the paths removed. Files another process removes first are skipped.
    """
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _TEMPORARY.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat().st_mtime > older_than:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


@contextmanager
def atomic_write(
    path: str | Path,
    mode: str = "wb",
    encoding: str | None = None,
    *,
    suffix: str = ".tmp",
    verify: Callable[[Path], None] | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; on success it replaces `path` in one step.

    ``verify(temporary_path)`` runs on the complete file before it replaces `path`;
    whatever it raises keeps the old file and removes the new one. `suffix` (".tmp"
    or ".part") names the temporary file.

    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "sub" / "note.txt"
    >>> with atomic_write(target, "w", encoding="utf-8") as fh:
    ...     _ = fh.write("hello")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('hello', ['note.txt'])
    """
    if suffix not in SUFFIXES:
        raise ValueError(f"suffix must be one of {SUFFIXES}, got {suffix!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            if verify is not None:
                verify(tmp)
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj: object) -> None:
    """Save `obj` as JSON (UTF-8, indented) with `atomic_write`: the file is always whole."""
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
