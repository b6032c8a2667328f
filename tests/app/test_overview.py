"""Overview page, one test per behaviour in pages/overview.py's docstring."""

from __future__ import annotations

import json
import shutil

import pytest

from pages._render import plain
from pages._session import cli_workspace


def table_text(at) -> str:
    return at.table[0].value.reset_index().to_string()


def test_no_workspace_offers_to_build_the_demo(app):
    at = app().run()
    assert not at.exception
    assert "No workspace is open" in at.info[0].value
    assert [b.label for b in at.button if b.key == "build_demo"] == ["Build the demo workspace"]


def test_building_the_demo_in_the_app_then_opens_it(app, monkeypatch, quick_demo, tmp_path):
    # A demo whose fine-tuning stage was interrupted: the in-app build resumes it (the same code
    # path as a fresh build, without paying for pretraining again in the test suite).
    shutil.copytree(quick_demo, tmp_path / "demo", ignore=shutil.ignore_patterns("results.sqlite*"))
    shutil.rmtree(tmp_path / "demo" / "runs")
    (tmp_path / "demo" / ".ftlens" / "demo" / "finetune.done").unlink()
    monkeypatch.setenv("FTLENS_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("FTLENS_DEMO_QUICK", "1")
    at = app(timeout=600).run()
    at.button(key="build_demo").click().run()
    assert not at.exception
    assert at.title[0].value.startswith("Demo: Brightleaf")
    assert "checkpoint-36" in table_text(at)
    assert at.sidebar.text_input[0].value == str(tmp_path / "demo")


def test_a_built_demo_opens_with_one_click(app, monkeypatch, quick_demo):
    monkeypatch.setenv("FTLENS_DEMO_DIR", str(quick_demo))
    monkeypatch.setenv("FTLENS_DEMO_QUICK", "1")
    at = app().run()
    at.button(key="open_demo").click().run()
    assert not at.exception
    assert at.title[0].value.startswith("Demo: Brightleaf")


def test_workspace_from_environment_shows_runs_checkpoints_and_datasets(app, monkeypatch, quick_demo):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(quick_demo))
    at = app().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Runs": "1", "Checkpoints": "6", "Held-out sets": "4", "Training-log files": metrics["Training-log files"]}
    text = table_text(at)
    for name in ["base", *(f"checkpoint-{s}" for s in (6, 12, 18, 24, 30, 36))]:
        assert name in text
    datasets = at.dataframe[0].value
    assert list(datasets["name"]) == ["support_test", "general_text", "general_knowledge", "support_test_leak_check"]
    from pages._render import plain

    assert any("Training sets" in c.value and plain("support_train (") in c.value for c in at.caption), [c.value for c in at.caption]
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert "Category balance" in spec["layout"]["title"]["text"]
    assert len(spec["data"]) == 4  # one bar trace per dataset facet


def test_sidebar_picker_switches_workspace(app, quick_demo):
    at = app().run()
    at.sidebar.text_input[0].set_value(str(quick_demo)).run()
    assert not at.exception
    assert at.title[0].value.startswith("Demo: Brightleaf")


def test_missing_folder_is_one_clear_error(app, monkeypatch, tmp_path):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(tmp_path / "gone"))
    at = app().run()
    assert not at.exception
    (err,) = at.error
    assert "gone" in err.value and "does not exist" in err.value


def test_broken_config_names_file_line_and_field(app, monkeypatch, quick_demo, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ftlens.toml").write_text('name = "x"\nbase_modle = "base_model"\n')
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    at = app().run()
    assert not at.exception
    (err,) = at.error
    assert "ftlens.toml" in err.value and ":2" in err.value
    assert "base\\_modle" in err.value and "Did you mean" in err.value


def test_a_broken_dataset_is_reported_and_the_rest_still_shows(app, monkeypatch, quick_demo, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(quick_demo, ws, ignore=shutil.ignore_patterns("optimizer.pt"))
    (ws / "heldout" / "general_text.jsonl").write_text(
        '{"id": 1, "category": "a", "text": "ok"}\n{"id": 2, "category": "a", "text": 5}\n'
    )
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    at = app().run()
    assert not at.exception
    (err,) = at.error
    assert "general\\_text.jsonl:2" in err.value and "field 'text'" in err.value
    assert "checkpoint-36" in table_text(at)


def test_untrusted_names_are_shown_as_text_not_markdown(app, monkeypatch, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "[click](http:evil)![x](http:track).jsonl").write_text("not json\n")
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    at = app().run()
    (err,) = at.error
    assert plain("[click](http:evil)") in err.value
    assert "](http" not in err.value.replace("\\]\\(http", "")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--workspace", "/data/ws"], "/data/ws"), ([], None), (["--other", "1"], None)],
)
def test_cli_workspace_argument(argv, expected):
    assert cli_workspace(argv) == expected


def test_recommended_checkpoint_with_its_reason(app, monkeypatch, probed_demo, tmp_path):
    from eval_core.forgetting_results import forgetting_report
    from pages._session import THRESHOLD_KEY

    ws = tmp_path / "ws"
    shutil.copytree(probed_demo, ws)
    monkeypatch.setenv("FTLENS_WORKSPACE", str(ws))
    at = app().run()
    assert not at.exception and not at.error
    assert "Which checkpoint to ship" in [h.value for h in at.subheader]
    rec = forgetting_report(ws).report.recommendation
    shown = (at.success or at.warning)[0].value
    assert shown == plain(f"Recommended checkpoint: {rec.reason}" if rec.checkpoint else f"No checkpoint recommended: {rec.reason}")
    # the threshold chosen on the Forgetting page is the session's: at 1% the last checkpoint qualifies
    at.session_state[THRESHOLD_KEY] = 0.01
    at.run()
    assert "Recommended checkpoint: checkpoint-36: highest domain gain" in at.success[0].value
    # and at 200% none does: a warning naming the best retention instead
    at.session_state[THRESHOLD_KEY] = 2.0
    at.run()
    assert plain("No checkpoint recommended: no checkpoint keeps >= 200% general retention") in at.warning[0].value


def test_without_probe_results_no_recommendation_but_how_to_get_one(app, monkeypatch, evaluated_demo):
    monkeypatch.setenv("FTLENS_WORKSPACE", str(evaluated_demo))
    at = app().run()
    assert not at.exception and not at.success
    assert any("No forgetting analysis yet" in i.value for i in at.info)
