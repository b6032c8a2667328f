"""The Metrics page's read API on a real evaluated demo workspace: values, intervals, A vs B."""

from __future__ import annotations

import json
import math

import pytest
import sacrebleu

from eval_core.errors import EvalCoreError
from eval_core.metric_figures import metric_step_figure, score_overlays
from eval_core.metric_ranking import (
    best_by_metric,
    categories_worst_first,
    direction_arrow,
    format_interval,
    format_value,
    ranked_checkpoints,
    weakest_categories,
)
from eval_core.metric_tables import (
    PERPLEXITY,
    MetricRow,
    compare,
    describe_generation,
    example_scores,
    load_dataset_results,
    metric_by_step,
    metric_table,
    results_version,
    worst_examples,
)
from eval_core.significance import Interval


@pytest.fixture(scope="module")
def evaluated(evaluated_demo):
    (results,) = load_dataset_results(evaluated_demo)
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
        assert bleu.interval.n == 61 and bleu.signature.startswith("nrefs:1")
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
    assert base[0].category is None and base[0].interval.n == 61
    per_cat = [r for r in base if r.category is not None]
    assert sum(r.interval.n for r in per_cat) == 61 and len(per_cat) == len({e.category for e in evaluated.examples.values()})


def test_intervals_are_reproducible_with_the_seed(evaluated):
    a = metric_table(evaluated, ["chrf"], seed=3)
    assert a == metric_table(evaluated, ["chrf"], seed=3)
    assert [r.interval.low for r in a] != [r.interval.low for r in metric_table(evaluated, ["chrf"], seed=4)]


def test_a_vs_b_splits_the_examples(evaluated):
    cmp = compare(evaluated, "base", "checkpoint-36", "chrf")
    assert len(cmp.examples) == 61 and cmp.paired.n == 61
    assert len(cmp.filter("b_better")) == cmp.paired.b_better and len(cmp.filter("a_better")) == cmp.paired.a_better
    assert len(cmp.filter("b_better")) + len(cmp.filter("a_better")) + len(cmp.filter("tie")) == 61
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


def test_rows_carry_the_run_and_rank_best_first(evaluated):
    rows = metric_table(evaluated, ["chrf", PERPLEXITY])
    assert {r.checkpoint: r.run for r in rows} == {"base": None, "checkpoint-6": "support-ft", "checkpoint-36": "support-ft"}
    chrf = {r.checkpoint: r.interval.value for r in rows if r.metric == "chrf"}
    assert ranked_checkpoints(rows, "chrf") == sorted(chrf, key=lambda c: -chrf[c])
    ppl = {r.checkpoint: r.interval.value for r in rows if r.metric == PERPLEXITY}
    assert ranked_checkpoints(rows, PERPLEXITY) == sorted(ppl, key=ppl.get)  # lower is better
    assert best_by_metric(rows) == {"chrf": max(chrf, key=chrf.get), PERPLEXITY: min(ppl, key=ppl.get)}
    # A checkpoint without the metric is ranked last rather than dropped.
    assert ranked_checkpoints(rows, "bleu") == ["base", "checkpoint-6", "checkpoint-36"]


def _row(checkpoint, metric, category, value, higher=True):
    return MetricRow(checkpoint, 1, metric, category, Interval(metric, value, value, value, 4, 10, 0), higher, "", "r")


def test_weakest_category_follows_the_metric_direction():
    rows = [_row("c", "chrf", None, 50), _row("c", "chrf", "billing", 20), _row("c", "chrf", "shipping", 70),
            _row("c", "chrf", "account", 20), _row("d", "chrf", "billing", math.nan), _row("d", "chrf", "shipping", 5)]
    assert [r.category for r in categories_worst_first(rows, "chrf", "c")] == ["account", "billing", "shipping"]
    assert weakest_categories(rows, "chrf") == {"c": "account", "d": "shipping"}  # NaN is never "weakest"
    ppl = [_row("c", PERPLEXITY, "billing", 9.0, False), _row("c", PERPLEXITY, "shipping", 30.0, False)]
    assert weakest_categories(ppl, PERPLEXITY) == {"c": "shipping"}  # highest perplexity is weakest


def test_weakest_categories_on_the_demo(evaluated):
    rows = metric_table(evaluated, ["chrf"], by_category=True)
    for label, category in weakest_categories(rows, "chrf").items():
        values = [r.interval.value for r in rows if r.checkpoint == label and r.category is not None]
        assert next(r for r in rows if r.checkpoint == label and r.category == category).interval.value == min(values)


@pytest.mark.parametrize(("metric", "value", "text"), [
    ("bleu", 23.4567, "23.46"),  # 0-100 scale: 2 decimals
    ("rougeL", 0.41234, "0.412"),  # 0-1 scale: 3 decimals
    ("exact_match", 1.0, "1.000"),
    (PERPLEXITY, 12.833, "12.83"),
    ("chrf", math.nan, "n/a"),
])
def test_format_value(metric, value, text):
    assert format_value(metric, value) == text


