"""Forgetting page, one test per behaviour in pages/forgetting.py's docstring.

The workspace is a copy of the session's evaluated demo (base, checkpoint-6, checkpoint-36 on
support_test) with log-likelihood probes and general-text perplexity added for the same models.
"""

from __future__ import annotations

import shutil

import pytest

from eval_core.forgetting import analyse_forgetting
from eval_core.forgetting_inputs import load_forgetting_inputs

PAGE = "pages/forgetting.py"


@pytest.fixture(scope="module")
def ws(evaluated_demo, tmp_path_factory):
    from eval_core.evaluation import evaluate_workspace

    dst = tmp_path_factory.mktemp("forgetting_page") / "ws"
    shutil.copytree(evaluated_demo, dst)
    evaluate_workspace(dst, checkpoint_names=["base", "checkpoint-6", "checkpoint-36"],
                       dataset_names=["general_knowledge", "general_text"], metric_names=["mc_acc", "perplexity"])
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
    report = analyse_forgetting(load_forgetting_inputs(ws), n_resamples=1000)
    shown = (at.success or at.warning)[0].value
    assert f"Recommended: {report.recommendation.checkpoint}: highest domain gain" in shown  # the demo keeps one
    at.number_input(key="forgetting_threshold").set_value(0.01).run()
    assert "Recommended: checkpoint-36: highest domain gain" in at.success[0].value


def test_charts_and_checkpoint_table(app, monkeypatch, ws):
    at = open_page(app, monkeypatch, ws)
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == ["checkpoint-6", "checkpoint-36"]
    assert {"general retention", "forgetting index", "domain gain", "on frontier", "mc_acc", "bits_per_byte"} <= set(table.columns)
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
