"""Training curves page, one test per behaviour in pages/training_curves.py's docstring."""

from __future__ import annotations

import json
import shutil

PAGE = "pages/training_curves.py"


def open_page(app, monkeypatch, workspace):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(workspace))
    at = app().run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def figure(at) -> dict:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)


def test_shows_train_and_eval_loss_with_best_step_marked(app, monkeypatch, quick_demo):
    at = open_page(app, monkeypatch, quick_demo)
    fig = figure(at)
    names = [t.get("name") for t in fig["data"]]
    assert {"loss", "eval_support_loss", "eval_general_loss"} <= set(names)
    assert "best eval_support_loss" in names and "checkpoint saved" in names
    best = next(t for t in fig["data"] if t.get("name") == "best eval_support_loss")
    history = json.loads((quick_demo / "runs/support-ft/trainer_state.json").read_text())["log_history"]
    evals = [(e["step"], e["eval_support_loss"]) for e in history if "eval_support_loss" in e]
    best_step = min(evals, key=lambda sv: sv[1])[0]
    assert best["text"] == [f"best: step {best_step}"]
    table = at.dataframe[0].value
    assert set(table["metric"]) == {"eval_support_loss", "eval_general_loss"}
    assert "TensorBoard" in at.caption[0].value and "patience 3" in at.caption[0].value


def test_forgetting_curve_gets_an_overfitting_marker(app, monkeypatch, quick_demo):
    at = open_page(app, monkeypatch, quick_demo)
    fig = figure(at)
    labels = [a["text"] for a in fig["layout"].get("annotations", [])]
    table = at.dataframe[0].value.set_index("metric")
    onset = table.loc["eval_general_loss", "overfitting from step"]
    assert f"eval_general_loss: overfitting from step {int(onset)}" in labels


def test_axis_log_scale_smoothing_and_patience_controls(app, monkeypatch, quick_demo):
    at = open_page(app, monkeypatch, quick_demo)
    at.radio(key="curves_x").set_value("epoch").run()
    assert figure(at)["layout"]["xaxis"]["title"]["text"] == "epoch"
    at.radio(key="curves_x").set_value("wall_time").run()
    assert figure(at)["layout"]["xaxis"]["title"]["text"] == "wall time (UTC)"
    at.checkbox(key="curves_logy").check().run()
    assert figure(at)["layout"]["yaxis"]["type"] == "log"
    at.slider(key="curves_smoothing").set_value(0.0).run()
    fig = figure(at)
    raw = next(t for t in fig["data"] if t.get("name") == "loss (raw)")
    smooth = next(t for t in fig["data"] if t.get("name") == "loss")
    assert raw["y"] == smooth["y"]  # weight 0 is no smoothing
    at.number_input(key="curves_patience").set_value(1).run()
    assert "patience 1" in at.caption[0].value
    assert not at.exception


def test_live_refresh_reads_new_log_lines(app, monkeypatch, quick_demo, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("*.safetensors", "optimizer.pt"))
    shutil.copytree(quick_demo / "base_model", ws / "base_model", dirs_exist_ok=True)
    at = open_page(app, monkeypatch, ws)
    at.toggle(key="curves_live").set_value(True).run()
    state_file = ws / "runs/support-ft/trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"step": 40, "epoch": 9.9, "eval_support_loss": 0.123})
    state_file.write_text(json.dumps(state))
    at.run()
    best = next(t for t in figure(at)["data"] if t.get("name") == "best eval_support_loss")
    assert best["text"] == ["best: step 40"]


def test_no_workspace_and_no_logs(app, monkeypatch, tmp_path):
    at = app().run()
    at.switch_page(PAGE).run()
    assert "No workspace is open" in at.info[0].value
    monkeypatch.setenv("FTLENS_WORKSPACE", str(tmp_path))
    at = app().run()
    at.switch_page(PAGE).run()
    assert "No run in this workspace has training logs" in at.info[0].value


def test_an_unreadable_log_is_an_error_naming_the_file(app, monkeypatch, tmp_path):
    run = tmp_path / "runs" / "broken"
    run.mkdir(parents=True)
    (run / "trainer_state.json").write_text('{"log_history": [{"loss": 1}]}')
    at = open_page(app, monkeypatch, tmp_path)
    (err,) = at.error
    assert "trainer\\_state.json" in err.value and "step" in err.value


def test_stored_checkpoint_scores_overlay_the_curves(app, monkeypatch, evaluated_demo):
    from eval_core.metric_tables import load_dataset_results, metric_by_step

    at = open_page(app, monkeypatch, evaluated_demo)
    scores = at.multiselect(key="curves_scores")
    assert "support_test · bleu" in scores.options and "support_test · completion_perplexity" in scores.options
    before = len(figure(at)["data"])  # nothing drawn until a score is chosen
    scores.select("support_test · chrf").run()
    assert not at.exception
    fig = figure(at)
    assert len(fig["data"]) == before + 1
    overlay = next(t for t in fig["data"] if t.get("name") == "support_test chrf (support-ft)")
    (results,) = load_dataset_results(evaluated_demo)
    expected = metric_by_step(results, "chrf")
    assert overlay["yaxis"] == "y2" and overlay["x"] == [r.step for r in expected] == [6, 36]
    assert overlay["y"] == [r.interval.value for r in expected]
    assert fig["layout"]["yaxis2"]["title"]["text"] == "chrf"


def test_forgetting_overlay_draws_general_retention_and_the_recommended_checkpoint(app, monkeypatch, probed_demo, tmp_path):
    from eval_core.forgetting_results import forgetting_report
    from pages._session import THRESHOLD_KEY

    ws = tmp_path / "ws"
    shutil.copytree(probed_demo, ws)
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    at = app().run()
    at.session_state[THRESHOLD_KEY] = 0.01  # every checkpoint qualifies: the last one gains most
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.checkbox(key="curves_forgetting").value is True
    fig = figure(at)
    retention = next(t for t in fig["data"] if t.get("name") == "general retention (support-ft)")
    report = forgetting_report(ws, threshold=0.01).report
    assert retention["yaxis"] == "y2" and retention["x"] == [6, 36]
    assert retention["y"] == [c.general_retention for c in report.checkpoints]
    labels = [a.get("text", "") for a in fig["layout"]["annotations"]]
    assert any(t.startswith("recommended: checkpoint-36 (retains ") for t in labels)
    assert any(s.get("x0") == 36 and s["line"]["color"] == "#d62728" for s in fig["layout"]["shapes"])
    at.checkbox(key="curves_forgetting").uncheck().run()
    fig = figure(at)
    assert not any(t.get("name") == "general retention (support-ft)" for t in fig["data"])
    assert not any(str(a.get("text", "")).startswith("recommended:") for a in fig["layout"]["annotations"])
