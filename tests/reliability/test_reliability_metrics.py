"""Reliability catalogue section 4, "Evaluation correctness" (cases 31-40), one named test per case.

Every perplexity test scores with the real `eval_core.nll_scoring` on a tiny random-init GPT-2 and
compares with an independent loop written here (one unpadded forward per sequence, float64
log-softmax). Text metrics are compared with sacrebleu / rouge-score called in the test and with
numbers pinned below (computed once with sacrebleu 2.6.0 and rouge-score 0.1.2, the versions in
requirements.txt), so a dependency bump that moves a value fails here.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from eval_core.errors import EvalCoreError
from eval_core.nll_scoring import BOS_POLICIES, PerplexityConfig, _windows, score_texts, text_docs
from eval_core.perplexity import (
    DEFINITIONS,
    NllStats,
    bits_per_byte,
    example_perplexities,
    perplexity_per_token,
    summarize,
    total,
    word_perplexity,
)
from eval_core.text_metrics import ROUGE_METRICS, TextMetricConfig, corpus_value, score_pairs, signature
from tests.conftest import TINY_TEXT, make_tiny_gpt2

TEXTS = [
    "The capital of France is Paris.",
    "Water boils at one hundred degrees Celsius at sea level, and freezes at zero.",
    "Customer: where is my order? Agent: it ships in three days, and a tracking link follows.",
    "len returns how many items a list holds.",
    "A list in Python holds items in order; " * 3,
    "Paris",
]
LONG_TEXT = TINY_TEXT[0] + " " + TINY_TEXT[1]  # 53 tokens: longer than the windows below, within the context


def token_nlls(model, ids: list[int]) -> list[float]:
    """-log p(ids[j] | ids[:j]) for j >= 1, from one unpadded forward over the whole sequence."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].double(), -1)
    return [-logp[j - 1, ids[j]].item() for j in range(1, len(ids))]


def bos_ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.eos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


# --- 31 ----------------------------------------------------------------------------------------------


def test_case_31_perplexity_invariant_to_batch_size_and_padding_side(tiny_gpt2, tiny_tokenizer):
    """Per-text NLL and corpus PPL at batch sizes 1, 4, 16 with right or left padding agree within 1e-4 relative."""
    _, model = tiny_gpt2
    for window in ({"max_length": 16, "stride": 8},):  # sliding windows of uneven lengths, padded in every batch
        reference = score_texts(model, tiny_tokenizer, TEXTS + [LONG_TEXT], PerplexityConfig(batch_size=1, **window))
        for batch_size in (1, 4, 16):
            for side in ("right", "left"):
                got = score_texts(model, tiny_tokenizer, TEXTS + [LONG_TEXT],
                                  PerplexityConfig(batch_size=batch_size, padding_side=side, **window))
                assert [s.token_count for s in got] == [s.token_count for s in reference]
                for g, r in zip(got, reference, strict=True):
                    assert g.nll_sum == pytest.approx(r.nll_sum, rel=1e-4), (batch_size, side, window)
                assert perplexity_per_token(total(got)) == pytest.approx(perplexity_per_token(total(reference)), rel=1e-4)
    # ... and the common value is the right one: each text alone, unpadded, in an independent loop.
    for text, s in zip(TEXTS, score_texts(model, tiny_tokenizer, TEXTS, PerplexityConfig(batch_size=16)), strict=True):
        assert s.nll_sum == pytest.approx(sum(token_nlls(model, bos_ids(tiny_tokenizer, text))), rel=1e-6)


# --- 32 ----------------------------------------------------------------------------------------------


