"""The scoring commands end to end: perplexity, generate, evaluate, results (and their errors)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eval_core", *args], cwd=REPO, capture_output=True, text=True, env=env)


@pytest.fixture
def ws(quick_demo, tmp_path):
    dst = tmp_path / "ws"
    shutil.copytree(quick_demo, dst, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*", "results.sqlite*"))
    return dst


def test_perplexity_command_prints_figures_protocol_and_examples(quick_demo):
    ckpt = quick_demo / "runs/support-ft/checkpoint-36"
    out = run_cli("perplexity", "--checkpoint", str(ckpt), "--data", str(quick_demo / "heldout/general_text.jsonl"),
                  "--batch-size", "4", "--max-length", "64", "--stride", "32")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["perplexity"] > 1 and rec["bits_per_byte"] > 0 and rec["tokens"] > 0
    assert rec["protocol"]["max_length"] == 64 and rec["protocol"]["stride"] == 32
    assert rec["protocol"]["bos_policy"] == "prepend" and len(rec["per_example"]) == 56
    assert sum(e["tokens"] for e in rec["per_example"]) == rec["tokens"]


def test_perplexity_of_an_empty_file_is_an_error_not_nan(quick_demo, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = run_cli("perplexity", "--checkpoint", str(quick_demo / "base_model"), "--data", str(empty))
    assert out.returncode == 2 and "undefined" in out.stderr and "NaN" not in out.stdout


def test_generate_command_prints_json_lines_with_settings(quick_demo):
    out = run_cli("generate", "--checkpoint", str(quick_demo / "runs/support-ft/checkpoint-36"),
                  "--data", str(quick_demo / "heldout/support_test.jsonl"), "--max-new-tokens", "5", "--format", "jsonl")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 61 and lines[0]["settings"]["max_new_tokens"] == 5
    assert all(x["new_tokens"] <= 5 and x["finish_reason"] in ("eos", "length", "stop") for x in lines)


def test_evaluate_then_results(ws):
    args = ["evaluate", "--workspace", str(ws), "--checkpoint", "base", "--checkpoint", "checkpoint-36",
            "--metric", "perplexity", "--metric", "completion_perplexity",
            "--dataset", "support_test", "--dataset", "general_text", "--dataset", "general_knowledge"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["computed"] == 2 * (56 + 61 + 429)
    second = run_cli(*args)
    assert json.loads(second.stdout)["computed"] == 0 and "computed 0 examples" in second.stderr
    res = json.loads(run_cli("results", "--workspace", str(ws), "--format", "json").stdout)
    assert res["schema"] == "ftlens.results"
    cells = {(r["checkpoint"], r["dataset"]): r for r in res["results"] if r["metric"] == "perplexity"}
    for model in ("base", "checkpoint-36"):
        assert cells[(model, "general_text")]["bits_per_byte"] > 0 and cells[(model, "general_text")]["protocol"]
    csv_lines = run_cli("results", "--workspace", str(ws), "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("run,checkpoint,step,dataset,metric") and len(csv_lines) == 1 + 6


def test_evaluate_unknown_and_unusable_names(ws):
    out = run_cli("evaluate", "--workspace", str(ws), "--metric", "bleu_score")
    assert out.returncode == 2 and "unknown metric 'bleu_score'" in out.stderr
    (ws / "heldout" / "general_text.jsonl").write_text("")
    out = run_cli("evaluate", "--workspace", str(ws), "--dataset", "general_text")
    assert out.returncode == 2 and "no rows" in out.stderr
