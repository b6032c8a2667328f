"""Forgetting page, one test per behaviour in pages/forgetting.py's docstring.

The workspace is a copy of the session's probed demo (base, checkpoint-6, checkpoint-36 with
support_test text metrics, log-likelihood probes and general-text perplexity).
"""

from __future__ import annotations

import shutil

import pytest

from eval_core.forgetting import analyse_forgetting
from eval_core.forgetting_inputs import load_forgetting_inputs
from pages._render import plain
from pages._session import THRESHOLD_KEY

PAGE = "pages/forgetting.py"


@pytest.fixture(scope="module")
def ws(probed_demo, tmp_path_factory):
    dst = tmp_path_factory.mktemp("forgetting_page") / "ws"
    shutil.copytree(probed_demo, dst)
    return dst


def open_page(app, monkeypatch, workspace, timeout: float = 60):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app(timeout).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def test_without_probe_results_says_how_to_compute(app, monkeypatch, evaluated_demo):
    at = open_page(app, monkeypatch, evaluated_demo)
    assert at.title[0].value == "Forgetting" and not at.error
    assert "No probe results" in at.info[0].value
    assert "python -m eval_core evaluate" in at.code[0].value


def test_recommendation_with_its_reason(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    rec = analyse_forgetting(load_forgetting_inputs(ws), n_resamples=1000).recommendation
    shown = (at.success or at.warning)[0].value
    assert shown == plain(f"Recommended: {rec.reason}" if rec.checkpoint else f"No recommendation: {rec.reason}")
    at.number_input(key="forgetting_threshold").set_value(0.01).run()
    assert "Recommended: checkpoint-36: highest domain gain" in at.success[0].value
    assert at.session_state[THRESHOLD_KEY] == 0.01  # Overview and Training curves use it too


def test_kinds_where_the_base_is_at_chance_are_marked_and_explained(app, monkeypatch, ws):
    report = analyse_forgetting(load_forgetting_inputs(ws), n_resamples=10)
    at_chance = {r.kind for c in report.checkpoints for r in c.retention if not r.informative}
    at = open_page(app, monkeypatch, ws)
    kinds = at.selectbox(key="forgetting_kind")
    assert kinds.value == "bits_per_byte"  # informative kinds come first
    table = at.dataframe[0].value
    for kind in ("mc_acc", "mc_acc_norm"):
        assert all(str(v).endswith("(chance)") == (kind in at_chance) for v in table[kind])
        kinds.set_value(kind).run()
        note = [c.value for c in at.caption if "left out of the general retention" in c.value]
        assert bool(note) == (kind in at_chance)


def test_charts_and_checkpoint_table(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == ["checkpoint-6", "checkpoint-36"]
    assert {"general retention", "forgetting index", "domain gain", "on frontier", "mc_acc", "mc_acc_norm",
            "bits_per_byte", "general text retention"} <= set(table.columns)
    at.selectbox(key="forgetting_category").set_value("science").run()
    assert not at.exception


def test_flipped_items_show_both_answers_as_plain_text(app, monkeypatch, ws):
    report = analyse_forgetting(load_forgetting_inputs(ws), n_resamples=10)
    lost = [f for f in report.checkpoints[-1].flips if f.direction == "lost" and f.kind == "mc_acc"]
    at = open_page(app, monkeypatch, ws)
    assert f"{len(lost)} item(s)" in [c.value for c in at.caption]
    if lost:
        flips = at.dataframe[1].value
        assert list(flips["id"]) == [f.id for f in lost]
        assert list(flips["base answer"]) == [f.base_answer for f in lost]
        assert list(flips["checkpoint answer"]) == [f.checkpoint_answer for f in lost]