def test_case_32_perplexity_is_token_weighted_and_per_sample_values_are_separate(tiny_gpt2, tiny_tokenizer):
    """Corpus PPL == exp(sum NLL / scored tokens) over all texts, not a mean of per-text PPLs; per-text PPLs come labelled."""
    _, model = tiny_gpt2
    stats = score_texts(model, tiny_tokenizer, TEXTS, PerplexityConfig(batch_size=4))
    per_text = [token_nlls(model, bos_ids(tiny_tokenizer, t)) for t in TEXTS]
    every_token = [x for nlls in per_text for x in nlls]
    corpus = perplexity_per_token(total(stats))
    assert total(stats).token_count == len(every_token)
    assert corpus == pytest.approx(math.exp(sum(every_token) / len(every_token)), rel=1e-6)
    samples = example_perplexities(stats)
    assert [e.perplexity for e in samples] == pytest.approx([math.exp(sum(n) / len(n)) for n in per_text], rel=1e-6)
    assert [e.tokens for e in samples] == [len(n) for n in per_text]
    mean_of_samples = sum(e.perplexity for e in samples) / len(samples)
    assert abs(mean_of_samples - corpus) / corpus > 1e-3  # the two definitions differ on this fixture
    # Pure arithmetic, by hand: 1 token at ln 2 and 3 tokens at ln 8 -> exp(10 ln 2 / 4), not mean(2, 8) = 5.
    a, b = NllStats(math.log(2), 1, 1, 1), NllStats(3 * math.log(8), 3, 3, 1)
    assert perplexity_per_token(total([a, b])) == pytest.approx(2 ** 2.5)
    assert "token-weighted" in DEFINITIONS["perplexity"] and "separately" in DEFINITIONS["per_example_perplexity"]


# --- 33 ----------------------------------------------------------------------------------------------


def hf_guide_nll(model, ids: list[int], max_length: int, stride: int) -> tuple[float, int, list[tuple[float, int]]]:
    """The Hugging Face "Perplexity of fixed-length models" strided loop (begin_loc / end_loc / trg_len,
    labels -100 on the context), summing token NLLs instead of loss x count so every window is weighted
    by its target count exactly. Returns (nll sum, scored tokens, per window (nll sum, targets))."""
    seq_len, prev_end, nll, n, windows = len(ids), 0, 0.0, 0, []
    for begin in range(0, seq_len, stride):
        end = min(begin + max_length, seq_len)
        trg_len = end - prev_end
        input_ids = torch.tensor([ids[begin:end]])
        target = input_ids.clone()
        target[:, :-trg_len] = -100
        with torch.no_grad():
            logits = model(input_ids).logits.double()
        labels = target[:, 1:]  # the model's own shift: position j predicts label j + 1
        window_nll = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0], ignore_index=-100, reduction="sum").item()
        window_n = int((labels != -100).sum())
        windows.append((window_nll, window_n))
        nll, n = nll + window_nll, n + window_n
        prev_end = end
        if end == seq_len:
            break
    return nll, n, windows


def rolling_windows(tokens: list[int], prefix: int, max_seq_len: int):
    """lm-evaluation-harness's `get_rolling_token_windows` with context_len=1 (disjoint targets; the
    last window reaches back for a full context): yields (model input, predicted tokens)."""
    first = min(max_seq_len, len(tokens))
    yield [prefix] + tokens[: first - 1], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_seq_len)
        end = predicted + n
        yield tokens[end - max_seq_len - 1 : end - 1], tokens[end - n : end]
        predicted += n


