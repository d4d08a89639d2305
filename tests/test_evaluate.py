"""Scorers: ROUGE-L against rouge-score, exact match, the Ollama client against a fake
server, the local judge, and resumable scoring."""

from __future__ import annotations

import http.server
import json
import random
import threading
import time
from collections.abc import Iterator

import pytest

from dlnotes.errors import DataError, InputError
from dlnotes.evaluate import (
    ExactMatch,
    JudgeUnavailable,
    LocalJudge,
    OllamaJudge,
    RougeL,
    Score,
    exact_match,
    judge_prompt,
    lcs_length,
    mean_score,
    normalise,
    parse_score,
    plot_score_histograms,
    rouge_l,
    rouge_tokens,
    score_responses,
    scores_table,
)
from dlnotes.instruct import format_input

ENTRY = {"instruction": "Name the capital of France.", "input": "", "output": "Paris."}

EDGE_PAIRS = [
    ("", ""),
    ("", "the cat"),
    ("the cat", ""),
    ("!!! ...", "the cat"),  # no words at all on one side
    ("The cat sat.", "The cat sat."),
    ("the the the", "the"),
    ("A B C D", "d c b a"),
    ("running runners ran quickly", "the runner runs quick"),
    ("Café naïve résumé 2024-01-01", "cafe naive resume 2024 01 01"),
    ("über straße", "uber strasse"),
    ("It's 3.14, isn't it?", "its 3 14 isnt it"),
    ("Généralement, les chats dorment.", "generalement les chats dorment"),
    ("line\nbreaks\tand   spaces", "line breaks and spaces"),
    ("connection connected connecting", "connect"),
]


def _instruction_pairs(n: int) -> list[tuple[str, str]]:
    """Pairs of real outputs from the book's data: related and unrelated, with edits."""
    from dlnotes.instruct import load_instruction_data

    try:
        outputs = [e["output"] for e in load_instruction_data()]
    except DataError:
        outputs = [p[0] for p in EDGE_PAIRS if p[0]] * 10
    rng = random.Random(7)
    pairs = []
    for _ in range(n):
        a, b = rng.choice(outputs), rng.choice(outputs)
        words = a.split()
        rng.shuffle(words)
        edited = " ".join(w for w in a.split() if rng.random() > 0.3)
        pairs += [(a, b), (a, edited), (" ".join(words), a)]
    return pairs


@pytest.mark.parametrize("stem", [False, True])
def test_rouge_l_equals_rouge_score(stem: bool) -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem)
    pairs = EDGE_PAIRS + _instruction_pairs(100)
    for candidate, reference in pairs:
        expected = scorer.score(reference, candidate)["rougeL"].fmeasure  # (target, prediction)
        assert rouge_l(candidate, reference, stem=stem) == pytest.approx(expected, abs=1e-12), (
            candidate,
            reference,
        )


def test_rouge_l_tokens_equal_rouge_score_tokenizer() -> None:
    tokenizers = pytest.importorskip("rouge_score.tokenizers")

    for stem in (False, True):
        theirs = tokenizers.DefaultTokenizer(use_stemmer=stem)
        for text, _ in EDGE_PAIRS + _instruction_pairs(30):
            assert rouge_tokens(text, stem) == theirs.tokenize(text)


def test_rouge_l_edge_values() -> None:
    assert rouge_l("", "") == 0.0 and rouge_l("the cat", "") == 0.0
    assert rouge_l("The cat sat.", "the CAT sat") == 1.0
    # LCS 2 ("a b" of "a b c"): precision 2/2, recall 2/3
    assert rouge_l("a b", "a b c") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    with pytest.raises(InputError):
        rouge_l(None, "x")


def test_lcs_length_by_brute_force() -> None:
    from itertools import combinations

    rng = random.Random(3)
    for _ in range(200):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 6))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 6))]
        subsequences = {
            tuple(c) for k in range(len(a) + 1) for c in combinations(a, k) if _is_sub(c, b)
        }
        assert lcs_length(a, b) == max(map(len, subsequences))


def _is_sub(small: tuple, big: list) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def test_exact_match_normalisation() -> None:
    assert normalise("The  Answer: Paris!") == "answer paris"
    assert exact_match("paris", "Paris.") == 1.0
    assert exact_match("An apple", "apple") == 1.0
    assert exact_match("Paris is the capital.", "Paris.") == 0.0
    assert exact_match("", "") == 1.0 and exact_match("", "x") == 0.0


def test_scorers_use_the_0_to_100_scale() -> None:
    assert RougeL()(ENTRY, "paris") == Score(100.0)
    assert RougeL(stem=True).name == "ROUGE-L (stemmed)"
    assert ExactMatch()(ENTRY, "It is Paris") == Score(0.0)
    assert RougeL()(ENTRY, "") == Score(0.0)


