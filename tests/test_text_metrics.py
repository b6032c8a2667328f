"""Text metrics against the reference libraries, value for value (==, never approximately).

Every expected value below is computed in the test by the library that defines the metric, called
the way its documentation shows: `sacrebleu.sentence_bleu` / `sentence_chrf` / `corpus_bleu` /
`corpus_chrf`, and a *fresh* `rouge_scorer.RougeScorer(..., use_stemmer=True)` (without the memoised
stemmer eval_core installs in its own scorers), given eval_core's Unicode-aware tokenizer (the default;
on ASCII text its tokens are rouge-score's own, which a property test below checks) or, for
`rouge_tokenizer="rouge-score"`, rouge-score's default tokenizer. Exact match has no reference library; its rows give
the expected value by hand from the normalisation documented in eval_core/text_metrics.py.
"""

from __future__ import annotations

import random
import string
import unicodedata

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from eval_core.errors import EvalCoreError
from eval_core.text_metrics import (
    ALL_METRICS,
    PARALLEL_MIN_PAIRS,
    ROUGE_METRICS,
    PairScores,
    TextMetricConfig,
    UnicodeRougeTokenizer,
    corpus_value,
    corpus_values_of_resamples,
    normalize_answer,
    score_pairs,
    signature,
)

# (id, prediction, reference): each row names the edge it covers.
CASES = [
    ("plain", "The cat sat on the mat.", "The cat is on the mat."),
    ("identical", "It ships in three days.", "It ships in three days."),
    ("punctuation", "Hello, world!!! ... ??? (yes) -- \"quoted\" 'x'", "Hello world (yes) quoted x"),
    ("tokenized-period", "the order ships today .", "The order ships today."),
    ("accents", "Café déjà vu, naïve façade!", "cafe deja vu naive facade"),
    ("accents-same", "Crème brûlée à la carte", "crème brûlée à la carte"),
    ("cjk", "東京は日本の首都です。", "日本の首都は東京です。"),
    ("cyrillic", "Привет, как дела? Всё хорошо.", "Привет! Как дела? Всё отлично."),
    ("emoji", "I love it 😀🎉 thanks", "I love it 😀 thanks a lot"),
    ("mixed-scripts", "Order #42: 東京 → Москва, ETA 3 días 🚚", "Order 42 to Москва in 3 días"),
    ("empty-prediction", "", "A reference that was not predicted at all."),
    ("empty-reference", "A prediction with nothing to match.", ""),
    ("both-empty", "", ""),
    ("whitespace-prediction", "   \t ", "Some words here."),
    ("whitespace-both", "  \t ", " \n "),
    ("multi-line", "Refunds take five days.\nShipping is free over $50.", "Refunds take 5 days.\nShipping is free above $50."),
    ("multi-line-prediction-only", "First we check the order.\nThen we refund it.", "We check the order, then refund it."),
    ("multi-line-reference-only", "Reset the router and try again.", "Reset the router.\nTry again after a minute."),
    ("reordered-lines", "the order shipped\nthe refund was issued", "the refund was issued\nthe order shipped"),
    ("blank-lines", "one two three\n\n\nfour five", "one two\n\nthree four five"),
    ("crlf", "line one\r\nline two", "line one\nline two"),
    ("stemming", "running runners ran quickly", "run runner running quick"),
    ("one-token", "yes", "yes"),
    ("one-token-differs", "no", "yes"),
    ("numbers", "It costs 3.50 USD, not 3,50.", "It costs 3.50 USD"),
    ("very-long", " ".join(f"w{i % 97} alpha{i % 13}" for i in range(200)),
     " ".join(f"w{(i * 7) % 97} alpha{i % 11}" for i in range(190))),
    ("very-long-chars", "x" * 3000, "x" * 2900 + "y" * 100),
]
IDS = [c[0] for c in CASES]
PREDICTIONS = [c[1] for c in CASES]
REFERENCES = [c[2] for c in CASES]


def fresh_rouge(types=ROUGE_METRICS, stemmer: bool = True, tokenizer: str = "unicode") -> rouge_scorer.RougeScorer:
    custom = UnicodeRougeTokenizer(stemmer) if tokenizer == "unicode" else None
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=stemmer, tokenizer=custom)
    assert type(getattr(scorer._tokenizer, "_stemmer", None)).__name__ != "_MemoStemmer"
    return scorer


