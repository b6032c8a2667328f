"""`python -m eval_core forgetting`: the ftlens.forgetting record on the demo, the table, clean errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval_core.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def probed(probed_demo, tmp_path_factory) -> Path:
    """A copy of the session's probed demo (the command writes its analysis cache into the store)."""
    ws = tmp_path_factory.mktemp("probed") / "ws"
    shutil.copytree(probed_demo, ws)
    return ws


def test_json_record(probed, capsys):
    assert main(["forgetting", "--workspace", str(probed), "--format", "json", "--resamples", "100", "--seed", "3"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["schema"], record["version"]) == ("ftlens.forgetting", 2)
    assert (record["seed"], record["n_resamples"], record["threshold"]) == (3, 100, 0.95)
    assert [c["label"] for c in record["checkpoints"]] == ["checkpoint-6", "checkpoint-36"]
    c = record["checkpoints"][-1]
    assert {"step", "retention", "by_category", "forgetting_index", "flips", "domain_gain", "on_frontier"} <= set(c)
    assert {r["kind"] for r in c["retention"]} == {"mc_acc", "mc_acc_norm", "bits_per_byte"}
    assert all(r["low"] <= r["retention"] <= r["high"] for r in c["retention"])
    rec = record["recommendation"]
    assert set(rec) == {"checkpoint", "threshold", "reason"} and rec["reason"]


def test_table_and_threshold(probed, capsys):
    assert main(["forgetting", "--workspace", str(probed), "--resamples", "50", "--threshold", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "general retention" in out and "checkpoint-36" in out
    # every checkpoint keeps more than 1%: the one with the highest domain gain is named
    assert "Recommended: checkpoint-36 — checkpoint-36: highest domain gain" in out


def test_second_run_reads_the_analysis_from_the_store(probed, capsys):
    args = ["forgetting", "--workspace", str(probed), "--format", "json", "--resamples", "40", "--seed", "11"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "computed and stored in the results store" in first.err
    assert main(args) == 0
    second = capsys.readouterr()
    assert "read from the results store" in second.err and second.out == first.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workspace", "/no/such/folder"], "/no/such/folder: not a folder"),
        (["--threshold", "0"], "--threshold 0.0"),
        (["--resamples", "0"], "--resamples 0"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    full = ["forgetting", "--workspace", str(tmp_path), *args] if args[0] != "--workspace" else ["forgetting", *args]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_empty_workspace_says_what_to_run(tmp_path, capsys):
    (tmp_path / "ftlens.toml").write_text("", encoding="utf-8")  # a workspace with nothing evaluated yet
    assert main(["forgetting", "--workspace", str(tmp_path)]) == 2
    assert "python -m eval_core evaluate" in capsys.readouterr().err


def test_a_folder_that_is_not_a_workspace_is_refused_and_left_untouched(tmp_path, capsys):
    assert main(["forgetting", "--workspace", str(tmp_path)]) == 2
    assert "not a Fine-Tune Lens workspace" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_help_renders():
    for argv in (["--help"], ["forgetting", "--help"]):
        out = subprocess.run([sys.executable, "-m", "eval_core", *argv], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert "95%" in out.stdout