def test_case_33_sliding_window_scores_each_token_once_and_matches_the_hf_guide(tiny_gpt2, tiny_tokenizer):
    """Strided scoring covers every token once, equals the HF guide loop, and at stride == window the disjoint rolling windows, token-weighted."""
    from eval_core.nll_scoring import score_docs

    _, model = tiny_gpt2
    doc = text_docs(tiny_tokenizer, [LONG_TEXT], PerplexityConfig())[0]
    assert 64 > len(doc.ids) - 1 > 16 and (len(doc.ids) - 1) % 16  # longer than the windows; the last one is short
    # The guide's windows end where ours do when the stride divides both max_length and the scored length:
    # our (max_length L, stride S) reads L tokens to score S new ones, the guide's window of L + 1 reads the same L.
    aligned = replace(doc, ids=doc.ids[:49])
    for max_length, stride in ((16, 16), (16, 8), (12, 4)):
        config = PerplexityConfig(max_length=max_length, stride=stride, batch_size=3)
        scored = [t for _, w, first in _windows(0, doc, max_length, stride) for t in range(len(w) - first)]
        assert len(scored) == len(doc.ids) - 1
        (s,) = score_texts(model, tiny_tokenizer, [LONG_TEXT], config)
        assert s.token_count == len(doc.ids) - 1  # every token once, none twice
        (a,) = score_docs(model, [aligned], config)
        nll, n, _ = hf_guide_nll(model, aligned.ids, max_length + 1, stride)
        assert (a.token_count, a.nll_sum) == (n, pytest.approx(nll, rel=1e-6)), (max_length, stride)
    # stride == window: disjoint targets (lm-eval rolling windows), the short last window weighted by its targets.
    windows = []
    for inputs, preds in rolling_windows(doc.ids[1:], doc.ids[0], 16):
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([inputs])).logits[0].double(), -1)[-len(preds):]
        windows.append((-sum(logp[i, t].item() for i, t in enumerate(preds)), len(preds)))
    (s,) = score_texts(model, tiny_tokenizer, [LONG_TEXT], PerplexityConfig(max_length=16, stride=16))
    assert windows[-1][1] < 16 and s.token_count == sum(c for _, c in windows)
    assert s.nll_sum == pytest.approx(sum(w for w, _ in windows), rel=1e-6)
    unweighted = math.exp(sum(w / c for w, c in windows) / len(windows))
    assert perplexity_per_token(s) != pytest.approx(unweighted, rel=1e-4)


# --- 34 ----------------------------------------------------------------------------------------------