def test_format_interval_and_arrows():
    assert format_interval(Interval("rouge1", 0.5, 0.25, 0.75, 3, 10, 1)) == "0.500 [0.250, 0.750]"
    assert [direction_arrow(m) for m in ("bleu", "exact_match", PERPLEXITY)] == ["↑", "↑", "↓"]


def test_describe_generation():
    assert describe_generation({"max_new_tokens": 6, "do_sample": False, "stop": ["\n"], "use_chat_template": False}) == (
        "greedy decoding, at most 6 new tokens, stop at '\\n', no chat template")
    assert describe_generation({"do_sample": True, "temperature": 0.7, "top_p": 0.9, "seed": 3}).startswith(
        "sampling (temperature 0.7, top_p 0.9, seed 3)")


def test_example_scores_are_the_stored_per_example_values(evaluated):
    eid = sorted(evaluated.examples)[0]
    scores = example_scores(evaluated, "checkpoint-36", eid)
    assert list(scores) == evaluated.metrics
    assert scores["chrf"] == evaluated.checkpoint("checkpoint-36").scores["chrf"][eid][0]


def test_results_version_changes_when_results_are_written(evaluated_demo, tmp_path):
    assert results_version(tmp_path) is None  # no database yet, and none is created by asking
    assert not (tmp_path / ".ftlens").exists()
    before = results_version(evaluated_demo)
    load_dataset_results(evaluated_demo)  # reading does not change it
    assert results_version(evaluated_demo) == before
    assert results_version(tmp_path, url="postgresql+psycopg://u@h/db")[0] == "postgresql+psycopg://u@h/db"


def test_metric_step_figure_has_intervals_and_a_base_line(evaluated):
    rows = metric_table(evaluated, ["chrf"])
    base = next(r for r in rows if r.run is None)
    fig = json.loads(metric_step_figure(metric_by_step(evaluated, "chrf"), base=base).to_json())
    (trace,) = fig["data"]
    steps = {r.step: r for r in rows if r.step is not None}
    assert trace["name"] == "support-ft" and list(trace["x"]) == [6, 36]
    error = trace["error_y"]
    assert error["array"][1] == pytest.approx(steps[36].interval.high - steps[36].interval.value)
    assert error["arrayminus"][0] == pytest.approx(steps[6].interval.value - steps[6].interval.low)
    line = next(s for s in fig["layout"]["shapes"] if s["type"] == "line")
    assert line["y0"] == pytest.approx(base.interval.value)
    assert fig["layout"]["title"]["text"].startswith("chrf ↑")


def test_score_overlays_per_run(evaluated):
    rows = metric_table(evaluated, ["chrf"])
    (overlay,) = score_overlays(rows, ["support-ft", "other-run"], "support_test chrf")
    assert overlay.steps == (6, 36) and overlay.unit == "chrf" and overlay.run == "support-ft"
    assert overlay.values == tuple(r.interval.value for r in metric_by_step(evaluated, "chrf"))


def test_newest_row_per_example_wins_everywhere():
    from eval_core.results_store import newest_per_example

    row = {"checkpoint_fp": "c", "dataset": "d", "example_id": "1", "metric": "bleu", "config_hash": "h"}
    old, edited = {**row, "example_hash": "a", "created_at": 1.0}, {**row, "example_hash": "b", "created_at": 2.0}
    other_config = {**row, "config_hash": "h2", "example_hash": "a", "created_at": 3.0}
    assert newest_per_example([edited, old]) == [edited]
    assert len(newest_per_example([old, edited, other_config])) == 2  # one per configuration
    assert newest_per_example([old, edited, other_config], by_config=False) == [other_config]


def test_an_example_edited_since_the_evaluation_shows_no_stale_output_or_score(evaluated_demo, tmp_path):
    """The text of an example changed after `evaluate` (same id): its old output and scores are not
    shown beside the new text; the other examples are unchanged."""
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(evaluated_demo, ws)
    path = ws / "heldout" / "support_test.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0])
    row["prompt"] = "A question nobody evaluated yet?"
    lines[0] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (before,) = load_dataset_results(evaluated_demo)
    (after,) = load_dataset_results(ws)
    edited = str(row["id"])
    assert after.examples[edited].prompt == "A question nobody evaluated yet?"
    for b, a in zip(before.checkpoints, after.checkpoints, strict=True):
        assert edited in b.outputs and edited not in a.outputs
        assert all(edited not in per_example for per_example in a.scores.values())
        assert {k: v for k, v in b.outputs.items() if k != edited} == a.outputs
