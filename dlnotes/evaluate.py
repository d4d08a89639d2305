"""Scoring generated responses: ROUGE-L, exact match, and LLM judges, behind one interface.

Raschka's ch07 (section 7.8, https://github.com/rasbt/LLMs-from-scratch/tree/main/ch07)
asks Llama 3 8B, served by Ollama, to score each response from 0 to 100. That needs
a local server with an 8-billion-parameter model; so besides `OllamaJudge` there are
scorers that run anywhere:

* `rouge_l`: ROUGE-L F1, the longest common subsequence of words, with the tokenizer
  of Google's ``rouge-score`` package (lower case, runs of anything but ``a-z0-9``
  separate words, optional Porter stemming of words longer than 3 letters). Written
  here; the tests check it against ``rouge-score``. Stemming uses NLTK's Porter
  stemmer, which ``rouge-score`` itself uses, and so needs ``nltk`` installed;
* `exact_match` after normalising case, punctuation, articles and spaces;
* `LocalJudge`: the same judging prompt answered by a small local model (SmolLM2-135M
  offline), its answer read with only digits allowed. A 135M model is a weak judge:
  its numbers show that the pipeline runs, not how good a response is.

Every scorer maps ``(entry, response)`` to a `Score` on a 0–100 scale, or to an
*unscored* result with the reason (a judge's reply that is not a number in 0..100);
`score_responses` runs one over saved responses, saving as it goes so a rerun
continues, and `scores_table` / `plot_score_histograms` summarise them. An empty
response scores 0 with every scorer: it completes nothing.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dlnotes.atomic import write_json
from dlnotes.errors import DataError, InputError, require_number
from dlnotes.instruct import (
    RESPONSE_KEY,
    Entry,
    continuations,
    format_input,
    read_json,
    validate_entries,
)
from dlnotes.losses import device_of, eval_mode

# --- ROUGE-L -----------------------------------------------------------------------------

_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")
_TOKEN = re.compile(r"^[a-z0-9]+$")


def _porter() -> Any:
    try:
        from nltk.stem import porter
    except ImportError:
        raise InputError(
            "stemming uses NLTK's Porter stemmer (as rouge-score does): pip install nltk, "
            "or score with stem=False"
        ) from None
    return porter.PorterStemmer()


_stemmer: Any = None


def rouge_tokens(text: str, stem: bool = False) -> list[str]:
    """Words as ``rouge-score``'s default tokenizer sees them.

    >>> rouge_tokens("The cat's 2 hats!")
    ['the', 'cat', 's', '2', 'hats']
    """
    global _stemmer
    if not isinstance(text, str):
        raise InputError(f"ROUGE needs text, got {type(text).__name__}")
    words = _SPACES.split(_NON_ALPHANUM.sub(" ", text.lower()))
    if stem:
        if _stemmer is None:
            _stemmer = _porter()
        words = [_stemmer.stem(w) if len(w) > 3 else w for w in words]
    return [w for w in words if _TOKEN.match(w)]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of `a` and `b` (dynamic programming).

    >>> lcs_length("ABCBDAB", "BDCABA")
    4
    """
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)  # row[j]: LCS of the a-prefix so far and b[:j]
    for x in a:
        diagonal = 0  # the previous row's value at j - 1
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(candidate: str, reference: str, *, stem: bool = False) -> float:
    """ROUGE-L F1 in [0, 1]: the harmonic mean of LCS/len(candidate) and LCS/len(reference).

    0 when either text has no words.

    >>> rouge_l("the cat sat on the mat", "the cat lay on the mat")
    0.8333333333333334
    """
    cand, ref = rouge_tokens(candidate, stem), rouge_tokens(reference, stem)
    if not cand or not ref:
        return 0.0
    common = lcs_length(ref, cand)
    precision, recall = common / len(cand), common / len(ref)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# --- exact match ------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (as SQuAD's exact match).

    >>> normalise("  The capital is: Paris! ")
    'capital is paris'
    """
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(candidate: str, reference: str) -> float:
    """1.0 if the two texts are equal after `normalise`, else 0.0."""
    return float(normalise(candidate) == normalise(reference))


# --- the scorer interface ---------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One response's score in 0..100, or None (unscored) with the reason in `note`."""

    value: float | None
    note: str = ""

    @property
    def scored(self) -> bool:
        return self.value is not None