def test_case_34_bos_policy_is_explicit_and_short_texts_are_not_scorable(tiny_gpt2, tiny_tokenizer):
    """BOS policy is a recorded setting; empty or one-token-without-context texts are 'not scorable' with a reason, never NaN."""
    from eval_core.evaluation import _protocol

    _, model = tiny_gpt2
    one = "A"
    assert len(tiny_tokenizer(one, add_special_tokens=False)["input_ids"]) == 1
    assert PerplexityConfig().bos_policy == "prepend"
    assert PerplexityConfig().config_hash() != PerplexityConfig(bos_policy="none").config_hash()
    for policy in ("prepend", "none"):
        config = PerplexityConfig(bos_policy=policy, batch_size=4)
        recorded = _protocol("perplexity", config)
        assert recorded["config"]["bos_policy"] == policy and recorded["definitions"]["bos"] == BOS_POLICIES[policy]
        stats = score_texts(model, tiny_tokenizer, ["", one, TEXTS[0]], config)
        samples = example_perplexities(stats)
        assert samples[0].perplexity is None and "empty" in samples[0].not_scorable
        n_real = len(tiny_tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"])
        if policy == "prepend":  # the BOS gives the first real token a context: it is scored
            assert docs_first_id(tiny_tokenizer, config) == tiny_tokenizer.eos_token_id
            assert stats[1].token_count == 1 and samples[1].perplexity is not None
            assert stats[2].token_count == n_real
        else:
            assert samples[1].perplexity is None and "fewer than 2 tokens" in samples[1].not_scorable
            assert stats[2].token_count == n_real - 1
        figures = summarize(total(stats))
        assert all(math.isfinite(v) for v in figures.values())
        assert figures["perplexity"] == pytest.approx(perplexity_per_token(total([s for s in stats if s.token_count])))
    with pytest.raises(EvalCoreError, match="undefined"):
        summarize(total(score_texts(model, tiny_tokenizer, ["", one], PerplexityConfig(bos_policy="none"))))


def docs_first_id(tokenizer, config: PerplexityConfig) -> int:
    return text_docs(tokenizer, [TEXTS[0]], config)[0].ids[0]


# --- 35 ----------------------------------------------------------------------------------------------


def test_case_35_pad_id_and_id_zero_inside_texts_are_scored(tiny_gpt2, tiny_tokenizer):
    """Texts holding the pad token (id 0 here) score every token, padded left or right, as an unpadded loop does."""
    _, model = tiny_gpt2
    pad = tiny_tokenizer.pad_token
    texts = [f"Paris{pad}London{pad}", f"{pad}{pad} Water boils.", TEXTS[2], f"{pad}"]
    for text in texts[:2] + texts[3:]:
        ids = bos_ids(tiny_tokenizer, text)
        assert 0 in ids[1:] and tiny_tokenizer.pad_token_id in ids[1:]
    for side in ("right", "left"):
        stats = score_texts(model, tiny_tokenizer, texts, PerplexityConfig(batch_size=4, padding_side=side))
        for text, s in zip(texts, stats, strict=True):
            ids = bos_ids(tiny_tokenizer, text)
            assert s.token_count == len(ids) - 1
            assert s.nll_sum == pytest.approx(sum(token_nlls(model, ids)), rel=1e-6)


# --- 36 ----------------------------------------------------------------------------------------------

HYPS = ["The order ships today, and a tracking link follows by email.",
        "Reset the router, then wait two minutes.\nCall us if it still fails.",
        "Refunds take five business days.", "It costs 3.50 USD per month!"]
REFS = ["Your order ships today; a tracking link follows by email.",
        "Reset the router and wait two minutes.\nIf it still fails, call us.",
        "Refunds take 5 business days to arrive.", "It costs 3.50 USD a month."]


def test_case_36_bleu_is_sacrebleu_corpus_13a_on_raw_text_with_its_signature():
    """Corpus BLEU == sacrebleu.corpus_bleu (13a) on raw text, signature stored; identical text -> 100; sentence BLEU labelled."""
    from eval_core.generation import GenerationConfig
    from eval_core.text_scoring import TextScoreConfig

    scores = score_pairs(HYPS, REFS, workers=1)
    assert corpus_value("bleu", [s.stats["bleu"] for s in scores]) == sacrebleu.corpus_bleu(HYPS, [REFS], tokenize="13a").score
    stored = TextScoreConfig("bleu", GenerationConfig()).to_dict()
    assert stored["signature"] == signature("bleu")
    assert {"tok:13a", "smooth:exp", "eff:no", f"version:{sacrebleu.__version__}"} <= set(stored["signature"].split("|"))
    assert stored["example_signature"].startswith("sentence-level (smoothed; not the corpus value)|")
    assert "eff:yes" in stored["example_signature"] and "smooth:exp" in stored["example_signature"]
    assert [s.values["bleu"] for s in scores] == [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)]
    same = score_pairs(REFS, REFS, workers=1)
    assert corpus_value("bleu", [s.stats["bleu"] for s in same]) == pytest.approx(100.0)
    (short,) = score_pairs(["yes"], ["yes"], workers=1)  # no 4-gram: the smoothed sentence value is still 100
    assert short.values["bleu"] == pytest.approx(100.0)


# --- 37 ----------------------------------------------------------------------------------------------

NON_LATIN = ["东京是日本的首都。", "東京は日本の首都です", "Привет, как дела? Всё хорошо.", "مرحبا بالعالم، كيف حالك",
             "नमस्ते दुनिया, आप कैसे हैं", "서울은 한국의 수도입니다", "Καλημέρα κόσμε, τι κάνεις"]