@pytest.fixture(scope="module")
def scores() -> list[PairScores]:
    return score_pairs(PREDICTIONS, REFERENCES, workers=1)


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_per_example_values_equal_the_reference_libraries(scores, i):
    _, p, r = CASES[i]
    got = scores[i].values
    assert set(got) == set(ALL_METRICS)
    assert got["bleu"] == sacrebleu.sentence_bleu(p, [r]).score
    assert got["chrf"] == sacrebleu.sentence_chrf(p, [r]).score
    expected = fresh_rouge().score(r, p)  # rouge-score's argument order: (target, prediction)
    for m in ROUGE_METRICS:
        assert got[m] == expected[m].fmeasure, m
        assert scores[i].stats[m] == (expected[m].precision, expected[m].recall, expected[m].fmeasure), m


def test_rouge_score_tokenizer_option_equals_rouge_score_unchanged():
    got = score_pairs(PREDICTIONS, REFERENCES, TextMetricConfig(metrics=ROUGE_METRICS, rouge_tokenizer="rouge-score"), workers=1)
    scorer = fresh_rouge(tokenizer="rouge-score")
    for g, p, r in zip(got, PREDICTIONS, REFERENCES, strict=True):
        expected = scorer.score(r, p)
        assert {m: g.values[m] for m in ROUGE_METRICS} == {m: expected[m].fmeasure for m in ROUGE_METRICS}
    assert "tok:rouge-score-default" in signature("rougeL", TextMetricConfig(rouge_tokenizer="rouge-score"))
    assert TextMetricConfig().config_hash() != TextMetricConfig(rouge_tokenizer="rouge-score").config_hash()
    with pytest.raises(EvalCoreError, match="use one of unicode, rouge-score"):
        TextMetricConfig(rouge_tokenizer="whitespace")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60), st.booleans())
def test_unicode_rouge_tokens_are_rouge_scores_on_ascii_text(text, stemmer):
    from rouge_score.tokenizers import DefaultTokenizer

    assert UnicodeRougeTokenizer(stemmer).tokenize(text) == DefaultTokenizer(stemmer).tokenize(text)


def test_rouge_lsum_splits_on_newlines_only():
    # Values from rouge-score itself: a newline starts a sentence, so rougeLsum differs from rougeL
    # on multi-line text and equals it on one-line text.
    by_id = dict(zip(IDS, score_pairs(PREDICTIONS, REFERENCES, workers=1), strict=True))
    multi = by_id["reordered-lines"].values
    assert multi["rougeLsum"] == 1.0 and multi["rougeL"] < 1.0
    assert by_id["plain"].values["rougeLsum"] == by_id["plain"].values["rougeL"]


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("identical", 1.0),
        ("punctuation", 1.0),  # both normalise to "hello world yes quoted x"
        ("accents", 0.0),  # accents are kept: café != cafe
        ("accents-same", 1.0),  # case folded
        ("both-empty", 1.0),  # "" == ""
        ("whitespace-both", 1.0),  # whitespace collapses to ""
        ("empty-prediction", 0.0),
        ("one-token-differs", 0.0),
    ],
)
def test_exact_match_rows(scores, case_id, expected):
    i = IDS.index(case_id)
    assert scores[i].values["exact_match"] == expected
    assert scores[i].values["exact_match"] == float(normalize_answer(CASES[i][1]) == normalize_answer(CASES[i][2]))


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Cat!", "cat"),  # article and punctuation removed, case folded
        ("  a   b  ", "b"),  # "a" is an article; whitespace collapsed
        ("ﬁne", "fine"),  # NFKC: the ligature becomes two letters
        ("ПРИВЕТ, Мир", "привет мир"),  # Cyrillic case folding; the comma is punctuation
        ("你好。世界！", "你好 世界"),  # CJK punctuation (category P*) becomes a space
        ("Straße", "strasse"),  # casefold, not lower
        ("I ❤ it 😀", "i ❤ it 😀"),  # symbols are not punctuation: kept
        ("theatre anthem", "theatre anthem"),  # articles only as whole words
        ("", ""),
        (" \t\n ", ""),
    ],
)
def test_normalize_answer_table(text, normalised):
    assert normalize_answer(text) == normalised


def _documented_normalisation(text: str) -> str:
    """The normalisation as the module docstring states it, written the slow, obvious way."""
    import re

    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") or ch in string.punctuation else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(["The a an", "A-the. AN!"]))
def test_normalize_answer_is_the_documented_normalisation_and_idempotent(text):
    once = normalize_answer(text)
    assert once == _documented_normalisation(text)
    assert normalize_answer(once) == once


