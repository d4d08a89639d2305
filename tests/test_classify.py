"""Tests for dlnotes.classify: the SMS data as the book reads it, padding, freezing,
last-token logits, the prefix cache against the plain loop, learning, files, errors."""

from __future__ import annotations

import collections
import copy
import itertools
import random

import pytest
import torch
from torch import nn

from dlnotes import classify as C
from dlnotes.errors import CheckpointError, DataError, InputError
from dlnotes.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    from dlnotes.gpt2_tokenizer import GPT2Tokenizer

    try:
        return GPT2Tokenizer.pretrained()
    except DataError as exc:
        pytest.skip(f"GPT-2 tokenizer files not available offline: {exc}")


@pytest.fixture(scope="module")
def sms():
    from dlnotes.data import fetch

    try:
        return fetch("sms-spam")
    except DataError as exc:
        pytest.skip(f"data not available offline: {exc}")


class _Base:
    """What `classify` and save/load need of a `dlnotes.base.Base`."""

    def __init__(self, name, model, tokenizer, pad_id=50256):
        self.name, self.model, self.tokenizer = name, model, tokenizer
        self.pad_id = self.eos_id = pad_id
        self.context_length = model.cfg.context_length


def tiny_classifier(seed=0, n_layers=3, drop_rate=0.0, context=32, blocks=1, vocab=50257):
    torch.manual_seed(seed)
    cfg = GPTConfig.tiny(
        n_layers=n_layers, drop_rate=drop_rate, context_length=context, vocab_size=vocab
    )
    model = GPT(cfg)
    C.add_classification_head(model, 2)
    C.set_trainable(model, blocks)
    return model


SPAM_WORDS = "free win cash prize claim urgent txt mobile award winner".split()
HAM_WORDS = "lunch tomorrow home love sorry later mum dinner sleep class".split()