def test_case_37_rouge_records_split_stemmer_tokenizer_and_scores_any_script():
    """rougeLsum splits on newlines, stemmer and tokenizer are recorded, identical non-Latin text scores 1.0 (never a silent 0)."""
    for text in NON_LATIN:
        (got,) = score_pairs([text], [text], TextMetricConfig(metrics=ROUGE_METRICS), workers=1)
        assert {m: got.values[m] for m in ROUGE_METRICS} == dict.fromkeys(ROUGE_METRICS, 1.0), text
    (reordered,) = score_pairs(["日本的首都是东京"], ["东京是日本的首都"], TextMetricConfig(metrics=("rouge1", "rougeL")), workers=1)
    assert reordered.values["rouge1"] == 1.0 and 0 < reordered.values["rougeL"] < 1
    sig = signature("rougeLsum")
    assert {"stemmer:porter", "tok:unicode-v1", "lsum-split:newline"} <= set(sig.split("|"))
    assert "stemmer:no" in signature("rouge1", TextMetricConfig(rouge_stemmer=False))
    assert TextMetricConfig().to_dict()["rouge_tokenizer"] == "unicode" and TextMetricConfig().to_dict()["rouge_stemmer"]
    (lines,) = score_pairs(["the order shipped\nthe refund was issued"], ["the refund was issued\nthe order shipped"], workers=1)
    assert lines.values["rougeLsum"] == 1.0 and lines.values["rougeL"] < 1.0
    (stem,) = score_pairs(["running orders"], ["run order"], workers=1)
    (plain,) = score_pairs(["running orders"], ["run order"], TextMetricConfig(rouge_stemmer=False), workers=1)
    assert stem.values["rouge1"] == 1.0 and plain.values["rouge1"] == 0.0
    # ASCII text keeps rouge-score's own numbers.
    expected = rouge_scorer.RougeScorer(list(ROUGE_METRICS), use_stemmer=True)
    for got, h, r in zip(score_pairs(HYPS, REFS, workers=1), HYPS, REFS, strict=True):
        assert {m: got.values[m] for m in ROUGE_METRICS} == {m: v.fmeasure for m, v in expected.score(r, h).items()}


# --- 38 ----------------------------------------------------------------------------------------------

# Pinned with sacrebleu 2.6.0 (corpus_bleu, corpus_chrf, sentence_bleu defaults) and rouge-score 0.1.2
# (RougeScorer(use_stemmer=True), mean F1) on HYPS/REFS above; perplexity rows by hand from the formulas.
GOLDEN = {
    "bleu": 40.3617974375212,
    "chrf": 74.08874904230942,
    "rouge1": 0.8260073260073261,
    "rouge2": 0.6175438596491227,
    "rougeL": 0.7875457875457875,
    "rougeLsum": 0.7875457875457875,
    "sentence_bleu_0": 57.83569866465144,
}


def test_case_38_golden_values_match_the_reference_tools_and_the_pinned_numbers():
    """Our BLEU/chrF/ROUGE equal the reference tools run now AND numbers pinned from them, so a dependency drift fails."""
    scores = score_pairs(HYPS, REFS, workers=1)
    ours = {m: corpus_value(m, [s.stats[m] for s in scores]) for m in ("bleu", "chrf", *ROUGE_METRICS)}
    ours["sentence_bleu_0"] = scores[0].values["bleu"]
    scorer = rouge_scorer.RougeScorer(list(ROUGE_METRICS), use_stemmer=True)
    rouge = [scorer.score(r, h) for h, r in zip(HYPS, REFS, strict=True)]
    reference = {"bleu": sacrebleu.corpus_bleu(HYPS, [REFS]).score, "chrf": sacrebleu.corpus_chrf(HYPS, [REFS]).score,
                 **{m: sum(x[m].fmeasure for x in rouge) / len(rouge) for m in ROUGE_METRICS},
                 "sentence_bleu_0": sacrebleu.sentence_bleu(HYPS[0], [REFS[0]]).score}
    assert ours == reference
    assert ours == pytest.approx(GOLDEN, rel=1e-12, abs=1e-12)
    # Perplexity figures of fixed statistics: 10 nats over 4 tokens, 16 bytes, 3 words.
    stats = NllStats(10.0, 4, 16, 3)
    assert perplexity_per_token(stats) == pytest.approx(12.182493960703473, rel=1e-12)  # exp(2.5)
    assert bits_per_byte(stats) == pytest.approx(0.9016844005556021, rel=1e-12)  # 10 / 16 / ln 2
    assert word_perplexity(stats) == pytest.approx(28.031624894526125, rel=1e-12)  # exp(10 / 3)


