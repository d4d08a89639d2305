"""Every external file the notes use, fetched once, checksummed, cached.

`REGISTRY` maps a short name to where a file comes from (URL), what it must be
(sha256, size) and where it lives in the data folder. `fetch(name)` returns the
local path:

1. the data folder is ``$DLNOTES_DATA_DIR`` or ``<repository>/data`` (found from
   the package, not the working directory, so scripts, the VS Code interactive
   window and notebooks agree);
2. a file that is there and matches its sha256 is used as it is (a read-only
   folder works: nothing is written);
3. otherwise it is downloaded with a progress bar into a temporary file beside
   the target, verified, and renamed into place atomically; two processes that
   fetch at once each write their own temporary file, and the last rename wins
   with an identical, verified file;
4. offline, it stops with one line naming the file, the URL and the folder.

Follows the idea of d2l's ``DATA_HUB``, but verifies the hash after every
download, not only on a cache hit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dlnotes.atomic import atomic_write
from dlnotes.env import repo_root
from dlnotes.errors import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataFile:
    """One external file: where it comes from and what it must hash to."""

    name: str
    url: str
    path: str  # relative to the data folder
    sha256: str | None  # None: not pinned (see `fetch`); size still checked if known
    size: int | None = None
    member: str | None = None  # the file inside a zip archive at `url`


_RASBT = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main"
_GPT2_BPE = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"

REGISTRY: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile(
            "the-verdict",
            f"{_RASBT}/ch02/01_main-chapter-code/the-verdict.txt",
            "the-verdict.txt",
            "b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
            20_479,
        ),
        DataFile(
            "gpt2-encoder",
            f"{_GPT2_BPE}/encoder.json",
            "gpt2/encoder.json",
            "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
            1_042_301,
        ),
        DataFile(
            "gpt2-vocab",
            f"{_GPT2_BPE}/vocab.bpe",
            "gpt2/vocab.bpe",
            "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            456_318,
        ),
        DataFile(
            "sms-spam",
            "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
            "SMSSpamCollection",
            "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
            477_907,
            member="SMSSpamCollection",
        ),
        DataFile(
            "instruction-data",
            f"{_RASBT}/ch07/01_main-chapter-code/instruction-data.json",
            "instruction-data.json",
            "7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
            203_524,
        ),
        DataFile(
            "mnist-train-images",
            f"{_MNIST}/train-images-idx3-ubyte.gz",
            "mnist/train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            9_912_422,
        ),
        DataFile(
            "mnist-train-labels",
            f"{_MNIST}/train-labels-idx1-ubyte.gz",
            "mnist/train-labels-idx1-ubyte.gz",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            28_881,
        ),
        DataFile(
            "mnist-test-images",
            f"{_MNIST}/t10k-images-idx3-ubyte.gz",
            "mnist/t10k-images-idx3-ubyte.gz",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            1_648_877,
        ),
        DataFile(
            "mnist-test-labels",
            f"{_MNIST}/t10k-labels-idx1-ubyte.gz",
            "mnist/t10k-labels-idx1-ubyte.gz",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            4_542,
        ),
    ]
}


def register(entry: DataFile) -> DataFile:
    """Add (or replace) a registry entry, e.g. for model weights; returns it."""
    REGISTRY[entry.name] = entry
    return entry


def data_dir() -> Path:
    """The data folder: ``$DLNOTES_DATA_DIR`` or ``<repository>/data``."""
    configured = os.environ.get("DLNOTES_DATA_DIR", "").strip()
    return Path(configured).expanduser().resolve() if configured else repo_root() / "data"


_verified: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (memoised per path, size and modification time)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(block)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def _problem(entry: DataFile, path: Path) -> str | None:
    """Why the file at `path` is not the registered one (None if it is)."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return f"has {size:,} bytes, expected {entry.size:,}"
    if entry.sha256 is not None and sha256_of(path) != entry.sha256:
        return "fails its sha256 check"
    return None


def _offline_error(
    entry: DataFile, target: Path, reason: object, problem: str | None = None
) -> DataError:
    member = f"(the zip member {entry.member!r}) " if entry.member else ""
    # Say why the copy already there was not used: else "save it as" reads as "missing".
    here = f"; the copy at {target} {problem}" if problem else ""
    return DataError(
        f"cannot download {entry.name!r} ({reason}){here}: get {entry.url} {member}"
        f"and save it as {target} (or point DLNOTES_DATA_DIR at a folder holding "
        f"{entry.path})"
    )


def _copy(source: IO[bytes], out: IO[bytes], total: int | None, desc: str) -> None:
    """Stream `source` into `out` with a progress bar."""
    from tqdm.auto import tqdm

    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False
    ) as bar:
        for block in iter(lambda: source.read(_CHUNK), b""):
            out.write(block)
            bar.update(len(block))


def _download(entry: DataFile, target: Path, timeout: float, problem: str | None = None) -> None:
    """Stream `entry.url` into a temporary file beside `target`, verify it, rename it.

    `problem` says what is wrong with a copy already at `target`, for the offline error.
    """

    def verify(tmp: Path) -> None:
        found = _problem(entry, tmp)
        if found:
            raise DataError(
                f"downloaded {entry.name!r} from {entry.url} but it {found}; the file was not kept"
            )

    request = urllib.request.Request(entry.url, headers={"User-Agent": "dlnotes"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise _offline_error(entry, target, getattr(exc, "reason", exc), problem) from None
    with response:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot write {entry.name!r} into {target.parent} ({exc.strerror}); "
                "set DLNOTES_DATA_DIR to a writable folder"
            ) from None
        total = int(response.headers.get("Content-Length") or 0) or None
        try:
            with atomic_write(target, suffix=".part", verify=verify) as out:
                if entry.member is None:
                    _copy(response, out, total, entry.name)
                else:
                    # The archive is only a means to the member: an unnamed file (gone on
                    # close, even if the process dies) holds it while the member is read.
                    with tempfile.TemporaryFile(dir=target.parent) as archive_file:
                        _copy(response, archive_file, total, entry.name)
                        archive_file.seek(0)
                        with zipfile.ZipFile(archive_file) as archive:
                            with archive.open(entry.member) as member:
                                shutil.copyfileobj(member, out, _CHUNK)
        except (urllib.error.URLError, OSError) as exc:
            raise _offline_error(entry, target, getattr(exc, "reason", exc), problem) from None
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(
                f"downloaded {entry.name!r} from {entry.url} but it is not a zip holding "
                f"{entry.member!r} ({exc})"
            ) from None


def _not_a_folder(folder: Path) -> Path | None:
    """The nearest existing path at or above `folder`, if it is a file instead of a folder."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def fetch(name: str, *, timeout: float = 30.0) -> Path:
    """Local path of registered file `name`, downloading and verifying it if needed."""
    try:
        entry = REGISTRY[name]
    except KeyError:
        raise DataError(
            f"unknown data file {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    target = data_dir() / entry.path
    problem = None
    if target.is_file():
        problem = _problem(entry, target)
        if problem is None:
            return target
        if not os.access(target.parent, os.W_OK):
            raise DataError(
                f"{target} {problem} and its folder is read-only; replace it with the "
                f"file from {entry.url}"
            )
    blocker = _not_a_folder(target.parent)
    if blocker is not None:
        raise DataError(
            f"cannot save {entry.name!r} as {target}: {blocker} is a file, not a folder "
            "(set DLNOTES_DATA_DIR to a folder)"
        )
    _download(entry, target, timeout, problem)
    return target
