"""The forgetting analysis cached in the results store: computed once per (inputs, parameters),
read back equal, recomputed when a stored value or a parameter changes, never served stale."""

from __future__ import annotations

import json
import shutil

import pytest
import sqlalchemy as sa

from eval_core.forgetting import analyse_forgetting
from eval_core.forgetting_inputs import load_forgetting_inputs
from eval_core.forgetting_results import ANALYSIS, forgetting_report, inputs_digest
from eval_core.results_store import ResultsStore, analyses, database_url, text_scores


@pytest.fixture
def ws(probed_demo, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(probed_demo, dst)
    return dst


def _rows(ws) -> list[dict]:
    store = ResultsStore(database_url(ws))
    try:
        return [r for r in store.read(analyses) if r["analysis"] == ANALYSIS]
    finally:
        store.close()


def test_computed_once_then_read_back_equal(ws):
    rows_before = len(_rows(ws))
    first = forgetting_report(ws, n_resamples=60)
    assert not first.cached and len(_rows(ws)) == rows_before + 1
    second = forgetting_report(ws, n_resamples=60)
    assert second.cached and second.key_hash == first.key_hash
    assert second.report == first.report
    # what is cached is what a fresh analysis of the same rows gives
    assert first.report == analyse_forgetting(load_forgetting_inputs(ws), n_resamples=60)
    (row,) = [r for r in _rows(ws) if r["key_hash"] == first.key_hash]
    assert json.loads(row["params"]) == {"threshold": 0.95, "seed": 12345, "n_resamples": 60, "domain_dataset": "support_test"}
    assert row["inputs_digest"] == first.inputs_digest == inputs_digest(load_forgetting_inputs(ws))


def test_other_parameters_are_another_record(ws):
    rows_before = len(_rows(ws))
    a = forgetting_report(ws, n_resamples=60)
    b = forgetting_report(ws, n_resamples=60, threshold=0.5)
    c = forgetting_report(ws, n_resamples=60, seed=7)
    assert not b.cached and not c.cached and len({a.key_hash, b.key_hash, c.key_hash}) == 3
    assert b.report.threshold == 0.5 and c.report.seed == 7
    assert len(_rows(ws)) == rows_before + 3


def test_a_changed_stored_value_is_never_served_stale(ws):
    before = forgetting_report(ws, n_resamples=60)
    store = ResultsStore(database_url(ws))
    try:  # flip one checkpoint answer from wrong to right, as a re-evaluation would
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(text_scores).where(text_scores.c.metric == "mc_acc", text_scores.c.value == 0.0)
                               .limit(1)).first()._mapping
            conn.execute(text_scores.update().where(*[text_scores.c[k] == row[k] for k in (
                "checkpoint_fp", "dataset", "example_id", "example_hash", "metric", "config_hash")]).values(value=1.0))
    finally:
        store.close()
    after = forgetting_report(ws, n_resamples=60)
    assert not after.cached and after.inputs_digest != before.inputs_digest
    assert after.report == analyse_forgetting(load_forgetting_inputs(ws), n_resamples=60)
    assert after.report != before.report


def test_an_unreadable_cached_record_is_recomputed(ws):
    first = forgetting_report(ws, n_resamples=60)
    store = ResultsStore(database_url(ws))
    try:
        with store.engine.begin() as conn:
            conn.execute(analyses.update().values(record='{"schema": "something else"}'))
    finally:
        store.close()
    again = forgetting_report(ws, n_resamples=60)
    assert not again.cached and again.report == first.report


def test_nothing_to_compare_is_not_stored(evaluated_demo, tmp_path):
    """A workspace without probe or general-text results: the (empty) analysis is not written."""
    ws = tmp_path / "ws"
    shutil.copytree(evaluated_demo, ws)
    rows_before = len(_rows(ws))
    got = forgetting_report(ws, n_resamples=20)
    assert not got.cached and not any(c.retention for c in got.report.checkpoints)
    assert len(_rows(ws)) == rows_before


def test_the_key_covers_the_analysis_code(ws, monkeypatch):
    import eval_core.forgetting_results as fr

    first = forgetting_report(ws, n_resamples=60)
    monkeypatch.setattr(fr, "code_digest", lambda: "0" * 64)  # as if forgetting.py had changed
    again = forgetting_report(ws, n_resamples=60)
    assert not again.cached and again.key_hash != first.key_hash