def test_corpus_values_equal_the_reference_libraries(scores):
    stats = {m: [s.stats[m] for s in scores] for m in ALL_METRICS}
    assert corpus_value("bleu", stats["bleu"]) == sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score
    assert corpus_value("chrf", stats["chrf"]) == sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score
    scorer = fresh_rouge()
    expected = [scorer.score(r, p) for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    for m in ROUGE_METRICS:
        assert corpus_value(m, stats[m]) == sum(e[m].fmeasure for e in expected) / len(expected), m
    em = [float(normalize_answer(p) == normalize_answer(r)) for p, r in zip(PREDICTIONS, REFERENCES, strict=True)]
    assert corpus_value("exact_match", stats["exact_match"]) == sum(em) / len(em)


def test_resampling_every_example_once_gives_the_corpus_value(scores):
    import numpy as np

    # Resampled BLEU/chrF are computed from float32 sums, as sacrebleu's own bootstrap does, so they
    # agree with the float64 corpus value to float32 precision, not to the last bit.
    identity = np.arange(len(scores))[None, :]
    for m in ALL_METRICS:
        stats = [s.stats[m] for s in scores]
        assert corpus_values_of_resamples(m, stats, identity)[0] == pytest.approx(corpus_value(m, stats), rel=1e-6), m


@pytest.mark.parametrize(
    "config",
    [
        TextMetricConfig(lowercase=True),
        TextMetricConfig(bleu_tokenize="intl"),
        TextMetricConfig(bleu_tokenize="char"),
        TextMetricConfig(bleu_tokenize="zh", lowercase=True),
        TextMetricConfig(bleu_tokenize="none"),
        TextMetricConfig(rouge_stemmer=False),
    ],
    ids=["lowercase", "tok-intl", "tok-char", "tok-zh-lowercase", "tok-none", "no-stemmer"],
)
def test_options_are_passed_to_the_libraries(config):
    got = score_pairs(PREDICTIONS, REFERENCES, config, workers=1)
    sentence_bleu = BLEU(tokenize=config.bleu_tokenize, lowercase=config.lowercase, effective_order=True)
    chrf = CHRF(lowercase=config.lowercase)
    scorer = fresh_rouge(stemmer=config.rouge_stemmer)
    for g, p, r in zip(got, PREDICTIONS, REFERENCES, strict=True):
        assert g.values["bleu"] == sentence_bleu.sentence_score(p, [r]).score
        assert g.values["chrf"] == chrf.sentence_score(p, [r]).score
        expected = scorer.score(r, p)
        assert all(g.values[m] == expected[m].fmeasure for m in ROUGE_METRICS)
    corpus_bleu = BLEU(tokenize=config.bleu_tokenize, lowercase=config.lowercase)
    assert corpus_value("bleu", [g.stats["bleu"] for g in got], config) == \
        corpus_bleu.corpus_score(PREDICTIONS, [REFERENCES]).score
    assert corpus_value("chrf", [g.stats["chrf"] for g in got], config) == \
        CHRF(lowercase=config.lowercase).corpus_score(PREDICTIONS, [REFERENCES]).score


def test_lowercase_changes_case_sensitive_scores():
    p, r = ["THE ORDER SHIPS TODAY"], ["the order ships today"]
    assert score_pairs(p, r, workers=1)[0].values["bleu"] < 100
    lowered = score_pairs(p, r, TextMetricConfig(lowercase=True), workers=1)[0].values["bleu"]
    assert lowered == BLEU(lowercase=True, effective_order=True).sentence_score(p[0], r).score == pytest.approx(100)


def test_a_subset_of_metrics_computes_only_those():
    config = TextMetricConfig(metrics=("rougeLsum", "exact_match"))
    (got,) = score_pairs(["a b\nc d"], ["a b\nc e"], config, workers=1)
    assert set(got.values) == set(got.stats) == {"rougeLsum", "exact_match"}
    assert got.values["rougeLsum"] == fresh_rouge(["rougeLsum"]).score("a b\nc e", "a b\nc d")["rougeLsum"].fmeasure


WORDS = ["order", "orders", "ship", "shipping", "the", "a", "refund", "refunded", "day", "days", "café", "東京", "!", ","]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join), max_size=3).map("\n".join),
    st.lists(st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join), max_size=3).map("\n".join),
)
def test_rouge_equals_a_fresh_scorer_on_any_lines(prediction, reference):
    # eval_core scores one-line pairs' rougeLsum as rougeL; this holds it to rouge-score on any mix.
    (got,) = score_pairs([prediction], [reference], TextMetricConfig(metrics=ROUGE_METRICS), workers=1)
    expected = fresh_rouge().score(reference, prediction)
    assert {m: got.values[m] for m in ROUGE_METRICS} == {m: expected[m].fmeasure for m in ROUGE_METRICS}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(WORDS[:10]), min_size=4, max_size=12).map(" ".join))