class Scorer(Protocol):
    """Anything with a `name` that scores a response to an entry."""

    name: str

    def __call__(self, entry: Entry, response: str) -> Score: ...


class RougeL:
    """100 × ROUGE-L F1 of the response against the entry's output."""

    def __init__(self, stem: bool = False) -> None:
        self.stem = stem
        self.name = "ROUGE-L" + (" (stemmed)" if stem else "")

    def __call__(self, entry: Entry, response: str) -> Score:
        return Score(100 * rouge_l(response, entry["output"], stem=self.stem))


class ExactMatch:
    """100 if the normalised response equals the normalised output, else 0."""

    name = "exact match"

    def __call__(self, entry: Entry, response: str) -> Score:
        if not normalise(entry["output"]):  # nothing to match: an empty reply is no answer
            return Score(None, "reference is empty after normalising")
        return Score(100 * exact_match(response, entry["output"]))


# --- LLM judges -------------------------------------------------------------------------


def judge_prompt(entry: Entry, response: str) -> str:
    """The judging request of the book's section 7.8, in our words: the task, the reference
    answer and the response, to be scored 0-100 with a bare integer."""
    return (
        f"Here is a task: `{format_input(entry)}`. A correct answer to it is "
        f"`{entry['output']}`. Score this answer from a model: `{response}`, on a scale "
        "from 0 to 100, where 100 is the best. Reply with the integer only."
    )


_NUMBER = re.compile(
    r"(?:score\s*[:=]?\s*)?(\d+(?:\.\d+)?)\s*(?:(?:/|out of)\s*100)?\s*\.?", re.IGNORECASE
)


def parse_score(reply: str) -> Score:
    """A judge's reply as a `Score`: a bare number in 0..100 (``"85"``, ``"85/100"``,
    ``"Score: 85."``); anything else is unscored, with the reason.

    >>> parse_score(" 85\\n"), parse_score("120").note
    (Score(value=85.0, note=''), 'score 120 is outside 0..100')
    """
    text = reply.strip().strip("*`\"'").strip()
    match = _NUMBER.fullmatch(text)
    if match is None:
        shown = text if len(text) <= 40 else text[:37] + "..."
        return Score(None, f"reply is not a number: {shown!r}")
    value = float(match.group(1))
    if not 0 <= value <= 100:
        return Score(None, f"score {match.group(1)} is outside 0..100")
    return Score(value)


class JudgeUnavailable(DataError):
    """The judge's server does not answer (down, unreachable, or too slow)."""