def toy_messages(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = SPAM_WORDS if label else HAM_WORDS
        out.append(C.Message(" ".join(rng.choices(words, k=rng.randint(2, 6))), label))
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------- data


def test_read_sms_matches_pandas_counts(sms):
    msgs = C.read_sms(sms)
    counts = collections.Counter(m.label for m in msgs)
    assert len(msgs) == 5_572 and counts == {0: 4_825, 1: 747}  # the book's pandas numbers
    raw = C.read_sms(sms, quoting=False)
    assert len(raw) == 5_574 == len(sms.read_text(encoding="utf-8").splitlines())
    assert collections.Counter(m.label for m in raw) == {0: 4_827, 1: 747}
    # The one quoted text that swallows the next two lines:
    merged = [m.text for m in msgs if "\n" in m.text]
    assert (
        len(merged) == 1 and merged[0].startswith("Keep ur problems") and merged[0].count("\n") == 2
    )
    # A closing quote inside a text: the quotes go, the text after it stays.
    assert any(m.text.startswith("Happy valentines day I know its early") for m in msgs)


def test_balance_and_split_sizes_from_the_real_file(sms, tokenizer):
    balanced = C.balance_classes(C.read_sms(sms), seed=123)
    assert len(balanced) == 1_494
    assert collections.Counter(m.label for m in balanced) == {0: 747, 1: 747}
    assert [m.label for m in balanced] == [0] * 747 + [1] * 747  # ham subset, then spam
    train, val, test = C.split_messages(balanced, 0.7, 0.1, seed=123)
    assert (len(train), len(val), len(test)) == (1_045, 149, 300)
    # A permutation of the balanced rows (the data has duplicate texts, so compare counts).
    assert collections.Counter(train + val + test) == collections.Counter(balanced)
    assert train == C.sms_splits(sms)[0]
    # The book's pandas split: its longest training message has 120 GPT-2 tokens, and
    # its train.csv starts with these two rows.
    ds = C.ClassificationDataset(train, tokenizer)
    assert ds.max_length == 120
    assert train[0] == C.Message("Dude how do you like the buff wind.", 0)
    loaders = C.make_loaders(
        ds,
        C.ClassificationDataset(val, tokenizer, max_length=120),
        C.ClassificationDataset(test, tokenizer, max_length=120),
    )
    assert [len(x) for x in loaders] == [130, 19, 38]
    # The book's accuracies before finetuning, 46.25 / 45.00 / 48.75 % on 10 batches of each
    # loader (seed 123), are the spam share of exactly those 80 examples: its untrained
    # GPT-2 said "spam" to every message. The same rows, order and shuffle give them here.
    torch.manual_seed(123)
    shares = [
        torch.cat([y for _, y in itertools.islice(loader, 10)]).float().mean().item()
        for loader in loaders
    ]
    assert [round(x * 100, 2) for x in shares] == [46.25, 45.00, 48.75]


def test_balance_is_pandas_sample(monkeypatch):
    import numpy as np

    msgs = [C.Message(f"m{i}", int(i % 3 == 0)) for i in range(30)]  # 10 spam, 20 ham
    ham = [m for m in msgs if m.label == 0]
    expected = [ham[i] for i in np.random.RandomState(7).choice(20, size=10, replace=False)]
    assert C.balance_classes(msgs, seed=7)[:10] == expected


def test_csv_round_trip_and_errors(tmp_path):
    msgs = [C.Message('say "hi",\nthen\tgo', 1), C.Message("plain", 0)]
    path = C.save_csv(tmp_path / "sub" / "train.csv", msgs)
    assert C.load_csv(path) == msgs
    assert path.read_text(encoding="utf-8").splitlines()[0] == "Label,Text"
    assert [p.name for p in path.parent.iterdir()] == ["train.csv"]  # no temporary left
    (tmp_path / "named.csv").write_text("Text,Label\nhello,spam\nbye,ham\n", encoding="utf-8")
    assert C.load_csv(tmp_path / "named.csv") == [C.Message("hello", 1), C.Message("bye", 0)]
    (tmp_path / "nocol.csv").write_text("Label,Message\n0,hi\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column 'Text'"):
        C.load_csv(tmp_path / "nocol.csv")
    (tmp_path / "badlabel.csv").write_text("Label,Text\n0,hi\n7,yo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3: unknown label '7'"):
        C.load_csv(tmp_path / "badlabel.csv")
    (tmp_path / "short.csv").write_text("Label,Text\n0\n", encoding="utf-8")
    with pytest.raises(DataError, match="fewer fields"):
        C.load_csv(tmp_path / "short.csv")
    (tmp_path / "bin.csv").write_bytes(b"Label,Text\n0,\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        C.load_csv(tmp_path / "bin.csv")
    with pytest.raises(DataError, match="no CSV file"):
        C.load_csv(tmp_path / "missing.csv")


def test_read_sms_errors(tmp_path):
    (tmp_path / "bad").write_text("ham\thello\neggs\tbacon\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: unknown label 'eggs'"):
        C.read_sms(tmp_path / "bad")
    (tmp_path / "fields").write_text("ham\thello\tthere\n", encoding="utf-8")
    with pytest.raises(DataError, match="3 fields"):
        C.read_sms(tmp_path / "fields")
    (tmp_path / "empty").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no messages"):
        C.read_sms(tmp_path / "empty")


# --------------------------------------------------------------------------- dataset


def test_padding_and_truncation_lengths(tokenizer):
    msgs = [C.Message("hello", 0), C.Message("one two three four five six", 1)]
    n = [len(tokenizer.encode(m.text)) for m in msgs]
    ds = C.ClassificationDataset(msgs, tokenizer, pad_id=50256)
    assert ds.max_length == max(n) == 6
    ids, label = ds[0]
    assert ids.shape == (6,) and label.item() == 0 and label.dtype == torch.long
    assert ids[: n[0]].tolist() == tokenizer.encode("hello") and (ids[n[0] :] == 50256).all()
    with pytest.warns(UserWarning, match="truncated 1 of 2 messages longer than 4"):
        short = C.ClassificationDataset(msgs, tokenizer, max_length=4)
    assert short.truncated == 1 and short[1][0].tolist() == tokenizer.encode(msgs[1].text)[:4]
    # By default the length is capped at the context, and truncation is announced.
    with pytest.warns(UserWarning, match="truncated 1 of 2"):
        capped = C.ClassificationDataset(msgs, tokenizer, context_length=3)
    assert capped.max_length == 3 and capped.ids.shape == (2, 3)
    with pytest.raises(InputError, match="longer than the model's context 3"):
        C.ClassificationDataset(msgs, tokenizer, max_length=5, context_length=3)


def test_empty_message_and_loader_errors(tokenizer):
    with pytest.raises(InputError, match="message 1 is empty"):
        C.ClassificationDataset([C.Message("hi", 0), C.Message("  ", 1)], tokenizer)
    with pytest.raises(InputError, match="at least one"):
        C.ClassificationDataset([], tokenizer)
    ds = C.ClassificationDataset([C.Message("hi", 0)] * 3, tokenizer)
    with pytest.raises(InputError, match="fewer than batch_size=8"):
        C.make_loader(ds, 8, train=True)
    with pytest.raises(InputError, match="batch_size"):
        C.make_loader(ds, 0)


# --------------------------------------------------------------------------- model


def test_head_shape_and_trainable_count_formula():
    model = tiny_classifier(n_layers=3, blocks=1)
    D, V = model.cfg.emb_dim, model.cfg.vocab_size
    assert model.lm_head.out_features == 2 and model.lm_head.bias is not None
    out = model(torch.randint(0, V, (4, 10)))
    assert out.shape == (4, 10, 2)
    # One block: two norms (2D each), qkv D·3D (no bias), out_proj D·D + D,
    # MLP D·4D + 4D and 4D·D + D. Then the final norm (2D) and the head (2D + 2).
    block = 4 * D + 3 * D * D + D * D + D + 8 * D * D + 5 * D
    assert C.count_trainable(model) == block + 2 * D + 2 * D + 2
    assert C.frozen_prefix(model) == 2
    assert C.set_trainable(model, 2) == 2 * block + 4 * D + 2 and C.frozen_prefix(model) == 1
    total = sum(p.numel() for p in model.parameters())
    assert C.set_trainable(model, "all") == total and C.frozen_prefix(model) == 0
    assert C.set_trainable(model, 0) == 4 * D + 2 and C.frozen_prefix(model) == 3
    for bad in (4, -1, "some", 1.5):
        with pytest.raises(InputError):
            C.set_trainable(model, bad)


def test_gpt2_124m_trainable_count():
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2("124M"))
    C.add_classification_head(model, 2)
    D = 768
    block = 12 * D * D + 13 * D  # qkv with bias: 3D² + 3D
    assert C.set_trainable(model, 1) == block + 2 * D + 2 * D + 2 == 7_090_946


def test_head_swap_unties_the_embedding():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(tie_weights=True))
    before = model.wte.weight.detach().clone()
    C.add_classification_head(model, 3)
    assert model.lm_head.weight.shape == (3, model.cfg.emb_dim)
    assert torch.equal(model.wte.weight, before)
    with pytest.raises(InputError):
        C.add_classification_head(model, 1)


