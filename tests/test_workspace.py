"""Workspace discovery: what the config names, what is discovered, and what is reported as broken."""

from __future__ import annotations

import json
import shutil

import pytest

from eval_core.errors import WorkspaceError
from eval_core.workspace import discover_workspace


@pytest.fixture
def demo_copy(quick_demo, tmp_path):
    """A private copy of the quick demo that a test may break (weights are only a few MB)."""
    dst = tmp_path / "ws"
    shutil.copytree(quick_demo, dst, ignore=shutil.ignore_patterns("optimizer.pt", "events.out.*"))
    return dst


def test_demo_workspace_lists_everything(quick_demo):
    ws = discover_workspace(quick_demo)
    assert ws.problems == ()
    assert ws.base_model is not None and ws.base_model.path == "base_model"
    assert [c.step for c in ws.checkpoints] == [6, 12, 18, 24, 30, 36]
    assert all(c.kind == "full" and c.weight_format == "safetensors" for c in ws.checkpoints)
    assert all(c.parameter_count == ws.base_model.parameter_count for c in ws.checkpoints)
    assert len({c.fingerprint for c in ws.checkpoints}) == 6
    by_name = {d.name: d for d in ws.datasets}
    assert by_name["support_test"].kind == "generation"
    assert by_name["general_text"].kind == "text"
    assert by_name["general_knowledge"].kind == "probe"
    assert sum(by_name["support_test"].categories.values()) == by_name["support_test"].rows
    kinds = {f.kind for f in ws.log_files}
    assert {"trainer_state", "tensorboard"} <= kinds


def test_discovery_without_a_config_finds_the_same_things(demo_copy):
    configured = discover_workspace(demo_copy)
    (demo_copy / "ftlens.toml").unlink()
    found = discover_workspace(demo_copy)
    assert found.base_model.fingerprint == configured.base_model.fingerprint
    assert [c.fingerprint for c in found.checkpoints] == [c.fingerprint for c in configured.checkpoints]
    assert found.runs[0].name == "support-ft"
    names = {d.name for d in found.datasets}
    assert {"support_test", "general_text", "general_knowledge"} <= names and "support_train" not in names
    # The fine-tuning data under train_data/ is a training set (data diagnostics), not a held-out set.
    assert [d.name for d in found.training_sets] == [d.name for d in configured.training_sets] == ["support_train"]
    assert {d.name: d.kind for d in found.datasets}["general_knowledge"] == "probe"


def test_trainer_output_folder_alone_is_a_workspace(demo_copy):
    run = demo_copy / "runs" / "support-ft"
    ws = discover_workspace(run)
    assert [c.name for c in ws.checkpoints][:2] == ["checkpoint-6", "checkpoint-12"]
    assert any(p.field == "base_model" and p.severity == "warning" for p in ws.problems)


def test_a_broken_dataset_is_a_problem_not_a_crash(demo_copy):
    path = demo_copy / "heldout" / "support_test.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"id": "x", "prompt": "unterminated'
    path.write_text("\n".join(lines) + "\n")
    ws = discover_workspace(demo_copy)
    assert [d.name for d in ws.datasets] == ["general_text", "general_knowledge", "support_test_leak_check"]
    (problem,) = ws.problems
    assert problem.path.endswith("support_test.jsonl") and problem.line == 3
    assert len(ws.checkpoints) == 6


def test_a_broken_checkpoint_is_a_problem_and_the_others_still_list(demo_copy):
    cfg = demo_copy / "runs/support-ft/checkpoint-12/config.json"
    data = json.loads(cfg.read_text())
    data["auto_map"] = {"AutoModelForCausalLM": "x.Y"}
    cfg.write_text(json.dumps(data))
    ws = discover_workspace(demo_copy)
    assert [c.step for c in ws.checkpoints] == [6, 18, 24, 30, 36]
    assert any(p.field == "auto_map" and p.path == str(cfg) for p in ws.problems)


def test_missing_run_folder_named_in_config(demo_copy):
    shutil.rmtree(demo_copy / "runs")
    ws = discover_workspace(demo_copy)
    assert ws.runs == ()
    assert any(p.field == "runs.support-ft.path" for p in ws.problems)


def test_broken_config_and_missing_folder_raise(demo_copy, tmp_path):
    (demo_copy / "ftlens.toml").write_text('name = "x"\n[[runs]]\npath = \n')
    with pytest.raises(WorkspaceError) as err:
        discover_workspace(demo_copy)
    assert err.value.path.endswith("ftlens.toml") and err.value.line == 3
    with pytest.raises(WorkspaceError, match="does not exist"):
        discover_workspace(tmp_path / "nope")
    with pytest.raises(WorkspaceError, match="not a file"):
        discover_workspace(demo_copy / "heldout" / "support_test.jsonl")


def test_symlinked_dataset_leaving_the_workspace_is_refused(demo_copy, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"text": "private"}\n')
    (demo_copy / "heldout" / "general_text.jsonl").unlink()
    (demo_copy / "heldout" / "general_text.jsonl").symlink_to(secret)
    ws = discover_workspace(demo_copy)
    assert "general_text" not in {d.name for d in ws.datasets}
    assert any("outside the workspace" in p.message for p in ws.problems)


def test_fingerprints_are_cached_and_follow_content(demo_copy, monkeypatch):
    first = discover_workspace(demo_copy)
    assert (demo_copy / ".ftlens" / "fingerprints.json").is_file()
    import hashlib

    calls = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = discover_workspace(demo_copy)
    assert calls == []  # every digest came from the cache
    assert again.to_dict() == first.to_dict()
    path = demo_copy / "heldout" / "general_text.jsonl"
    path.write_text(path.read_text() + '{"id": "new", "category": "x", "text": "one more line"}\n')
    changed = {d.name: d.fingerprint for d in discover_workspace(demo_copy).datasets}
    before = {d.name: d.fingerprint for d in first.datasets}
    assert changed["general_text"] != before["general_text"]
    assert changed["support_test"] == before["support_test"]


def test_adapter_checkpoints_are_discovered(tiny_adapter, tmp_path):
    adapter, base_dir, _ = tiny_adapter
    ws_root = tmp_path / "adapter_ws"
    shutil.copytree(base_dir, ws_root / "base_model")
    shutil.copytree(adapter, ws_root / "runs" / "lora" / "checkpoint-5")
    ws = discover_workspace(ws_root)
    (ckpt,) = ws.checkpoints
    assert (ckpt.kind, ckpt.step, ckpt.run) == ("adapter", 5, "lora")
    assert ws.base_model.kind == "full"