class OllamaJudge:
    """Scores with a model served by Ollama (``ollama serve``; ``ollama pull llama3``).

    Greedy (temperature 0) with a fixed seed, so a rerun gives the same scores. A server
    that is down or slower than `timeout` seconds raises `JudgeUnavailable`; a reply
    that is not JSON or not a score in 0..100 is recorded as unscored.
    """

    def __init__(
        self,
        model: str = "llama3",
        url: str = "http://localhost:11434/api/chat",
        *,
        timeout: float = 120.0,
        seed: int = 123,
        num_ctx: int = 2048,
    ) -> None:
        require_number("timeout", timeout, "(0, inf)", "(seconds)")
        self.model, self.url, self.timeout = model, url, float(timeout)
        self.seed, self.num_ctx = seed, num_ctx
        self.name = f"Ollama {model}"

    def chat(self, prompt: str) -> str:
        """The text of the model's reply to one user message (raw, not yet parsed)."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "options": {"seed": self.seed, "temperature": 0, "num_ctx": self.num_ctx},
            "stream": False,
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace").strip()
            raise JudgeUnavailable(
                f"Ollama at {self.url} answered HTTP {exc.code}: {detail or exc.reason} "
                f"(is the model pulled? ollama pull {self.model})"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise JudgeUnavailable(
                    f"Ollama at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            raise JudgeUnavailable(
                f"no Ollama server answers at {self.url} ({reason}): start one with "
                f"`ollama serve` and `ollama pull {self.model}`"
            ) from None
        try:
            return json.loads(raw)["message"]["content"]
        except (ValueError, KeyError, TypeError):
            shown = raw[:40].decode("utf-8", "replace")
            raise _Malformed(f"malformed reply from Ollama: {shown!r}") from None

    def __call__(self, entry: Entry, response: str) -> Score:
        if not response.strip():
            return Score(0.0, "empty response")
        try:
            reply = self.chat(judge_prompt(entry, response))
        except _Malformed as exc:
            return Score(None, str(exc))
        if not isinstance(reply, str):
            return Score(None, f"malformed reply from Ollama: content {reply!r}")
        return parse_score(reply)


class _Malformed(Exception):
    """A reply that came back but is not the JSON Ollama sends."""


class LocalJudge:
    """The judging prompt answered by a local base (`dlnotes.base.Base`), read as a number.

    The prompt goes through the tokenizer's chat template (``encode_chat``) when it has
    one: an instruction-tuned model such as SmolLM2-135M-Instruct expects it.

    A 135M model asked for "the integer only" rarely writes one: SmolLM2-135M repeats
    the reference answer instead. So by default (``constrained=True``) the answer is
    read from the model's next-token scores with only digits allowed (and, after the
    first digit, the end token): at each of at most three steps the most likely allowed
    token, giving a number in 0..100 every time. With ``constrained=False`` the reply
    is generated freely (`dlnotes.generate`) and parsed like Ollama's. Either way the
    judge is weak: 135M parameters cannot check facts or reasoning.
    """

    def __init__(
        self,
        base: Any,
        *,
        constrained: bool = True,
        max_new_tokens: int = 8,
        chat: bool | None = None,
    ) -> None:
        self.base = base
        self.constrained = constrained
        self.max_new_tokens = max_new_tokens
        self.chat = hasattr(base.tokenizer, "encode_chat") if chat is None else chat
        self.name = f"local judge ({base.name})"
        self._digits: list[int] | None = None

    def _prompt_ids(self, prompt: str) -> list[int]:
        tok = self.base.tokenizer
        if self.chat:
            return list(tok.encode_chat([{"role": "user", "content": prompt}]))
        return list(tok.encode(prompt))

    def _checked_ids(self, prompt: str, room: int) -> list[int]:
        ids = self._prompt_ids(prompt)
        context = self.base.model.cfg.context_length
        if len(ids) + room > context:
            raise InputError(
                f"the judging prompt has {len(ids):,} tokens; with {room} for the reply "
                f"that is more than the judge's context of {context:,}"
            )
        return ids

    def digit_ids(self) -> list[int]:
        """The token ids of "0".."9" (each must be one token)."""
        if self._digits is None:
            ids = [self.base.tokenizer.encode(str(d)) for d in range(10)]
            if any(len(t) != 1 for t in ids):
                raise InputError("the judge's tokenizer does not have one token per digit")
            self._digits = [t[0] for t in ids]
        return self._digits

    def reply(self, prompt: str) -> str:
        """The model's greedy free-form reply to `prompt` (up to its end token)."""
        import torch

        model, ids = self.base.model, self._checked_ids(prompt, 1)
        idx = torch.tensor([ids], device=device_of(model))
        (text,) = continuations(
            model, self.base.tokenizer, idx, self.max_new_tokens, self.base.eos_id
        )
        return text

    def number(self, prompt: str) -> int:
        """The most likely answer to `prompt` that is a number in 0..100, digit by digit."""
        import torch

        model, eos = self.base.model, self.base.eos_id
        digits = self.digit_ids()
        ids = self._checked_ids(prompt, 3)
        device = device_of(model)
        with eval_mode(model), torch.inference_mode():
            cache = model.new_cache(1, len(ids) + 3)
            logits = model(torch.tensor([ids], device=device), cache, last_only=True)[0, -1]
            text = ""
            while True:
                allowed = [0] if text == "10" else range(10)  # "10" may become "100"
                candidates = [digits[d] for d in allowed] + ([eos] if text else [])
                best = max(candidates, key=lambda t: logits[t].item())
                if best == eos:
                    break
                text += str(digits.index(best))
                # "0", "100" and any two digits but "10" are complete answers.
                if text == "0" or len(text) == 3 or (len(text) == 2 and text != "10"):
                    break
                step = torch.tensor([[best]], device=device)
                logits = model(step, cache, last_only=True)[0, -1]
        return int(text)

    def __call__(self, entry: Entry, response: str) -> Score:
        if not response.strip():
            return Score(0.0, "empty response")
        prompt = judge_prompt(entry, response)
        try:
            if self.constrained:
                return Score(float(self.number(prompt)))
            return parse_score(self.reply(prompt))
        except InputError as exc:
            return Score(None, str(exc))


