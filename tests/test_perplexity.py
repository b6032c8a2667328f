"""Perplexity: pure definitions, and the model layer against an independent straightforward loop."""

from __future__ import annotations

import math

import pytest
import torch

from eval_core.errors import EvalCoreError
from eval_core.model_loading import open_model
from eval_core.nll_scoring import (
    PerplexityConfig,
    _batches,
    _split_head,
    completion_docs,
    score_completions,
    score_texts,
    text_docs,
)
from eval_core.perplexity import (
    NllStats,
    bits_per_byte,
    count_words,
    perplexity_per_token,
    summarize,
    total,
    word_perplexity,
)

TEXTS = [
    "The capital of France is Paris.",
    "Water boils at one hundred degrees Celsius at sea level, and freezes at zero.",
    "A",
    "Customer: where is my order? Agent: it ships in three days, and you will get a tracking link by email.",
    "len returns how many items a list holds; a list in Python holds items in order. " * 3,
]


def reference_nll(model, tokenizer, text: str, window: int | None = None) -> tuple[float, int]:
    """Independent loop: one text at a time, [EOS] + ids, summing -log p of each next token.

    Texts longer than `window` (default: the model's context) are cut into consecutive runs of
    `window` target tokens, each predicted from the `window` tokens before its last target, as
    lm-evaluation-harness's rolling windows do (the first target of a run has one token of context).
    """
    ids = [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    window = window or model.config.n_positions
    nll, n = 0.0, 0
    for t0 in range(1, len(ids), window):
        t1 = min(len(ids), t0 + window)
        start = max(0, t1 - 1 - window)
        chunk = ids[start:t1]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([chunk[:-1]])).logits[0].double(), -1)
        for target in range(t0, t1):
            j = target - start
            nll -= logp[j - 1, chunk[j]].item()
            n += 1
    return nll, n


@pytest.fixture
def lm(tiny_gpt2):
    folder, _ = tiny_gpt2
    with open_model(folder) as loaded:
        yield loaded


def test_pure_definitions():
    s = NllStats(nll_sum=6 * math.log(2), token_count=3, byte_count=6, word_count=2)
    assert perplexity_per_token(s) == pytest.approx(4.0)  # exp(6 ln2 / 3)
    assert bits_per_byte(s) == pytest.approx(1.0)  # 6 ln2 / 6 / ln2
    assert word_perplexity(s) == pytest.approx(8.0)  # exp(6 ln2 / 2)
    assert count_words("a b\n c") == 3
    with pytest.raises(EvalCoreError, match="no tokens"):
        perplexity_per_token(NllStats(0.0, 0, 0, 0))
    # token-weighted, not a mean of per-document perplexities
    a, b = NllStats(math.log(2), 1, 1, 1), NllStats(3 * math.log(8), 3, 3, 1)
    assert perplexity_per_token(total([a, b])) == pytest.approx(math.exp(10 * math.log(2) / 4))


def test_equals_the_independent_loop(lm):
    stats = score_texts(lm.model, lm.tokenizer, TEXTS, PerplexityConfig(batch_size=4))
    for text, s in zip(TEXTS, stats, strict=True):
        nll, n = reference_nll(lm.model, lm.tokenizer, text)
        assert s.token_count == n
        assert s.nll_sum == pytest.approx(nll, rel=1e-6)
        assert s.byte_count == len(text.encode()) and s.word_count == count_words(text)


@pytest.mark.parametrize("batch_size", [1, 4, 16])
@pytest.mark.parametrize("side", ["right", "left"])
def test_invariant_to_batch_size_and_padding_side(lm, batch_size, side):
    base = total(score_texts(lm.model, lm.tokenizer, TEXTS, PerplexityConfig(batch_size=1)))
    got = total(score_texts(lm.model, lm.tokenizer, TEXTS, PerplexityConfig(batch_size=batch_size, padding_side=side)))
    assert got.token_count == base.token_count
    assert perplexity_per_token(got) == pytest.approx(perplexity_per_token(base), rel=1e-5)


@pytest.mark.parametrize(("max_length", "stride"), [(16, 16), (16, 15), (16, 8), (16, 1), (9, 4), (64, None)])
def test_sliding_window_scores_every_token_exactly_once(lm, max_length, stride):
    long_text = " ".join(TEXTS)
    config = PerplexityConfig(max_length=max_length, stride=stride, batch_size=3)
    (s,) = score_texts(lm.model, lm.tokenizer, [long_text], config)
    n_ids = len(text_docs(lm.tokenizer, [long_text], config)[0].ids)
    assert s.token_count == n_ids - 1
    if stride in (max_length, None):
        nll, n = reference_nll(lm.model, lm.tokenizer, long_text, window=max_length)
        assert (s.token_count, s.nll_sum) == (n, pytest.approx(nll, rel=1e-6))


def test_more_context_changes_the_value_but_not_the_count(lm):
    long_text = " ".join(TEXTS)
    a = score_texts(lm.model, lm.tokenizer, [long_text], PerplexityConfig(max_length=16, stride=16))[0]
    b = score_texts(lm.model, lm.tokenizer, [long_text], PerplexityConfig(max_length=16, stride=4))[0]
    assert a.token_count == b.token_count and a.nll_sum != b.nll_sum