def test_last_token_logits_equal_the_full_forward():
    model = tiny_classifier().eval()
    ids = torch.randint(0, 50257, (3, 12))
    with torch.no_grad():
        full = model(ids)
        assert torch.equal(C.class_logits(model, ids), full[:, -1, :])
        assert torch.equal(C.class_logits(model, ids, position=0), full[:, 0, :])
        # Under the causal mask the last position is the only one that sees every token.
        changed = ids.clone()
        changed[:, 0] = (changed[:, 0] + 1) % 50257
        moved = (model(changed) - full).abs().amax(dim=(0, 2))
    assert (moved > 0).all()
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50257
    with torch.no_grad():
        moved = (model(changed) - full).abs().amax(dim=(0, 2))
    assert (moved[:-1] == 0).all() and moved[-1] > 0


def test_prefix_cache_features_are_the_bottom_of_the_forward():
    model = tiny_classifier(n_layers=3, blocks=1).eval()
    cache = C.PrefixCache(model)
    assert cache.k == 2
    ids = torch.randint(0, 50257, (5, 9))
    with torch.no_grad():
        x = model.embed(ids)
        for block in model.h[:2]:
            x = block(x)
        assert torch.allclose(cache.features(ids), x, atol=1e-6)
        assert torch.allclose(cache.top(cache.features(ids)), model(ids), atol=1e-5)
    with pytest.raises(InputError, match="k=3"):
        C.PrefixCache(model, k=3)
    C.set_trainable(model, "all")
    with pytest.raises(InputError, match="nothing to cache"):
        C.PrefixCache(model)


