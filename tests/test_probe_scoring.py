"""Probe scoring: multiple choice by log-likelihood (against one forward per pair), acc vs acc_norm,
cloze matching, and evaluate storing the four probe metrics incrementally."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from eval_core.errors import DatasetError, EvalCoreError
from eval_core.evaluation import evaluate_workspace
from eval_core.generation import GenerationConfig
from eval_core.heldout_sets import read_heldout_set
from eval_core.nll_scoring import PerplexityConfig
from eval_core.probe_scoring import (
    PROBE_METRICS,
    argmax_first,
    choice_loglikelihoods,
    cloze_stats,
    multiple_choice_stats,
    resolve_answers,
)
from eval_core.results_store import ResultsStore, database_url, generations
from eval_core.results_summary import collect_results

PROMPTS = ["The capital of France is", "Water boils at", "A list in Python holds", "Customer: where is my order? Agent:"]
CHOICES = [["Paris.", "Rome", "a café in Lyon"], ["one hundred degrees", "zero", "Celsius at sea level"],
           ["items in order", "nothing"], ["it ships in three days.", "no", "Paris", "len"]]


def reference_loglikelihood(model, tokenizer, prompt: str, choice: str) -> float:
    """lm-evaluation-harness's way, one forward per pair: encode prompt + " " + choice as a whole, split
    off the prompt's tokens, sum the float64 log-softmax of the rest (BOS first, bos_policy 'prepend')."""
    import torch

    def enc(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    whole, context = enc(prompt + " " + choice), enc(prompt)
    ids = [tokenizer.eos_token_id] + whole
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    first = 1 + len(context)
    return float(sum(logprobs[t - 1, ids[t]] for t in range(first, len(ids))))


def test_choice_loglikelihoods_equal_one_forward_per_pair(tiny_gpt2, tiny_tokenizer):
    _, model = tiny_gpt2
    got = choice_loglikelihoods(model, tiny_tokenizer, PROMPTS, CHOICES, PerplexityConfig(batch_size=3, token_budget=64))
    for prompt, choices, lls in zip(PROMPTS, CHOICES, got, strict=True):
        want = [reference_loglikelihood(model, tiny_tokenizer, prompt, c) for c in choices]
        assert lls == pytest.approx(want, rel=1e-6)
    # Batching does not change a value.
    one = choice_loglikelihoods(model, tiny_tokenizer, PROMPTS, CHOICES, PerplexityConfig(batch_size=1))
    assert np.allclose(np.concatenate(one), np.concatenate(got), rtol=1e-6, atol=0)


def lm_eval_picks(lls: list[float], choices: list[str]) -> tuple[int, int]:
    """lm_eval/api/task.py ConfigurableTask.process_results (multiple_choice), as written there."""
    completion_len = np.array([float(len(i)) for i in choices])
    return int(np.argmax(lls)), int(np.argmax(np.array(lls) / completion_len))


@pytest.mark.parametrize(("lls", "choices", "answer", "acc", "acc_norm"), [
    # The long answer is less likely in total but more likely per character: only acc_norm is right.
    ([-4.0, -6.0], ["ab", "abcdef"], 1, 0.0, 1.0),
    # The short answer wins both ways.
    ([-2.0, -12.0], ["ab", "abcdef"], 0, 1.0, 1.0),
    # In total the short one wins, per character the long one (-2/2 < -3/6): only acc is right.
    ([-2.0, -3.0], ["ab", "abcdef"], 0, 1.0, 0.0),
    # Ties go to the first choice in both (numpy.argmax).
    ([-5.0, -5.0], ["xx", "yy"], 1, 0.0, 0.0),
    # Characters, not bytes: "ééé" is 3 characters, 6 UTF-8 bytes. Per character -4/3 < -5/4 picks
    # "abcd"; per byte (lm-eval's acc_bytes) -4/6 > -5/4 would pick "ééé".
    ([-4.0, -5.0], ["ééé", "abcd"], 1, 0.0, 1.0),
    # One choice: always right.
    ([-9.0], ["only"], 0, 1.0, 1.0),
])
def test_acc_and_acc_norm_match_lm_eval(lls, choices, answer, acc, acc_norm):
    stats = multiple_choice_stats(lls, choices, answer)
    pick, pick_norm = lm_eval_picks(lls, choices)
    assert stats["mc_acc"] == [acc, float(pick), float(answer), *lls]
    assert stats["mc_acc_norm"] == [acc_norm, float(pick_norm), float(answer), *lls]
    assert argmax_first(lls) == pick


@pytest.mark.parametrize(("output", "answer", "exact", "contains"), [
    (" Paris", "Paris", 1, 1),
    (" Paris.\nThe capital of Italy", "Paris", 1, 1),  # first line only; punctuation ignored
    (" the Pacific Ocean", "Pacific Ocean", 1, 1),  # articles removed
    (" it is Paris, France", "Paris", 0, 1),
    (" Parisian food", "Paris", 0, 0),  # whole words only
    (" 1000 years", "100", 0, 0),
    ("\nParis", "Paris", 0, 0),  # the first line is empty
    (" CAFÉ", "café", 1, 1),  # Unicode case folding
    (" a", "the", 1, 1),  # both normalise to nothing
    (" a dog", "the", 0, 0),
    ("", "Paris", 0, 0),
])
def test_cloze_exact_and_contains(output, answer, exact, contains):
    assert cloze_stats(output, answer) == {"cloze_exact": [float(exact)], "cloze_contains": [float(contains)]}


def test_docstring_examples_run():
    import doctest

    import eval_core.probe_scoring as module

    assert doctest.testmod(module, raise_on_error=False).failed == 0


def write_probes(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "p", "answer": "Lyon", "choices": ["Paris", "Rome"]}, "'Lyon' is not one of the choices"),
    ({"prompt": "p", "answer": 2, "choices": ["Paris", "Rome"]}, "answer index 2 is outside the 2 choices"),
    ({"prompt": "p", "answer": "Paris", "choices": ["Paris"]}, "at least two choices"),
    ({"prompt": "p", "answer": 1}, "must be a string when the item has no choices"),
    ({"prompt": "p", "answer": 1.0, "choices": ["Paris", "Rome"]}, "or its 0-based index, got float"),
])
def test_a_bad_answer_names_file_line_and_field(tmp_path, row, message):
    path = tmp_path / "probes.jsonl"
    write_probes(path, [{"prompt": "q", "answer": "a", "choices": ["a", "b"]}, row])
    with pytest.raises(DatasetError, match=message) as err:
        read_heldout_set(path, kind="probe")
    assert (err.value.path, err.value.line) == (str(path), 2)
    assert err.value.field == ("choices" if "two choices" in message else "answer")