def test_completion_only_scores_reference_tokens(lm):
    prompts, refs = ["Where is my order?", "Capital of France?"], ["It ships tomorrow.", "Paris"]
    cfg = PerplexityConfig(use_chat_template=False)
    docs = completion_docs(lm.tokenizer, prompts, refs, cfg)
    stats = score_completions(lm.model, lm.tokenizer, prompts, refs, cfg)
    for doc, ref, s in zip(docs, refs, stats, strict=True):
        assert s.token_count == len(lm.tokenizer(" " + ref, add_special_tokens=False)["input_ids"])
        assert s.token_count == len(doc.ids) - doc.first
        assert s.byte_count == len(ref.encode())
    # The same reference after a different prompt: same tokens scored, different likelihood.
    other = score_completions(lm.model, lm.tokenizer, ["Tell me a fact."], [refs[0]], cfg)[0]
    assert other.token_count == stats[0].token_count and other.nll_sum != stats[0].nll_sum
    # Equal to scoring prompt+reference and subtracting the prompt's part, done independently.
    ids = docs[0].ids
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].double(), -1)
    manual = -sum(logp[j - 1, ids[j]].item() for j in range(docs[0].first, len(ids)))
    assert stats[0].nll_sum == pytest.approx(manual, rel=1e-6)


def test_empty_texts_are_zero_tokens_and_an_all_empty_set_is_an_error(lm):
    stats = score_texts(lm.model, lm.tokenizer, ["", "Paris"])
    assert stats[0].token_count == 0 and stats[0].nll_sum == 0.0
    assert stats[1].token_count > 0
    with pytest.raises(EvalCoreError, match="undefined"):
        summarize(total(score_texts(lm.model, lm.tokenizer, ["", ""])))


def test_bad_window_settings(lm):
    for cfg in (PerplexityConfig(max_length=1), PerplexityConfig(max_length=16, stride=17), PerplexityConfig(max_length=10_000)):
        with pytest.raises(EvalCoreError):
            score_texts(lm.model, lm.tokenizer, ["x y"], cfg)


def test_config_hash_ignores_batch_and_padding_only():
    a = PerplexityConfig()
    assert a.config_hash() == PerplexityConfig(batch_size=1, padding_side="left", token_budget=64).config_hash()
    assert a.config_hash() != PerplexityConfig(stride=8).config_hash()
    assert a.config_hash() != PerplexityConfig(bos_policy="none").config_hash()


@pytest.mark.parametrize("token_budget", [1, 24, 100, 100_000])
def test_invariant_to_token_budget(lm, token_budget):
    base = score_texts(lm.model, lm.tokenizer, TEXTS, PerplexityConfig(batch_size=1))
    got = score_texts(lm.model, lm.tokenizer, TEXTS, PerplexityConfig(batch_size=16, token_budget=token_budget))
    for a, b in zip(base, got, strict=True):
        assert a.token_count == b.token_count and b.nll_sum == pytest.approx(a.nll_sum, rel=1e-5)


def test_batches_respect_rows_and_position_budget():
    windows = [(i, [0] * n, 1) for i, n in enumerate([50, 40, 40, 10, 10, 10, 10, 3])]
    batches = _batches(windows, batch_size=3, token_budget=90)
    assert [w for b in batches for w in b] == windows  # order kept, nothing dropped or repeated
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(len(w[1]) for w in b) <= 90
    assert [len(b) for b in _batches(windows, batch_size=16, token_budget=1)] == [1] * len(windows)


class _ScaledLogits(torch.nn.Module):
    """A model whose logits are rescaled after the head, as Cohere and Granite do."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.base_model_prefix = "transformer"
        self.transformer = inner.transformer

    def get_output_embeddings(self):
        return self.inner.lm_head

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        out.logits = out.logits * 0.5
        return out


def test_scored_rows_head_is_used_only_when_it_equals_the_model(lm):
    assert _split_head(lm.model) is not None  # GPT-2: logits == lm_head(transformer(x))
    scaled = _ScaledLogits(lm.model)
    assert _split_head(scaled) is None
    # The fallback path computes the model's own logits: scores follow the rescaling.
    texts = TEXTS[:2]
    got = score_texts(scaled, lm.tokenizer, texts, PerplexityConfig(batch_size=2))
    ids = [[lm.tokenizer.eos_token_id] + lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    for row, s in zip(ids, got, strict=True):
        with torch.no_grad():
            logp = torch.log_softmax(0.5 * lm.model(torch.tensor([row])).logits[0].double(), -1)
        manual = -sum(logp[j - 1, row[j]].item() for j in range(1, len(row)))
        assert s.nll_sum == pytest.approx(manual, rel=1e-6)


def test_fused_gelu_only_while_scoring(lm, monkeypatch):
    from eval_core import nll_scoring

    acts = lambda: {type(m).__name__ for m in lm.model.modules() if "GELU" in type(m).__name__}  # noqa: E731
    assert acts() == {"NewGELUActivation"}
    seen = []
    real = nll_scoring._batches

    def spy(*args, **kwargs):
        seen.append(acts())
        return real(*args, **kwargs)

    monkeypatch.setattr(nll_scoring, "_batches", spy)
    score_texts(lm.model, lm.tokenizer, TEXTS[:2])
    assert seen == [{"GELUTanh"}]  # the fused kernel while scoring ...
    assert acts() == {"NewGELUActivation"}  # ... and the model's own modules afterwards