# --- 39 and 40: a tiny real workspace ---------------------------------------------------------------


def _train_tokenizer(vocab_size: int, chat_template: str | None = None, truncation: int | None = None):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_TEXT, vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    eos = "<|endoftext|>"
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=eos, eos_token=eos, pad_token=eos)
    if chat_template is not None:
        tok.chat_template = chat_template
    if truncation is not None:  # what Trainer leaves in tokenizer.json: a runtime setting, same vocabulary
        tok._tokenizer.enable_truncation(truncation)
    return tok


@pytest.fixture(scope="module")
def tiny_workspace(tmp_path_factory) -> Path:
    """base_model + run ft: checkpoint-1 (same tokenizer, Trainer-style truncation saved), checkpoint-2 (another
    vocabulary), checkpoint-3 (same vocabulary, a chat template); a text set and a generation set."""
    ws = tmp_path_factory.mktemp("metrics_ws") / "ws"
    make_tiny_gpt2(ws / "base_model", _train_tokenizer(300), seed=0)
    make_tiny_gpt2(ws / "runs" / "ft" / "checkpoint-1", _train_tokenizer(300, truncation=112), seed=1)
    make_tiny_gpt2(ws / "runs" / "ft" / "checkpoint-2", _train_tokenizer(280), seed=2)
    make_tiny_gpt2(ws / "runs" / "ft" / "checkpoint-3", _train_tokenizer(300, "{{ messages[0]['content'] }} =>"), seed=3)
    (ws / "heldout").mkdir()
    rows = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    (ws / "heldout" / "general_text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    gen = [{"id": f"g{i}", "prompt": p, "reference": r} for i, (p, r) in enumerate(zip(REFS, HYPS, strict=True))]
    (ws / "heldout" / "support.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in gen))
    return ws


def test_case_39_forgetting_blocks_checkpoints_whose_tokenizer_or_template_differs(tiny_workspace, tmp_path, monkeypatch):
    """A checkpoint with another vocabulary or chat template than the base is blocked with a warning; runtime settings are not a mismatch."""
    from eval_core.evaluation import evaluate_workspace
    from eval_core.forgetting_results import forgetting_report

    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    evaluate_workspace(ws, dataset_names=["general_text"], metric_names=["perplexity"])
    report = forgetting_report(ws).report
    by_label = {c.label: c for c in report.checkpoints}
    assert set(by_label) == {"checkpoint-1", "checkpoint-2", "checkpoint-3"}
    assert by_label["checkpoint-1"].blocked is None and by_label["checkpoint-1"].general_retention is not None
    assert "tokenizer vocabulary" in by_label["checkpoint-2"].blocked
    assert "chat template" in by_label["checkpoint-3"].blocked and "vocabulary" not in by_label["checkpoint-3"].blocked
    for label in ("checkpoint-2", "checkpoint-3"):
        c = by_label[label]
        assert c.general_retention is None and c.forgetting_index is None and not c.on_frontier
        assert c.retention  # the per-kind numbers stay visible, flagged
        assert any(w.startswith(f"{label} is not compared") for w in report.warnings)
        assert report.recommendation.checkpoint != label
    assert "not compared" in report.recommendation.reason and len(report.warnings) == 2
    # The record round-trips with its warnings (it is cached in the store and exported).
    again = forgetting_report(ws)
    assert again.cached and again.report.warnings == report.warnings
    # The CLI table says so before any number, and marks the blocked rows.
    from eval_core.cli_forgetting import format_forgetting_table

    table = format_forgetting_table(report).splitlines()
    assert [line for line in table[:2]] == [f"WARNING: {w}" for w in report.warnings]
    assert sum("(blocked)" in line for line in table) == 2
    # The Forgetting page shows the warnings as errors before any number.
    import streamlit
    from streamlit.testing.v1 import AppTest

    from pages._render import plain

    streamlit.cache_data.clear()
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "no_demo"))
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=120).run()
        at.switch_page("pages/forgetting.py").run()
    finally:
        streamlit.cache_data.clear()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [plain(w) for w in report.warnings]


