"""Data diagnostics kept in the results store (eval_core.data_report) and scores on a subset
(eval_core.metric_subsets): nothing recomputed for unchanged rows, a changed row or setting
recomputed, bare folders never written to, and subsets scored from their own statistics."""

from __future__ import annotations

import json
import random

import pytest

from eval_core.data_report import contaminated_ids, data_pairs, data_report
from eval_core.errors import EvalCoreError
from eval_core.metric_subsets import metric_shifts, without_examples
from eval_core.metric_tables import CheckpointResults, DatasetResults, Example, metric_table
from eval_core.text_metrics import score_pairs
from tests.app.test_data_page import PLANTED, make_workspace


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path / "ws")


def test_pairs_are_stored_then_read_back_and_progress_only_reports_computing(ws):
    calls = []
    first = data_pairs(ws, progress=lambda f, what: calls.append((f, what)))
    assert not first[0].cached and calls[-1] == (1.0, "done") and len(calls) > 2
    assert all(0.0 <= f <= 1.0 for f, _ in calls) and [f for f, _ in calls] == sorted(f for f, _ in calls)
    calls.clear()
    second = data_pairs(ws, progress=lambda f, what: calls.append((f, what)))
    assert second[0].cached and calls == [(1.0, "done")]  # nothing computed, nothing to show
    assert second[0].record == first[0].record and second[0].key_hash == first[0].key_hash
    assert set(contaminated_ids(second, "support_test")) == PLANTED


def test_an_edited_row_or_another_setting_is_a_fresh_record(ws):
    key = data_pairs(ws)[0].key_hash
    assert data_pairs(ws, ngram_n=8)[0].cached is False
    assert data_pairs(ws, near_duplicates=False)[0].cached is False
    path = ws / "heldout" / "support_test.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[-1]["reference"] = rows[0]["reference"]  # a new exact leak
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fresh = data_pairs(ws)[0]
    assert not fresh.cached and fresh.key_hash != key
    assert rows[-1]["id"] in contaminated_ids([fresh], "support_test")


def test_the_report_equals_the_cached_pairs(ws):
    report = data_report(ws)
    again = data_report(ws)
    assert report == again and report["pairs"][0]["contamination"]["contaminated_ids"] == sorted(PLANTED)


def test_a_bare_folder_is_checked_but_nothing_is_written_into_it(tmp_path):
    ws = make_workspace(tmp_path / "bare")
    (ws / "ftlens.toml").unlink()
    assert set(contaminated_ids(data_pairs(ws), "support_test")) == PLANTED
    assert not (ws / ".ftlens").exists()


def test_unknown_heldout_set_is_named(ws):
    with pytest.raises(EvalCoreError, match="unknown held-out set nope; known: support_test"):
        data_pairs(ws, heldout_names=["nope"])


def _results(n: int = 30, seed: int = 0) -> DatasetResults:
    rng = random.Random(seed)
    words = "the a cat dog sat ran on under mat tree fast slow".split()
    examples = {f"e{i}": Example(f"e{i}", "c", "p", " ".join(rng.choices(words, k=8))) for i in range(n)}
    ckpts = []
    for label in ("base", "checkpoint-2"):
        c = CheckpointResults(label=label, run=None if label == "base" else "r", name=label, step=None, fingerprint=label)
        outputs = [" ".join(rng.choices(words, k=8)) for _ in examples]
        scored = score_pairs(outputs, [e.reference for e in examples.values()], workers=1)
        for eid, out, pair in zip(examples, outputs, scored, strict=True):
            c.outputs[eid] = out
            for metric in ("bleu", "chrf"):
                c.scores.setdefault(metric, {})[eid] = (pair.values[metric], list(pair.stats[metric]))
        ckpts.append(c)
    return DatasetResults("s", "h", {}, examples, ckpts)


def test_a_subset_is_scored_from_its_own_statistics_like_sacrebleu_on_it():
    import sacrebleu

    results = _results()
    drop = {"e0", "e3", "e7", "unknown-id"}
    clean = without_examples(results, drop)
    assert sorted(clean.examples) == sorted(set(results.examples) - drop) and len(results.examples) == 30
    c = clean.checkpoint("checkpoint-2")
    ids = sorted(clean.examples)
    want = sacrebleu.corpus_bleu([c.outputs[i] for i in ids], [[clean.examples[i].reference for i in ids]]).score
    got = {(r.checkpoint, r.metric): r for r in metric_table(clean, n_resamples=100)}
    assert got[("checkpoint-2", "bleu")].interval.value == pytest.approx(want, abs=1e-9)
    shifts = metric_shifts(metric_table(results, n_resamples=100), metric_table(clean, n_resamples=100))
    s = next(x for x in shifts if (x.checkpoint, x.metric) == ("checkpoint-2", "bleu"))
    assert (s.all_examples, s.kept_examples) == (30, 27) and s.change == pytest.approx(s.kept_value - s.all_value)
    assert without_examples(results, {"nope"}) is results  # nothing to drop: the same results


def test_excluding_everything_is_a_clear_error():
    results = _results(3)
    with pytest.raises(EvalCoreError, match="all 3 examples of s are excluded"):
        without_examples(results, set(results.examples))
