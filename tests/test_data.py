"""The data layer against a local HTTP server: download, verify, replace, fail clearly.

Every test uses a temporary registry entry served from 127.0.0.1 and a data folder
under tmp_path; nothing touches the network.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from dlnotes import data
from dlnotes.data import DataFile
from dlnotes.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class FileServer:
    """A threaded HTTP server on 127.0.0.1 serving in-memory files, counting requests.

    With `gate` set to n, each request waits until n requests are in flight, which
    makes concurrent fetches really overlap.
    """

    def __init__(self, start: Callable[..., http.server.HTTPServer]) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.gate: threading.Barrier | None = None
        self.gate_broken = False
        self.truncate: set[str] = set()  # names whose body is cut short
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.hits[name] += 1
                if name not in server.files:
                    self.send_error(404)
                    return
                if server.gate is not None:
                    try:
                        server.gate.wait(timeout=20)
                    except threading.BrokenBarrierError:
                        server.gate_broken = True
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if name in server.truncate else body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = start(Handler)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"


@pytest.fixture
def server(local_server) -> FileServer:
    return FileServer(local_server)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder, set as DLNOTES_DATA_DIR; no proxy settings in the way."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    target = tmp_path / "data"
    target.mkdir()
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(target))
    return target


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def payload(n: int = 50_000, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 17 + i // 7) % 256 for i in range(n))


def serve(
    server: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    body: bytes,
    *,
    name: str = "toy-file",
    path: str = "sub/toy.bin",
    expected: bytes | None = None,
    member: str | None = None,
) -> DataFile:
    """Serve `body` and register an entry that expects `expected` (default: `body`)."""
    server.files[name] = body
    good = body if expected is None else expected
    entry = DataFile(name, server.url(name), path, sha256(good), len(good), member=member)
    monkeypatch.setitem(data.REGISTRY, name, entry)
    return entry


def listing(folder: Path) -> list[tuple[str, int, int]]:
    """Every file under `folder` with its size and modification time."""
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
    )


def names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_python(code: str, *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["DLNOTES_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_download_is_verified_cached_and_reused(server, folder, monkeypatch) -> None:
    body = payload()
    entry = serve(server, monkeypatch, body)
    path = data.fetch(entry.name)
    assert path == folder / "sub" / "toy.bin"
    assert path.read_bytes() == body
    assert names(folder) == ["sub/toy.bin"]
    assert data.fetch(entry.name) == path  # second call: served from the folder
    assert server.hits[entry.name] == 1


@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes"])
def test_corrupted_file_is_detected_and_replaced(server, folder, monkeypatch, damage) -> None:
    body = payload()
    entry = serve(server, monkeypatch, body)
    target = folder / entry.path
    target.parent.mkdir()
    target.write_bytes(body[:100] if damage == "truncated" else payload(seed=1))
    assert data.fetch(entry.name).read_bytes() == body
    assert server.hits[entry.name] == 1
    assert names(folder) == ["sub/toy.bin"]


def test_server_down_fails_fast_with_one_line_naming_file_url_and_folder(
    folder, monkeypatch
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/toy.bin"
    monkeypatch.setitem(data.REGISTRY, "toy-file", DataFile("toy-file", url, "toy.bin", "0" * 64))
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        data.fetch("toy-file")
    assert time.perf_counter() - start < 1.0  # refused at once: no retries, no long waits
    message = str(info.value)
    assert "\n" not in message
    assert "'toy-file'" in message and url in message and str(folder) in message
    assert names(folder) == []


def test_missing_url_is_a_data_error_naming_the_url(server, folder, monkeypatch) -> None:
    entry = DataFile("toy-file", server.url("nowhere.bin"), "toy.bin", "0" * 64)
    monkeypatch.setitem(data.REGISTRY, "toy-file", entry)
    with pytest.raises(DataError, match="Not Found.*nowhere.bin"):
        data.fetch("toy-file")
    assert names(folder) == []


def test_read_only_folder_with_good_file_writes_nothing(server, folder, monkeypatch) -> None:
    body = payload()
    entry = serve(server, monkeypatch, body, path="toy.bin")
    (folder / "toy.bin").write_bytes(body)
    folder.chmod(0o555)
    before = listing(folder)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("fetch tried to write or download")

    # Tests run as root, for whom chmod does not stop writes: fail on any attempt instead.
    monkeypatch.setattr("tempfile.mkstemp", forbidden)
    monkeypatch.setattr("os.replace", forbidden)
    monkeypatch.setattr("urllib.request.urlopen", forbidden)
    try:
        assert data.fetch(entry.name) == folder / "toy.bin"
    finally:
        folder.chmod(0o755)
    assert listing(folder) == before
    assert server.hits[entry.name] == 0


def test_read_only_folder_with_bad_file_says_what_to_replace(server, folder, monkeypatch) -> None:
    entry = serve(server, monkeypatch, payload(), path="toy.bin")
    (folder / "toy.bin").write_bytes(b"not it")
    real_access = os.access
    monkeypatch.setattr(
        "os.access", lambda p, mode: False if Path(p) == folder else real_access(p, mode)
    )
    with pytest.raises(
        DataError, match=r"toy\.bin has 6 bytes, expected 50,000.*read-only"
    ) as info:
        data.fetch(entry.name)
    assert entry.url in str(info.value)
    assert server.hits[entry.name] == 0


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_zip_member_is_extracted_and_verified(server, folder, monkeypatch) -> None:
    member = b"ham\tsee you at 5\nspam\tWIN a prize now\n" * 500
    archive = make_zip({"readme.txt": b"about", "SMSSpamCollection": member})
    entry = serve(
        server,
        monkeypatch,
        archive,
        path="SMSSpamCollection",
        expected=member,
        member="SMSSpamCollection",
    )
    assert data.fetch(entry.name).read_bytes() == member
    assert names(folder) == ["SMSSpamCollection"]


@pytest.mark.parametrize(
    ("archive", "error"),
    [
        (make_zip({"other.txt": b"x"}), "not a zip holding 'SMSSpamCollection'"),
        (b"<html>a login page, not a zip</html>", "not a zip holding"),
    ],
)
def test_zip_without_the_member_is_not_kept(server, folder, monkeypatch, archive, error) -> None:
    entry = serve(
        server,
        monkeypatch,
        archive,
        path="SMSSpamCollection",
        expected=b"the real member",
        member="SMSSpamCollection",
    )
    with pytest.raises(DataError, match=error):
        data.fetch(entry.name)
    assert names(folder) == []


@pytest.mark.parametrize(
    ("served", "error"),
    [
        (payload(seed=1), "fails its sha256 check; the file was not kept"),
        (payload(49_000), "has 49,000 bytes, expected 50,000; the file was not kept"),
    ],
)
def test_wrong_download_is_not_kept(server, folder, monkeypatch, served, error) -> None:
    entry = serve(server, monkeypatch, served, expected=payload())
    with pytest.raises(DataError, match=error) as info:
        data.fetch(entry.name)
    assert entry.url in str(info.value)
    assert names(folder) == []  # neither the file nor a .part left behind


def test_connection_dropped_mid_download_is_not_kept(server, folder, monkeypatch) -> None:
    entry = serve(server, monkeypatch, payload())
    server.truncate.add(entry.name)  # half the body, then the server hangs up
    with pytest.raises(DataError, match="has 25,000 bytes, expected 50,000; the file was not kept"):
        data.fetch(entry.name)
    assert names(folder) == []


def test_two_threads_fetching_at_once_end_with_one_good_file(server, folder, monkeypatch) -> None:
    body = payload(200_000)
    entry = serve(server, monkeypatch, body)
    server.gate = threading.Barrier(2)
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(data.fetch(entry.name))
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not server.gate_broken, "the two downloads did not overlap"
    assert results == [folder / entry.path] * 2
    assert server.hits[entry.name] == 2
    assert (folder / entry.path).read_bytes() == body
    assert names(folder) == ["sub/toy.bin"]


FETCH_IN_CHILD = """
import sys
from dlnotes import data
name, url, path, digest, size = sys.argv[1:]
data.register(data.DataFile(name, url, path, digest, int(size)))
print(data.fetch(name))
"""


def test_two_processes_fetching_at_once_end_with_one_good_file(server, folder, monkeypatch):
    body = payload(200_000)
    entry = serve(server, monkeypatch, body)
    server.gate = threading.Barrier(2)
    args = (entry.name, entry.url, entry.path, entry.sha256, str(entry.size))
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH_IN_CHILD, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert not server.gate_broken, "the two downloads did not overlap"
    assert [out.strip() for out, _ in outputs] == [str(folder / entry.path)] * 2
    assert server.hits[entry.name] == 2
    assert (folder / entry.path).read_bytes() == body
    assert names(folder) == ["sub/toy.bin"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown data file 'no-such-file'; known: .*the-verdict"):
        data.fetch("no-such-file")


def test_default_folder_is_repo_data_found_from_the_package(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DLNOTES_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.data_dir() == ROOT / "data"
    monkeypatch.setenv("DLNOTES_DATA_DIR", "  ")  # blank counts as unset
    assert data.data_dir() == ROOT / "data"


def test_registered_files_have_pinned_hashes_and_sizes() -> None:
    for entry in data.REGISTRY.values():
        assert entry.url.startswith("https://"), entry.name
        assert entry.sha256 is not None and len(entry.sha256) == 64, entry.name
        assert entry.size is not None and entry.size > 0, entry.name


# What a chapter script does (through `env.banner`): one-line errors for dlnotes' own.
HOOK = "import dlnotes.errors as e; e.install_error_hook(); "


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (f"{HOOK}import dlnotes.data as d; d.fetch('x')", "error: unknown data file 'x'; known: "),
        (
            f"{HOOK}import sys, dlnotes.data as d; "
            "d.register(d.DataFile('x', sys.argv[1], 'x.bin', '0' * 64)); d.fetch('x')",
            "error: cannot download 'x' (",
        ),
    ],
    ids=["unknown name", "offline"],
)
def test_a_script_stops_with_one_error_line_and_no_traceback(tmp_path, code, expected) -> None:
    proc = run_python(code, f"http://127.0.0.1:{closed_port()}/x.bin", data_dir=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr


def test_downloaded_file_has_a_normal_mode(server, folder, monkeypatch) -> None:
    # Defect 8: the download kept mkstemp's private 0600 mode.
    entry = serve(server, monkeypatch, payload())
    path = data.fetch(entry.name)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_download_goes_through_the_atomic_writer(server, folder, monkeypatch) -> None:
    # One atomic writer: the data layer's downloads use `dlnotes.atomic.atomic_write`.
    entry = serve(server, monkeypatch, payload())
    used: list[Path] = []
    real = data.atomic_write

    def spy(target, *args, **kwargs):
        used.append(Path(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(data, "atomic_write", spy)
    assert data.fetch(entry.name).read_bytes() == payload()
    assert used == [folder / entry.path]


@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes"])
def test_offline_with_a_bad_copy_says_the_copy_failed_its_check(folder, monkeypatch, damage):
    # Defect 16: offline, the message asked to "save it as <path>" without saying that the
    # file already there had failed its check.
    good = payload()
    url = f"http://127.0.0.1:{closed_port()}/toy.bin"
    entry = DataFile("toy-file", url, "toy.bin", sha256(good), len(good))
    monkeypatch.setitem(data.REGISTRY, "toy-file", entry)
    (folder / "toy.bin").write_bytes(good[:100] if damage == "truncated" else payload(seed=1))
    expected = "has 100 bytes, expected 50,000" if damage == "truncated" else "fails its sha256"
    with pytest.raises(DataError, match=f"the copy at {folder / 'toy.bin'} {expected}") as info:
        data.fetch("toy-file")
    assert "\n" not in str(info.value) and url in str(info.value)


def test_data_folder_that_is_a_file_says_so(server, tmp_path, monkeypatch) -> None:
    # Defect 16: a data folder that is a file was reported as "(File exists)".
    entry = serve(server, monkeypatch, payload())
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DLNOTES_DATA_DIR", str(blocker))
    with pytest.raises(DataError, match=f"{blocker} is a file, not a folder.*DLNOTES_DATA_DIR"):
        data.fetch(entry.name)
    assert server.hits[entry.name] == 0


def test_stale_partial_download_is_removed_by_the_next_download(server, folder, monkeypatch):
    # Defect 19: a killed download left its full-size .part file forever.
    entry = serve(server, monkeypatch, payload(), path="toy.bin")
    stale, fresh = folder / ".toy.bin.k2j4_x9a.part", folder / ".other.bin.a1b2c3d4.part"
    for part in (stale, fresh):
        part.write_bytes(b"x" * 1000)
    hours_ago = time.time() - 3 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    data.fetch(entry.name)
    # The fresh one may be another process's download in progress: left alone.
    assert names(folder) == [".other.bin.a1b2c3d4.part", "toy.bin"]