def test_a_text_scored_against_itself_is_perfect(text):
    # sacrebleu's BLEU of a perfect match can be 100.00000000000004 (exp/log round trip): approx here.
    (got,) = score_pairs([text], [text], workers=1)
    assert got.values["bleu"] == pytest.approx(100.0) and got.values["chrf"] == pytest.approx(100.0)
    assert got.values["exact_match"] == 1.0 and all(got.values[m] == 1.0 for m in ROUGE_METRICS)


def _many_pairs(n: int, seed: int = 3) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    refs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 15))) for _ in range(n)]
    preds = [" ".join(w for w in r.split() if rng.random() < 0.8) + ("\nextra line" if rng.random() < 0.2 else "")
             for r in refs]
    return preds, refs


def test_workers_give_the_same_values_in_the_same_order():
    preds, refs = _many_pairs(PARALLEL_MIN_PAIRS + 37)
    seen_serial: list[int] = []
    seen_parallel: list[int] = []
    serial = score_pairs(preds, refs, workers=1, progress=seen_serial.append)
    parallel = score_pairs(preds, refs, workers=2, progress=seen_parallel.append)
    assert parallel == serial  # PairScores are dataclasses: values and stats compared exactly, in order
    assert sum(seen_serial) == sum(seen_parallel) == len(preds)
    assert len(seen_parallel) > 1  # reported chunk by chunk, not once at the end


def test_progress_sums_to_n_for_small_inputs():
    seen: list[int] = []
    score_pairs(PREDICTIONS, REFERENCES, workers=1, progress=seen.append)
    assert sum(seen) == len(PREDICTIONS)
    seen.clear()
    assert score_pairs([], [], workers=1, progress=seen.append) == [] and sum(seen) == 0


def test_mismatched_lengths_name_both_counts():
    with pytest.raises(EvalCoreError, match="3 predictions but 2 references"):
        score_pairs(["a", "b", "c"], ["a", "b"])


@pytest.mark.parametrize(
    ("predictions", "references", "where"),
    [
        (["ok", None], ["ok", "ok"], "prediction 2 is NoneType"),
        (["ok", "ok"], ["ok", b"bytes"], "reference 2 is bytes"),
        ([1.5], ["ok"], "prediction 1 is float"),
    ],
)
def test_non_text_inputs_are_clear_errors(predictions, references, where):
    with pytest.raises(EvalCoreError, match=where) as info:
        score_pairs(predictions, references)
    assert info.value.line is not None and info.value.field in ("prediction", "reference")


@pytest.mark.parametrize(("name", "suggestion"), [("blue", "bleu"), ("rouge_l", "rougeL"), ("exactmatch", "exact_match")])
def test_unknown_metric_says_did_you_mean(name, suggestion):
    with pytest.raises(EvalCoreError, match=f"Did you mean '{suggestion}'"):
        TextMetricConfig(metrics=(name,))


def test_no_metric_is_an_error():
    with pytest.raises(EvalCoreError, match="no text metric chosen"):
        TextMetricConfig(metrics=())


def test_corpus_value_of_nothing_is_an_error_not_zero():
    with pytest.raises(EvalCoreError, match="empty set is undefined"):
        corpus_value("bleu", [])


def test_signatures_are_sacrebleus_own_and_name_the_rouge_protocol():
    bleu = BLEU()
    bleu.corpus_score(["x"], [["x"]])
    assert signature("bleu") == bleu.get_signature().format()
    chrf = CHRF(lowercase=True)
    chrf.corpus_score(["x"], [["x"]])
    assert signature("chrf", TextMetricConfig(lowercase=True)) == chrf.get_signature().format()
    assert "tok:intl" in signature("bleu", TextMetricConfig(bleu_tokenize="intl"))
    assert "stemmer:porter" in signature("rougeL")
    assert "stemmer:no" in signature("rouge1", TextMetricConfig(rouge_stemmer=False))
    assert "lsum-split:newline" in signature("rougeLsum") and "lsum-split" not in signature("rougeL")
    assert signature("exact_match").startswith("exact_match|")
    with pytest.raises(EvalCoreError):
        signature("meteor")


def test_config_hash_tracks_what_changes_values_and_not_the_metric_list():
    base = TextMetricConfig()
    assert base.config_hash() == TextMetricConfig(metrics=("bleu",)).config_hash()
    assert base.config_hash() != TextMetricConfig(lowercase=True).config_hash()
    assert base.config_hash() != TextMetricConfig(bleu_tokenize="intl").config_hash()
    assert base.to_dict()["protocol_version"] >= 1


@pytest.mark.parametrize("tokenize", ["spm", "flores200", "ja-mecab", "13A"])
def test_tokenizers_that_need_a_download_or_extra_packages_are_refused(tokenize):
    with pytest.raises(EvalCoreError, match="use one of 13a, intl, zh, char, none"):
        TextMetricConfig(bleu_tokenize=tokenize)
