"""The Metrics page's read API on a real evaluated demo workspace: values, intervals, A vs B."""

from __future__ import annotations

import shutil

import pytest
import sacrebleu

from eval_core.errors import EvalCoreError
from eval_core.evaluation import evaluate_workspace
from eval_core.generation import GenerationConfig
from eval_core.metric_tables import PERPLEXITY, compare, load_dataset_results, metric_by_step, metric_table, worst_examples

GEN = GenerationConfig(max_new_tokens=6)


@pytest.fixture(scope="module")
def evaluated(quick_demo, tmp_path_factory):
    ws = tmp_path_factory.mktemp("mt") / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*", "results.sqlite*"))
    evaluate_workspace(ws, checkpoint_names=["base", "checkpoint-6", "checkpoint-36"], dataset_names=["support_test"],
                       metric_names=["bleu", "chrf", "rougeL", "exact_match", "completion_perplexity"], generation_config=GEN)
    (results,) = load_dataset_results(ws)
    return results


def test_table_values_equal_the_reference_libraries(evaluated):
    assert [c.label for c in evaluated.checkpoints] == ["base", "checkpoint-6", "checkpoint-36"]
    assert evaluated.metrics == ["bleu", "chrf", "rougeL", "exact_match", PERPLEXITY]
    assert evaluated.generation_protocol["max_new_tokens"] == 6
    rows = {(r.checkpoint, r.metric): r for r in metric_table(evaluated)}
    for c in evaluated.checkpoints:
        ids = sorted(c.outputs)
        preds = [c.outputs[i] for i in ids]
        refs = [evaluated.examples[i].reference for i in ids]
        bleu = rows[(c.label, "bleu")]
        assert bleu.interval.value == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-9)
        assert bleu.interval.n == 64 and bleu.signature.startswith("nrefs:1")
        chrf = rows[(c.label, "chrf")].interval
        assert chrf.value == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score, abs=1e-9)
        assert chrf.low <= chrf.value <= chrf.high
        ppl = rows[(c.label, PERPLEXITY)]
        assert ppl.interval.low <= ppl.interval.value <= ppl.interval.high and not ppl.higher_is_better
    # Fine-tuning on the support set lowers the perplexity of its references.
    assert rows[("checkpoint-36", PERPLEXITY)].interval.value < rows[("base", PERPLEXITY)].interval.value


def test_by_category_covers_every_example_once(evaluated):
    rows = metric_table(evaluated, ["exact_match"], by_category=True)
    base = [r for r in rows if r.checkpoint == "base"]
    assert base[0].category is None and base[0].interval.n == 64
    per_cat = [r for r in base if r.category is not None]
    assert sum(r.interval.n for r in per_cat) == 64 and len(per_cat) == len({e.category for e in evaluated.examples.values()})


def test_intervals_are_reproducible_with_the_seed(evaluated):
    a = metric_table(evaluated, ["chrf"], seed=3)
    assert a == metric_table(evaluated, ["chrf"], seed=3)
    assert [r.interval.low for r in a] != [r.interval.low for r in metric_table(evaluated, ["chrf"], seed=4)]


def test_a_vs_b_splits_the_examples(evaluated):
    cmp = compare(evaluated, "base", "checkpoint-36", "chrf")
    assert len(cmp.examples) == 64 and cmp.paired.n == 64
    assert len(cmp.filter("b_better")) == cmp.paired.b_better and len(cmp.filter("a_better")) == cmp.paired.a_better
    assert len(cmp.filter("b_better")) + len(cmp.filter("a_better")) + len(cmp.filter("tie")) == 64
    assert {e.example.id for e in cmp.filter("only_a_wrong")}.isdisjoint(e.example.id for e in cmp.filter("both_wrong"))
    for e in cmp.filter("b_better"):
        assert e.value_b > e.value_a and e.output_b == evaluated.checkpoint("checkpoint-36").outputs[e.example.id]
    assert 0 < cmp.paired.p_value <= 1 and cmp.wrong_below == 50.0
    with pytest.raises(EvalCoreError, match="filter"):
        cmp.filter("nonsense")
    with pytest.raises(EvalCoreError, match="no results for checkpoint"):
        compare(evaluated, "base", "checkpoint-99", "chrf")


def test_worst_examples_and_steps(evaluated):
    worst = worst_examples(evaluated, "checkpoint-36", "chrf", k=5)
    values = [v for _, _, v in worst]
    assert values == sorted(values) and len(worst) == 5
    assert min(v for v, _ in evaluated.checkpoint("checkpoint-36").scores["chrf"].values()) == values[0]
    worst_ppl = worst_examples(evaluated, "checkpoint-36", PERPLEXITY, k=3)
    assert [v for *_, v in worst_ppl] == sorted((v for *_, v in worst_ppl), reverse=True)
    steps = metric_by_step(evaluated, "chrf")
    assert [r.step for r in steps] == [6, 36]
