"""evaluate + results store: incremental caching, resume, unknown names, protocols."""

from __future__ import annotations

import json
import shutil

import pytest

from eval_core.errors import EvalCoreError
from eval_core.evaluation import evaluate_workspace
from eval_core.generation import GenerationConfig
from eval_core.results_store import ResultsStore, database_url
from eval_core.results_summary import collect_results

MODELS = ["base", "checkpoint-36"]
# The demo's held-out sets without support_test_leak_check (support_test rows plus planted leaks): it would only add time.
DATASETS = ["support_test", "general_text", "general_knowledge"]
FAST_GEN = GenerationConfig(max_new_tokens=4)
FAST_CLOZE = GenerationConfig(max_new_tokens=2, stop=("\n",), use_chat_template=False)


@pytest.fixture
def ws(quick_demo, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(quick_demo, dst, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*", "results.sqlite*"))
    return dst


def results(ws) -> dict:
    store = ResultsStore(database_url(ws))
    try:
        return {(r["checkpoint"], r["dataset"], r["metric"]): r for r in collect_results(store)["results"]}
    finally:
        store.close()


def append_texts(ws, n: int) -> None:
    path = ws / "heldout" / "general_text.jsonl"
    extra = "".join(json.dumps({"id": f"new-{i}", "category": "x", "text": f"New paragraph {i} about rivers."}) + "\n" for i in range(n))
    path.write_text(path.read_text() + extra)


def test_second_run_computes_nothing_and_results_have_protocols(ws):
    first = evaluate_workspace(ws, checkpoint_names=MODELS, dataset_names=DATASETS, generation_config=FAST_GEN,
                               cloze_config=FAST_CLOZE)
    assert first.computed > 0 and first.cached == 0
    assert {c.metric for c in first.cells} >= {"perplexity", "bleu", "mc_acc", "cloze_exact"}  # every metric by default
    second = evaluate_workspace(ws, checkpoint_names=MODELS, dataset_names=DATASETS, generation_config=FAST_GEN,
                                cloze_config=FAST_CLOZE)
    assert second.computed == 0 and second.cached == first.computed
    got = results(ws)
    for model in MODELS:
        cell = got[(model, "general_text", "perplexity")]
        assert cell["examples"] == 56 and cell["perplexity"] > 1 and cell["bits_per_byte"] > 0
        assert cell["protocol"]["config"]["bos_policy"] == "prepend" and "transformers" in cell["protocol"]["libraries"]
        # The window actually used is recorded, not "the model's default".
        assert (cell["protocol"]["config"]["max_length"], cell["protocol"]["config"]["stride"]) == (256, 256)
        assert got[(model, "support_test", "completion_perplexity")]["protocol"]["config"]["use_chat_template"] is True
        assert got[(model, "general_knowledge", "completion_perplexity")]["protocol"]["config"]["use_chat_template"] is False
        assert got[(model, "support_test", "generation")]["examples"] == 61
    # Forgetting is visible in the stored numbers: the fine-tuned checkpoint is worse on general text.
    assert got[("checkpoint-36", "general_text", "perplexity")]["perplexity"] > got[("base", "general_text", "perplexity")]["perplexity"]


def test_new_examples_are_the_only_work(ws):
    evaluate_workspace(ws, checkpoint_names=MODELS, metric_names=["perplexity"])
    append_texts(ws, 6)
    again = evaluate_workspace(ws, checkpoint_names=MODELS, metric_names=["perplexity"])
    assert (again.computed, again.cached) == (12, 112)
    assert results(ws)[("base", "general_text", "perplexity")]["examples"] == 62


def test_an_edited_example_is_computed_again_and_replaces_the_old_value(ws):
    evaluate_workspace(ws, checkpoint_names=["base"], metric_names=["perplexity"])
    before = results(ws)[("base", "general_text", "perplexity")]
    path = ws / "heldout" / "general_text.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[0])
    row["text"] = "Completely different words now."
    lines[0] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    again = evaluate_workspace(ws, checkpoint_names=["base"], metric_names=["perplexity"])
    assert again.computed == 1
    after = results(ws)[("base", "general_text", "perplexity")]
    assert after["examples"] == 56 and after["nll_sum"] != before["nll_sum"]


def test_a_killed_run_resumes_and_ends_with_the_same_numbers(ws, tmp_path, monkeypatch):
    reference_ws = tmp_path / "ref"
    shutil.copytree(ws, reference_ws)
    evaluate_workspace(reference_ws, checkpoint_names=MODELS, dataset_names=DATASETS,
                       metric_names=["completion_perplexity"], chunk_size=50)

    calls = {"n": 0, "rows": 0}
    real = ResultsStore.add_nll

    def dying(self, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed between two chunks
        calls["rows"] += len(rows)
        real(self, rows)

    monkeypatch.setattr(ResultsStore, "add_nll", dying)
    with pytest.raises(KeyboardInterrupt):
        evaluate_workspace(ws, checkpoint_names=MODELS, dataset_names=DATASETS,
                           metric_names=["completion_perplexity"], chunk_size=50)
    monkeypatch.setattr(ResultsStore, "add_nll", real)
    resumed = evaluate_workspace(ws, checkpoint_names=MODELS, dataset_names=DATASETS,
                                 metric_names=["completion_perplexity"], chunk_size=50)
    assert resumed.cached == calls["rows"] > 0  # the two chunks written before the kill
    assert resumed.computed == 2 * (429 + 61) - calls["rows"]
    a, b = results(ws), results(reference_ws)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["nll_sum"] == pytest.approx(b[key]["nll_sum"], rel=1e-9) and a[key]["tokens"] == b[key]["tokens"]


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [({"checkpoint_names": ["checkpoint-37"]}, "checkpoint-36"), ({"dataset_names": ["support_tst"]}, "support_test"),
     ({"metric_names": ["perplexty"]}, "perplexity")],
)
def test_unknown_names_say_did_you_mean(ws, kwargs, hint):
    with pytest.raises(EvalCoreError, match=f"Did you mean '{hint}'"):
        evaluate_workspace(ws, **kwargs)


def test_all_empty_texts_report_an_error_not_nan(ws):
    (ws / "heldout" / "general_text.jsonl").write_text('{"id": "a", "category": "x", "text": ""}\n')
    evaluate_workspace(ws, checkpoint_names=["base"], metric_names=["perplexity"])
    cell = results(ws)[("base", "general_text", "perplexity")]
    assert "undefined" in cell["error"] and "perplexity" not in cell


def test_database_url_from_environment(ws, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    monkeypatch.setenv("FTLENS_DATABASE_URL", url)
    summary = evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_text"])
    assert summary.database == url and (tmp_path / "elsewhere.sqlite").is_file()
    assert not (ws / ".ftlens" / "results.sqlite").exists()


def test_a_file_that_is_not_a_database_is_a_clear_error(ws):
    (ws / ".ftlens").mkdir(exist_ok=True)
    (ws / ".ftlens" / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EvalCoreError, match="cannot be used|not a SQLite database"):
        evaluate_workspace(ws, checkpoint_names=["base"], dataset_names=["general_text"])


def test_text_metrics_score_the_stored_outputs_and_are_cached(ws):
    import sacrebleu
    from rouge_score import rouge_scorer

    from eval_core.heldout_sets import read_heldout_set

    first = evaluate_workspace(ws, checkpoint_names=["checkpoint-36"], dataset_names=["support_test"],
                               metric_names=["bleu", "rougeL"], generation_config=FAST_GEN)
    by_metric = {c.metric: c for c in first.cells}
    # Choosing a text metric computes the outputs it scores.
    assert by_metric["generation"].computed == 61 and by_metric["bleu"].computed == 61
    again = evaluate_workspace(ws, checkpoint_names=["checkpoint-36"], dataset_names=["support_test"],
                               metric_names=["bleu", "rougeL"], generation_config=FAST_GEN)
    assert again.computed == 0
    got = results(ws)
    outputs = {e["id"]: e["text"] for e in got[("checkpoint-36", "support_test", "generation")]["per_example"]}
    ds = read_heldout_set(ws / "heldout" / "support_test.jsonl", kind="generation")
    ids = [str(v) for v in ds.values("id")]
    refs = [str(v) for v in ds.values("reference")]
    preds = [outputs[i] for i in ids]
    bleu = got[("checkpoint-36", "support_test", "bleu")]
    assert bleu["value"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-9)
    assert bleu["ci_low"] <= bleu["value"] <= bleu["ci_high"] and bleu["seed"] == 12345
    assert bleu["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    mean_f = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)) / len(refs)
    assert got[("checkpoint-36", "support_test", "rougeL")]["value"] == pytest.approx(mean_f, abs=1e-12)
    # New generation settings: new outputs, so the text metrics are computed again.
    other = evaluate_workspace(ws, checkpoint_names=["checkpoint-36"], dataset_names=["support_test"], metric_names=["bleu"],
                               generation_config=GenerationConfig(max_new_tokens=3))
    assert {c.metric: c.computed for c in other.cells} == {"generation": 61, "bleu": 61}


def test_device_choice_without_a_gpu(monkeypatch):
    import torch

    from eval_core.evaluation import _device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _device("auto") == "cpu" and _device("cpu") == "cpu"
    with pytest.raises(EvalCoreError, match="no CUDA device"):
        _device("cuda")
    with pytest.raises(EvalCoreError, match="unknown device"):
        _device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _device("auto") == "cuda"