def test_an_answer_index_is_scored_as_its_choice(tmp_path):
    path = tmp_path / "probes.jsonl"
    write_probes(path, [{"id": "a", "prompt": "q", "answer": 1, "choices": ["x", "y"]}, {"id": "b", "prompt": "q", "answer": "free"}])
    ds = resolve_answers(read_heldout_set(path, kind="probe"))
    assert ds.values("answer") == ["y", "free"]


MODELS = ["base", "checkpoint-36"]
CLOZE = GenerationConfig(max_new_tokens=4, stop=("\n",), use_chat_template=False, batch_size=64)


@pytest.fixture
def ws(quick_demo, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(quick_demo, dst, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*", "results.sqlite*"))
    return dst


def stored(ws) -> tuple[dict, list[dict]]:
    store = ResultsStore(database_url(ws))
    try:
        return ({(r["checkpoint"], r["metric"]): r for r in collect_results(store)["results"]}, store.read(generations))
    finally:
        store.close()


def test_evaluate_stores_the_four_probe_metrics_and_a_second_run_computes_nothing(ws, monkeypatch):
    first = evaluate_workspace(ws, checkpoint_names=MODELS, dataset_names=["general_knowledge"], metric_names=list(PROBE_METRICS),
                               cloze_config=CLOZE, chunk_size=200)
    assert {(c.checkpoint, c.metric): (c.computed, c.cached) for c in first.cells} == {
        (m, metric): (429, 0) for m in MODELS for metric in PROBE_METRICS}
    got, gens = stored(ws)
    assert len(gens) == 2 * 429  # one cloze output per item and checkpoint
    for model in MODELS:
        for metric in PROBE_METRICS:
            cell = got[(model, metric)]
            values = [e["value"] for e in cell["per_example"]]
            assert cell["examples"] == 429 and set(values) <= {0.0, 1.0}
            assert cell["value"] == pytest.approx(sum(values) / 429) and cell["ci_low"] <= cell["value"] <= cell["ci_high"]
            assert cell["signature"].startswith(metric) and "torch" in cell["protocol"]["libraries"]
        mc = got[(model, "mc_acc")]
        assert mc["protocol"]["config"]["perplexity"]["use_chat_template"] is False
        for e in mc["per_example"]:
            correct, chosen, answer, *lls = e["stats"]
            assert len(lls) == 4 and chosen == int(np.argmax(lls)) and correct == float(chosen == answer)
        assert got[(model, "cloze_exact")]["protocol"]["config"]["generation"]["max_new_tokens"] == 4

    import eval_core.model_loading as model_loading

    monkeypatch.setattr(model_loading, "load_model", lambda *a, **k: pytest.fail("a cached run loaded a model"))
    again = evaluate_workspace(ws, checkpoint_names=MODELS, dataset_names=["general_knowledge"], metric_names=list(PROBE_METRICS),
                               cloze_config=CLOZE)
    assert again.computed == 0 and again.cached == first.computed


def test_cloze_scores_are_recomputed_from_stored_outputs_without_a_model(ws, monkeypatch):
    evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_knowledge"], metric_names=["cloze_exact"],
                       cloze_config=CLOZE)
    import eval_core.model_loading as model_loading

    monkeypatch.setattr(model_loading, "load_model", lambda *a, **k: pytest.fail("stored outputs were generated again"))
    more = evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_knowledge"], metric_names=["cloze_contains"],
                              cloze_config=CLOZE)
    assert [(c.metric, c.computed) for c in more.cells] == [("cloze_contains", 429)]