def test_exact_match_leaves_a_reference_of_punctuation_unscored() -> None:
    """An empty reply would "match" a reference that normalises to nothing: no score."""
    entry = {**ENTRY, "output": "The ..."}
    assert ExactMatch()(entry, "") == Score(None, "reference is empty after normalising")
    assert ExactMatch()(entry, "anything").value is None


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("85", 85.0),
        (" 85\n", 85.0),
        ("85.", 85.0),
        ("**85**", 85.0),
        ("85/100", 85.0),
        ("Score: 72", 72.0),
        ("0", 0.0),
        ("100", 100.0),
        ("97.5", 97.5),
    ],
)
def test_parse_score_accepts_bare_numbers(reply: str, value: float) -> None:
    assert parse_score(reply) == Score(value)


@pytest.mark.parametrize(
    ("reply", "note"),
    [
        ("101", "outside 0..100"),
        ("250", "outside 0..100"),
        ("", "not a number"),
        ("I would give it 85", "not a number"),
        ("85 or 90", "not a number"),
        ("-5", "not a number"),
        ("The car is as fast as lightning.", "not a number"),
    ],
)
def test_parse_score_refuses_garbage_and_out_of_range(reply: str, note: str) -> None:
    score = parse_score(reply)
    assert score.value is None and not score.scored and note in score.note


def test_judge_prompt_has_the_task_reference_and_response() -> None:
    prompt = judge_prompt(ENTRY, "Lyon")
    assert format_input(ENTRY) in prompt and "`Paris.`" in prompt and "`Lyon`" in prompt
    assert "0 to 100" in prompt and "integer only" in prompt


# --- the Ollama client against a fake server ------------------------------------------


class FakeOllama(http.server.BaseHTTPRequestHandler):
    """Answers /api/chat as the server's `mode` says; records each request body."""

    def do_POST(self) -> None:
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((self.path, body))
        mode = server.mode
        if mode == "hang":
            server.release.wait(timeout=10)  # until the test ends; then no answer at all
            return
        if mode == "missing-model":
            self._send(404, b'{"error":"model \\"llama3\\" not found, try pulling it first"}')
            return
        replies = {
            "answer": {"message": {"role": "assistant", "content": "85"}},
            "garbage": {"message": {"role": "assistant", "content": "Great answer!"}},
            "too-high": {"message": {"role": "assistant", "content": "150"}},
            "no-message": {"done": True},
        }
        payload = b"<html>not json" if mode == "malformed" else json.dumps(replies[mode]).encode()
        self._send(200, payload)

    def _send(self, code: int, payload: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_ollama(local_server) -> Iterator[http.server.HTTPServer]:
    server = local_server(FakeOllama)
    server.requests, server.mode, server.release = [], "answer", threading.Event()
    server.url += "/api/chat"
    yield server
    server.release.set()  # before the server closes and waits for its handlers


def test_ollama_answer_and_request(fake_ollama) -> None:
    judge = OllamaJudge("llama3", fake_ollama.url, timeout=5, seed=123)
    assert judge(ENTRY, "It is Paris.") == Score(85.0)
    path, body = fake_ollama.requests[0]
    assert path == "/api/chat" and body["model"] == "llama3" and body["stream"] is False
    assert body["options"]["temperature"] == 0 and body["options"]["seed"] == 123
    assert body["messages"] == [{"role": "user", "content": judge_prompt(ENTRY, "It is Paris.")}]


@pytest.mark.parametrize(
    ("mode", "note"),
    [
        ("malformed", "malformed reply"),
        ("no-message", "malformed reply"),
        ("garbage", "not a number"),
        ("too-high", "outside 0..100"),
    ],
)
def test_ollama_bad_replies_are_unscored(fake_ollama, mode: str, note: str) -> None:
    fake_ollama.mode = mode
    score = OllamaJudge(url=fake_ollama.url, timeout=5)(ENTRY, "Paris")
    assert score.value is None and note in score.note


def test_ollama_empty_response_scores_zero_without_asking(fake_ollama) -> None:
    assert OllamaJudge(url=fake_ollama.url)(ENTRY, "  ") == Score(0.0, "empty response")
    assert fake_ollama.requests == []


def test_ollama_that_hangs_times_out(fake_ollama) -> None:
    fake_ollama.mode = "hang"
    start = time.monotonic()
    with pytest.raises(JudgeUnavailable, match=r"did not answer within 0\.3 s"):
        OllamaJudge(url=fake_ollama.url, timeout=0.3)(ENTRY, "Paris")
    assert time.monotonic() - start < 1.9  # gave up at its own timeout, not the socket default


def test_ollama_missing_model_and_no_server(fake_ollama) -> None:
    fake_ollama.mode = "missing-model"
    with pytest.raises(JudgeUnavailable, match="HTTP 404.*not found.*ollama pull llama3"):
        OllamaJudge(url=fake_ollama.url, timeout=5)(ENTRY, "Paris")
    # a port where nothing listens: bind one, close it, then ask there
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(JudgeUnavailable, match="no Ollama server answers"):
        OllamaJudge(url=f"http://127.0.0.1:{port}/api/chat", timeout=2)(ENTRY, "Paris")
    with pytest.raises(InputError):
        OllamaJudge(timeout=0)


# --- running scorers over saved responses -----------------------------------------------


def _responses(n: int = 6) -> list[dict]:
    return [
        {"instruction": f"Say {i}.", "input": "", "output": f"{i}", "model_response": f"{i % 3}"}
        for i in range(n)
    ]


class Flaky:
    """A judge that scores `limit` responses, then finds its server gone."""

    name = "flaky"

    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, 0

    def __call__(self, entry: dict, response: str) -> Score:
        if self.calls == self.limit:
            raise JudgeUnavailable("server gone")
        self.calls += 1
        return Score(50.0) if response == "1" else Score(None, "reply is not a number: 'x'")


def test_score_responses_saves_partial_results_and_continues(tmp_path) -> None:
    entries, path = _responses(), tmp_path / "scores.json"
    with pytest.raises(JudgeUnavailable):
        score_responses(entries, Flaky(limit=4), path=path)
    assert sum(item is not None for item in json.loads(path.read_text())["items"]) == 4
    judge = Flaky(limit=100)
    scores = score_responses(entries, judge, path=path)
    assert judge.calls == 2  # only the two not scored before
    assert [s.value for s in scores] == [None, 50.0, None, None, 50.0, None]
    # a changed response is scored again
    entries[0]["model_response"] = "1"
    judge = Flaky(limit=100)
    assert score_responses(entries, judge, path=path)[0] == Score(50.0)
    assert judge.calls == 1


def test_score_responses_bad_input(tmp_path) -> None:
    entries = _responses()
    del entries[2]["model_response"]
    with pytest.raises(DataError, match="entry 2 has no response"):
        score_responses(entries, RougeL())
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"scorer": "other", "items": []}))
    with pytest.raises(DataError, match="another scorer"):
        score_responses(_responses(), RougeL(), path=path)
    path.write_text("{")
    with pytest.raises(DataError, match="scores.json is not valid JSON .*saved scores are lost"):
        score_responses(_responses(), RougeL(), path=path)