# --------------------------------------------------------------------------- training


def _toy_loaders(tokenizer, n_train=64, n_val=24, batch_size=8):
    train = C.ClassificationDataset(toy_messages(n_train, 1), tokenizer, max_length=8)
    val = C.ClassificationDataset(toy_messages(n_val, 2), tokenizer, max_length=8)
    assert train.truncated == val.truncated == 0
    return C.make_loader(train, batch_size, train=True), C.make_loader(val, batch_size)


def test_cached_prefix_training_equals_the_plain_loop(tokenizer):
    """Same seed: the same losses at every step, the same evaluations and weights, with
    dropout 0.1 in the trained top (the masks must be drawn identically)."""
    runs = []
    for use_cache in (False, True):
        model = tiny_classifier(seed=3, n_layers=3, drop_rate=0.1, blocks=1)
        torch.manual_seed(11)
        train_loader, val_loader = _toy_loaders(tokenizer)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        hist = C.train_classifier(
            model,
            train_loader,
            val_loader,
            opt,
            epochs=2,
            eval_every=3,
            eval_batches=2,
            cache=use_cache,
            progress=False,
        )
        runs.append((hist, model))
    (plain, m1), (cached, m2) = runs
    assert len(plain.step_loss) == 16 and cached.cache_seconds > 0 == plain.cache_seconds
    assert torch.allclose(torch.tensor(plain.step_loss), torch.tensor(cached.step_loss), atol=1e-6)
    assert len(set(plain.step_loss)) > 8  # dropout and learning move the losses
    for name in ("train_loss", "val_loss"):
        assert getattr(plain, name) == pytest.approx(getattr(cached, name), abs=1e-6)
    assert plain.train_acc == cached.train_acc and plain.val_acc == cached.val_acc
    assert plain.examples_seen == cached.examples_seen == [8, 32, 56, 80, 104, 128]
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    # Dropout really ran in the top: the same run without it gives other losses.
    model = tiny_classifier(seed=3, n_layers=3, drop_rate=0.0, blocks=1)
    torch.manual_seed(11)
    train_loader, val_loader = _toy_loaders(tokenizer)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    no_drop = C.train_classifier(model, train_loader, val_loader, opt, epochs=1, progress=False)
    assert no_drop.step_loss[1:8] != pytest.approx(plain.step_loss[1:8], abs=1e-4)


def test_history_bookkeeping(tokenizer):
    model = tiny_classifier(n_layers=2)
    torch.manual_seed(0)
    train_loader, val_loader = _toy_loaders(tokenizer, n_train=40)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    hist = C.train_classifier(
        model, train_loader, val_loader, opt, epochs=2, eval_every=2, progress=False
    )
    assert hist.eval_steps == [1, 3, 5, 7, 9] and hist.examples_seen == [8, 24, 40, 56, 72]
    assert hist.epoch_examples == [40, 80] and len(hist.train_acc) == len(hist.epoch_seconds) == 2
    assert len(hist.step_loss) == len(hist.lr) == 10
    short = C.train_classifier(
        model, train_loader, val_loader, opt, epochs=3, max_steps=3, progress=False
    )
    assert len(short.step_loss) == 3 and len(short.train_acc) == 1
    with pytest.raises(InputError, match="max_steps"):
        C.train_classifier(model, train_loader, val_loader, opt, max_steps=0, progress=False)
    C.set_trainable(model, "all")
    with pytest.raises(InputError, match="nothing to cache"):
        C.train_classifier(model, train_loader, val_loader, opt, cache=True, progress=False)
    C.set_trainable(model, "all")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(InputError, match="no trainable"):
        C.train_classifier(model, train_loader, val_loader, opt, progress=False)