# --- running a scorer over saved responses ---------------------------------------------


def _load_saved(path: Path, name: str) -> list[dict | None]:
    saved = read_json(path, " ({exc}): the saved scores are lost; delete the file")
    if not isinstance(saved, dict) or saved.get("scorer") != name:
        raise DataError(f"{path} holds scores of another scorer than {name!r}; delete it")
    items = saved.get("items")
    return items if isinstance(items, list) else []


def score_responses(
    entries: Sequence[Mapping[str, str]],
    scorer: Scorer,
    *,
    key: str = RESPONSE_KEY,
    path: str | Path | None = None,
    progress: bool = False,
) -> list[Score]:
    """``scorer(entry, entry[key])`` for every entry.

    With `path`, scores are saved there (JSON, atomically) after each one, and a rerun
    reuses those whose response is unchanged: a judge that stops half-way (server
    down) loses nothing. An entry without a response is a `DataError` up front.
    """
    from tqdm.auto import tqdm

    entries = validate_entries([dict(e) for e in entries])
    for i, entry in enumerate(entries):
        if not isinstance(entry.get(key), str):
            raise DataError(f"entry {i} has no response under {key!r}: generate responses first")
    path = None if path is None else Path(path)
    saved: list[dict | None] = (
        _load_saved(path, scorer.name) if path is not None and path.is_file() else []
    )
    saved = (saved + [None] * len(entries))[: len(entries)]
    scores: list[Score] = []
    quiet = {} if progress else {"disable": True}
    for i, entry in enumerate(tqdm(entries, desc=scorer.name, unit="response", **quiet)):
        response = entry[key]
        old = saved[i]
        if isinstance(old, dict) and old.get("response") == response:
            scores.append(Score(old.get("score"), old.get("note", "")))
            continue
        score = scorer(entry, response)
        scores.append(score)
        if path is not None:
            saved[i] = {"response": response, "score": score.value, "note": score.note}
            write_json(path, {"scorer": scorer.name, "items": saved})
    return scores


def mean_score(scores: Sequence[Score]) -> float:
    """The mean of the scored results (NaN if none was scored)."""
    values = [s.value for s in scores if s.value is not None]
    return statistics.fmean(values) if values else math.nan


def scores_table(results: Mapping[str, Sequence[Score]]) -> str:
    """A text table: per scorer, how many were scored, mean, median, min and max (0-100)."""
    header = f"{'scorer':<34} {'scored':>7} {'mean':>6} {'median':>6} {'min':>5} {'max':>5}"
    lines = [header, "-" * len(header)]
    for name, scores in results.items():
        values = [s.value for s in scores if s.value is not None]
        count = f"{len(values)}/{len(scores)}"
        if values:
            stats = (
                f"{statistics.fmean(values):6.1f} {statistics.median(values):6.1f} "
                f"{min(values):5.0f} {max(values):5.0f}"
            )
        else:
            stats = f"{'-':>6} {'-':>6} {'-':>5} {'-':>5}"
        lines.append(f"{name:<34} {count:>7} {stats}")
    return "\n".join(lines)


def plot_score_histograms(results: Mapping[str, Sequence[Score]], bins: int = 10) -> Any:
    """One histogram per scorer of its scores over 0..100; returns the figure."""
    import matplotlib.pyplot as plt

    if not results:
        raise InputError("no scores to plot")
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 2.8), squeeze=False)
    for ax, (name, scores) in zip(axes[0], results.items(), strict=True):
        values = [s.value for s in scores if s.value is not None]
        ax.hist(values, bins=bins, range=(0, 100), edgecolor="white")
        unscored = len(scores) - len(values)
        ax.set_title(name + (f"\n({unscored} unscored)" if unscored else ""), fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("responses")
    fig.tight_layout()
    return fig
