"""Metrics page, one test per behaviour in pages/metrics.py's docstring.

The workspace is a copy of the session's evaluated demo (base, checkpoint-6, checkpoint-36 on
support_test, 6 new tokens) with one output of checkpoint-36 replaced by HTML in the store.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3

import numpy as np
import pytest

from eval_core.metric_ranking import format_interval, ranked_checkpoints, weakest_categories
from eval_core.metric_tables import PERPLEXITY, compare, load_dataset_results, metric_table, worst_examples
from pages._render import plain

PAGE = "pages/metrics.py"
HTML = "<b>x</b><script>alert(1)</script>"
CELL = re.compile(r"^\d+\.\d+ \[\d+\.\d+, \d+\.\d+\]( ★)?$")


def inject_output(ws, checkpoint: str, example_id: str, text: str) -> None:
    """Replace one stored generation (what the page shows as the checkpoint's output)."""
    (results,) = load_dataset_results(ws)
    fp = results.checkpoint(checkpoint).fingerprint
    with sqlite3.connect(ws / ".ftlens" / "results.sqlite") as db:
        changed = db.execute("UPDATE generations SET text = ? WHERE checkpoint_fp = ? AND example_id = ?",
                             (text, fp, example_id)).rowcount
    assert changed == 1


def top_b_better(results, metric: str) -> str:
    """The id of the B-better example the page draws first (largest difference)."""
    return max(compare(results, "base", "checkpoint-36", metric).filter("b_better"),
               key=lambda e: abs(e.value_b - e.value_a)).example.id


@pytest.fixture(scope="module")
def ws(evaluated_demo, tmp_path_factory):
    dst = tmp_path_factory.mktemp("metrics_page") / "ws"
    shutil.copytree(evaluated_demo, dst)
    (results,) = load_dataset_results(dst)
    inject_output(dst, "checkpoint-36", top_b_better(results, "chrf"), HTML)
    return dst


@pytest.fixture(scope="module")
def results(ws):
    (r,) = load_dataset_results(ws)
    return r


def open_page(app, monkeypatch, workspace, timeout: float = 60):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app(timeout).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def tab(at, title: str):
    return next(t for t in at.tabs if t.label == title)


def decoded(values):
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"]).tolist()
    return list(values)


def test_table_ranks_checkpoints_by_bleu_with_intervals(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    assert at.title[0].value == "Metrics" and not at.error
    table = tab(at, "Checkpoints").dataframe[0].value
    rows = metric_table(results)
    assert list(table["checkpoint"]) == ranked_checkpoints(rows, "bleu")
    assert list(table.columns) == ["rank", "checkpoint", "step", "bleu ↑", "chrf ↑", "rougeL ↑", "exact_match ↑",
                                   f"{PERPLEXITY} ↓"]
    by_cell = {(r.checkpoint, r.metric): r for r in rows}
    for _, line in table.iterrows():
        for metric in results.metrics:
            cell = line[f"{metric} {'↓' if metric == PERPLEXITY else '↑'}"]
            assert CELL.match(cell), cell
            assert cell.removesuffix(" ★") == format_interval(by_cell[(line["checkpoint"], metric)].interval)
    for column in table.columns[3:]:
        assert sum(str(v).endswith("★") for v in table[column]) == 1
    best_ppl = min((r for r in rows if r.metric == PERPLEXITY), key=lambda r: r.interval.value).checkpoint
    assert table.set_index("checkpoint").loc[best_ppl, f"{PERPLEXITY} ↓"].endswith("★")  # lower is better
    text = " ".join(c.value for c in at.caption)
    assert "seed 12345" in text and "1000 resamples" in text and "at most 6 new tokens" in text


def test_rank_by_seed_and_resamples(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    at.selectbox(key="metrics_rank_by").set_value(PERPLEXITY).run()
    table = tab(at, "Checkpoints").dataframe[0].value
    assert list(table["checkpoint"]) == ranked_checkpoints(metric_table(results, [PERPLEXITY]), PERPLEXITY)
    at.number_input(key="metrics_seed").set_value(7).run()
    at.number_input(key="metrics_resamples").set_value(200).run()
    table = tab(at, "Checkpoints").dataframe[0].value.set_index("checkpoint")
    expected = {r.checkpoint: r for r in metric_table(results, ["chrf"], seed=7, n_resamples=200)}
    for label, row in expected.items():
        assert table.loc[label, "chrf ↑"].removesuffix(" ★") == format_interval(row.interval)
    assert not at.exception


def test_by_category_marks_the_weakest_category(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    at.selectbox(key="metrics_category_metric").set_value("chrf").run()
    section = tab(at, "By category")
    table = section.dataframe[0].value.set_index("checkpoint")
    weakest = weakest_categories(metric_table(results, ["chrf"], by_category=True), "chrf")
    assert list(table.index) == ["base", "checkpoint-6", "checkpoint-36"]
    for label, category in weakest.items():
        marked = [c for c in table.columns if str(table.loc[label, c]).endswith("▼")]
        assert len(marked) == 1 and marked[0].startswith(f"{category} (n=")
    assert any(plain(f"checkpoint-36: {weakest['checkpoint-36']}") in m.value for m in section.markdown)


def test_metric_by_step_chart_with_intervals_and_base_line(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    at.selectbox(key="metrics_step_metric").set_value("chrf").run()
    (chart,) = at.get("plotly_chart")
    fig = json.loads(chart.proto.spec)
    (trace,) = fig["data"]
    rows = {r.checkpoint: r for r in metric_table(results, ["chrf"])}
    assert decoded(trace["x"]) == [6, 36]
    assert decoded(trace["y"]) == pytest.approx([rows["checkpoint-6"].interval.value, rows["checkpoint-36"].interval.value])
    assert "error_y" in trace
    assert any(s.get("y0") == pytest.approx(rows["base"].interval.value) for s in fig["layout"]["shapes"])


def test_a_vs_b_b_better_lists_exactly_the_examples_where_the_last_checkpoint_wins(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    assert (at.selectbox(key="ab_a").value, at.selectbox(key="ab_b").value) == ("base", "checkpoint-36")
    assert at.radio(key="ab_outcome").value == "b_better"
    for metric in ("bleu", "chrf"):
        at.selectbox(key="ab_metric").set_value(metric).run()
        cmp = compare(results, "base", "checkpoint-36", metric)
        expected = {e.example.id for e in cmp.filter("b_better")}
        section = tab(at, "A vs B")
        shown = set(section.dataframe[0].value["id"]) if expected else set()
        assert shown == expected and all(e.value_b > e.value_a for e in cmp.filter("b_better"))
        assert any(m.value.startswith(f"{len(expected)} of 61 examples") for m in section.markdown)
        values = {m.label: m.value for m in section.metric}
        assert values["p-value"] == f"{cmp.paired.p_value:.4f}"
        assert values["B better / A better / ties"] == f"{cmp.paired.b_better} / {cmp.paired.a_better} / {cmp.paired.ties}"
        assert "seed 12345" in " ".join(c.value for c in section.caption)
    # The quick demo's checkpoint-36 is undertrained (short outputs), so most wins go the other way:
    # with A and B swapped, "B better" lists almost every example.
    at.selectbox(key="ab_a").set_value("checkpoint-36").run()
    at.selectbox(key="ab_b").set_value("base").run()
    expected = [e.example.id for e in compare(results, "checkpoint-36", "base", "chrf").filter("b_better")]
    table = tab(at, "A vs B").dataframe[0].value
    assert len(expected) > 20 and sorted(table["id"]) == sorted(expected)
    assert (table["B chrf"] > table["A chrf"]).all()
    cards = [m.value for m in tab(at, "A vs B").markdown if " · category " in m.value]
    assert len(cards) == 20  # capped, with the count said
    assert any(f"first 20 of {len(expected)}" in c.value for c in tab(at, "A vs B").caption)
    assert not at.exception


def test_a_vs_b_outcome_filters_and_threshold(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    at.selectbox(key="ab_metric").set_value("chrf").run()
    threshold = at.number_input(key="ab_wrong_below_chrf")
    assert threshold.value == 50.0  # default_wrong_below: half of chrF's range
    threshold.set_value(30.0).run()
    for outcome in ("a_better", "both_wrong", "only_a_wrong", "only_b_wrong", "all"):
        at.radio(key="ab_outcome").set_value(outcome).run()
        expected = {e.example.id for e in compare(results, "base", "checkpoint-36", "chrf", wrong_below=30.0).filter(outcome)}
        frames = tab(at, "A vs B").dataframe
        assert (set(frames[0].value["id"]) if frames else set()) == expected, outcome
    assert len(tab(at, "A vs B").dataframe[0].value) == 61  # "all"
    at.selectbox(key="ab_a").set_value("checkpoint-6").run()
    assert not at.exception


def test_example_texts_are_shown_literally_never_as_html(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    at.selectbox(key="ab_metric").set_value("chrf").run()
    section = tab(at, "A vs B")
    codes = [c.value for c in section.code]
    assert HTML in codes  # the injected output, verbatim
    eid = top_b_better(results, "chrf")
    example = results.examples[eid]
    assert example.prompt in codes and example.reference in codes
    markdown = " ".join(m.value for m in at.markdown)
    assert "<script>" not in markdown and "<b>" not in markdown
    assert any(m.value.startswith(plain(eid)) for m in section.markdown)


def test_worst_examples_of_a_checkpoint(app, monkeypatch, ws, results):
    at = open_page(app, monkeypatch, ws)
    at.selectbox(key="worst_metric").set_value("chrf").run()
    section = tab(at, "Worst examples")
    expected = [e.id for e, _, _ in worst_examples(results, "checkpoint-36", "chrf", k=5)]
    headers = [m.value for m in section.markdown]
    assert [h.split(" · ")[0] for h in headers] == [plain(i) for i in expected]
    at.selectbox(key="worst_checkpoint").set_value("base").run()
    at.number_input(key="worst_k").set_value(2).run()
    headers = [m.value.split(" · ")[0] for m in tab(at, "Worst examples").markdown]
    assert headers == [plain(e.id) for e, _, _ in worst_examples(results, "base", "chrf", k=2)]


def test_no_results_offers_compute_which_fills_the_table(app, monkeypatch, quick_demo, tmp_path):
    ws = tmp_path / "tiny"
    shutil.copytree(quick_demo / "base_model", ws / "base_model")
    (ws / "heldout").mkdir()
    lines = (quick_demo / "heldout" / "support_test.jsonl").read_text().splitlines()[:3]
    (ws / "heldout" / "support_test.jsonl").write_text("\n".join(lines) + "\n")
    (ws / "ftlens.toml").write_text(
        'schema_version = 1\nname = "tiny"\nbase_model = "base_model"\n\n[[datasets]]\nname = "support_test"\n'
        'path = "heldout/support_test.jsonl"\nkind = "generation"\n'
        'columns = { id = "id", prompt = "prompt", reference = "reference", category = "category" }\n'
    )
    at = open_page(app, monkeypatch, ws, timeout=180)
    assert "No text metrics are stored" in at.info[0].value
    at.number_input(key="metrics_max_new_tokens").set_value(3).run()
    at.button(key="metrics_compute").click().run()
    assert not at.exception and not at.error
    table = tab(at, "Checkpoints").dataframe[0].value
    assert list(table["checkpoint"]) == ["base"]
    assert all(CELL.match(v) for v in table.iloc[0, 3:])
    assert "at most 3 new tokens" in " ".join(c.value for c in at.caption)


def test_no_workspace(app):
    at = app().run()
    at.switch_page(PAGE).run()
    assert "No workspace is open" in at.info[0].value


@pytest.fixture(scope="module")
def leaky_ws(evaluated_demo, tmp_path_factory):
    """The evaluated demo plus a second training set holding three support_test rows word for word."""
    dst = tmp_path_factory.mktemp("metrics_leaky") / "ws"
    shutil.copytree(evaluated_demo, dst)
    rows = [json.loads(x) for x in (dst / "heldout" / "support_test.jsonl").read_text().splitlines()][:3]
    (dst / "train_data" / "copied.jsonl").write_text("".join(json.dumps(
        {"id": f"copy-{r['id']}", "prompt": r["prompt"], "response": r["reference"]}) + "\n" for r in rows))
    return dst, [r["id"] for r in rows]


def test_exclude_contaminated_items_recomputes_on_the_rest_and_shows_the_moves(app, monkeypatch, leaky_ws):
    import sacrebleu

    from eval_core.data_report import contaminated_ids, data_pairs
    from eval_core.metric_subsets import without_examples

    ws, planted = leaky_ws
    leaked = contaminated_ids(data_pairs(ws, heldout_names=["support_test"]), "support_test")
    assert set(planted) <= set(leaked)
    at = open_page(app, monkeypatch, ws)
    before = tab(at, "Checkpoints").dataframe[0].value
    at.toggle(key="metrics_exclude_support_test").set_value(True).run()
    assert not at.exception and all(i in at.warning[0].value.replace("\\", "") for i in leaked)
    (results,) = load_dataset_results(ws)
    clean = without_examples(results, leaked)
    assert len(clean.examples) == len(results.examples) - len(leaked)
    after = tab(at, "Checkpoints").dataframe[0].value.set_index("checkpoint")
    rows = {(r.checkpoint, r.metric): r for r in metric_table(clean)}
    assert after.loc["checkpoint-36", "bleu ↑"].removesuffix(" ★") == format_interval(rows[("checkpoint-36", "bleu")].interval)
    # The kept BLEU is sacrebleu's corpus BLEU over the kept examples alone, not an average.
    c36 = clean.checkpoint("checkpoint-36")
    ids = sorted(clean.examples)
    ref = sacrebleu.corpus_bleu([c36.outputs[i] for i in ids], [[clean.examples[i].reference for i in ids]]).score
    assert rows[("checkpoint-36", "bleu")].interval.value == pytest.approx(ref, abs=1e-9)
    moves = tab(at, "Checkpoints").dataframe[1].value
    line = moves[(moves["checkpoint"] == "checkpoint-36") & (moves["metric"] == "bleu ↑")].iloc[0]
    full = {(r.checkpoint, r.metric): r for r in metric_table(results)}[("checkpoint-36", "bleu")].interval.value
    assert line["all items"] == f"{full:.2f}" and line["without contaminated"] == f"{ref:.2f}"
    assert line["examples"] == f"{len(ids)} of {len(results.examples)}"
    assert set(before["checkpoint"]) == set(after.index)


def test_exclude_on_a_clean_set_says_the_numbers_are_already_clean(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    at.toggle(key="metrics_exclude_support_test").set_value(True).run()
    from eval_core.data_report import contaminated_ids, data_pairs

    if contaminated_ids(data_pairs(ws, heldout_names=["support_test"]), "support_test"):
        pytest.skip("the demo's support_test is not clean yet")  # until the demo builder decontaminates it
    assert "already clean" in at.info[0].value
    assert not any("without contaminated" in df.value.columns for df in tab(at, "Checkpoints").dataframe)