def test_tiny_model_learns_separable_toy_spam(tokenizer):
    model = tiny_classifier(seed=123, n_layers=2, blocks="all", context=16)
    torch.manual_seed(123)
    train_loader, val_loader = _toy_loaders(tokenizer, n_train=160, n_val=80)
    before = C.loader_accuracy(model, val_loader)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    C.train_classifier(model, train_loader, val_loader, opt, epochs=4, progress=False)
    after = C.loader_accuracy(model, val_loader)
    assert after >= 0.95 > before
    assert C.loader_class_loss(model, val_loader) < 0.3


# --------------------------------------------------------------------------- inference, files


def test_classify_and_save_load_round_trip(tmp_path, tokenizer):
    model = tiny_classifier(seed=5, n_layers=2, context=16).eval()
    base = _Base("tiny", model, tokenizer)
    texts = ["free cash prize", "see you at dinner", "win win win"]
    labels = [C.classify(t, base, max_length=8) for t in texts]
    assert set(labels) <= set(C.LABELS)
    ids = tokenizer.encode(texts[0])
    ids += [50256] * (8 - len(ids))
    with torch.no_grad():
        want = model(torch.tensor([ids]))[0, -1].argmax().item()
    assert labels[0] == C.LABELS[want]
    path = C.save_classifier(tmp_path / "clf.pt", model, base, max_length=8)
    other = tiny_classifier(seed=6, n_layers=2, context=16)
    other.lm_head = nn.Linear(other.cfg.emb_dim, other.cfg.vocab_size, bias=False)
    fresh = _Base("tiny", other, tokenizer)
    info = C.load_classifier(path, fresh)
    assert info == {"labels": ["ham", "spam"], "max_length": 8, "position": -1}
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [C.classify(t, fresh, max_length=8) for t in texts] == labels


def test_classify_bad_inputs(tokenizer):
    model = tiny_classifier(n_layers=2, context=16).eval()
    base = _Base("tiny", model, tokenizer)
    for bad in ("", "   ", None):
        with pytest.raises(InputError, match="empty"):
            C.classify(bad, base)
    n = len(tokenizer.encode("spam " * 40))
    with pytest.warns(UserWarning, match=f"truncated the text from {n} to 16 tokens"):
        assert C.classify("spam " * 40, base, max_length=120) in C.LABELS
    with pytest.raises(InputError, match="3 labels"):
        C.classify("hi", base, labels=("a", "b", "c"))


def test_checkpoint_of_another_base_and_corrupt_files(tmp_path, tokenizer):
    model = tiny_classifier(n_layers=2, context=16)
    path = C.save_classifier(tmp_path / "clf.pt", model, _Base("tiny", model, tokenizer))
    target = copy.deepcopy(model)
    head = target.lm_head
    with pytest.raises(CheckpointError, match="base 'tiny', not 'gpt2-124M'"):
        C.load_classifier(path, _Base("gpt2-124M", target, tokenizer))
    # Same name but another shape: refused, and the model keeps its own head.
    bigger = tiny_classifier(n_layers=3, context=16)
    head = bigger.lm_head
    with pytest.raises(CheckpointError, match="does not fit"):
        C.load_classifier(path, _Base("tiny", bigger, tokenizer))
    assert bigger.lm_head is head
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a classifier checkpoint"):
        C.load_classifier(tmp_path / "other.pt", _Base("tiny", target, tokenizer))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        C.load_classifier(tmp_path / "junk.pt", _Base("tiny", target, tokenizer))
    with pytest.raises(CheckpointError, match="no classifier checkpoint"):
        C.load_classifier(tmp_path / "missing.pt", _Base("tiny", target, tokenizer))
    with pytest.raises(InputError, match="3 labels"):
        C.save_classifier(tmp_path / "x.pt", model, _Base("tiny", model, tokenizer), labels="abc")
    assert not (tmp_path / "x.pt").exists()


def test_set_dropout():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(drop_rate=0.1))
    C.set_dropout(model, 0.0)
    assert model.cfg.drop_rate == 0.0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, nn.Dropout))
    assert all(b.attn.dropout == 0.0 for b in model.h)
    model.train()
    ids = torch.randint(0, 50257, (2, 8))
    assert torch.equal(model(ids), model(ids))
    with pytest.raises(InputError):
        C.set_dropout(model, 1.0)