def test_table_mean_and_histograms() -> None:
    import matplotlib

    matplotlib.use("Agg")
    results = {
        "ROUGE-L": [Score(10.0), Score(30.0), Score(50.0)],
        "judge": [Score(None, "x"), Score(80.0), Score(None, "y")],
        "none": [Score(None, "z")],
    }
    table = scores_table(results).splitlines()
    assert table[2].split() == ["ROUGE-L", "3/3", "30.0", "30.0", "10", "50"]
    assert table[3].split() == ["judge", "1/3", "80.0", "80.0", "80", "80"]
    assert table[4].split()[:2] == ["none", "0/1"]
    assert mean_score(results["judge"]) == 80.0
    fig = plot_score_histograms(results)
    assert len(fig.axes) == 3 and "2 unscored" in fig.axes[1].get_title()
    counts = [p.get_height() for p in fig.axes[0].patches]
    assert sum(counts) == 3 and counts[1] == counts[3] == counts[5] == 1


# --- the local judge -------------------------------------------------------------------


class _Digits:
    """Characters as ids (digits are single tokens), with no chat template."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 128 for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(i) for i in ids)


def _base(seed: int):
    import torch

    from dlnotes.base import Base
    from dlnotes.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    model = GPT(GPTConfig.tiny(vocab_size=128, context_length=512)).eval()
    return Base("toy", model, _Digits(), 0, 0, 512, False)


def test_local_judge_reads_the_most_likely_number(one_thread) -> None:
    import torch

    from dlnotes.generate import sample_next

    for seed in range(4):
        base = _base(seed)
        judge = LocalJudge(base)
        prompt = judge_prompt(ENTRY, "Paris")
        value = judge.number(prompt)
        assert 0 <= value <= 100
        # the same reading, done the slow way: full forward passes, digits masked in
        ids, text = base.tokenizer.encode(prompt), ""
        digits = [ord(str(d)) for d in range(10)]
        while True:
            with torch.no_grad():
                logits = base.model(torch.tensor([ids]))[:, -1]
            allowed = [ord("0")] if text == "10" else digits
            mask = torch.full_like(logits, float("-inf"))
            mask[:, allowed + ([0] if text else [])] = 0
            best = int(sample_next(logits + mask))
            if best == 0:
                break
            text, ids = text + chr(best), ids + [best]
            if text == "0" or len(text) == 3 or (len(text) == 2 and text != "10"):
                break
        assert value == int(text)
        assert judge(ENTRY, "Paris") == Score(float(value))
        assert judge(ENTRY, "") == Score(0.0, "empty response")


def test_local_judge_free_reply_and_long_prompt(one_thread) -> None:
    base = _base(0)
    judge = LocalJudge(base, constrained=False, max_new_tokens=4)
    prompt = judge_prompt(ENTRY, "Paris")
    assert judge(ENTRY, "Paris") == parse_score(judge.reply(prompt))
    long = {"instruction": "x" * 600, "input": "", "output": "y"}
    score = LocalJudge(base)(long, "y")
    assert score.value is None and "more than the judge's context of 512" in score.note