def test_probe_metrics_need_no_generation_set_work_and_unknown_names_get_a_hint(ws):
    with pytest.raises(EvalCoreError, match="Did you mean 'mc_acc'"):
        evaluate_workspace(ws, checkpoint_names=["base"], metric_names=["mc_ac"])
    summary = evaluate_workspace(ws, checkpoint_names=["base"], metric_names=["mc_acc_norm"])
    assert [(c.dataset, c.metric, c.computed) for c in summary.cells] == [("general_knowledge", "mc_acc_norm", 429)]


def test_a_probe_set_with_a_bad_answer_is_a_clear_error(ws):
    path = ws / "heldout" / "general_knowledge.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[4])
    row["answer"] = "not a choice"
    lines[4] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EvalCoreError, match="general_knowledge' cannot be used: answer 'not a choice' is not one of") as err:
        evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_knowledge"], metric_names=["mc_acc"])
    assert (err.value.line, err.value.field) == (5, "answer")


def test_a_killed_run_resumes_from_the_last_whole_chunk(ws, monkeypatch):
    calls = {"n": 0, "rows": 0}
    real = ResultsStore.add_text_scores

    def dying(self, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed between two chunks
        calls["rows"] += len(rows)
        real(self, rows)

    mc = ["mc_acc", "mc_acc_norm"]
    monkeypatch.setattr(ResultsStore, "add_text_scores", dying)
    with pytest.raises(KeyboardInterrupt):
        evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_knowledge"], metric_names=mc, chunk_size=100)
    monkeypatch.setattr(ResultsStore, "add_text_scores", real)
    resumed = evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_knowledge"], metric_names=mc, chunk_size=100)
    assert calls["rows"] == 2 * 2 * 100 and resumed.cached == calls["rows"] and resumed.computed == 2 * 429 - calls["rows"]
    assert stored(ws)[0][("base", "mc_acc")]["examples"] == 429