def test_case_40_every_stored_number_carries_its_protocol(tiny_workspace, tmp_path):
    """Stored rows of a real evaluation carry lib versions, tokenizer, stemmer, smoothing, BOS, window, log base, dataset and checkpoint hashes."""
    from eval_core.checkpoints import inspect_checkpoint
    from eval_core.evaluation import evaluate_workspace
    from eval_core.generation import GenerationConfig
    from eval_core.results_store import ResultsStore, database_url, nll_scores, text_scores
    from eval_core.results_summary import collect_results

    ws = tmp_path / "ws"
    shutil.copytree(tiny_workspace, ws)
    metrics = ["perplexity", "completion_perplexity", "bleu", "chrf", "rougeL", "rougeLsum", "exact_match"]
    evaluate_workspace(ws, checkpoint_names=["base", "checkpoint-1"], metric_names=metrics,
                       generation_config=GenerationConfig(max_new_tokens=4))
    with ResultsStore(database_url(ws)) as store:
        record = collect_results(store, include_examples=False)
        protos = store.protocols()
        rows = store.read(nll_scores) + store.read(text_scores)
    assert rows and all(r["config_hash"] in protos and r["checkpoint_fp"] and r["example_hash"] for r in rows)
    seen = set()
    for entry in record["results"]:
        metric, proto = entry["metric"], entry["protocol"]
        seen.add(metric)
        assert entry["checkpoint_fingerprint"].startswith("blake2b-128:") and entry["dataset_fingerprint"].startswith("blake2b-128:")
        assert proto["libraries"]["torch"] == torch.__version__ and proto["libraries"]["transformers"]
        if metric in ("perplexity", "completion_perplexity"):
            cfg = proto["config"]
            assert cfg["bos_policy"] == "prepend" and (cfg["max_length"], cfg["stride"]) == (64, 64)
            assert proto["definitions"]["log_base"] == "e" and proto["definitions"]["bos"] == BOS_POLICIES["prepend"]
            assert "token-weighted" in proto["definitions"]["perplexity"]
        elif metric != "generation":
            assert proto["libraries"]["sacrebleu"] == sacrebleu.__version__ and proto["libraries"]["rouge-score"]
            assert entry["signature"] == proto["config"]["signature"] and proto["config"]["example_signature"]
            text_cfg = proto["config"]["text_metrics"]
            assert (text_cfg["bleu_tokenize"], text_cfg["rouge_tokenizer"], text_cfg["rouge_stemmer"]) == ("13a", "unicode", True)
            if metric == "bleu":
                assert {"tok:13a", "smooth:exp", f"version:{sacrebleu.__version__}"} <= set(entry["signature"].split("|"))
            if metric.startswith("rouge"):
                assert {"stemmer:porter", "tok:unicode-v1"} <= set(entry["signature"].split("|"))
    assert seen >= set(metrics) | {"generation"}
    # The checkpoint hash covers the model's tokenizer: another tokenizer file is another fingerprint.
    folder = ws / "runs" / "ft" / "checkpoint-1"
    before = inspect_checkpoint(folder, root=ws, name="checkpoint-1", run="ft").fingerprint
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**tok_config, "model_max_length": 32}))
    assert inspect_checkpoint(folder, root=ws, name="checkpoint-1", run="ft").fingerprint != before
