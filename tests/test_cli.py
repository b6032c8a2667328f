"""`python -m eval_core`: help, the workspace listing in both formats, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from eval_core.cli import main
from eval_core.records import WORKSPACE_SCHEMA, WORKSPACE_SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eval_core", *args], cwd=REPO, capture_output=True, text=True)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    assert all(name in out.stdout for name in ("demo", "workspace", "evaluate", "results", "score"))


def test_workspace_json_follows_the_documented_schema(quick_demo):
    out = run_cli("workspace", "--workspace", str(quick_demo), "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["schema"], data["schema_version"]) == (WORKSPACE_SCHEMA, WORKSPACE_SCHEMA_VERSION)
    assert data["base_model"]["path"] == "base_model"
    (run,) = data["runs"]
    assert len(run["checkpoints"]) >= 6
    first = run["checkpoints"][0]
    assert set(first) >= {"name", "step", "path", "kind", "parameter_count", "fingerprint"}
    assert {f["kind"] for f in run["log_files"]} >= {"trainer_state", "tensorboard"}
    ds = {d["name"]: d for d in data["datasets"]}
    assert set(ds) == {"support_test", "general_text", "general_knowledge", "support_test_leak_check"}
    assert set(ds["support_test"]) >= {"path", "rows", "columns", "categories", "fingerprint"}
    # The documented schema names every top-level field.
    doc = (REPO / "docs" / "workspace-schema.md").read_text()
    for key in data:
        assert f"`{key}`" in doc, f"{key} is not documented"


def test_workspace_table(quick_demo, capsys):
    assert main(["workspace", "--workspace", str(quick_demo), "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint-36" in out and "support_test" in out and "tensorboard" in out


def test_missing_workspace_is_one_clear_line_and_exit_2(tmp_path):
    out = run_cli("workspace", "--workspace", str(tmp_path / "nope"), "--format", "json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith("error: ") and "does not exist" in out.stderr
    assert "Traceback" not in out.stderr


def test_strict_flag_fails_on_problems(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text("{not json}\n")
    assert main(["workspace", "--workspace", str(tmp_path), "--format", "json"]) == 0
    assert main(["workspace", "--workspace", str(tmp_path), "--format", "json", "--strict"]) == 1
    problems = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")["problems"]
    assert any(p["path"].endswith("bad.jsonl") and p["line"] == 1 for p in problems)


def test_demo_command_is_idempotent_on_a_built_workspace(quick_demo):
    out = run_cli("demo", "--workspace", str(quick_demo), "--quick")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["schema"] == "ftlens.demo_build"
    assert "already built" in out.stderr


def test_demo_build_prints_only_json_on_stdout(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from eval_core.demo import DemoSettings

    tiny = replace(DemoSettings.quick(), pretrain_steps=2, finetune_steps=2, eval_every=1, general_eval_blocks=2)
    monkeypatch.setattr(DemoSettings, "quick", classmethod(lambda cls: tiny))
    assert main(["demo", "--workspace", str(tmp_path / "ws"), "--quick"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)  # Trainer's log lines went to stderr, not into the JSON
    assert record["settings"]["finetune_steps"] == 2
    assert "finetune" in err  # the progress bars


def test_curves_rows_summary_and_csv(quick_demo):
    run = quick_demo / "runs" / "support-ft"
    out = run_cli("curves", str(run), "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["schema"] == "ftlens.curves" and data["rows"]
    assert set(data["rows"][0]) == {"run", "source", "step", "epoch", "wall_time", "metric", "value"}

    summary = json.loads(run_cli("curves", str(run), "--summary", "--format", "json").stdout)
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    for entry in summary["metrics"]:
        evals = [(e["step"], e[entry["metric"]]) for e in history if entry["metric"] in e]
        assert entry["best_step"] == min(evals, key=lambda sv: sv[1])[0]  # the minimum of eval loss
        assert entry["patience"] == 3 and "recommended_stop_step" in entry and "overfit_onset_step" in entry
    assert {m["metric"] for m in summary["metrics"]} == {"eval_support_loss", "eval_general_loss"}

    csv_out = run_cli("curves", str(run / "trainer_state.json"), "--format", "csv")
    lines = csv_out.stdout.splitlines()
    assert lines[0] == "run,source,step,epoch,wall_time,metric,value" and len(lines) > 20


def test_curves_of_a_missing_path_is_exit_2(tmp_path):
    out = run_cli("curves", str(tmp_path / "nope"), "--summary")
    assert out.returncode == 2 and "does not exist" in out.stderr
